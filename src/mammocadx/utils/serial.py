"""Hashing files and making values JSON data: one definition of each for the whole package."""
from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from os import PathLike
from typing import Any

import numpy as np


def sha256_file(path: str | PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks.

    Raises
    ------
    OSError
        If the file cannot be read.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def json_safe(value: Any, where: str = "value", strict: bool = False) -> Any:
    """``value`` as JSON data: NumPy scalars/arrays to Python, NaN/inf to ``None``, paths to ``str``, keys to ``str``.

    Parameters
    ----------
    value : any
        Nested mappings, sequences and scalars.
    where : str
        Name of ``value`` in the error message.
    strict : bool
        Raise ``TypeError`` for a value of any other type (else it is returned unchanged).
    """
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return json_safe(value.item(), where, strict)
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist(), where, strict)
    if isinstance(value, PathLike):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, f"{where}.{k}", strict) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, f"{where}[{i}]", strict) for i, v in enumerate(value)]
    if strict:
        raise TypeError(f"{where} of type {type(value).__name__} is not JSON data")
    return value
