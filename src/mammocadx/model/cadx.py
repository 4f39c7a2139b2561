"""The whole CADx in one object: lesion records in, malignancy scores out.

:class:`CADx` chains the stages of the paper, each from its own module::

    io.read_image -> [preprocess.breast.segment_breast] -> preprocess.roi.extract_roi
      -> preprocess.pseudocolor -> features.FeatureExtractor -> model head (scaler -> PCA -> SVM)

Deep features of the frozen backbone are computed once per lesion (and cached
on disk by the feature extractor); everything fitted lives in the head and is
fitted on training data only.
"""
from __future__ import annotations

import inspect
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from mammocadx.datasets.records import LABEL_NAMES, LesionRecord, Roi
from mammocadx.errors import MammocadxError, ModelError
from mammocadx.io.images import ImageData, read_image, to_uint8
from mammocadx.model.pipeline import HeadConfig, make_paper_head
from mammocadx.preprocess.pseudocolor import pseudocolor
from mammocadx.preprocess.roi import RoiConfig, extract_roi, load_mask, roi_square
from mammocadx.utils.determinism import fingerprint_records

log = logging.getLogger(__name__)

INTENDED_USE = (
    "Research and second reading of mammographic lesions marked by a reader. Not a medical device: "
    "not cleared or approved for clinical diagnosis; every output must be reviewed by a qualified radiologist."
)
LIMITATIONS = (
    "Trained and evaluated on the data named in this card only; performance on other scanners, populations "
    "and lesion types is unknown. The lesion must be located by the user (or a mask); scores are uncalibrated "
    "SVM decision values, not probabilities."
)


@dataclass(frozen=True)
class CADxConfig:
    """Everything that defines a CADx model besides its fitted arrays.

    Attributes
    ----------
    mode : str
        ``"paper"`` (the paper's method) or another registered mode.
    backbone, weights : str, str or None
        timm backbone name and, for backbones without packaged weights, a weight file.
    pseudocolor : str
        ``"sine"`` (paper eqs. 1-4) or ``"grey"``.
    context : float
        ROI side as a multiple of the lesion extent (see :mod:`mammocadx.preprocess.roi`).
    segment : bool
        Mask out background, labels and pectoral muscle before the ROI step.
    clahe : bool
        Contrast-limited adaptive histogram equalisation before the ROI step (off in paper mode).
    head : HeadConfig
        PCA components, C, gamma, threshold.
    precision : str
        Feature-extraction precision: ``"auto"``, ``"fp32"`` or ``"bf16"``.
    batch_size : int
        ROIs per CNN batch.
    """

    mode: str = "paper"
    backbone: str = "tf_efficientnet_lite0"
    weights: str | None = None
    pseudocolor: str = "sine"
    context: float = 1.5
    segment: bool = False
    clahe: bool = False
    head: HeadConfig = field(default_factory=HeadConfig)
    precision: str = "auto"
    batch_size: int = 32

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        d = asdict(self)
        d["head"] = asdict(self.head)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CADxConfig":
        """Inverse of :meth:`to_dict` (unknown keys refused)."""
        d = dict(d)
        head = HeadConfig(**d.pop("head", {}))
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ModelError(f"unknown configuration keys {sorted(unknown)}")
        return cls(head=head, **d)


@dataclass
class FeatureSet:
    """Features of the lesions that could be read, and the ones that could not."""

    X: np.ndarray
    records: list[LesionRecord]
    skipped: list[tuple[LesionRecord, str]] = field(default_factory=list)

    @property
    def y(self) -> np.ndarray:
        """Labels (1 malignant); raises if a record has none."""
        if any(r.label is None for r in self.records):
            raise ModelError("some records have no label")
        return np.array([r.label for r in self.records], dtype=int)

    @property
    def groups(self) -> np.ndarray:
        """Patient id of each row."""
        return np.array([r.patient_id for r in self.records])


@dataclass
class Prediction:
    """The CADx's answer for one lesion.

    Attributes
    ----------
    score : float
        Decision score; positive (above ``threshold``) = towards malignant.
    label : str
        ``"benign"`` or ``"malignant"``.
    threshold : float
        The model's operating point.
    roi_grey : ndarray (S, S)
        The ROI as cut (float32 in [0, 1]).
    roi_rgb : ndarray (S, S, 3)
        The pseudocolour ROI given to the CNN.
    crop : tuple of float
        ``(cx, cy, side)`` of the square ROI in image pixels.
    features : ndarray (D,)
        The pooled CNN features.
    """

    score: float
    label: str
    threshold: float
    roi_grey: np.ndarray
    roi_rgb: np.ndarray
    crop: tuple[float, float, float]
    features: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """Score, label, threshold and crop (no arrays)."""
        return {"score": self.score, "label": self.label, "threshold": self.threshold, "crop": list(self.crop)}


