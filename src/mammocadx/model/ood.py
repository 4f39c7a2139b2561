"""Out-of-distribution guard: flag inputs unlike the training data instead of scoring them silently.

Fitted on the training set, :class:`OODGuard` checks five things of a new case:

- **image size**: the long side outside ``[min / size_factor, max * size_factor]``
  of the training images (a 1-pixel image, a 4.5k px full-field DICOM for a model
  trained on 1024 px film scans);
- **bit depth** (and DICOM modality where known) not seen in training;
- **texture**: the image's roughness (:func:`image_roughness`, mean absolute difference of
  neighbouring pixels over the image's standard deviation) outside
  ``[min / texture_factor, max * texture_factor]`` of the training images. Mammograms are
  smooth at the pixel scale (0.007-0.034 on mini-MIAS and CBIS-DDSM-800); uniform random noise
  scores about 1.15 and a blank image 0. This is the check that catches a noise image: its ROI's
  deep features are *not* far from mammogram ROIs (mini-MIAS, sine pseudocolour: distance 48 against a
  99th-percentile threshold of 76), so the feature distance alone would let it through;
- **ROI size**: the lesion region's side (square root of its area in image pixels)
  outside ``[min / roi_factor, max * roi_factor]`` of the training ROIs;
- **feature distance**: the Mahalanobis distance of the deep-feature vector from
  the training features, with the covariance estimated by Ledoit-Wolf shrinkage
  (scikit-learn) on the raw features, above a threshold set at the ``quantile``
  (0.99) of the **inner out-of-fold** distances of the training rows (each row's
  distance from a model fitted without its patient; in-sample distances of
  1,280-d features on ~100 rows are far smaller than those of any new row). Features are
  not z-scored first: ImageNet features that are almost constant on mammograms would then
  dominate (mini-MIAS: out-of-fold 99th percentile 1,551 with z-scoring, 76 without).

The fitted state is plain numbers and arrays (:meth:`OODGuard.to_dict`; the
arrays go to the model's ``arrays.npz``, the numbers to JSON). The precision
matrix is stored in low-rank form: with ``Xc = U S V^T`` the centred training
features, the shrunk covariance is ``c0 I + V diag(a) V^T``, so the squared
distance is ``(|z|^2 - sum_i w_i (v_i . z)^2) / c0`` with ``w_i = a_i / (a_i + c0)`` and only
``V`` (d x min(n, d)) is kept.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from mammocadx.errors import ModelError

log = logging.getLogger(__name__)


class _Mahalanobis:
    """Ledoit-Wolf Mahalanobis distance, low-rank storage."""

    def fit(self, X: np.ndarray) -> "_Mahalanobis":
        from sklearn.covariance import LedoitWolf

        X = np.asarray(X, dtype=np.float64)
        self.mean_ = X.mean(axis=0)
        Z = X - self.mean_
        lw = LedoitWolf(assume_centered=True, store_precision=False).fit(Z)
        n = Z.shape[0]
        mu = float(np.mean(Z ** 2))  # trace of the empirical covariance / d, as scikit-learn's ledoit_wolf
        delta = float(lw.shrinkage_)
        _, s, vt = np.linalg.svd(Z, full_matrices=False)
        self.c0_ = max(delta * mu, 1e-12)
        a = (1.0 - delta) * s ** 2 / n
        self.w_ = a / (a + self.c0_)
        self.v_ = vt  # (r, d)
        return self

    def distance(self, X: np.ndarray) -> np.ndarray:
        Z = np.atleast_2d(np.asarray(X, dtype=np.float64)) - self.mean_
        proj = Z @ self.v_.T
        d2 = (np.sum(Z ** 2, axis=1) - proj ** 2 @ self.w_) / self.c0_
        return np.sqrt(np.maximum(d2, 0.0))


def _side(roi_area: float) -> float:
    return float(np.sqrt(roi_area))


def image_roughness(pixels: Any) -> float:
    """Mean absolute difference of neighbouring pixels over the image's standard deviation (0 for a blank image).

    Colour images are averaged over channels first. Mammograms: about 0.01-0.03; uniform noise: about 1.15.
    """
    a = np.asarray(pixels, dtype=np.float64)
    if a.ndim == 3:
        a = a.mean(axis=2)
    if a.ndim != 2 or min(a.shape) < 2:
        return 0.0
    sd = float(a.std())
    if sd == 0.0:
        return 0.0
    return float((np.abs(np.diff(a, axis=1)).mean() + np.abs(np.diff(a, axis=0)).mean()) / 2.0 / sd)


class OODGuard:
    """Flags images, ROIs and feature vectors far from the training data.

    Parameters
    ----------
    quantile : float
        Quantile of the inner out-of-fold training distances used as the feature threshold.
    size_factor, roi_factor, texture_factor : float
        How far beyond the training range (as a ratio) an image's long side, an ROI's side or an
        image's roughness may go.
    inner_folds : int
        Patient-grouped folds for the out-of-fold distances (0: in-sample distances, not recommended).
    seed : int

    Attributes
    ----------
    image_side_ : (float, float)
        Min and max long side of the training images.
    bit_depths_ : list of int
    modalities_ : list of str
    roi_side_ : (float, float)
        Min and max ROI side (square root of the area).
    roughness_ : (float, float)
        Min and max :func:`image_roughness` of the training images.
    threshold_ : float
        Mahalanobis distance above which a feature vector is out of distribution.
    """

    def __init__(self, quantile: float = 0.99, size_factor: float = 1.5, roi_factor: float = 2.0,
                 texture_factor: float = 3.0, inner_folds: int = 5, seed: int = 0):
        self.quantile = quantile
        self.size_factor = size_factor
        self.roi_factor = roi_factor
        self.texture_factor = texture_factor
        self.inner_folds = inner_folds
        self.seed = seed

    def fit(self, X: Any, image_shapes: Sequence[tuple[int, ...]] | None = None,
            bit_depths: Sequence[int] | None = None, roi_areas: Sequence[float] | None = None,
            groups: Any = None, modalities: Sequence[str | None] | None = None,
            roughness: Sequence[float] | None = None) -> "OODGuard":
        """Fit on the training features ``X`` (n, d) and, when given, the training images' and ROIs' sizes.

        ``image_shapes``: (rows, cols) per image; ``roi_areas``: lesion ROI area in image pixels
        per row; ``groups``: patient ids for the out-of-fold distances; ``roughness``:
        :func:`image_roughness` of each training image.
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or len(X) < 3:
            raise ModelError(f"the OOD guard needs a 2-D feature matrix of at least 3 rows, got {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ModelError("the OOD guard needs finite features")
        self.maha_ = _Mahalanobis().fit(X)
        dists = self._oof_distances(X, groups)
        self.threshold_ = float(np.quantile(dists, self.quantile))
        self.n_train_ = int(len(X))
        def given(v: Any) -> bool:
            return v is not None and len(v) > 0

        self.image_side_ = None
        if given(image_shapes):
            sides = [float(max(s[:2])) for s in image_shapes]
            self.image_side_ = (min(sides), max(sides))
        self.bit_depths_ = sorted({int(b) for b in bit_depths}) if given(bit_depths) else []
        self.modalities_ = sorted({str(m) for m in modalities if m}) if given(modalities) else []
        self.roughness_ = (float(np.min(roughness)), float(np.max(roughness))) if given(roughness) else None
        self.roi_side_ = None
        if given(roi_areas):
            sides = [_side(a) for a in roi_areas if a and a > 0]
            self.roi_side_ = (min(sides), max(sides)) if sides else None
        return self

    def _oof_distances(self, X: np.ndarray, groups: Any) -> np.ndarray:
        if self.inner_folds < 2:
            return self.maha_.distance(X)
        from sklearn.model_selection import GroupKFold

        g = np.arange(len(X)) if groups is None else np.asarray(groups)
        k = min(self.inner_folds, len(np.unique(g)))
        if k < 2:
            return self.maha_.distance(X)
        out = np.empty(len(X))
        for tr, te in GroupKFold(n_splits=k, shuffle=True, random_state=self.seed).split(X, groups=g):
            out[te] = _Mahalanobis().fit(X[tr]).distance(X[te])
        return out

    def distance(self, X: Any) -> np.ndarray:
        """Mahalanobis distance of each feature row from the training features."""
        return self.maha_.distance(X)

    def check(self, features: Any = None, image_shape: tuple[int, ...] | None = None, bit_depth: int | None = None,
              roi_area: float | None = None, modality: str | None = None,
              roughness: float | None = None) -> list[str]:
        """Reasons why one case is out of distribution (an empty list: nothing unusual).

        Parameters
        ----------
        features : array (d,), optional
            The lesion's deep-feature vector.
        image_shape : (rows, cols, ...), optional
        bit_depth : int, optional
            Bits stored per pixel (8 for PNG/JPEG, 12-16 for DICOM).
        roi_area : float, optional
            The lesion ROI's area in image pixels.
        modality : str, optional
            DICOM Modality (``MG``).
        roughness : float, optional
            :func:`image_roughness` of the image.
        """
        reasons: list[str] = []
        if image_shape is not None and self.image_side_ is not None:
            side = float(max(image_shape[:2]))
            lo, hi = self.image_side_[0] / self.size_factor, self.image_side_[1] * self.size_factor
            if not lo <= side <= hi:
                reasons.append(f"image long side {side:.0f} px is outside the training range "
                               f"{self.image_side_[0]:.0f}-{self.image_side_[1]:.0f} px (x/÷ {self.size_factor:g})")
        if bit_depth is not None and self.bit_depths_ and int(bit_depth) not in self.bit_depths_:
            reasons.append(f"{int(bit_depth)}-bit image; the training images were "
                           f"{', '.join(str(b) for b in self.bit_depths_)}-bit")
        if modality and self.modalities_ and str(modality) not in self.modalities_:
            reasons.append(f"modality {modality}; the training images were {', '.join(self.modalities_)}")
        if roughness is not None and self.roughness_ is not None:
            lo, hi = self.roughness_[0] / self.texture_factor, self.roughness_[1] * self.texture_factor
            if not lo <= roughness <= hi:
                what = "blank" if roughness == 0 else ("noise-like" if roughness > hi else "unusually smooth")
                reasons.append(f"the image is {what}: pixel roughness {roughness:.3g} is outside the training range "
                               f"{self.roughness_[0]:.3g}-{self.roughness_[1]:.3g} (x/÷ {self.texture_factor:g})")
        if roi_area is not None and self.roi_side_ is not None:
            side = _side(roi_area) if roi_area > 0 else 0.0
            lo, hi = self.roi_side_[0] / self.roi_factor, self.roi_side_[1] * self.roi_factor
            if not lo <= side <= hi:
                reasons.append(f"ROI side {side:.0f} px is outside the training range "
                               f"{self.roi_side_[0]:.0f}-{self.roi_side_[1]:.0f} px (x/÷ {self.roi_factor:g})")
        if features is not None:
            f = np.asarray(features, dtype=np.float64).ravel()
            if f.shape[0] != self.maha_.mean_.shape[0]:
                raise ModelError(f"OOD check: {f.shape[0]} features, the guard was fitted on {self.maha_.mean_.shape[0]}")
            if not np.all(np.isfinite(f)):
                reasons.append("the feature vector has non-finite values")
            else:
                d = float(self.distance(f[None])[0])
                if d > self.threshold_:
                    reasons.append(f"feature distance {d:.1f} from the training lesions exceeds {self.threshold_:.1f} "
                                   f"(the {100 * self.quantile:g}th percentile of out-of-fold training distances)")
        return reasons

    def to_dict(self) -> dict[str, Any]:
        """Fitted state: numbers and lists (JSON) plus NumPy float arrays ``mean``, ``v``, ``w``.

        Arrays are left as ``ndarray`` for :mod:`mammocadx.model.persist` to put in ``arrays.npz``
        (``v`` is min(n, d) x d: too large for JSON).
        """
        m = self.maha_
        return {"kind": "ood-guard", "quantile": float(self.quantile), "size_factor": float(self.size_factor),
                "roi_factor": float(self.roi_factor), "texture_factor": float(self.texture_factor),
                "inner_folds": int(self.inner_folds), "seed": int(self.seed),
                "threshold": float(self.threshold_), "n_train": int(self.n_train_),
                "image_side": list(self.image_side_) if self.image_side_ else None,
                "bit_depths": list(self.bit_depths_), "modalities": list(self.modalities_),
                "roi_side": list(self.roi_side_) if self.roi_side_ else None,
                "roughness": list(self.roughness_) if self.roughness_ else None,
                "c0": float(m.c0_), "mean": m.mean_, "v": m.v_, "w": m.w_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "OODGuard":
        """Rebuild from :meth:`to_dict` (arrays may be lists or ndarrays)."""
        if d.get("kind") != "ood-guard":
            raise ModelError(f"not an OOD guard state (kind {d.get('kind')!r})")
        g = cls(quantile=d["quantile"], size_factor=d["size_factor"], roi_factor=d["roi_factor"],
                texture_factor=d.get("texture_factor", 3.0), inner_folds=d["inner_folds"], seed=d["seed"])
        m = _Mahalanobis()
        m.mean_ = np.asarray(d["mean"], dtype=np.float64)
        m.v_, m.w_ = np.asarray(d["v"], dtype=np.float64), np.asarray(d["w"], dtype=np.float64)
        m.c0_ = float(d["c0"])
        if m.v_.ndim != 2 or m.v_.shape[1] != m.mean_.shape[0] or m.w_.shape != (m.v_.shape[0],):
            raise ModelError("OOD guard state: array shapes do not match")
        g.maha_ = m
        g.threshold_ = float(d["threshold"])
        g.n_train_ = int(d["n_train"])
        g.image_side_ = tuple(d["image_side"]) if d.get("image_side") else None
        g.bit_depths_ = [int(b) for b in d.get("bit_depths") or []]
        g.modalities_ = [str(x) for x in d.get("modalities") or []]
        g.roi_side_ = tuple(d["roi_side"]) if d.get("roi_side") else None
        g.roughness_ = tuple(d["roughness"]) if d.get("roughness") else None
        return g
