"""Output paths built from untrusted text (image ids, DICOM tags, CSV fields).

A DICOM ``PatientID`` or a manifest's ``image_id`` can hold ``../../etc``, a
slash, a NUL byte or 300 characters. Two rules keep outputs inside their folder:

- :func:`safe_name` turns any text into one harmless file-name component;
- :func:`safe_join` joins components under a root and refuses any result that
  leaves it (``..``, absolute parts, symbolic links pointing out).
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
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
