"""Lesion featurizer: image -> prepared image -> grey ROI -> colour -> CNN features.

Two public steps, usable apart:

- :meth:`LesionFeaturizer.iter_rois` / :meth:`LesionFeaturizer.rois`: the grey
  ROIs of lesion records (each image read and prepared once; records whose image
  or ROI cannot be read are listed with the reason). A model that consumes
  pixels (an end-to-end network) stops here.
- :meth:`LesionFeaturizer.featurize`: the ROIs coloured and run through the frozen
  backbone in batches, with the source-keyed feature cache
  (:mod:`mammocadx.features.source_keys`): lesions found by their source are
  neither decoded nor run through the CNN.

Both steps run in this process by default. An *engine* set on the featurizer
(:attr:`LesionFeaturizer.engine`, e.g. :class:`mammocadx.scale.ray_engine.RayEngine`)
runs them elsewhere instead; it rebuilds the featurizer on its workers from
:meth:`LesionFeaturizer.settings` and must return the same :class:`FeatureSet`
(same rows, same order, same skipped list).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from mammocadx.errors import MammocadxError, ModelError
from mammocadx.io.images import read_image
from mammocadx.preprocess.pseudocolor import pseudocolor
from mammocadx.preprocess.roi import RoiConfig, RoiGeometry, extract_roi, roi_geometry
from mammocadx.records import ImageData, LesionRecord, Roi, to_uint8

log = logging.getLogger(__name__)

Skipped = list[tuple[LesionRecord, str]]


@dataclass
class FeatureSet:
    """Features of the lesions that could be read, and the ones that could not."""

    X: np.ndarray
    records: list[LesionRecord]
    skipped: Skipped = field(default_factory=list)

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
class RoiSet(FeatureSet):
    """Grey ROIs of the lesions that could be read: ``X`` is ``(N, S, S)`` float32 in [0, 1]."""


class FeatureEngine(Protocol):
    """Where the featurizer's two steps run (this process when no engine is set)."""

    name: str

    def featurize(self, featurizer: "LesionFeaturizer", records: Sequence[LesionRecord]) -> FeatureSet:
        """As :meth:`LesionFeaturizer.featurize`."""

    def rois(self, featurizer: "LesionFeaturizer", records: Sequence[LesionRecord]) -> RoiSet:
        """As :meth:`LesionFeaturizer.rois`."""


