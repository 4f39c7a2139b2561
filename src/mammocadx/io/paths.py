"""Output paths built from untrusted text (image ids, DICOM tags, CSV fields).

A DICOM ``PatientID`` or a manifest's ``image_id`` can hold ``../../etc``, a
slash, a NUL byte or 300 characters. Two rules keep outputs inside their folder:

- :func:`safe_name` turns any text into one harmless file-name component;
- :func:`safe_join` joins components under a root and refuses any result that
  leaves it (``..``, absolute parts, symbolic links pointing out).
"""
from __future__ import annotations

import contextlib
import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from os import PathLike
from pathlib import Path, PurePosixPath, PureWindowsPath

from mammocadx.errors import MammocadxError

#: Longest name :func:`safe_name` returns by default (well under the 255-byte limit
#: of common file systems, leaving room for suffixes such as ``_gradcam.png``).
MAX_NAME_LENGTH = 100

_ALLOWED = re.compile(r"[^A-Za-z0-9._-]+")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_HASH_LEN = 10


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_LEN]


def safe_name(text: object, max_length: int = MAX_NAME_LENGTH) -> str:
    """A file-name component made from untrusted text.

    The result holds only ``[A-Za-z0-9._-]``, does not start with ``.`` or ``-``
    (no hidden files, nothing a command line reads as an option), is never empty,
    ``.`` or ``..``, is not a reserved Windows device name, and is at most
    ``max_length`` characters. Text that is already such a name is returned
    unchanged (``mdb005`` stays ``mdb005``). Text that had to be altered gets a
    ``-<10 hex>`` suffix from the SHA-256 of the original, so two different ids
    that clean to the same characters (``a/b`` and ``a b``) still get different names.

    Parameters
    ----------
    text : object
        The id; non-strings are converted with ``str``.
    max_length : int, default 100
        Longest result; at least 16.

    Returns
    -------
    str

    Examples
    --------
    >>> safe_name("mdb005")
    'mdb005'
    >>> safe_name("../../etc/passwd")
    '_.._etc_passwd-3754d6cb3a'
    """
    if max_length < 16:
        raise ValueError(f"max_length must be at least 16, got {max_length}")
    original = str(text)
    # NFKD splits accents off their letters and folds compatibility forms (full-width
    # letters, ligatures) to ASCII where they have one; the accents are then dropped.
    cleaned = "".join(c for c in unicodedata.normalize("NFKD", original) if not unicodedata.combining(c))
    cleaned = _ALLOWED.sub("_", cleaned)
    cleaned = cleaned.lstrip(".-").rstrip(".")
    if cleaned != original and not cleaned.strip("_"):  # "日本" -> "_" says nothing: use "x-<hash>"
        cleaned = ""
    if cleaned.split(".")[0].upper() in _WINDOWS_RESERVED:
        cleaned = "_" + cleaned  # "nul.txt" is a device on Windows whatever follows the dot
    if cleaned and cleaned == original and len(cleaned) <= max_length:
        return cleaned
    suffix = "-" + _digest(original)
    cleaned = cleaned[: max_length - len(suffix)].rstrip(".")
    return f"{cleaned or 'x'}{suffix}"


def safe_join(root: str | PathLike[str], *parts: str | PathLike[str]) -> Path:
    """Join ``parts`` under ``root`` and refuse any result outside ``root``.

    Parameters
    ----------
    root : str or PathLike
        The output folder (need not exist yet).
    *parts : str or PathLike
        Relative components, usually built with :func:`safe_name`. ``..`` is
        allowed only where the result stays inside ``root`` (``a/../b``).

    Returns
    -------
    Path
        The joined path, absolute, with symbolic links resolved.

    Raises
    ------
    MammocadxError
        A part is empty, absolute (``/etc/passwd``, ``C:\\x``, ``\\\\server\\share``),
        holds a NUL byte, or the result (after resolving ``..`` and symbolic
        links) is not inside ``root``.
    """
    base = Path(root).resolve()
    rel = Path()
    for part in parts:
        s = str(part)
        if not s:
            raise MammocadxError("empty path component", root, stage="paths")
        if "\x00" in s:
            raise MammocadxError(f"path component {s!r} holds a NUL byte", root, stage="paths")
        if PurePosixPath(s).is_absolute() or PureWindowsPath(s).anchor:
            raise MammocadxError(f"path component {s!r} is absolute; refusing to leave the output folder",
                                 root, stage="paths")
        rel = rel / s
    candidate = (base / rel).resolve()  # resolves "..", and every symbolic link that exists
    if parts and candidate == base:
        raise MammocadxError(f"{str(rel)!r} names the output folder itself, not something inside it",
                             root, stage="paths")
    if not candidate.is_relative_to(base):
        raise MammocadxError(f"{str(rel)!r} would leave the output folder", root, stage="paths")
    return candidate


