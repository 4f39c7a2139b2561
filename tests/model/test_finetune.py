"""The fine-tuned network as a head: honest inner validation, reproducible, explainable (tiny synthetic runs)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mammocadx.errors import ModelError  # noqa: E402
from mammocadx.evaluate.crossval import run_splits  # noqa: E402
from mammocadx.evaluate.splits import grouped_kfold  # noqa: E402
from mammocadx.model.finetune import FineTuneHead, View, dihedral, render_view, roi_side  # noqa: E402
from mammocadx.preprocess.pseudocolor import pseudocolor  # noqa: E402
from mammocadx.records import to_uint8  # noqa: E402

SIZE = 64  # network input in these tests (Lite0 runs at any size >= 32)


def tiny_rows(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bright blobs (malignant) vs dark textured blobs (benign): learnable in a couple of epochs."""
    rng = np.random.default_rng(seed)
    m = roi_side(SIZE)
    yy, xx = np.mgrid[:m, :m]
    r2 = (yy - m / 2) ** 2 + (xx - m / 2) ** 2
    y = np.arange(n) % 2
    rows = []
    for label in y:
        base = rng.uniform(0.2, 0.4, size=(m, m)).astype(np.float32)
        blob = np.exp(-r2 / (2 * (m / 6) ** 2)).astype(np.float32)
        rows.append(np.clip(base + (0.6 if label else 0.15) * blob, 0, 1).reshape(-1))
    groups = np.repeat(np.arange(n // 2), 2)  # two lesions per patient
    return np.stack(rows), y, groups


def small_head(**kw: object) -> FineTuneHead:
    params = dict(input_size=SIZE, epochs=2, patience=2, n_views=2, batch_size=8, tta=False, freeze_through=4,
                  random_state=0)
    params.update(kw)
    return FineTuneHead(**params)


def test_dihedral_covers_eight_distinct_views() -> None:
    img = np.arange(16, dtype=np.float32).reshape(4, 4)
    views = {dihedral(img, k).tobytes() for k in range(8)}
    assert len(views) == 8
    assert np.array_equal(dihedral(img, 0), img)


def test_identity_view_is_the_roi_every_mode_sees() -> None:
    """The identity view of a row is exactly the pseudocoloured ROI the frozen-feature modes feed their CNN."""
    rng = np.random.default_rng(3)
    grey = rng.uniform(0, 1, size=(SIZE, SIZE)).astype(np.float32)
    for colour in ("grey", "sine"):
        assert np.array_equal(render_view(grey, View(), SIZE, 1.0, colour), pseudocolor(to_uint8(grey), colour))
    shifted = render_view(grey, View(dx=0.1, scale=1.1, flip=3), SIZE, 1.0, "grey")
    assert shifted.shape == (SIZE, SIZE, 3) and np.isfinite(shifted).all()


def test_fit_predict_reproducible_and_inner_split_inside_training_rows() -> None:
    X, y, g = tiny_rows()
    a = small_head().fit(X, y, g)
    b = small_head().fit(X, y, g)
    sa, sb = a.decision_function(X), b.decision_function(X)
    np.testing.assert_allclose(sa, sb, rtol=0, atol=1e-6)  # same seed, same scores
    sel = a.selection_
    assert sel["n_inner_train"] + sel["n_inner_val"] == len(y)
    tr, va = a.inner_split_
    assert set(g[tr]).isdisjoint(g[va])  # inner validation is patient-grouped
    assert 1 <= sel["best_epoch"] <= sel["epochs_run"] <= 2
    assert len(sel["history"]) == sel["epochs_run"]
    # The tiny problem is learnable: malignant blobs score higher.
    assert sa[y == 1].mean() > sa[y == 0].mean()
    assert np.isfinite(a.threshold_)
    assert np.array_equal(a.predict(X), (sa > a.threshold_).astype(int))


def test_decision_is_linear_head_on_pooled_features() -> None:
    X, y, g = tiny_rows()
    h = small_head(tta=True).fit(X, y, g)
    f = h.pooled_features(X[:4])
    lin = h.linear_head()
    np.testing.assert_allclose(lin.decision_function(f), h.decision_function(X[:4]), rtol=1e-6, atol=1e-6)


def test_cross_validation_never_shows_the_test_fold() -> None:
    """Inside run_splits each fold's head (and its early stopping) sees only that fold's training rows."""
    X, y, g = tiny_rows(48)
    splits = grouped_kfold(y, g, folds=3, repeats=1, seed=0)
    res = run_splits(X, y, g, splits, lambda n, d: small_head(epochs=1, patience=1), keep_heads_of_repeat=0,
                     n_jobs=1)
    for sp in splits:
        head = res.heads[(0, sp.fold)]
        sel = head.selection_
        assert sel["n_inner_train"] + sel["n_inner_val"] == len(sp.train)
    assert len(res.predictions) == len(y)


def test_bad_settings_are_typed_errors() -> None:
    X, y, g = tiny_rows()
    with pytest.raises(ModelError, match="input size"):
        small_head(input_size=16).fit(X, y, g)
    with pytest.raises(ModelError, match="ROI rows"):
        small_head().fit(X[:, :100], y, g)
    with pytest.raises(ModelError, match="both benign and malignant"):
        small_head().fit(X, np.zeros_like(y), g)


def test_finetune_mode_fits_saves_loads_predicts_and_explains(cohort, tmp_path) -> None:
    """The fine-tuned kind end to end: fit -> model folder (network.safetensors, no pickle) -> load -> predict -> Grad-CAM."""
    from mammocadx.explain.api import explain_lesion
    from mammocadx.model.cadx import CADx

    cadx = CADx.from_mode("finetune", input_size=SIZE, epochs=1).fit(cohort, seed=0)
    assert cadx.kind == "finetune" and cadx.card["head"]["network"]["params"]["input_size"] == SIZE
    assert cadx.card["head"]["selection"]["n_inner_train"] + cadx.card["head"]["selection"]["n_inner_val"] == 24
    folder = cadx.save(tmp_path / "model")
    assert (folder / "network.safetensors").is_file()
    loaded = CADx.load(folder)
    assert loaded.threshold == pytest.approx(cadx.threshold)
    for r in cohort[:3]:
        a, b = cadx.predict(r.image_path, r.roi), loaded.predict(r.image_path, r.roi)
        assert a.score == pytest.approx(b.score, abs=1e-5) and a.label == b.label
        assert a.roi_grey.shape == (SIZE, SIZE)
    ex, pred, _img = explain_lesion(loaded, cohort[1].image_path, cohort[1].roi)
    assert ex.cam.shape == (SIZE, SIZE) and 0.0 <= ex.cam.min() and ex.cam.max() <= 1.0
    # The explained score is the network's own logit of the un-flipped ROI (the prediction averages 8 views).
    assert ex.score == pytest.approx(float(loaded.head_.linear_head().decision_function(ex.features[None])[0]), abs=1e-4)


def test_tampered_network_is_refused(cohort, tmp_path) -> None:
    from mammocadx.errors import ModelIntegrityError
    from mammocadx.model.cadx import CADx

    folder = CADx.from_mode("finetune", input_size=SIZE, epochs=1).fit(cohort).save(tmp_path / "model")
    data = bytearray((folder / "network.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (folder / "network.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="network.safetensors"):
        CADx.load(folder)
