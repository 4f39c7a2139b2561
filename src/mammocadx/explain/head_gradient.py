"""Exact gradient of a fitted head's ``decision_function`` with respect to its input features.

The classifier's decision is made by a scikit-learn head on the pooled CNN
features ``x`` (``D`` numbers per lesion). In paper mode the head is::

    Pipeline([("scaler", StandardScaler()), ("pca", PCA(k)), ("svc", SVC(kernel="rbf"))])

and its score is ``f(x) = sum_i a_i exp(-gamma ||z - s_i||^2) + b`` with
``z = PCA((x - mu) / sigma)``. This module computes ``f(x)`` and ``grad_x f``
from the fitted arrays (support vectors ``s_i``, dual coefficients ``a_i``,
intercept ``b``, ``gamma``, the PCA mean, components and, if whitened,
explained variances, and the scaler's mean and scale)::

    z        = ((x - mu) / sigma - m_pca) @ W.T          (W = components_, rows / sqrt(var) if whiten)
    grad_z f = sum_i a_i K_i (-2 gamma) (z - s_i)        (RBF)
    grad_x f = (grad_z f @ W) / sigma

scikit-learn has no gradient API, and autograd on its arrays would mean
re-implementing the same formulas in torch, so they are written here (a few
lines per step) in float64 and checked against finite differences in the tests
(relative error below 1e-7 on fitted pipelines) and, at run time, against the
head's own ``decision_function`` (a head whose arrays disagree with its
decision is refused rather than explained wrongly).

Sign convention: for a binary head with ``classes_ == [c0, c1]`` scikit-learn's
``decision_function`` is positive towards ``c1``. In mammocadx ``c1`` is ``1``
(malignant), so **a positive score and a positive gradient point towards
malignant**.

Supported steps
---------------
- transformers: ``StandardScaler`` (with or without mean/std), ``PCA``
  (whitened or not), ``"passthrough"``/``None``;
- final estimators: ``SVC`` / ``NuSVC`` with ``linear``, ``rbf``, ``poly`` or
  ``sigmoid`` kernel; linear models with ``coef_``/``intercept_`` and a binary
  ``decision_function`` (``LinearSVC``, ``LogisticRegression``,
  ``SGDClassifier``, ``RidgeClassifier`` ...).

Anything else raises :class:`~mammocadx.errors.ModelError` naming the step.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mammocadx.errors import ModelError

log = logging.getLogger(__name__)

__all__ = ["HeadGradient", "decision_and_gradient", "head_gradient"]

#: Largest relative disagreement tolerated between the score computed from the
#: fitted arrays and the head's own ``decision_function`` (both float64).
CHECK_RTOL = 1e-6


# --------------------------------------------------------------------------- affine steps
@dataclass(frozen=True)
class _Affine:
    """``z = (u - offset) @ matrix`` for one transformer step (``matrix`` is (D_in, D_out) or a diagonal)."""

    name: str
    offset: np.ndarray | float
    matrix: np.ndarray | None  # None = identity
    diagonal: bool

    def forward(self, u: np.ndarray) -> np.ndarray:
        v = u - self.offset
        if self.matrix is None:
            return v
        return v * self.matrix if self.diagonal else v @ self.matrix

    def backward(self, g: np.ndarray) -> np.ndarray:
        # d z / d u = matrix, so grad_u = grad_z @ matrix.T
        if self.matrix is None:
            return g
        return g * self.matrix if self.diagonal else g @ self.matrix.T


def _affine_for(name: str, step: Any) -> _Affine:
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    if step is None or (isinstance(step, str) and step == "passthrough"):
        return _Affine(name, 0.0, None, True)
    if isinstance(step, StandardScaler):
        mean = np.asarray(step.mean_, np.float64) if getattr(step, "mean_", None) is not None and step.with_mean else 0.0
        scale = getattr(step, "scale_", None)
        inv = None if scale is None or not step.with_std else 1.0 / np.asarray(scale, np.float64)
        return _Affine(name, mean, inv, True)
    if isinstance(step, PCA):
        comps = np.asarray(step.components_, np.float64)  # (k, D)
        if step.whiten:
            comps = comps / np.sqrt(np.asarray(step.explained_variance_, np.float64))[:, None]
        return _Affine(name, np.asarray(step.mean_, np.float64), comps.T, False)
    raise ModelError(
        f"cannot differentiate through pipeline step {name!r} ({type(step).__name__}): "
        "supported transformers are StandardScaler, PCA and 'passthrough'"
    )


# --------------------------------------------------------------------------- final estimators
_Grad = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _check_binary(name: str, est: Any) -> None:
    classes = getattr(est, "classes_", None)
    if classes is None:
        raise ModelError(f"head step {name!r} ({type(est).__name__}) is not fitted")
    if len(classes) != 2:
        raise ModelError(
            f"head step {name!r} has {len(classes)} classes {list(classes)}: only binary heads "
            "(benign vs malignant) can be explained"
        )


def _svc_grad(name: str, svc: Any) -> _Grad:
    kernel = svc.kernel
    if callable(kernel) or kernel not in ("linear", "rbf", "poly", "sigmoid"):
        raise ModelError(
            f"cannot differentiate head step {name!r}: SVC kernel {kernel!r} is not supported "
            "(linear, rbf, poly, sigmoid are)"
        )
    sv = np.asarray(svc.support_vectors_, np.float64)  # (m, k)
    # Public dual_coef_/intercept_ are already sign-flipped by scikit-learn for
    # binary problems so that positive = classes_[1]; the run-time check in
    # HeadGradient.__call__ guards this convention.
    a = np.asarray(svc.dual_coef_, np.float64).ravel()  # (m,)
    b = float(np.asarray(svc.intercept_, np.float64).ravel()[0])
    gamma = float(svc._gamma)  # resolved "scale"/"auto"/float, as libsvm used it
    coef0 = float(svc.coef0)
    degree = int(svc.degree)

    def grad(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if kernel == "rbf":
            # ||z - s||^2 = |z|^2 - 2 z.s + |s|^2, clipped at 0 against round-off
            d2 = np.maximum((z * z).sum(1)[:, None] - 2.0 * z @ sv.T + (sv * sv).sum(1)[None, :], 0.0)
            k = np.exp(-gamma * d2)  # (n, m)
            ka = k * a  # a_i K_i
            f = ka.sum(1) + b
            # sum_i a_i K_i (-2 gamma)(z - s_i)
            g = -2.0 * gamma * (ka.sum(1)[:, None] * z - ka @ sv)
            return f, g
        dot = z @ sv.T  # (n, m)
        if kernel == "linear":
            w = a @ sv
            return dot @ a + b, np.broadcast_to(w, z.shape).copy()
        if kernel == "poly":
            base = gamma * dot + coef0
            f = (base**degree) @ a + b
            dk = degree * base ** (degree - 1) * gamma if degree >= 1 else np.zeros_like(base)
            return f, (dk * a) @ sv
        # sigmoid
        t = np.tanh(gamma * dot + coef0)
        f = t @ a + b
        return f, ((1.0 - t * t) * gamma * a) @ sv

    return grad


def _linear_grad(name: str, est: Any) -> _Grad:
    coef = np.asarray(est.coef_, np.float64)
    if coef.ndim == 2:
        if coef.shape[0] != 1:
            raise ModelError(f"head step {name!r} has {coef.shape[0]} coefficient rows: only binary heads are supported")
        coef = coef[0]
    intercept = float(np.asarray(getattr(est, "intercept_", 0.0), np.float64).ravel()[0])

    def grad(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return z @ coef + intercept, np.broadcast_to(coef, z.shape).copy()

    return grad


def _final_grad(name: str, est: Any) -> _Grad:
    from sklearn.svm import SVC, NuSVC

    if isinstance(est, (SVC, NuSVC)):
        _check_binary(name, est)
        return _svc_grad(name, est)
    if hasattr(est, "coef_") and hasattr(est, "decision_function") and not hasattr(est, "support_vectors_"):
        _check_binary(name, est)
        return _linear_grad(name, est)
    raise ModelError(
        f"cannot differentiate head step {name!r} ({type(est).__name__}): supported heads are SVC/NuSVC "
        "(linear, rbf, poly, sigmoid kernels) and linear models with coef_ (LinearSVC, LogisticRegression ...)"
    )


# --------------------------------------------------------------------------- public API
class HeadGradient:
    """The score and its exact gradient for a fitted binary head, built once from its arrays.

    Parameters
    ----------
    head : sklearn estimator or Pipeline
        A fitted binary classifier, alone or at the end of a ``Pipeline`` of
        supported transformers.
    check : bool
        Compare the score computed from the arrays with ``head.decision_function``
        on every call and raise :class:`ModelError` if they disagree (default True).

    Raises
    ------
    ModelError
        If a step is not supported (the message names it), the head is not
        fitted, or it is not binary.
    """

    def __init__(self, head: Any, check: bool = True):
        self.head = head
        self.check = check
        steps = list(getattr(head, "steps", [("head", head)]))
        if not steps:
            raise ModelError("the head pipeline has no steps")
        *transformers, (final_name, final) = steps
        self.affines = [_affine_for(n, s) for n, s in transformers]
        self.final_name = final_name
        self._final = _final_grad(final_name, final)
        self.classes_ = list(getattr(final, "classes_", []))

    def __call__(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score and gradient for a batch of feature vectors.

        Parameters
        ----------
        features : numpy.ndarray
            ``(N, D)`` or ``(D,)`` pooled features as the head saw them in ``fit``
            (a single vector gives a 0-d score and a ``(D,)`` gradient).

        Returns
        -------
        scores : numpy.ndarray
            ``(N,)`` float64, equal to ``head.decision_function(features)``;
            positive = towards ``classes_[1]`` (malignant).
        grads : numpy.ndarray
            ``(N, D)`` float64, ``d score / d features``.
        """
        x = np.asarray(features, np.float64)
        single = x.ndim == 1
        x = np.atleast_2d(x)
        u = x
        for aff in self.affines:
            u = aff.forward(u)
        scores, g = self._final(u)
        for aff in reversed(self.affines):
            g = aff.backward(g)
        if self.check:
            ref = np.asarray(self.head.decision_function(x), np.float64).ravel()
            tol = CHECK_RTOL * max(1.0, float(np.abs(ref).max(initial=0.0)))
            if ref.shape != scores.shape or not np.allclose(scores, ref, rtol=0.0, atol=tol):
                raise ModelError(
                    f"the score recomputed from head step {self.final_name!r}'s arrays differs from its "
                    f"decision_function (max |diff| {np.abs(scores - ref).max():.3g}): refusing to explain"
                )
        if single:
            return scores[0], g[0]
        return scores, g


def decision_and_gradient(head: Any, features: np.ndarray, check: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Shortcut for ``HeadGradient(head, check)(features)``: ``(scores (N,), grads (N, D))`` in float64."""
    return HeadGradient(head, check=check)(features)


def head_gradient(head: Any, features: np.ndarray) -> np.ndarray:
    """``d decision_function / d features`` of a fitted head, ``(N, D)`` float64 (positive = towards malignant)."""
    return HeadGradient(head)(features)[1]
