"""The output folder of DICOM results: ours, or refused.

Policy: a folder that does not exist is created; an empty one is taken; a
non-empty one is used only if mammocadx wrote it (it holds :data:`MARKER`,
which lists the files written there). A file is replaced only if the marker
lists it: files that mammocadx did not write are never overwritten.
"""
from __future__ import annotations

import json
from io import BytesIO
from os import PathLike
from pathlib import Path
from typing import Any

from mammocadx.errors import DicomOutputError

#: The marker file that makes a folder ours (JSON: ``written_by``, ``files``).
MARKER = ".mammocadx-dicom-out.json"


def _listed(folder: Path) -> list[str]:
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError) as exc:
        raise DicomOutputError(f"unreadable marker {MARKER} ({exc})", folder) from exc
    if not isinstance(data, dict) or data.get("written_by") != "mammocadx" or not isinstance(data.get("files"), list):
        raise DicomOutputError(f"{MARKER} was not written by mammocadx", folder)
    return [str(f) for f in data["files"]]


def _write_marker(folder: Path, files: list[str]) -> None:
    from mammocadx.io.atomic import atomic_write_json

    atomic_write_json(folder / MARKER, {"written_by": "mammocadx", "files": sorted(set(files))})


def prepare_output_dir(path: str | PathLike[str]) -> Path:
    """Make ``path`` a folder for DICOM results, or refuse it.

    Returns
    -------
    Path
        The folder (created if absent).

    Raises
    ------
    DicomOutputError
        ``path`` is a file, cannot be created, or is a non-empty folder that mammocadx did not write.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise DicomOutputError("exists and is not a folder", folder)
    if folder.is_dir() and (folder / MARKER).is_file():
        _listed(folder)
        return folder
    if folder.is_dir() and any(folder.iterdir()):
        raise DicomOutputError("the folder is not empty and was not written by mammocadx: give a new or empty folder "
                               "(nothing there is overwritten)", folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_marker(folder, [])
    except OSError as exc:
        raise DicomOutputError(f"cannot create the output folder ({exc.strerror or exc})", folder) from exc
    return folder


def save_dataset(folder: Path, name: str, dataset: Any) -> Path:
    """Write ``dataset`` as ``folder/name`` (DICOM file format, atomically) and record it in the marker.

    Raises
    ------
    DicomOutputError
        ``folder/name`` exists and mammocadx did not write it, or the file cannot be written.
    """
    from mammocadx.io.atomic import atomic_write_bytes

    folder = prepare_output_dir(folder)
    listed = _listed(folder)
    target = folder / name
    if target.exists() and name not in listed:
        raise DicomOutputError("exists and was not written by mammocadx: not overwritten", target)
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    try:
        atomic_write_bytes(target, buffer.getvalue())
        _write_marker(folder, [*listed, name])
    except OSError as exc:
        raise DicomOutputError(f"cannot write ({exc.strerror or exc})", target) from exc
    return target
