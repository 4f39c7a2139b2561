"""The paper's classifier: z-score -> PCA -> RBF-SVM (Almaraz-Damian et al. 2021, §3.4-3.5).

``Pipeline([("scaler", StandardScaler()), ("pca", PCA(k)), ("svc", SVC(kernel="rbf", C=1, gamma="auto"))])``
where ``gamma="auto"`` is the paper's 1/#features (features = PCA outputs).

PCA cap rule: the paper keeps 404 components, which cannot be fitted on fewer
than 404 training samples (mini-MIAS has ~95 per training fold). The number of
components actually used is ``min(k, n_train - 1, n_features)``; when this caps
``k`` a warning is logged and :func:`effective_components` says so, so reports
can state it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from mammocadx.errors import ModelError

log = logging.getLogger(__name__)

#: Number of PCA components the paper kept (chosen by recursive elimination).
PAPER_N_COMPONENTS = 404


@dataclass(frozen=True)
class HeadConfig:
    """Settings of the paper head.

    Attributes
    ----------
    n_components : int or None
        PCA components requested; ``None`` skips PCA (scaler -> SVC).
    C : float
        SVM regularisation (paper: 1).
    gamma : str or float
        RBF width (paper: ``"auto"`` = 1 / #features).
    threshold : float
        Decision-score threshold above which a lesion is called malignant (SVM: 0).
    """

    n_components: int | None = PAPER_N_COMPONENTS
    C: float = 1.0
    gamma: str | float = "auto"
    threshold: float = 0.0

    def __post_init__(self) -> None:
        if self.n_components is not None and self.n_components < 1:
            raise ModelError(f"PCA needs at least 1 component, got {self.n_components}")
        if self.C <= 0:
            raise ModelError(f"C must be positive, got {self.C}")


def effective_components(requested: int | None, n_samples: int, n_features: int) -> int | None:
    """Apply the cap rule ``min(k, n_samples - 1, n_features)``; ``None`` stays ``None``.

    Raises
    ------
    ModelError
        If there are too few samples to fit any PCA (fewer than 2).
    """
    if requested is None:
        return None
    limit = min(n_samples - 1, n_features)
    if limit < 1:
        raise ModelError(f"cannot fit PCA on {n_samples} samples")
    if requested > limit:
        log.debug("PCA capped: %d components requested, %d allowed by %d training samples x %d features",
                  requested, limit, n_samples, n_features)
        return limit
    return requested


def make_paper_head(config: HeadConfig, n_samples: int, n_features: int) -> Pipeline:
    """Build the unfitted paper head for a training set of ``n_samples`` x ``n_features``."""
    k = effective_components(config.n_components, n_samples, n_features)
    steps: list[tuple[str, object]] = [("scaler", StandardScaler())]
    if k is not None:
        steps.append(("pca", PCA(n_components=k, svd_solver="full")))
    steps.append(("svc", SVC(kernel="rbf", C=config.C, gamma=config.gamma)))
    return Pipeline(steps)