class LesionFeaturizer:
    """Turns lesion records into grey ROIs and into CNN features.

    Parameters
    ----------
    backbone, weights : str, str or None
        timm backbone and, for backbones without packaged weights, a weight file.
    pseudocolor : {"sine", "grey"}
        Colouring of the 8-bit ROI before the CNN.
    context : float
        ROI side as a multiple of the lesion extent.
    segment, clahe : bool
        Breast segmentation / CLAHE before the ROI step.
    precision : str
        CNN precision (``"auto"``, ``"fp32"``, ``"bf16"``).
    batch_size : int
        ROIs per CNN batch.
    roi_size : int, optional
        ROI side in pixels; default the backbone's input size (which loads the backbone).
    cache_dir : str, Path, None or False
        Feature cache folder (``None``: the default, ``False``: none); see
        :class:`~mammocadx.features.extract.FeatureExtractor`.

    Attributes
    ----------
    engine : FeatureEngine or None
        Runs :meth:`featurize` and :meth:`rois` elsewhere (a run-time choice, never saved with a model).
    """

    def __init__(self, backbone: str = "tf_efficientnet_lite0", weights: str | None = None, pseudocolor: str = "sine",
                 context: float = 1.5, segment: bool = False, clahe: bool = False, precision: str = "auto",
                 batch_size: int = 32, roi_size: int | None = None, cache_dir: str | Path | None | Literal[False] = None):
        self.backbone = backbone
        self.weights = weights
        self.pseudocolor = pseudocolor
        self.context = context
        self.segment = segment
        self.clahe = clahe
        self.precision = precision
        self.batch_size = batch_size
        self.roi_size = roi_size
        self.cache_dir = cache_dir
        self.engine: FeatureEngine | None = None
        self._extractor: Any = None

    def settings(self) -> dict[str, Any]:
        """Everything that rebuilds this featurizer elsewhere (JSON-friendly; the ROI size and cache folder
        resolved here, so a worker on another machine makes the same pixels and looks in the same cache)."""
        cache = self.extractor.cache
        return {"backbone": self.backbone, "weights": self.weights, "pseudocolor": self.pseudocolor,
                "context": self.context, "segment": self.segment, "clahe": self.clahe, "precision": self.precision,
                "batch_size": self.batch_size, "roi_size": int(self.roi_config.size),
                "cache_dir": str(cache.root) if cache is not None else False}

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> "LesionFeaturizer":
        """The featurizer :meth:`settings` describes (with no engine: it runs where it is built)."""
        return cls(**settings)

    # ----------------------------------------------------------------- pixels
    @property
    def extractor(self) -> Any:
        """The feature extractor (the CNN is loaded on first use)."""
        if self._extractor is None:
            from mammocadx.features.extract import FeatureExtractor

            self._extractor = FeatureExtractor(backbone=self.backbone, weights=self.weights,
                                               batch_size=self.batch_size, precision=self.precision, progress=False,
                                               cache_dir=self.cache_dir)
        return self._extractor

    @property
    def roi_config(self) -> RoiConfig:
        """How ROIs are cut (side: ``roi_size`` or the backbone's input size)."""
        size = self.roi_size if self.roi_size is not None else int(self.extractor.input_size)
        return RoiConfig(size=size, context=self.context)

    def prepare_image(self, image: ImageData, view: str | None = None,
                      laterality: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Pixels after optional CLAHE, and the breast mask when segmentation is on."""
        pixels = image.pixels
        mask = None
        if self.segment or self.clahe:
            from mammocadx.preprocess import breast

            if self.segment:
                mask = breast.segment_breast(pixels, view=view, laterality=laterality, source=image.source).breast
            if self.clahe:
                pixels = breast.enhance_clahe(pixels)
        return pixels, mask

    def roi_image(self, image: ImageData, roi: Roi, view: str | None = None,
                  laterality: str | None = None) -> tuple[np.ndarray, RoiGeometry]:
        """The grey ROI (S, S) float32 and where it was cut (:class:`~mammocadx.preprocess.roi.RoiGeometry`)."""
        pixels, mask = self.prepare_image(image, view, laterality)
        cfg = self.roi_config
        geometry = roi_geometry(roi, pixels.shape, cfg, breast_mask=mask, source=image.source)
        grey = extract_roi(pixels, roi, cfg, breast_mask=mask, source=image.source)
        return grey, geometry

    def colorize(self, grey: np.ndarray) -> np.ndarray:
        """Grey ROI(s) in [0, 1] -> the pseudocolour RGB the CNN sees (8-bit window first)."""
        return pseudocolor(to_uint8(grey), self.pseudocolor)

    def iter_rois(self, records: Sequence[LesionRecord], skipped: Skipped) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index into records, grey ROI (S, S) float32 in [0, 1])``, reading each image once.

        Records whose image, preparation or ROI fails are appended to ``skipped``
        as ``(record, reason)`` and logged; the rest go on.
        """
        by_image: dict[Path, list[int]] = defaultdict(list)
        for i, r in enumerate(records):
            by_image[Path(r.image_path)].append(i)
        from mammocadx.utils.progress import progress

        cfg = self.roi_config
        for path, idxs in progress(by_image.items(), total=len(by_image), desc="ROIs", unit="image"):
            first = records[idxs[0]]
            try:
                pixels, mask = self.prepare_image(read_image(path), first.view, first.laterality)
            except MammocadxError as exc:
                log.warning("skipped %s: %s", path, exc)
                skipped.extend((records[i], str(exc)) for i in idxs)
                continue
            for i in idxs:
                try:
                    yield i, extract_roi(pixels, records[i].roi, cfg, breast_mask=mask, source=path)
                except MammocadxError as exc:
                    log.warning("skipped %s: %s", records[i].sample_id, exc)
                    skipped.append((records[i], str(exc)))

    def rois(self, records: Sequence[LesionRecord]) -> RoiSet:
        """Grey ROIs of ``records`` in one array (``RoiSet.X``: ``(N, S, S)`` float32), in record order.

        Raises
        ------
        ModelError
            If no lesion could be read.
        """
        if self.engine is not None:
            return self.engine.rois(self, records)
        skipped: Skipped = []
        got = list(self.iter_rois(records, skipped))
        if not got:
            raise ModelError(none_read(skipped))
        got.sort(key=lambda t: t[0])
        return RoiSet(X=np.stack([g for _, g in got]).astype(np.float32), records=[records[i] for i, _ in got],
                      skipped=in_record_order(skipped, records))

    # ----------------------------------------------------------------- features
    def pixel_params(self) -> dict[str, Any]:
        """Every setting that shapes the pixels the CNN sees (for source-keyed caching)."""
        return {"segment": self.segment, "clahe": self.clahe, "pseudocolor": self.pseudocolor,
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

    def transform_rois(self, grey: np.ndarray) -> np.ndarray:
        """CNN features ``(N, D)`` of grey ROIs ``(N, S, S)`` (coloured first; no cache)."""
        return self.extractor.transform(self.colorize(grey))

    def featurize(self, records: Sequence[LesionRecord]) -> FeatureSet:
        """Deep features of every lesion, streamed in batches (never a whole dataset of images in memory).

        With a feature cache, lesions are first looked up by their source (image
        file bytes + ROI + preprocessing): those found are neither decoded nor run
        through the CNN. Lesions whose image or ROI cannot be read are skipped and
        listed in ``FeatureSet.skipped`` with the reason (in record order); the rest go on.
        """
        if self.engine is not None:
            return self.engine.featurize(self, records)
        skipped: Skipped = []
        found: dict[int, np.ndarray] = {}
        sources: list[str | None] = [None] * len(records)
        ext = self.extractor
        if ext.cache is not None:
            sources = self._source_digests(records)
            known = [i for i, d in enumerate(sources) if d is not None]
            for i, vec in zip(known, ext.cached([sources[i] for i in known])):
                if vec is not None:
                    found[i] = vec
            if found:
                log.info("features: %d of %d lesions from the cache by source (not decoded)", len(found), len(records))
        todo = [i for i in range(len(records)) if i not in found]
        rows: list[int] = list(found)
        feats: list[np.ndarray] = [np.stack([found[i] for i in rows])] if found else []
        batch_idx: list[int] = []
        batch: list[np.ndarray] = []
        bs = max(1, self.batch_size)

        def flush() -> None:
            if batch:
                out = self.transform_rois(np.stack(batch))
                feats.append(out)
                rows.extend(batch_idx)
                keyed = [(k, sources[i]) for k, i in enumerate(batch_idx) if sources[i] is not None]
                if keyed:
                    ext.remember([d for _, d in keyed], out[[k for k, _ in keyed]])
                batch.clear()
                batch_idx.clear()

        for j, grey in self.iter_rois([records[i] for i in todo], skipped):
            batch.append(grey)
            batch_idx.append(todo[j])
            if len(batch) >= bs:
                flush()
        flush()
        if not rows:
            raise ModelError(none_read(skipped))
        X = np.concatenate(feats).astype(np.float32)
        order = np.argsort(rows, kind="stable")
        kept = [records[rows[k]] for k in order]
        return FeatureSet(X=X[order], records=kept, skipped=in_record_order(skipped, records))


def in_record_order(skipped: Skipped, records: Sequence[LesionRecord]) -> Skipped:
    """``skipped`` sorted as ``records`` (whatever order the lesions were read in, by one process or many)."""
    position = {id(r): i for i, r in enumerate(records)}
    return sorted(skipped, key=lambda t: position.get(id(t[0]), len(records)))


def none_read(skipped: Skipped) -> str:
    """The message of a run where no lesion could be read."""
    reasons = "; ".join(sorted({why for _, why in skipped})[:3])
    return f"no lesion could be read ({len(skipped)} skipped: {reasons})"
