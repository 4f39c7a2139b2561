"""Registry of CADx modes: each mode a declared recipe (model kind, feature settings, head).

``MODES[name]`` is a :class:`ModeSpec`. Two modes are what users pick:

- ``paper``: Almaraz-Damian et al. 2021 as published: sine pseudocolour, ROI
  context 1.5, z-score -> PCA(404, capped at n_train - 1) -> RBF-SVM (C=1,
  gamma=1/#components), threshold 0.
- ``best``: the better-regularised mode found for mini-MIAS: **grey** ROI
  (no sine folding of dark and bright tissue), same Lite0 features, z-score ->
  L2 logistic regression whose C is chosen by inner, patient-grouped 3-fold CV
  AUC inside the training rows (grid fixed a priori: 1e-4 ... 1e-1), threshold
  from Youden's J on the inner out-of-fold scores. No PCA: the L2 penalty does
  the shrinkage.

- ``finetune``: the ImageNet network itself fine-tuned on the grey ROIs
  (:mod:`mammocadx.model.finetune`), the recommended mode.

and research modes for ablations (``paper-search``: the paper's head with the
component count searched by inner CV; ``paper-grey``; ``linear-svm``).

Model kinds
-----------
A mode declares its ``kind``, the shape of the model. :data:`KINDS` lists them;
today there is one, ``"features+head"`` (frozen CNN features of each ROI, then a
head from :mod:`mammocadx.model.heads`). A new kind (e.g. an end-to-end
fine-tuned network fed with the grey ROIs of
:meth:`mammocadx.features.featurizer.LesionFeaturizer.rois`) is added to
:data:`KINDS`, used by a new :class:`ModeSpec`, and handled where
:class:`mammocadx.model.cadx.CADx` dispatches on the kind (``CADx._fit_kind`` /
``CADx._score_rois``): nowhere else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mammocadx.errors import ConfigError

#: Frozen CNN features of each lesion's ROI, then a head (:mod:`mammocadx.model.heads`).
FEATURES_HEAD = "features+head"

#: The ImageNet CNN itself fine-tuned on the grey ROIs (:class:`mammocadx.model.finetune.FineTuneHead`):
#: its "features" are the ROI rows, its head is the network.
FINETUNE = "finetune"

#: Model kinds a mode may declare (see the module docstring for how one is added).
KINDS: tuple[str, ...] = (FEATURES_HEAD, FINETUNE)


@dataclass(frozen=True)
class ModeSpec:
    """A mode: its model kind, feature settings (fields of ``CADxConfig``) and head.

    Attributes
    ----------
    name, description : str
    features : dict
        ``CADxConfig`` fields this mode sets (an explicit user setting wins).
    head : str
        A key of :data:`mammocadx.model.heads.HEADS` (for kind ``"features+head"``).
    head_options : dict
        Fixed keyword arguments of the head's builder.
    kind : str
        One of :data:`KINDS`.
    """

    name: str
    description: str
    features: dict[str, Any] = field(default_factory=dict)
    head: str = "paper-svc"
    head_options: dict[str, Any] = field(default_factory=dict)
    kind: str = FEATURES_HEAD

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"mode {self.name!r}: unknown model kind {self.kind!r}; known: {list(KINDS)}")


MODES: dict[str, ModeSpec] = {
    "paper": ModeSpec("paper", "Almaraz-Damian et al. 2021: sine pseudocolour, z-score, PCA 404 (capped at n_train-1), "
                      "RBF-SVM C=1 gamma=1/#components", {"pseudocolor": "sine", "context": 1.5}, "paper-svc"),
    "paper-search": ModeSpec("paper-search", "paper mode with the PCA component count searched by inner CV AUC "
                             "(recursive-elimination style, high to low) inside the training folds",
                             {"pseudocolor": "sine", "context": 1.5}, "paper-svc-search"),
    "paper-grey": ModeSpec("paper-grey", "paper head on grey ROIs", {"pseudocolor": "grey", "context": 1.5}, "paper-svc"),
    "best": ModeSpec("best", "grey ROI (context 1.5), Lite0 features, z-score, L2 logistic regression with C by inner "
                     "patient-grouped CV, Youden threshold from inner out-of-fold scores",
                     {"pseudocolor": "grey", "context": 1.5}, "logreg-cv"),
    "linear-svm": ModeSpec("linear-svm", "grey ROI, z-score, linear SVM with C by inner CV",
                           {"pseudocolor": "grey", "context": 1.5}, "linear-svm-cv"),
    "finetune": ModeSpec("finetune", "grey ROI (context 1.5, 224 px), Lite0 fine-tuned on the ROIs (stem and blocks "
                         "0-4 frozen and cached, later blocks + a binary layer trained; flips/rotations, shift, scale "
                         "and gamma augmentation; AdamW, warm-up + cosine; early stopping and Youden threshold on an "
                         "inner patient-grouped validation split; logit averaged over 8 flips/rotations)",
                         {"pseudocolor": "grey", "context": 1.5}, "finetune", kind=FINETUNE),
}

#: The mode ``train``, ``demo`` and ``serve`` use when none is given: the one that validates best on
#: CBIS-DDSM-800 under patient-grouped CV (README, results).
RECOMMENDED_MODE = "finetune"


def get_mode(mode: str) -> ModeSpec:
    """The registered mode ``mode``.

    Raises
    ------
    ConfigError
        If no mode has that name.
    """
    try:
        return MODES[mode]
    except KeyError:
        raise ConfigError(f"unknown mode {mode!r}; choose one of {sorted(MODES)}") from None


def describe(mode: str) -> dict[str, Any]:
    """JSON-friendly description of a mode (for reports and model cards)."""
    spec = get_mode(mode)
    return {"name": spec.name, "description": spec.description, "kind": spec.kind, "features": dict(spec.features),
            "head": spec.head, "head_options": dict(spec.head_options)}