def output_stems(paths: Sequence[str | PathLike[str]]) -> list[str]:
    """One distinct, safe file-name stem per input file, for outputs written side by side.

    A file's stem (``mdb001``) where no other input has the same one; inputs that
    share a stem (two ``1-1.dcm`` in different CBIS-DDSM folders) get their path
    relative to their common folder, flattened with ``__``
    (``P_00001_LEFT_CC__1-1``), so no output overwrites another. Every stem passes
    through :func:`safe_name`; a remaining clash gets ``-2``, ``-3`` ...

    Examples
    --------
    >>> output_stems(["a/1-1.dcm", "b/1-1.dcm", "c/mdb001.png"])
    ['a__1-1', 'b__1-1', 'mdb001']
    """
    import os
    from collections import Counter

    absolute = [Path(os.path.abspath(p)) for p in paths]
    counts = Counter(p.stem.lower() for p in absolute)
    clashing = [p for p in absolute if counts[p.stem.lower()] > 1]
    common = Path(os.path.commonpath([str(p.parent) for p in clashing])) if clashing else None
    stems: list[str] = []
    taken: set[str] = set()
    for p in absolute:
        if counts[p.stem.lower()] > 1 and common is not None:
            rel = p.relative_to(common)
            text = "__".join([*(safe_name(part) for part in rel.parent.parts), safe_name(rel.stem)])
        else:
            text = safe_name(p.stem)
        stem, n = text, 1
        while stem.lower() in taken:
            n += 1
            stem = f"{text}-{n}"
        taken.add(stem.lower())
        stems.append(stem)
    return stems


# ---------------------------------------------------------------------------
# Output folders and files given on the command line
# ---------------------------------------------------------------------------

#: The file mammocadx writes into every output folder it owns: JSON listing every
#: file the program wrote there. Only a folder whose every file is listed in it
#: (or an empty or new folder) is written into again.
OUTPUT_MARKER = ".mammocadx-output.json"

#: One sentence for each command's ``--help``: the policy of :func:`claim_output_dir`.
OUTPUT_POLICY_HELP = ("created if missing; an existing folder is used only if it is empty or holds nothing "
                      "but files an earlier mammocadx run wrote there, otherwise the command refuses and "
                      "nothing is deleted or overwritten")


def _iter_files(folder: Path) -> Iterator[str]:
    """Every non-folder entry under ``folder`` (links not followed), relative, POSIX-style, top level first."""
    import os

    for dirpath, dirnames, filenames in os.walk(folder):
        rel = Path(dirpath).relative_to(folder)
        yield from ((rel / n).as_posix() for n in sorted(filenames))
        # A link to a folder is listed by os.walk among dirnames but never entered: count it as an entry.
        yield from ((rel / d).as_posix() for d in sorted(dirnames) if (Path(dirpath) / d).is_symlink())
        dirnames.sort()


