"""On-disk cache of Grad-CAM explanations, beside the feature cache.

An explanation is a pure function of the pseudocolour ROI pixels, the backbone
(name, weights, engine context), the fitted head and the Grad-CAM code. Its key
is the SHA-256 of all four:

- the ROI pixels: :func:`~mammocadx.features.cache.array_digest` of the RGB ROI;
- the backbone: the feature extractor's cache context (weights SHA-256, versions);
- the head: ``joblib.hash`` of the fitted scikit-learn pipeline (every fitted
  array and parameter; it hashes, it never loads anything);
- the code: SHA-256 of the source of :mod:`mammocadx.explain.gradcam` and
  :mod:`mammocadx.explain.head_gradient`, and the scikit-learn version.

So a re-run of an evaluation (same folds, same heads) draws its Grad-CAM gallery
without loading PyTorch, and any change to the model or the method misses.
Entries are ``.npz`` files read with ``allow_pickle=False`` and written
atomically, like the feature cache; a broken entry is dropped and recomputed.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mammocadx.explain.gradcam import Explanation
from mammocadx.features.cache import EXPLANATIONS_DIR, array_digest, write_cache_file
from mammocadx.utils.versions import dist_version

log = logging.getLogger(__name__)

_ARRAYS = ("cam", "signed_cam", "features", "feature_gradient", "cam_lowres")


@lru_cache(maxsize=1)
def _code_digest() -> str:
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in ("gradcam.py", "head_gradient.py"):
        h.update((here / name).read_bytes())
    h.update(dist_version("scikit-learn").encode())
    return h.hexdigest()


def head_digest(head: Any) -> str:
    """Digest of a fitted head (``joblib.hash``: hashes every fitted array and parameter, loads nothing)."""
    import joblib

    return joblib.hash(head, hash_name="sha1")


class ExplanationCache:
    """Grad-CAM explanations on disk under ``root/explanations-v1`` (``mammocadx cache clear`` removes them).

    Parameters
    ----------
    root : Path
        The feature cache folder (:attr:`mammocadx.features.cache.FeatureCache.root`).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root) / EXPLANATIONS_DIR

    @staticmethod
    def key(rgb_roi: np.ndarray, extractor_context: str, head_key: str) -> str:
        """Key of the explanation of one pseudocolour ROI by one backbone + head."""
        text = json.dumps({"roi": array_digest(np.asarray(rgb_roi)), "backbone": extractor_context,
                           "head": head_key, "code": _code_digest()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> Explanation | None:
        """The stored explanation, or ``None`` (absent, or unreadable: then it is removed)."""
        path = self._path(key)
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in _ARRAYS}
                score = float(z["score"])
                layer = str(z["target_layer"])
                meta = json.loads(str(z["meta"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, EOFError) as exc:
            log.warning("explanation cache: ignoring unreadable entry %s (%s); it will be recomputed", path, exc)
            path.unlink(missing_ok=True)
            return None
        return Explanation(score=score, target_layer=layer, meta=meta, **arrays)

    def put(self, key: str, expl: Explanation) -> None:
        """Store one explanation atomically; a failed write is logged and ignored (the cache is optional)."""
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(getattr(expl, k)) for k in _ARRAYS}, score=np.float64(expl.score),
                 target_layer=np.str_(expl.target_layer), meta=np.str_(json.dumps(expl.meta, default=str)))
        try:
            write_cache_file(self._path(key), buf.getvalue())
        except OSError as exc:
            log.warning("explanation cache: cannot write %s (%s)", self._path(key), exc)
