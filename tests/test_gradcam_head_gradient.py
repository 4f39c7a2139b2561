"""Exact head gradient vs central finite differences, signs and refusals."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import SVC, LinearSVC, NuSVC

from mammocadx.errors import ModelError
from mammocadx.explain.head_gradient import (
    HeadGradient,
    decision_and_gradient,
    head_gradient,
)


def _data(n=80, d=24, seed=0):
    rng = np.random.default_rng(seed)
    # features on very different scales and offsets, as pooled CNN features are
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 5.0, size=d) + rng.uniform(-3, 3, size=d)
    w = rng.normal(size=d)
    y = ((x - x.mean(0)) / x.std(0) @ w + 0.5 * rng.normal(size=n) > 0).astype(int)
    return x, y


def _fd_grad(head, x, h=1e-5):
    """Central finite differences of decision_function, one coordinate at a time (relative step)."""
    g = np.zeros_like(x)
    for j in range(x.shape[1]):
        step = h * max(1.0, abs(x[0, j]))
        xp, xm = x.copy(), x.copy()
        xp[0, j] += step
        xm[0, j] -= step
        g[0, j] = (head.decision_function(xp)[0] - head.decision_function(xm)[0]) / (2 * step)
    return g


def _rel_err(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


HEADS = {
    "paper_rbf_auto": lambda: Pipeline(
        [("scaler", StandardScaler()), ("pca", PCA(n_components=10, svd_solver="full")),
         ("svc", SVC(kernel="rbf", C=1.0, gamma="auto"))]),
    "rbf_scale_whiten": lambda: Pipeline(
        [("scaler", StandardScaler()), ("pca", PCA(n_components=8, whiten=True)), ("svc", SVC(gamma="scale", C=3.0))]),
    "rbf_float_gamma_no_pca": lambda: make_pipeline(StandardScaler(), SVC(gamma=0.05)),
    "rbf_no_scaler": lambda: make_pipeline(PCA(n_components=6), SVC(gamma="scale")),
    "bare_svc": lambda: SVC(gamma="scale"),
    "scaler_no_mean": lambda: make_pipeline(StandardScaler(with_mean=False), SVC(gamma="scale")),
    "linear_svc_kernel": lambda: make_pipeline(StandardScaler(), PCA(n_components=10), SVC(kernel="linear")),
    "poly": lambda: make_pipeline(StandardScaler(), PCA(n_components=10), SVC(kernel="poly", degree=3, coef0=1.0, gamma="scale")),
    "sigmoid": lambda: make_pipeline(StandardScaler(), PCA(n_components=10), SVC(kernel="sigmoid", gamma=0.01, coef0=0.5)),
    "nusvc": lambda: make_pipeline(StandardScaler(), NuSVC(nu=0.4, gamma="scale")),
    "linearsvc": lambda: make_pipeline(StandardScaler(), PCA(n_components=10), LinearSVC(C=0.5)),
    "logreg": lambda: make_pipeline(StandardScaler(), PCA(n_components=10), LogisticRegression()),
    "sgd": lambda: make_pipeline(StandardScaler(), SGDClassifier(random_state=0)),
    "passthrough": lambda: Pipeline([("scaler", "passthrough"), ("svc", SVC(gamma="scale"))]),
}


@pytest.mark.parametrize("name", sorted(HEADS))
def test_gradient_matches_finite_differences(name):
    x, y = _data()
    head = HEADS[name]().fit(x, y)
    rng = np.random.default_rng(1)
    for _ in range(3):
        x0 = x[rng.integers(len(x))][None] + 0.3 * rng.normal(size=(1, x.shape[1]))
        scores, grad = decision_and_gradient(head, x0)
        # score equals the head's own decision_function (sign convention included)
        np.testing.assert_allclose(scores, head.decision_function(x0), rtol=1e-9, atol=1e-12)
        fd = _fd_grad(head, x0)
        # float64 central differences: relative error below 1e-6 (measured ~1e-9..1e-8)
        assert _rel_err(grad, fd) < 1e-6, (name, _rel_err(grad, fd))


def test_paper_head_relative_error_is_tiny():
    """The paper head (z-score -> PCA -> RBF SVC, gamma='auto'): relative error < 1e-7 in float64."""
    x, y = _data(n=120, d=64, seed=3)
    head = HEADS["paper_rbf_auto"]().fit(x, y)
    x0 = x[:1] + 0.1
    errs = _rel_err(head_gradient(head, x0), _fd_grad(head, x0, h=1e-6))
    assert errs < 1e-7


def test_batch_equals_rows_and_single_vector():
    x, y = _data()
    head = HEADS["paper_rbf_auto"]().fit(x, y)
    hg = HeadGradient(head)
    s, g = hg(x[:5])
    assert s.shape == (5,) and g.shape == (5, x.shape[1])
    s1, g1 = hg(x[2])
    assert np.ndim(s1) == 0 and g1.shape == (x.shape[1],)
    np.testing.assert_allclose(g[2], g1, rtol=1e-12)
    np.testing.assert_allclose(s[2], s1, rtol=1e-12)


def test_positive_score_is_class_one_and_gradient_ascends():
    """Positive decision = classes_[1] (malignant); a step along +grad raises the score."""
    x, y = _data()
    head = HEADS["paper_rbf_auto"]().fit(x, y)
    s, g = decision_and_gradient(head, x)
    pred = head.predict(x)
    np.testing.assert_array_equal(pred == 1, s > 0)
    for i in range(10):
        eps = 1e-3 / np.linalg.norm(g[i])
        up = head.decision_function(x[i : i + 1] + eps * g[i])[0]
        down = head.decision_function(x[i : i + 1] - eps * g[i])[0]
        assert up > s[i] > down


def test_string_classes_follow_classes_order():
    x, y = _data()
    names = np.array(["benign", "malignant"])[y]
    head = HEADS["paper_rbf_auto"]().fit(x, names)
    s, _ = decision_and_gradient(head, x)
    np.testing.assert_array_equal(head.predict(x) == "malignant", s > 0)


def test_unsupported_steps_are_named():
    x, y = _data()
    with pytest.raises(ModelError, match="'minmaxscaler'"):
        HeadGradient(make_pipeline(MinMaxScaler(), SVC()).fit(x, y))
    with pytest.raises(ModelError, match="'forest'.*RandomForestClassifier"):
        HeadGradient(Pipeline([("scaler", StandardScaler()), ("forest", RandomForestClassifier(n_estimators=3))]).fit(x, y))
    with pytest.raises(ModelError, match="not fitted"):
        HeadGradient(make_pipeline(StandardScaler(), SVC()))
    y3 = np.arange(len(y)) % 3
    with pytest.raises(ModelError, match="3 classes"):
        HeadGradient(make_pipeline(StandardScaler(), SVC()).fit(x, y3))
    with pytest.raises(ModelError, match="kernel"):
        HeadGradient(SVC(kernel="precomputed").fit(x @ x.T, y))


def test_tampered_arrays_are_refused():
    """If the arrays no longer give the head's decision, refuse rather than explain wrongly."""
    x, y = _data()
    head = HEADS["paper_rbf_auto"]().fit(x, y)
    hg = HeadGradient(head)
    svc = head.named_steps["svc"]
    svc._intercept_ = svc._intercept_ + 1.0  # what libsvm uses; the public copy is left as it was
    with pytest.raises(ModelError, match="differs from its decision_function"):
        hg(x[:3])