def _marker_files(folder: Path) -> set[str] | None:
    import json

    try:
        doc = json.loads((folder / OUTPUT_MARKER).read_text(encoding="utf-8"))
        return {str(f) for f in doc["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _refuse_cwd(path: Path, option: str) -> None:
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents:
        raise MammocadxError(f"{option}: is the current folder (or holds it); name a new sub-folder "
                             f"instead, e.g. {option} runs/x", path, stage="output")


def claim_output_dir(path: str | PathLike[str], *, option: str = "--out",
                     owned: Callable[[Path], bool] | None = None, marker: bool = True,
                     create: bool = True) -> Path:
    """Check that mammocadx may write into folder ``path``, create it, and return it resolved.

    The one policy of every output-folder option (``evaluate/compare/ablate/
    segment/inspect/demo --out``, ``predict --explain``, ``train --model-out``):

    - a folder that does not exist is created (with its parents);
    - an existing folder is used only if it is empty, or if every file in it was
      written by mammocadx (listed in its :data:`OUTPUT_MARKER`, or ``owned(path)``
      is true, e.g. a saved model folder);
    - anything else (a file, a folder holding a file the program did not write,
      the current folder or one above it) is refused with one line naming the
      folder and the reason; nothing is deleted or overwritten.

    Call :func:`seal_output_dir` when the command has written its files.

    Parameters
    ----------
    path : str or PathLike
        The folder as given.
    option : str, default "--out"
        The option's name, for the message.
    owned : callable, optional
        Says whether an existing, non-empty folder without a marker is mammocadx's.
    marker : bool, default True
        Write :data:`OUTPUT_MARKER` into a new or empty folder (``False`` for
        folders whose readers refuse unexpected files, such as model folders).
    create : bool, default True
        Create the folder now; ``False`` only checks (the writer creates it, so
        a command that fails first leaves no empty folder behind).

    Raises
    ------
    MammocadxError
        ``path`` may not be written into (stage ``"output"``).
    """
    target = Path(path).expanduser().resolve()
    _refuse_cwd(target, option)
    if target.exists() and not target.is_dir():
        raise MammocadxError(f"{option}: exists and is not a folder; refusing to write there",
                             target, stage="output")
    if target.is_dir():
        listed = _marker_files(target) or set()
        foreign = []
        for f in _iter_files(target):  # stops early: '--out ~' must not walk the whole home folder
            if f != OUTPUT_MARKER and f not in listed:
                foreign.append(f)
                if len(foreign) > 3:
                    break
        if foreign and not (owned is not None and owned(target)):
            shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
            raise MammocadxError(
                f"{option}: the folder holds files mammocadx did not write ({shown}); "
                "refusing to write there so nothing of yours is lost: choose a new or empty folder",
                target, stage="output")
    if not create:
        return target
    try:
        target.mkdir(parents=True, exist_ok=True)
        if marker and not (target / OUTPUT_MARKER).exists():
            seal_output_dir(target)
    except OSError as exc:
        raise MammocadxError(f"{option}: cannot create the folder ({exc.strerror or exc})",
                             target, stage="output") from exc
    return target


def seal_output_dir(path: str | PathLike[str]) -> Path:
    """Record in ``path/.mammocadx-output.json`` every file now under ``path`` as written by mammocadx.

    Call it after a command claimed the folder with :func:`claim_output_dir`
    and wrote its outputs (the folder held nothing else).
    """
    import json

    from mammocadx import __version__
    from mammocadx.io.atomic import atomic_write_text

    folder = Path(path)
    files = sorted(f for f in _iter_files(folder) if f != OUTPUT_MARKER and ".tmp-" not in f)
    doc = {"written_by": f"mammocadx {__version__}",
           "note": "every file listed here was written by mammocadx; a later run may replace them",
           "files": files}
    atomic_write_text(folder / OUTPUT_MARKER, json.dumps(doc, indent=1) + "\n")
    return folder


@contextlib.contextmanager
def output_dir(path: str | PathLike[str], *, option: str = "--out") -> Iterator[Path]:
    """:func:`claim_output_dir`, then :func:`seal_output_dir` when the block ends (even on an error).

    Sealing on an error too means a run stopped half-way (Ctrl-C, a bad input)
    leaves a folder that the next run may write into again.

    Examples
    --------
    >>> with output_dir(args.out) as out:     # doctest: +SKIP
    ...     write_things(out)
    """
    existed = Path(path).expanduser().resolve().exists()
    folder = claim_output_dir(path, option=option)
    try:
        yield folder
    except BaseException:
        if not existed and [p.name for p in folder.iterdir()] == [OUTPUT_MARKER]:
            # Failed before writing anything: take back the folder this call created (it holds only our marker).
            (folder / OUTPUT_MARKER).unlink()
            folder.rmdir()
        elif folder.is_dir():
            seal_output_dir(folder)
        raise
    seal_output_dir(folder)


def claim_output_file(path: str | PathLike[str], *, option: str = "--out",
                      owned: Callable[[Path], bool]) -> Path:
    """Check that mammocadx may write file ``path``; create its folder; return it resolved.

    A new file is fine; an existing one only if ``owned(path)`` says mammocadx
    wrote it (e.g. its header is the one the command writes). A folder, or a
    file the program did not write, is refused.

    Raises
    ------
    MammocadxError
        ``path`` may not be written (stage ``"output"``).
    """
    target = Path(path).expanduser().resolve()
    if target.is_dir():
        raise MammocadxError(f"{option}: is a folder; give a file name", target, stage="output")
    if (target.exists() or target.is_symlink()) and (target.is_symlink() or not owned(target)):
        raise MammocadxError(f"{option}: the file exists and mammocadx did not write it; refusing to "
                             "overwrite it: choose a new name", target, stage="output")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MammocadxError(f"{option}: cannot create its folder ({exc.strerror or exc})",
                             target, stage="output") from exc
    return target
