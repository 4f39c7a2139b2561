"""Atomic writes: an interrupted run never leaves a half file that a later run trusts.

Files and folders are built under a temporary name in the *same* folder as the
final one (so the last step is a ``rename`` within one file system, which POSIX
makes atomic), flushed to disk with ``fsync`` and only then renamed into place.

- :func:`atomic_write_bytes` / :func:`atomic_write_text`: one file. Readers see
  either the old content or the new, never a mix.
- :func:`atomic_directory`: a whole folder (a saved model, a run folder, a cache
  entry). On an exception the temporary folder is removed and any previous
  folder of that name is left untouched.

Temporary names are ``<final>.tmp-<random>``. A process killed with SIGKILL or a
power cut can leave such a folder behind; it is never at the final name, so no
reader of the final name trusts it, and :func:`remove_stale_temporaries` clears
them. Replacing an existing folder takes two renames (old aside to
``<final>.old-<random>``, new in); a crash between the two leaves the previous
folder intact under its ``.old-`` name, which :func:`remove_stale_temporaries`
puts back.

Written by hand because the standard library has no atomic-folder helper and the
usual packages (``atomicwrites``) are unmaintained and handle single files only.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TMP_MARK = ".tmp-"
OLD_MARK = ".old-"


def _fsync_dir(path: Path) -> None:
    """Flush a folder's entries (the renames) to disk; a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows cannot open folders; renames there are flushed by the OS
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sibling(path: Path, mark: str) -> Path:
    return path.with_name(f"{path.name}{mark}{secrets.token_hex(4)}")


def atomic_write_bytes(path: str | PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename).

    Parameters
    ----------
    path : str or PathLike
        The final file; its parent folder must exist. An existing file is replaced.
    data : bytes
        The whole content.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    tmp = _sibling(path, TMP_MARK)
    # O_EXCL: never follow or reuse something already at the temporary name;
    # mode 0o666 so the usual umask applies (mkstemp would force 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; see :func:`atomic_write_bytes`.

    Newlines are written as given (``\\n``), on every platform.
    """
    return atomic_write_bytes(path, text.encode(encoding))


def json_data(value: Any) -> Any:
    """``value`` as strict JSON data: NumPy scalars/arrays to Python, NaN/inf to ``None``, paths to str.

    Dict keys become strings; tuples and sets become lists (sets sorted). Anything
    else raises ``TypeError`` naming its type.
    """
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # NumPy scalar or array, without importing NumPy
        return json_data(value.tolist())
    if isinstance(value, PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): json_data(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return [json_data(v) for v in sorted(value, key=repr)]
    if isinstance(value, (list, tuple)):
        return [json_data(v) for v in value]
    raise TypeError(f"{type(value).__name__} is not JSON data")


def atomic_write_json(path: str | PathLike[str], obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as strict JSON (see :func:`json_data`), atomically, ending in a newline.

    The same object always gives the same bytes (key order as given, floats in
    Python's shortest round-trip form), so reruns can be compared byte for byte.
    """
    text = json.dumps(json_data(obj), indent=indent, ensure_ascii=False, allow_nan=False)
    return atomic_write_text(path, text + "\n")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """One CSV cell as text, defused against spreadsheet formula injection.

    ``None`` and NaN become an empty cell; floats use Python's shortest
    round-trip form; text that a spreadsheet would run as a formula (starting
    with ``= + - @``, tab or carriage return, and not a number such as
    ``-0.53``) gets a leading ``'``, as OWASP advises for CSV files built from
    untrusted ids.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0:  # NumPy scalar
        if value.dtype.kind == "f":
            # str() of a NumPy float is its shortest round-trip form at its own precision
            return "" if math.isnan(float(value)) else str(value)
        return csv_cell(value.item())
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(float(value))
    text = os.fspath(value) if isinstance(value, PathLike) else str(value)
    if text.startswith(_FORMULA_START):
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def atomic_write_csv(path: str | PathLike[str], rows: Iterable[Mapping[str, Any]],
                     fieldnames: Sequence[str]) -> Path:
    """Write rows as a CSV file (header first, ``\\n`` line ends) atomically; cells via :func:`csv_cell`.

    Keys of a row that are not in ``fieldnames`` raise ``ValueError``; missing
    keys give empty cells.
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames), lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(v) for k, v in row.items()})
    return atomic_write_text(path, buf.getvalue())


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                continue
            with p.open("rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(Path(dirpath))


@contextlib.contextmanager
def atomic_directory(final_path: str | PathLike[str], *, replace: bool = True) -> Iterator[Path]:
    """Build a folder under a temporary name and move it into place only when complete.

    Parameters
    ----------
    final_path : str or PathLike
        Where the folder must end up. Its parent is created if missing.
    replace : bool, default True
        Replace an existing folder of that name (safely, see the module notes).
        With ``False`` an existing ``final_path`` raises :class:`FileExistsError`
        before anything is written.

    Yields
    ------
    Path
        The temporary folder (``<final>.tmp-<random>``, same parent): write
        everything into it.

    Raises
    ------
    FileExistsError
        ``replace=False`` and ``final_path`` exists, or ``final_path`` is a file.

    Examples
    --------
    >>> with atomic_directory(out / "model") as tmp:       # doctest: +SKIP
    ...     (tmp / "arrays.npz").write_bytes(blob)
    """
    final = Path(final_path)
    if final.exists() or final.is_symlink():
        if not replace:
            raise FileExistsError(f"{final} already exists")
        if not final.is_dir() or final.is_symlink():
            raise FileExistsError(f"{final} exists and is not a folder; refusing to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(final, TMP_MARK)
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        if final.exists():
            old = _sibling(final, OLD_MARK)
            os.rename(final, old)
            try:
                os.rename(tmp, final)
            except BaseException:
                os.rename(old, final)  # put the previous folder back
                raise
            _fsync_dir(final.parent)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
            _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.debug("wrote %s atomically", final)


def remove_stale_temporaries(final_path: str | PathLike[str]) -> list[Path]:
    """Clean up after killed runs: restore or delete ``.old-`` folders, delete ``.tmp-`` ones.

    If ``final_path`` is missing and a set-aside ``.old-`` copy exists (a crash
    between the two renames of a replacement), the newest copy is renamed back
    to ``final_path``; every other temporary sibling is deleted.
    Only call this when no other process is writing ``final_path``.

    Returns
    -------
    list of Path
        What was removed.
    """
    final = Path(final_path)
    removed: list[Path] = []
    if not final.parent.is_dir():
        return removed

    def ours(mark: str) -> list[Path]:
        found = []
        for p in final.parent.glob(f"{final.name}{mark}*"):
            suffix = p.name[len(final.name) + len(mark):]
            if len(suffix) == 8 and all(c in "0123456789abcdef" for c in suffix):
                found.append(p)
        return found

    olds = sorted(ours(OLD_MARK), key=lambda p: p.stat().st_mtime)
    if olds and not final.exists() and not final.is_symlink():
        # A crash between "old aside" and "new in": the previous folder is complete; restore it.
        os.rename(olds.pop(), final)
        log.warning("restored %s from an interrupted replacement", final)
    for p in ours(TMP_MARK) + olds:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed
