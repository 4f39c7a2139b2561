"""Typed errors raised by the library.

Every error names the stage and, where there is one, the input that failed, so
that the CLI can turn it into a one-line message and an exit code. Library code
never prints and never exits.
"""
from __future__ import annotations

from os import PathLike
from pathlib import Path


class MammocadxError(Exception):
    """Base class of every error the library raises on purpose.

    Parameters
    ----------
    reason : str
        What went wrong, in words a user understands.
    path : str or PathLike, optional
        The file or folder concerned, when there is one.
    stage : str, optional
        The pipeline stage that failed (``"io"``, ``"roi"``, ``"features"`` ...).
    """

    stage: str = "mammocadx"

    def __init__(self, reason: str, path: str | PathLike[str] | None = None, stage: str | None = None):
        self.reason = reason
        self.path = Path(path) if path is not None else None
        if stage is not None:
            self.stage = stage
        super().__init__(str(self))

    def __str__(self) -> str:  # "io: /x/y.png: not an image (truncated PNG)"
        where = f"{self.path}: " if self.path is not None else ""
        return f"{self.stage}: {where}{self.reason}"


class ImageReadError(MammocadxError):
    """An image file is missing, unreadable, truncated or of an unsupported kind."""

    stage = "io"


class DicomError(ImageReadError):
    """A DICOM file cannot be used (wrong modality, missing pixels, unsupported photometric ...)."""

    stage = "dicom"


class DicomOutputError(MammocadxError):
    """DICOM results (Structured Report, overlay) cannot be written: non-DICOM source, missing UIDs, or an
    output folder that holds files mammocadx did not write."""

    stage = "dicom-out"


class DatasetError(MammocadxError):
    """A dataset folder, annotation file or manifest is missing or malformed."""

    stage = "dataset"


class RoiError(MammocadxError):
    """A lesion region of interest is empty, outside the image or malformed."""

    stage = "roi"


class SegmentationError(MammocadxError):
    """Breast segmentation failed (blank, saturated or tiny image)."""

    stage = "segmentation"


class BackboneError(MammocadxError):
    """A CNN backbone or its weights are unavailable, corrupt or mismatched."""

    stage = "features"


class ConfigError(MammocadxError, ValueError):
    """A setting is unknown, out of range or does not apply to the chosen mode.

    Raised once, when settings are resolved (:func:`mammocadx.model.config.resolve`)
    or a config object is built; also a ``ValueError`` for callers that expect one.
    """

    stage = "config"


class ModelError(MammocadxError):
    """A classifier cannot be configured, fitted, saved or loaded."""

    stage = "model"


class ModelIntegrityError(ModelError):
    """A saved model fails its hash checks, or holds pickled or unknown content."""


class EvaluationError(MammocadxError):
    """An evaluation protocol cannot be run as asked (too few samples, leakage ...)."""

    stage = "evaluate"


class LeakageError(EvaluationError):
    """A protocol would let test information reach a fit: refused loudly."""


class EngineError(MammocadxError):
    """A distributed engine is missing, cannot be reached, or lost a job (:mod:`mammocadx.scale`)."""

    stage = "engine"