class CADx:
    """A benign-vs-malignant lesion classifier following the paper's pipeline.

    Parameters
    ----------
    config : CADxConfig
        The model's definition; :meth:`paper` gives the paper's settings.

    Examples
    --------
    >>> cadx = CADx.paper()                                   # doctest: +SKIP
    >>> from mammocadx.evaluate.run import evaluate                # doctest: +SKIP
    >>> print(evaluate(cadx, records, folds=5, repeats=5, seed=0).result.text())   # doctest: +SKIP
    >>> cadx.fit(records).save("model/")                      # doctest: +SKIP
    """

    def __init__(self, config: CADxConfig | None = None):
        self.config = config or CADxConfig()
        self.head_: Any = None
        self.card: dict[str, Any] = {}
        self._extractor: Any = None

    # ----------------------------------------------------------------- construction
    @classmethod
    def paper(cls, **overrides: Any) -> "CADx":
        """The paper's method: sine pseudocolour, z-score, PCA (404, capped), RBF-SVM C=1 gamma=1/#features.

        ``overrides`` replace :class:`CADxConfig` fields; ``n_components``, ``C``,
        ``gamma`` and ``threshold`` replace :class:`HeadConfig` fields.
        """
        head_keys = {"n_components", "C", "gamma", "threshold"}
        head_over = {k: overrides.pop(k) for k in list(overrides) if k in head_keys}
        config = CADxConfig(**overrides)
        if head_over:
            config = replace(config, head=replace(config.head, **head_over))
        return cls(config)

    @classmethod
    def from_mode(cls, mode: str, **overrides: Any) -> "CADx":
        """A CADx in a registered mode (``"paper"``, ``"best"`` ...)."""
        if mode == "paper":
            return cls.paper(**overrides)
        from mammocadx.model import modes

        return modes.build(mode, **overrides)

    # ----------------------------------------------------------------- features
    @property
    def extractor(self) -> Any:
        """The feature extractor (the CNN is loaded on first use)."""
        if self._extractor is None:
            from mammocadx.features.extract import FeatureExtractor

            self._extractor = FeatureExtractor(
                backbone=self.config.backbone,
                weights=self.config.weights,
                batch_size=self.config.batch_size,
                precision=self.config.precision,
                progress=False,
            )
        return self._extractor

    @property
    def roi_config(self) -> RoiConfig:
        """How ROIs are cut for this model's backbone."""
        return RoiConfig(size=int(self.extractor.input_size), context=self.config.context)

    def prepare_image(self, image: ImageData, view: str | None = None, laterality: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Pixels after optional CLAHE, and the breast mask when segmentation is on."""
        pixels = image.pixels
        mask = None
        if self.config.segment or self.config.clahe:
            from mammocadx.preprocess import breast

            if self.config.segment:
                mask = breast.segment_breast(pixels, view=view, laterality=laterality, source=image.source).breast
            if self.config.clahe:
                pixels = breast.enhance_clahe(pixels)
        return pixels, mask

    def roi_image(self, image: ImageData, roi: Roi, view: str | None = None, laterality: str | None = None) -> tuple[np.ndarray, tuple[float, float, float]]:
        """The grey ROI (S, S) float32 and its square ``(cx, cy, side)`` in image pixels."""
        pixels, mask = self.prepare_image(image, view, laterality)
        cfg = self.roi_config
        lesion_mask = load_mask(roi.mask_path, pixels.shape) if roi.mask_path is not None else (mask if roi.kind == "none" else None)
        crop = roi_square(roi, pixels.shape, cfg, lesion_mask)
        grey = extract_roi(pixels, roi, cfg, breast_mask=mask, source=image.source)
        return grey, crop

    def colorize(self, grey: np.ndarray) -> np.ndarray:
        """Grey ROI(s) in [0, 1] -> the pseudocolour RGB the CNN sees (8-bit window first)."""
        return pseudocolor(to_uint8(grey), self.config.pseudocolor)

    def _iter_rois(self, records: Sequence[LesionRecord], skipped: list[tuple[LesionRecord, str]]) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (record index, grey ROI), reading each image once; failures go to ``skipped``."""
        by_image: dict[Path, list[int]] = defaultdict(list)
        for i, r in enumerate(records):
            by_image[Path(r.image_path)].append(i)
        from mammocadx.utils.progress import progress

        for path, idxs in progress(by_image.items(), total=len(by_image), desc="ROIs", unit="image"):
            try:
                image = read_image(path)
            except MammocadxError as exc:
                log.warning("skipped %s: %s", path, exc)
                skipped.extend((records[i], str(exc)) for i in idxs)
                continue
            first = records[idxs[0]]
            try:
                pixels, mask = self.prepare_image(image, first.view, first.laterality)
            except MammocadxError as exc:
                log.warning("skipped %s: %s", path, exc)
                skipped.extend((records[i], str(exc)) for i in idxs)
                continue
            for i in idxs:
                try:
                    yield i, extract_roi(pixels, records[i].roi, self.roi_config, breast_mask=mask, source=path)
                except MammocadxError as exc:
                    log.warning("skipped %s: %s", records[i].sample_id, exc)
                    skipped.append((records[i], str(exc)))

    def pixel_params(self) -> dict[str, Any]:
        """Every setting of this model that shapes the pixels the CNN sees (for source-keyed caching)."""
        c = self.config
        return {"segment": c.segment, "clahe": c.clahe, "pseudocolor": c.pseudocolor,
                "roi": asdict(self.roi_config)}

    def _source_digests(self, records: Sequence[LesionRecord]) -> list[str | None]:
        """Source digest of each lesion (None where a file cannot be read: it is then decoded and reported)."""
        from mammocadx.features.source_keys import source_digest

        params = self.pixel_params()
        out: list[str | None] = []
        for r in records:
            try:
                out.append(source_digest(r.image_path, r.roi, r.view, r.laterality, params))
            except OSError:
                out.append(None)
        return out

    def featurize(self, records: Sequence[LesionRecord]) -> FeatureSet:
        """Deep features of every lesion, streamed in batches (never a whole dataset of images in memory).

        With a feature cache, lesions are first looked up by their source
        (image file bytes + ROI + preprocessing, :mod:`mammocadx.features.source_keys`):
        those found are neither decoded nor run through the CNN. Lesions whose
        image or ROI cannot be read are skipped and listed in
        ``FeatureSet.skipped`` with the reason; the rest go on.
        """
        skipped: list[tuple[LesionRecord, str]] = []
        found: dict[int, np.ndarray] = {}
        sources: list[str | None] = [None] * len(records)
        if self.extractor.cache is not None:
            sources = self._source_digests(records)
            known = [i for i, d in enumerate(sources) if d is not None]
            for i, vec in zip(known, self.extractor.cached([sources[i] for i in known])):
                if vec is not None:
                    found[i] = vec
            if found:
                log.info("features: %d of %d lesions from the cache by source (not decoded)", len(found), len(records))
        todo = [i for i in range(len(records)) if i not in found]
        rows: list[int] = list(found)
        feats: list[np.ndarray] = [np.stack([found[i] for i in rows])] if found else []
        batch_idx: list[int] = []
        batch: list[np.ndarray] = []
        bs = max(1, self.config.batch_size)

        def flush() -> None:
            if batch:
                out = self.extractor.transform(self.colorize(np.stack(batch)))
                feats.append(out)
                rows.extend(batch_idx)
                keyed = [(k, sources[i]) for k, i in enumerate(batch_idx) if sources[i] is not None]
                if keyed:
                    self.extractor.remember([d for _, d in keyed], out[[k for k, _ in keyed]])
                batch.clear()
                batch_idx.clear()

        for j, grey in self._iter_rois([records[i] for i in todo], skipped):
            batch.append(grey)
            batch_idx.append(todo[j])
            if len(batch) >= bs:
                flush()
        flush()
        if not rows:
            reasons = "; ".join(sorted({why for _, why in skipped})[:3])
            raise ModelError(f"no lesion could be read ({len(skipped)} skipped: {reasons})")
        X = np.concatenate(feats).astype(np.float32)
        order = np.argsort(rows, kind="stable")
        kept = [records[rows[k]] for k in order]
        return FeatureSet(X=X[order], records=kept, skipped=skipped)

    # ----------------------------------------------------------------- head
    def head_factory(self) -> Callable[[int, int], Any]:
        """``(n_train, n_features) -> unfitted head`` for this model's mode."""
        if self.config.mode == "paper":
            return lambda n, d: make_paper_head(self.config.head, n, d)
        from mammocadx.model import modes

        return modes.head_factory(self.config)

    @property
    def threshold(self) -> float:
        """The operating point: the fitted head's own ``threshold_`` if it chose one, else the config's."""
        return float(getattr(self.head_, "threshold_", self.config.head.threshold))

    def fit_features(self, fs: FeatureSet, seed: int | None = None) -> "CADx":
        """Fit the head on precomputed features (all of ``fs``); ``seed`` is recorded in the model card."""
        y = fs.y
        if len(np.unique(y)) < 2:
            raise ModelError("training needs both benign and malignant lesions")
        head = self.head_factory()(len(y), fs.X.shape[1])
        with threadpool_limits(limits=1, user_api="blas"):  # small problem: see evaluate.crossval
            # Heads that tune themselves by inner CV (model.modes) group their inner folds by patient.
            if "groups" in inspect.signature(head.fit).parameters:
                head.fit(fs.X, y, groups=fs.groups)
            else:
                head.fit(fs.X, y)
        self.head_ = head
        self.card = self._card(fs)
        self.card["training_data"]["seed"] = seed
        return self

    def fit(self, records: Sequence[LesionRecord]) -> "CADx":
        """Featurize ``records`` and fit the head on all of them."""
        return self.fit_features(self.featurize(records))

    def _check_fitted(self) -> None:
        if self.head_ is None:
            raise ModelError("this CADx is not fitted: call fit() or load() first")

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Decision scores of feature rows (positive = towards malignant)."""
        self._check_fitted()
        with threadpool_limits(limits=1, user_api="blas"):
            return np.asarray(self.head_.decision_function(np.asarray(X, dtype=np.float32)), dtype=float)

    def predict(self, image: str | Path | ImageData, roi: Roi, view: str | None = None, laterality: str | None = None) -> Prediction:
        """Score one lesion on one image.

        Parameters
        ----------
        image : path or ImageData
            The mammogram.
        roi : Roi
            Lesion location in image pixels (x from the left, y from the top).
        """
        self._check_fitted()
        img = image if isinstance(image, ImageData) else read_image(image)
        grey, crop = self.roi_image(img, roi, view, laterality)
        rgb = self.colorize(grey)
        feats = self.extractor.transform(rgb[None])[0]
        score = float(self.decision_function(feats[None])[0])
        thr = self.threshold
        return Prediction(score=score, label=LABEL_NAMES[int(score > thr)], threshold=thr, roi_grey=grey,
                          roi_rgb=rgb, crop=crop, features=feats)

    # ----------------------------------------------------------------- card & files
    def _card(self, fs: FeatureSet) -> dict[str, Any]:
        ext = self.extractor
        head_info: dict[str, Any] = {}
        steps = getattr(self.head_, "named_steps", {})
        if "pca" in steps:
            head_info["pca_components"] = int(steps["pca"].n_components_)
        if "svc" in steps:
            head_info["svc_gamma"] = float(steps["svc"]._gamma)
        return {
            "name": f"mammocadx-{self.config.mode}",
            "mode": self.config.mode,
            "config": self.config.to_dict(),
            "backbone": {"name": self.config.backbone, "weights_sha256": getattr(ext, "weights_sha256", None),
                         "input_size": int(ext.input_size), "feature_dim": int(fs.X.shape[1]),
                         "precision": self.config.precision},
            "preprocessing": {"pseudocolor": self.config.pseudocolor, "roi_context": self.config.context,
                              "roi_size": int(ext.input_size), "segmentation": self.config.segment,
                              "clahe": self.config.clahe, "window": "8-bit, before pseudocolour"},
            "head": head_info,
            "threshold": self.threshold,
            "training_data": {"n_lesions": len(fs.records), "n_malignant": int(fs.y.sum()),
                              "n_patients": len(set(fs.groups)), "seed": None,
                              "fingerprint": fingerprint_records(fs.records),
                              "fingerprint_method": "sha256 of image and mask bytes, ids, labels, ROIs"},
            "intended_use": INTENDED_USE,
            "limitations": LIMITATIONS,
            "metrics": None,
        }

    def save(self, path: str | Path) -> Path:
        """Write the model folder (arrays + JSON model card, no pickle); see :mod:`mammocadx.model.persist`."""
        self._check_fitted()
        from mammocadx.model.persist import save_model

        return save_model(Path(path), self.head_, self.card)

    @classmethod
    def load(cls, path: str | Path) -> "CADx":
        """Load a model folder written by :meth:`save` (hashes verified, no code executed)."""
        from mammocadx.model.persist import load_model

        head, card = load_model(Path(path))
        cadx = cls(CADxConfig.from_dict(card["config"]))
        cadx.head_ = head
        cadx.card = card
        sha = card.get("backbone", {}).get("weights_sha256")
        if sha and getattr(cadx.extractor, "weights_sha256", sha) != sha:
            raise ModelError(
                f"the model was trained with backbone weights {sha[:12]}..., but {cadx.config.backbone} "
                f"here has {cadx.extractor.weights_sha256[:12]}...", path)
        return cadx

