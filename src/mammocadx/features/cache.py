"""Content-addressed on-disk cache of deep feature vectors.

A vector is stored under the SHA-256 of everything that determines it: the
ROI pixels fed to the network (bytes, dtype, shape), the preprocessing
parameters the caller names, the backbone and the SHA-256 of its weights, the
inference engine and precision, and the torch / timm / mammocadx versions. A
second run over the same lesions, for another CV protocol, component search
or ablation, reads its features back instead of running the CNN again; change
any of those inputs and the key changes, so a stale vector is never served.

Layout: one small ``.npy`` file per ROI under ``v1/<first 2 hex>/<key>.npy``.
Why per-ROI files rather than batch files plus an index: a run asks for
arbitrary subsets of ROIs in any order (folds, re-ordered datasets, one
predict call), which per-ROI keys serve directly; each write is a single
``os.replace`` of a finished temporary file in the same folder, which is
atomic on POSIX and Windows, so concurrent runs never need a lock (two writers
of one key write the same bytes; the last rename wins) and a reader sees
either nothing or a whole file. An index would need locking and could tear.
The cost, ~5 KB and one inode per 1280-d vector, is small (10,000 ROIs ~ 55 MB),
and the 256 shard folders keep directories short. An entry that fails to load
(truncated, foreign, wrong shape, non-finite) is logged, dropped and recomputed.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mammocadx.io.atomic import atomic_write_bytes
from mammocadx.utils.system import CACHE_ENV_VAR
from mammocadx.utils.system import default_cache_dir as system_cache_dir

log = logging.getLogger(__name__)

ENV_VAR = CACHE_ENV_VAR
_LAYOUT = "v1"
#: Sub-folder of the cache root that holds Grad-CAM explanations (:mod:`mammocadx.explain.cache`).
EXPLANATIONS_DIR = "explanations-v1"
_TMP_PREFIX = ".tmp-"


def default_cache_dir() -> Path:
    """``$MAMMOCADX_CACHE_DIR`` if set, else ``~/.cache/mammocadx/features`` (:func:`mammocadx.utils.system.default_cache_dir`)."""
    return system_cache_dir("features")


def array_digest(array: np.ndarray) -> str:
    """SHA-256 (hex) of an array's dtype, shape and C-order bytes."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}|{a.shape}|".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def context_digest(context: Mapping[str, Any]) -> str:
    """SHA-256 of a JSON-serialisable mapping (keys sorted; non-JSON values by ``str``)."""
    text = json.dumps(context, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def entry_key(roi_digest: str, context_hash: str) -> str:
    """Cache key of one ROI under one extraction context."""
    return hashlib.sha256(f"{context_hash}:{roi_digest}".encode()).hexdigest()


def write_cache_file(path: Path, data: bytes) -> None:
    """Write one cache file atomically (its folder created first); see :func:`mammocadx.io.atomic.atomic_write_bytes`.

    Raises
    ------
    OSError
        If the folder cannot be created or written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


@dataclass(frozen=True)
class CacheInfo:
    """What a cache folder holds."""

    location: Path
    entries: int
    bytes: int

    def __str__(self) -> str:
        return f"{self.location}: {self.entries} feature vectors, {self.bytes / 1e6:.1f} MB"


class FeatureCache:
    """Per-ROI feature vectors on disk, safe to share between concurrent runs.

    Parameters
    ----------
    root : Path, optional
        Cache folder; default :func:`default_cache_dir`. Created on first write.
    """

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    @property
    def entries_dir(self) -> Path:
        return self.root / _LAYOUT

    def path_of(self, key: str) -> Path:
        """File that holds (or would hold) ``key``."""
        return self.entries_dir / key[:2] / f"{key}.npy"

    def get(self, key: str, dim: int | None = None) -> np.ndarray | None:
        """The vector stored under ``key``, or ``None`` (absent, or corrupt: then it is removed).

        Parameters
        ----------
        dim : int, optional
            Expected length; an entry of another length counts as corrupt.
        """
        path = self.path_of(key)
        try:
            vec = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError) as exc:
            self._drop(path, f"unreadable ({exc})")
            return None
        if vec.dtype != np.float32 or vec.ndim != 1 or (dim is not None and vec.shape[0] != dim) \
                or not np.all(np.isfinite(vec)):
            self._drop(path, f"unexpected content (dtype {vec.dtype}, shape {vec.shape})")
            return None
        return vec

    def put(self, key: str, vector: np.ndarray) -> None:
        """Store one vector atomically (temporary file in the same folder, then ``os.replace``).

        A failed write (disk full, read-only folder) is logged and ignored: the
        cache is an optimisation, never a reason for a run to fail.
        """
        path = self.path_of(key)
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(vector, dtype=np.float32).ravel(), allow_pickle=False)
        try:
            write_cache_file(path, buf.getvalue())
        except OSError as exc:
            log.warning("feature cache: cannot write %s (%s); going on without caching it", path, exc)

    def _drop(self, path: Path, why: str) -> None:
        log.warning("feature cache: ignoring corrupt entry %s: %s; it will be recomputed", path, why)
        try:
            path.unlink()
        except OSError:
            pass

    def info(self) -> CacheInfo:
        """Number of vectors and bytes on disk (everything under the root, compiled models included)."""
        entries = 0
        size = 0
        if self.root.is_dir():
            for dirpath, _dirs, files in os.walk(self.root):
                for name in files:
                    try:
                        size += (Path(dirpath) / name).stat().st_size
                    except OSError:  # removed meanwhile by a concurrent clear
                        continue
                    if name.endswith(".npy") and not name.startswith(_TMP_PREFIX):
                        entries += 1
        return CacheInfo(location=self.root, entries=entries, bytes=size)

    def clear(self, models: bool = False) -> CacheInfo:
        """Delete every cached feature vector and explanation; returns what was there.

        Parameters
        ----------
        models : bool
            Also delete the ONNX exports of the backbones (``onnx/``), which are
            rebuilt on next use (a few seconds each).
        """
        before = self.info()
        subs = [self.entries_dir, self.root / EXPLANATIONS_DIR] + ([self.root / "onnx"] if models else [])
        for sub in subs:
            if sub.is_dir():
                shutil.rmtree(sub, ignore_errors=True)
        log.debug("feature cache %s cleared (%d entries)", self.root, before.entries)
        return before
