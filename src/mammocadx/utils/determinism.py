"""Reproducible runs: one seed for every random source, and a fingerprint of the training data.

- :func:`seed_everything` seeds Python's ``random``, NumPy's global generator and
  PyTorch, and asks PyTorch for deterministic kernels, so the same command with
  the same seed gives the same numbers. Code that needs randomness should still
  take an explicit ``seed``/``random_state`` (scikit-learn splitters, bootstrap)
  rather than rely on global state.
- :func:`fingerprint_records` is a stable SHA-256 that names *which* lesions,
  labels, patients and image contents a model was trained on; model cards
  record it so that two models can be told apart (or shown to share data).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mammocadx.records import LesionRecord
from mammocadx.errors import DatasetError
from mammocadx.utils.hashing import sha256_file

log = logging.getLogger(__name__)

#: Bumped when the fingerprint's definition changes (it is hashed in, so old and new never match by accident).
FINGERPRINT_VERSION = "mammocadx-records-v1"


def seed_everything(seed: int, *, torch_deterministic: bool = True) -> dict[str, Any]:
    """Seed every global random source the pipeline touches.

    Parameters
    ----------
    seed : int
        Any integer in ``0 .. 2**32 - 1``.
    torch_deterministic : bool, default True
        Also call ``torch.use_deterministic_algorithms(True, warn_only=True)``
        and switch cuDNN to deterministic, non-benchmarking mode. On CPU this
        costs little; ``warn_only`` keeps operations without a deterministic
        kernel working (they warn instead of failing). For CUDA,
        ``CUBLAS_WORKSPACE_CONFIG`` is set to ``:4096:8`` if unset, which cuBLAS
        needs for reproducible matrix products.

    Returns
    -------
    dict
        What was set (for a run's log or model card), e.g.
        ``{"seed": 0, "numpy": True, "torch": True, "torch_deterministic": True}``.

    Notes
    -----
    ``PYTHONHASHSEED`` cannot be changed for the running interpreter; it is set
    for child processes only. Set-iteration order of strings may therefore
    differ between runs: never let it decide an order that reaches the results.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be an integer in 0 .. 2**32-1, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    done: dict[str, Any] = {"seed": seed, "numpy": True, "torch": False, "torch_deterministic": False}
    try:
        import torch
    except ImportError:  # torch is a dependency, but the helper must not require it
        return done
    torch.manual_seed(seed)  # also seeds every CUDA device
    done["torch"] = True
    if torch_deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        done["torch_deterministic"] = True
    log.debug("seeded everything with %d", seed)
    return done


def fingerprint_records(records: Iterable[LesionRecord],
                        content: Literal["sha256", "name"] = "sha256") -> str:
    """A stable SHA-256 of a set of lesion records: what a model was trained on.

    Each record contributes ``sample_id``, ``image_id``, ``patient_id``, ``label``,
    the ROI geometry (circle or box numbers) and the identity of its image and
    mask files. Records are sorted first, so the order they were loaded in does
    not matter.

    How files are identified (``content``):

    - ``"sha256"`` (default): SHA-256 of the file's bytes. Independent of where
      the data lies, of copies and of timestamps, and it changes when any pixel
      changes. Costs one read of every file (about 1 s per GB; each file once
      even when several lesions share it).
    - ``"name"``: file name and size only: no reading, still independent of the
      folder, but blind to an edit that keeps the size. For quick runs.

    Modification times are never used: they change on every copy and would make
    the same data look different.

    Parameters
    ----------
    records : iterable of LesionRecord
    content : {"sha256", "name"}

    Returns
    -------
    str
        64 hex characters.

    Raises
    ------
    DatasetError
        An image or mask file is missing or unreadable.
    ValueError
        Unknown ``content`` mode.
    """
    if content not in ("sha256", "name"):
        raise ValueError(f"content must be 'sha256' or 'name', got {content!r}")
    cache: dict[Path, str] = {}

    def identify(path: Path | None) -> str | None:
        if path is None:
            return None
        path = Path(path)
        if path not in cache:
            try:
                if content == "sha256":
                    cache[path] = sha256_file(path)
                else:
                    cache[path] = f"{path.name}:{path.stat().st_size}"
            except OSError as exc:
                raise DatasetError(f"cannot read file for the data fingerprint ({exc.strerror or exc})",
                                   path) from exc
        return cache[path]

    rows = []
    for r in records:
        rows.append(json.dumps({
            "sample_id": str(r.sample_id),
            "image_id": str(r.image_id),
            "patient_id": str(r.patient_id),
            "label": None if r.label is None else int(r.label),
            "circle": [float(v) for v in r.roi.circle] if r.roi.circle is not None else None,
            "box": [float(v) for v in r.roi.box] if r.roi.box is not None else None,
            "image": identify(r.image_path),
            "mask": identify(r.roi.mask_path),
        }, sort_keys=True, separators=(",", ":"), ensure_ascii=True))
    h = hashlib.sha256(f"{FINGERPRINT_VERSION}:{content}\n".encode())
    for row in sorted(rows):
        h.update(row.encode("ascii") + b"\n")
    return h.hexdigest()
