"""Features and scores as Parquet, keyed by sample id (``pyarrow``, part of ``mammocadx[ray]``).

Why Parquet: a column store that Ray Data, pandas, Polars, Spark and DuckDB all
read directly, so features extracted here feed any downstream tool. Feature
vectors are one ``fixed_size_list<float32>`` column, so a 100,000 x 1,280 table
stays one compact file that reads back as a single ``(N, D)`` array.
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mammocadx.errors import EngineError
from mammocadx.io.atomic import atomic_write_bytes
from mammocadx.records import LesionRecord


def require_pyarrow() -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``, or an :class:`EngineError` saying how to install them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise EngineError("Parquet output needs pyarrow: pip install 'mammocadx[ray]' (or pyarrow)") from exc
    return pa, pq


def write_table(path: str | Path, columns: Mapping[str, Any]) -> Path:
    """Write ``columns`` (name -> list, 1-d array, or 2-d float array as a vector column) to ``path`` atomically."""
    pa, pq = require_pyarrow()
    arrays = {}
    for name, values in columns.items():
        arr = np.asarray(values) if isinstance(values, np.ndarray) else values
        if isinstance(arr, np.ndarray) and arr.ndim == 2:
            flat = pa.array(np.ascontiguousarray(arr, np.float32).ravel())
            arrays[name] = pa.FixedSizeListArray.from_arrays(flat, arr.shape[1])
        else:
            arrays[name] = pa.array(arr)
    buf = io.BytesIO()
    pq.write_table(pa.table(arrays), buf, compression="zstd")
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def write_features(path: str | Path, records: Sequence[LesionRecord], X: np.ndarray) -> Path:
    """``sample_id, image_id, patient_id, label, image, features`` (one row per lesion)."""
    return write_table(path, {
        "sample_id": [r.sample_id for r in records],
        "image_id": [r.image_id for r in records],
        "patient_id": [r.patient_id for r in records],
        "label": pa_labels(records),
        "image": [str(r.image_path) for r in records],
        "features": np.asarray(X, np.float32),
    })


def pa_labels(records: Sequence[LesionRecord]) -> list[int | None]:
    """Labels as a nullable integer column."""
    return [None if r.label is None else int(r.label) for r in records]


def read_features(path: str | Path) -> tuple[list[str], np.ndarray]:
    """``(sample ids, features (N, D) float32)`` of a table written by :func:`write_features`."""
    _pa, pq = require_pyarrow()
    table = pq.read_table(path, columns=["sample_id", "features"])
    col = table.column("features").combine_chunks()
    dim = col.type.list_size
    X = np.asarray(col.values.to_numpy(zero_copy_only=False), np.float32).reshape(len(col), dim)
    return [str(s) for s in table.column("sample_id").to_pylist()], X


def read_table(path: str | Path) -> dict[str, list[Any]]:
    """Every column of a Parquet file as Python lists (for tests and small tables)."""
    _pa, pq = require_pyarrow()
    return pq.read_table(path).to_pydict()
