"""A CADx's settings, resolved once: ``resolve(mode, overrides) -> CADxConfig`` (frozen, validated).

Defaults live here and only here (the CLI's options default to ``None``, which
means "not given"). The mode's own feature settings apply unless the user gave
that setting explicitly, whatever its value (``--mode best --pseudocolor sine``
gives sine). Every invalid setting raises :class:`~mammocadx.errors.ConfigError`
with the setting's name, before any image is read.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from mammocadx.errors import ConfigError
from mammocadx.model.heads import HEADS, HeadFactory
from mammocadx.model.modes import FINETUNE, get_mode
from mammocadx.model.selection import PAPER_N_COMPONENTS

PSEUDOCOLORS = ("sine", "grey")
PRECISIONS = ("auto", "fp32", "bf16")
#: Network input side of fine-tuned modes unless ``input_size`` is given.
FINETUNE_INPUT_SIZE = 224


@dataclass(frozen=True)
class HeadConfig:
    """Settings of the paper-style heads (which fields a head takes: ``HEADS[name].takes``).

    Attributes
    ----------
    n_components : int or None
        PCA components requested; ``None`` skips PCA (scaler -> SVC).
    C : float
        SVM regularisation (paper: 1).
    gamma : str or float
        RBF width (paper: ``"auto"`` = 1 / #features; ``"scale"`` or a positive number).
    threshold : float
        Decision-score threshold above which a lesion is called malignant (SVM: 0).
    """

    n_components: int | None = PAPER_N_COMPONENTS
    C: float = 1.0
    gamma: str | float = "auto"
    threshold: float = 0.0

    def __post_init__(self) -> None:
        if self.n_components is not None and (isinstance(self.n_components, bool) or int(self.n_components) < 1):
            raise ConfigError(f"n_components: PCA needs at least 1 component, got {self.n_components}")
        if not (isinstance(self.C, (int, float)) and math.isfinite(self.C) and self.C > 0):
            raise ConfigError(f"C must be a positive number, got {self.C!r}")
        if isinstance(self.gamma, str):
            if self.gamma not in ("auto", "scale"):
                try:
                    object.__setattr__(self, "gamma", float(self.gamma))
                except ValueError:
                    raise ConfigError(f"gamma must be 'auto', 'scale' or a positive number, got {self.gamma!r}") from None
        if not isinstance(self.gamma, str) and not (math.isfinite(self.gamma) and self.gamma > 0):
            raise ConfigError(f"gamma must be 'auto', 'scale' or a positive number, got {self.gamma!r}")
        if not math.isfinite(float(self.threshold)):
            raise ConfigError(f"threshold must be a finite number, got {self.threshold!r}")


@dataclass(frozen=True)
class CADxConfig:
    """Everything that defines a CADx model besides its fitted arrays.

    Attributes
    ----------
    mode : str
        A registered mode (:data:`mammocadx.model.modes.MODES`).
    backbone, weights : str, str or None
        timm backbone name and, for backbones without packaged weights, a weight file.
    pseudocolor : str
        ``"sine"`` (paper eqs. 1-4) or ``"grey"``.
    context : float
        ROI side as a multiple of the lesion extent (>= 1; see :mod:`mammocadx.preprocess.roi`).
    segment : bool
        Mask out background, labels and pectoral muscle before the ROI step.
    clahe : bool
        Contrast-limited adaptive histogram equalisation before the ROI step (off in paper mode).
    head : HeadConfig
        PCA components, C, gamma, threshold (of the heads that take them).
    precision : str
        Feature-extraction precision: ``"auto"``, ``"fp32"`` or ``"bf16"``.
    batch_size : int
        ROIs per CNN batch.
    input_size, epochs : int or None
        Fine-tuned modes only: network input side (default 224, up to 320; the ROI is
        cut at this size) and the most training epochs (default the mode's).
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
    input_size: int | None = None
    epochs: int | None = None

    def __post_init__(self) -> None:
        get_mode(self.mode)
        if not isinstance(self.backbone, str) or not self.backbone:
            raise ConfigError(f"backbone must be a model name, got {self.backbone!r}")
        if self.pseudocolor not in PSEUDOCOLORS:
            raise ConfigError(f"pseudocolor must be one of {list(PSEUDOCOLORS)}, got {self.pseudocolor!r}")
        if not (isinstance(self.context, (int, float)) and math.isfinite(self.context) and self.context >= 1.0):
            raise ConfigError(f"context must be >= 1 (the ROI side as a multiple of the lesion size; 1 = tight crop), "
                              f"got {self.context!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.input_size is not None and (isinstance(self.input_size, bool) or not isinstance(self.input_size, int)
                                            or not 32 <= self.input_size <= 320):
            raise ConfigError(f"input_size must be an integer from 32 to 320 pixels, got {self.input_size!r}")
        if self.epochs is not None and (isinstance(self.epochs, bool) or not isinstance(self.epochs, int)
                                        or not 1 <= self.epochs <= 200):
            raise ConfigError(f"epochs must be an integer from 1 to 200, got {self.epochs!r}")
        if get_mode(self.mode).kind != FINETUNE and (self.input_size is not None or self.epochs is not None):
            raise ConfigError(f"input_size and epochs are settings of fine-tuned modes; mode {self.mode!r} "
                              f"uses the frozen backbone at its own input size")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        d = asdict(self)
        d["head"] = asdict(self.head)
        return d

    def card_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` with only the head settings this mode's head takes (for the model card)."""
        d = self.to_dict()
        spec = get_mode(self.mode)
        takes = HEADS[spec.head].takes if spec.head in HEADS else ()
        d["head"] = {k: v for k, v in d["head"].items() if k in takes}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CADxConfig":
        """Inverse of :meth:`to_dict` / :meth:`card_dict` (missing keys take defaults; unknown keys refused)."""
        d = dict(d)
        head_d = d.pop("head", {}) or {}
        unknown = (set(d) - {f.name for f in fields(cls)}) | {f"head.{k}" for k in set(head_d) - {f.name for f in fields(HeadConfig)}}
        if unknown:
            raise ConfigError(f"unknown configuration keys {sorted(unknown)}")
        return cls(head=HeadConfig(**head_d), **d)

    def feature_settings(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~mammocadx.features.featurizer.LesionFeaturizer`."""
        out = {"backbone": self.backbone, "weights": self.weights, "pseudocolor": self.pseudocolor,
               "context": self.context, "segment": self.segment, "clahe": self.clahe,
               "precision": self.precision, "batch_size": self.batch_size}
        if get_mode(self.mode).kind == FINETUNE:
            out["roi_size"] = self.network_input_size
        return out

    @property
    def network_input_size(self) -> int:
        """Input side of a fine-tuned network (``input_size``, default :data:`FINETUNE_INPUT_SIZE`)."""
        return int(self.input_size) if self.input_size is not None else FINETUNE_INPUT_SIZE

    def head_factory(self, head: str | None = None) -> HeadFactory:
        """The picklable factory of this mode's head (or of the registered head ``head``), with its settings."""
        spec = get_mode(self.mode)
        name = head or spec.head
        opts = dict(spec.head_options) if head is None else {}
        for k in HEADS[name].takes:
            opts.setdefault(k, getattr(self.head, k))
        if spec.kind == FINETUNE and head is None:
            opts.update(backbone=self.backbone, pseudocolor=self.pseudocolor, precision=self.precision,
                        input_size=self.network_input_size)
            if self.epochs is not None:
                opts["epochs"] = int(self.epochs)
        return HeadFactory(name, tuple(sorted(opts.items())))


#: Override keys that set ``HeadConfig`` fields.
HEAD_KEYS = tuple(f.name for f in fields(HeadConfig))
#: Override keys that set ``CADxConfig`` fields.
CONFIG_KEYS = tuple(f.name for f in fields(CADxConfig) if f.name not in ("mode", "head"))


def resolve(mode: str | None = None, overrides: Mapping[str, Any] | None = None) -> CADxConfig:
    """The one place settings are merged and checked: defaults < the mode's recipe < explicit overrides.

    Parameters
    ----------
    mode : str, optional
        A registered mode; ``None`` means ``"paper"``.
    overrides : mapping, optional
        ``CADxConfig`` fields and ``HeadConfig`` fields (``n_components``, ``C``,
        ``gamma``, ``threshold``). A value of ``None`` means "not given" (CLI
        options default to ``None``).

    Returns
    -------
    CADxConfig
        Frozen and validated.

    Raises
    ------
    ConfigError
        Unknown mode or key, a value out of range, or a setting the mode's head
        does not take (e.g. ``threshold`` for a mode that chooses its own).
    """
    spec = get_mode("paper" if mode is None else mode)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(given) - set(HEAD_KEYS) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"unknown settings {unknown}; known: {sorted(CONFIG_KEYS + HEAD_KEYS)}")
    head_given = {k: given.pop(k) for k in list(given) if k in HEAD_KEYS}
    takes = HEADS[spec.head].takes if spec.head in HEADS else ()
    refused = sorted(set(head_given) - set(takes))
    if refused:
        raise ConfigError(f"mode {spec.name!r} ({HEADS[spec.head].description}) does not take {refused}")
    settings = {**spec.features, **given}
    return replace(CADxConfig(mode=spec.name, **settings), head=HeadConfig(**head_given))
