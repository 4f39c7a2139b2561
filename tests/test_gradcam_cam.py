"""Grad-CAM of the head's score: exact form, hooks always released, signs, placement, figures, deletion."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from conftest_gradcam import random_backbone
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from mammocadx.errors import BackboneError, ModelError
from mammocadx.explain.deletion import deletion_check, fill_image
from mammocadx.explain.figures import safe_id, save_explanation
from mammocadx.explain.gradcam import (
    Explanation,
    GradCAM,
    explain_roi,
    explain_rois,
    find_feature_map_layer,
)
from mammocadx.explain.head_gradient import decision_and_gradient
from mammocadx.explain.placement import crop_box, map_to_roi, place_on_image
from mammocadx.preprocess.roi import crop_square

torch.set_num_threads(2)


# --------------------------------------------------------------------------- a tiny backbone
@dataclass
class ToyBackbone:
    """A 2-layer CNN honouring the Backbone contract (fast; the map is known in closed form)."""

    model: torch.nn.Module
    input_size: int = 32
    name: str = "toy"

    def preprocess(self, rgb):
        return torch.from_numpy(np.ascontiguousarray(np.asarray(rgb, np.float32))).permute(0, 3, 1, 2) * 2.0 - 1.0

    def feature_map(self, x):
        return self.model(x)

    def pool(self, fmap):
        return fmap.mean(dim=(2, 3))


def toy_backbone(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 6, 3, stride=4, padding=1), torch.nn.ReLU()
    ).eval()
    return ToyBackbone(model)


def _no_hooks(model):
    return all(not m._forward_hooks for m in model.modules())


def _features(bb, rgb):
    with torch.no_grad():
        return bb.pool(bb.feature_map(bb.preprocess(rgb))).double().numpy()


def _fit_head(bb, rgb, y, head=None):
    head = head or Pipeline([("scaler", StandardScaler()), ("pca", PCA(n_components=4)), ("svc", SVC(gamma="scale"))])
    return head.fit(_features(bb, rgb), y)


@pytest.fixture(scope="module")
def toy():
    bb = toy_backbone()
    rng = np.random.default_rng(0)
    rgb = rng.uniform(size=(20, 32, 32, 3)).astype(np.float32)
    y = (rgb[:, 8:24, 8:24].mean((1, 2, 3)) > np.median(rgb[:, 8:24, 8:24].mean((1, 2, 3)))).astype(int)
    return bb, rgb, y, _fit_head(bb, rgb, y)


# --------------------------------------------------------------------------- exact form
def test_default_layer_and_exact_form_on_toy(toy):
    bb, rgb, _y, head = toy
    assert find_feature_map_layer(bb) == "3"  # the last ReLU: its output is the pooled map
    ex = explain_rois(bb, head, rgb[:3])
    with torch.no_grad():
        a = bb.feature_map(bb.preprocess(rgb[:3])).double().numpy()  # (N, C, h, w), no hooks
    feats = a.mean((2, 3))
    scores, g = decision_and_gradient(head, feats)
    hw = a.shape[2] * a.shape[3]
    for i, e in enumerate(ex):
        # alpha_k = g_k / (h w): the map is sum_k g_k A_k / (h w)
        expected = np.einsum("c,chw->hw", g[i], a[i]) / hw
        np.testing.assert_allclose(e.cam_lowres, expected, rtol=1e-4, atol=1e-7)
        # its sum over the grid is g . pooled (first-order contribution of the features)
        assert e.cam_lowres.sum() == pytest.approx(g[i] @ feats[i], rel=1e-4, abs=1e-7)
        assert e.score == pytest.approx(scores[i], rel=1e-5, abs=1e-7)
        assert e.score == pytest.approx(float(head.decision_function(e.features[None].astype(np.float64))[0]), abs=1e-9)
        assert e.cam.shape == (32, 32) and e.cam.dtype == np.float32
        assert 0.0 <= e.cam.min() and e.cam.max() <= 1.0 + 1e-6
        assert -1.0 - 1e-6 <= e.signed_cam.min() and e.signed_cam.max() <= 1.0 + 1e-6
        # the ReLU map is the positive part of the signed map (same normalisation up to a factor)
        pos = np.maximum(e.signed_cam, 0)
        if pos.max() > 0:
            np.testing.assert_allclose(e.cam, pos / pos.max(), atol=1e-5)
        # benign evidence is the negative part
        neg = np.maximum(-e.signed_cam, 0)
        if neg.max() > 0:
            np.testing.assert_allclose(e.cam_for("benign"), neg / neg.max(), atol=1e-5)
        if e.score > 0:
            assert e.decided() == "malignant" and e.decision_cam() is e.cam
        else:
            assert e.decided() == "benign" and np.array_equal(e.decision_cam(), e.cam_for("benign"))


def test_exact_form_on_efficientnet_lite0():
    """Real architecture (random weights): default layer bn2, map = sum_k g_k A_k / (h w)."""
    bb = random_backbone(input_size=128)  # smaller input keeps the test fast; same network
    assert find_feature_map_layer(bb) == "bn2"
    rng = np.random.default_rng(1)
    rgb = rng.uniform(size=(8, 128, 128, 3)).astype(np.float32)
    y = np.arange(8) % 2
    head = _fit_head(bb, rgb, y, Pipeline([("scaler", StandardScaler()), ("pca", PCA(n_components=5)), ("svc", SVC(gamma="scale"))]))
    e = explain_roi(bb, head, rgb[0])
    with torch.no_grad():
        a = bb.feature_map(bb.preprocess(rgb[:1])).double().numpy()[0]
    s, g = decision_and_gradient(head, a.mean((1, 2)))
    np.testing.assert_allclose(e.cam_lowres, np.einsum("c,chw->hw", g, a) / (a.shape[1] * a.shape[2]), rtol=1e-3, atol=1e-8)
    assert e.target_layer == "bn2" and e.cam.shape == (128, 128) and e.cam_lowres.shape == (4, 4)
    assert e.score == pytest.approx(float(s), rel=1e-5, abs=1e-7)
    assert _no_hooks(bb.model)


def test_gradient_through_backbone_ascends_the_score(toy):
    """d score / d image (head gradient pushed through the CNN) is an ascent direction: signs are right."""
    bb, rgb, _y, head = toy
    for i in range(4):
        x = bb.preprocess(rgb[i : i + 1]).requires_grad_(True)
        pooled = bb.pool(bb.feature_map(x))
        s, g = decision_and_gradient(head, pooled.detach().double().numpy())
        (dx,) = torch.autograd.grad(pooled, x, torch.from_numpy(g).float())
        step = 1e-2 * dx / dx.norm()
        with torch.no_grad():
            up = head.decision_function(bb.pool(bb.feature_map(x + step)).double().numpy())[0]
            down = head.decision_function(bb.pool(bb.feature_map(x - step)).double().numpy())[0]
        assert up > s[0] > down


def test_other_target_layer_and_unknown_layer(toy):
    bb, rgb, _y, head = toy
    e = explain_roi(bb, head, rgb[0], target_layer="2")  # the conv before the last ReLU
    assert e.target_layer == "2" and e.cam.shape == (32, 32)
    with pytest.raises(BackboneError, match="no layer named 'nope'"):
        GradCAM(bb, head, target_layer="nope")


# --------------------------------------------------------------------------- hooks
def test_hooks_released_normally_and_on_exceptions(toy):
    bb, rgb, _y, head = toy
    with GradCAM(bb, head) as gc:
        assert not _no_hooks(bb.model)
        gc(rgb[:2])
    assert _no_hooks(bb.model)

    with pytest.raises(RuntimeError, match="boom"), GradCAM(bb, head):
        raise RuntimeError("boom")
    assert _no_hooks(bb.model)

    with pytest.raises(ValueError, match="RGB"):
        explain_rois(bb, head, rgb[:2, :, :, 0])  # wrong shape, raised inside the block
    assert _no_hooks(bb.model)

    # the head fails while the hook holds the graph: still released
    bad = _fit_head(bb, rgb, _y)
    bad.named_steps["svc"]._intercept_ = bad.named_steps["svc"]._intercept_ + 5.0
    with pytest.raises(ModelError, match="decision_function"):
        explain_rois(bb, bad, rgb[:2])
    assert _no_hooks(bb.model)

    # find_feature_map_layer's temporary hooks on every module are removed too
    find_feature_map_layer(toy_backbone(seed=3))
    assert _no_hooks(bb.model)


def test_gradcam_outside_with_block_is_refused(toy):
    bb, rgb, _y, head = toy
    with pytest.raises(RuntimeError, match="with"):
        GradCAM(bb, head)(rgb[:1])


def test_unsupported_head_named(toy):
    from sklearn.ensemble import RandomForestClassifier

    bb, rgb, y, _ = toy
    head = _fit_head(bb, rgb, y, Pipeline([("scaler", StandardScaler()), ("rf", RandomForestClassifier(n_estimators=2))]))
    with pytest.raises(ModelError, match="'rf'"):
        explain_roi(bb, head, rgb[0])
    assert _no_hooks(bb.model)


# --------------------------------------------------------------------------- placement
def test_place_on_image_inverts_crop_square():
    rng = np.random.default_rng(0)
    img = rng.uniform(size=(300, 200)).astype(np.float32)
    # side == out_size: crop_square is a pure copy, so placing back is exact
    for cx, cy in [(100.0, 150.0), (5.0, 10.0), (195.0, 295.0)]:  # centre, and crossing the borders
        roi = crop_square(img, cx, cy, 64, 64)
        placed = place_on_image(roi, (cx, cy, 64), img.shape, fill=np.nan)
        x0, y0, n = crop_box((cx, cy, 64))
        inside = ~np.isnan(placed)
        assert inside.sum() == (min(x0 + n, 200) - max(x0, 0)) * (min(y0 + n, 300) - max(y0, 0))
        np.testing.assert_allclose(placed[inside], img[inside], atol=1e-6)
    # a disc mask goes to ROI coordinates and back onto the image at its place
    yy, xx = np.mgrid[:300, :200]
    disc = ((xx - 120) ** 2 + (yy - 90) ** 2 <= 20**2).astype(np.float32)
    crop = (120.0, 90.0, 60.0)
    m_roi = map_to_roi(disc, crop, 224) > 0.5
    assert abs(m_roi.mean() - np.pi * 20**2 / 60**2) < 0.02
    back = place_on_image(m_roi.astype(np.float32), crop, disc.shape) > 0.5
    assert (back & (disc > 0)).sum() / (back | (disc > 0)).sum() > 0.95  # IoU


# --------------------------------------------------------------------------- figures
def _fake_explanation(s=64, score=0.7):
    yy, xx = np.mgrid[:s, :s]
    signed = np.exp(-((xx - 40) ** 2 + (yy - 20) ** 2) / 60.0) - 0.5 * np.exp(-((xx - 15) ** 2 + (yy - 45) ** 2) / 60.0)
    signed = (signed / np.abs(signed).max()).astype(np.float32)
    cam = np.maximum(signed, 0) / np.maximum(signed, 0).max()
    return Explanation(cam=cam.astype(np.float32), signed_cam=signed, score=score, features=np.zeros(4, np.float32),
                       feature_gradient=np.zeros(4), cam_lowres=signed[::8, ::8], target_layer="bn2")


def test_save_explanation_writes_sanitised_files(tmp_path):
    from PIL import Image

    e = _fake_explanation()
    grey = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    rgb = np.repeat(grey[..., None], 3, -1)
    image = np.zeros((400, 300), np.float32)
    files = save_explanation(tmp_path / "out", "../../etc/mdb 001?", e, grey, rgb, image=image, crop=(150.0, 200.0, 80.0))
    assert [f.name for f in files] == ["etc_mdb_001_gradcam.png", "etc_mdb_001_gradcam_mammogram.png", "etc_mdb_001_gradcam.json"]
    assert all(f.parent == tmp_path / "out" for f in files)
    for f in files[:2]:
        with Image.open(f) as im:
            assert im.size[0] > 300 and im.size[1] > 200
    meta = json.loads(files[2].read_text())
    assert meta["score"] == pytest.approx(0.7) and meta["decision"] == "malignant" and meta["show"] == "decision"
    assert "towards malignant" in meta["convention"]
    assert not list((tmp_path / "out").glob(".tmp-*"))  # no half-written leftovers
    assert safe_id("") == "lesion" and safe_id("a/b\\c") == "a_b_c"
    # signed map, no mammogram
    files = save_explanation(tmp_path / "o2", "x", e, grey, rgb, show="signed")
    assert [f.name for f in files] == ["x_gradcam.png", "x_gradcam.json"]
    with pytest.raises(ValueError, match="show"):
        save_explanation(tmp_path / "o3", "x", e, grey, rgb, show="everything")


# --------------------------------------------------------------------------- deletion
def test_deletion_check_faithful_map_beats_random():
    """A backbone whose score is the brightness of the ROI centre: the map that points there deletes best."""
    bb = toy_backbone(seed=1)
    rng = np.random.default_rng(5)
    greys = rng.uniform(0.2, 0.4, size=(30, 32, 32)).astype(np.float32)
    y = rng.integers(0, 2, 30)
    greys[y == 1, 10:22, 10:22] += 0.5  # malignant: a bright central blob
    render = lambda g: np.repeat(g[..., None], 3, -1).astype(np.float32)
    rgb = np.stack([render(g) for g in greys])
    head = _fit_head(bb, rgb, y, Pipeline([("scaler", StandardScaler()), ("lr", LogisticRegression(C=1.0, max_iter=1000))]))
    idx = np.flatnonzero(y == 1)[:3]
    ex = explain_rois(bb, head, rgb[idx])
    res = deletion_check(bb, head, greys[idx], ex, ids=[f"r{i}" for i in idx], render=render, steps=8, seeds=3, fill="mean")
    assert res["protocol"]["fill"] == "mean" and len(res["fractions"]) == 9
    for p in res["per_image"]:
        assert p["curve_salient"][0] == 0.0 and p["curve_random"][0] == 0.0
        # deleting everything gives the same image whatever the order
        assert p["curve_salient"][-1] == pytest.approx(p["curve_random"][-1], abs=1e-6)
        assert p["score"] > 0
    agg = res["aggregate"]
    assert agg["n"] == 3 and agg["mean_auc_drop_salient"] > agg["mean_auc_drop_random"]
    assert agg["fraction_salient_better"] == 1.0
    # a deliberately wrong map (inverted) deletes worse than random
    inv = [1.0 - e.cam for e in ex]
    bad = deletion_check(bb, head, greys[idx], inv, render=render, steps=8, seeds=3, fill="mean", grid=(8, 8))
    assert bad["aggregate"]["mean_auc_drop_salient"] < bad["aggregate"]["mean_auc_drop_random"]


def test_fill_images():
    g = np.random.default_rng(0).uniform(size=(64, 64)).astype(np.float32)
    assert fill_image(g, "blur").std() < 0.1 * g.std() and abs(fill_image(g, "blur").mean() - g.mean()) < 0.02
    assert np.all(fill_image(g, "zero") == 0)
    assert np.allclose(fill_image(g, "mean"), g.mean())
    with pytest.raises(ValueError, match="fill"):
        fill_image(g, "noise")


def test_select_gallery_groups_and_confidence_order():
    from mammocadx.explain.gallery import select_gallery

    labels = [1, 1, 0, 0, 1, 0, None, 1]
    scores = [2.0, 0.5, 1.5, -3.0, -0.2, -0.1, 9.0, -2.5]
    g = select_gallery(labels, scores, threshold=0.0, per_group=2)
    assert g == {"TP": [0, 1], "FP": [2], "FN": [7, 4], "TN": [3, 5]}
    assert select_gallery(labels, scores, threshold=1.0, per_group=1) == {"TP": [0], "FP": [2], "FN": [7], "TN": [3]}


def test_saved_files_have_ordinary_permissions(tmp_path):
    import os
    import stat

    e = _fake_explanation()
    grey = np.zeros((64, 64), np.float32)
    old = os.umask(0o022)
    try:
        files = save_explanation(tmp_path, "p", e, grey, np.zeros((64, 64, 3), np.float32))
    finally:
        os.umask(old)
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o644 for f in files)
