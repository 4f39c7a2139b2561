"""Grad-CAM on the synthetic cohort (true lesion masks) and on a model whose backbone is missing."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest_gradcam import imagenet_backbone
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from mammocadx.datasets.records import Roi
from mammocadx.errors import BackboneError
from mammocadx.explain.gradcam import explain_rois
from mammocadx.explain.placement import map_to_roi
from mammocadx.io.images import to_uint8
from mammocadx.preprocess.pseudocolor import pseudocolor
from mammocadx.preprocess.roi import RoiConfig, crop_square, roi_square

log = logging.getLogger(__name__)


def synthetic_rois(n: int, size: int, roi_size: int, seed0: int = 1000):
    """``n`` synthetic lesions (alternating benign/malignant, both lateralities and views): grey ROIs, ROI masks, labels."""
    from mammocadx.datasets.synthetic import generate_case

    greys, masks, labels = [], [], []
    for i in range(n):
        case = generate_case(seed0 + i, i % 2, "LR"[(i // 2) % 2], ("CC", "MLO")[(i // 4) % 2], size=size)
        pixels = case.image.astype(np.float32) / float(np.iinfo(case.image.dtype).max)
        crop = roi_square(Roi(box=case.box), pixels.shape, RoiConfig(size=roi_size))
        greys.append(crop_square(pixels, *crop, roi_size))
        masks.append(map_to_roi(case.lesion_mask, crop, roi_size) > 0.5)
        labels.append(case.label)
    return np.stack(greys), np.stack(masks), np.array(labels)


def localisation_study(bb, n: int = 48, n_test: int = 12, size: int = 384) -> dict:
    """Fit a small head on ``n - n_test`` synthetic ROIs, explain the rest, measure the map mass inside the true mask.

    Protocol (fixed before looking at the numbers): sine pseudocolour; head = z-score -> PCA(20) -> linear SVC
    (C=0.01); map = Grad-CAM of the decided class (``Explanation.decision_cam``); "inside" = map mass in the
    lesion mask / total map mass; a uniform map gets the mask's area fraction.
    """
    torch.set_num_threads(2)
    greys, masks, y = synthetic_rois(n, size, bb.input_size)
    rgb = pseudocolor(to_uint8(greys), "sine")
    with torch.no_grad():
        feats = np.concatenate([bb.features(bb.preprocess(rgb[i : i + 16])).numpy() for i in range(0, n, 16)])
    tr, te = np.arange(n - n_test), np.arange(n - n_test, n)
    head = Pipeline([("scaler", StandardScaler()), ("pca", PCA(n_components=20, svd_solver="full")),
                     ("svc", SVC(kernel="linear", C=0.01))]).fit(feats[tr], y[tr])
    ex = explain_rois(bb, head, rgb[te])
    maps = [e.decision_cam() for e in ex]
    inside = np.array([(m * k).sum() / max(m.sum(), 1e-12) for m, k in zip(maps, masks[te])])
    area = masks[te].mean(axis=(1, 2))
    acc = float(np.mean([(e.score > 0) == bool(t) for e, t in zip(ex, y[te])]))
    return {"inside": inside, "area": area, "accuracy": acc, "labels": y[te], "explanations": ex,
            "greys": greys[te], "head": head}


@pytest.fixture(scope="module")
def study():
    bb = imagenet_backbone()
    if bb is None:
        pytest.skip("ImageNet weights of tf_efficientnet_lite0 not installed")
    return bb, localisation_study(bb)


@pytest.mark.slow
def test_heatmap_mass_inside_true_lesion_exceeds_uniform(study):
    _, r = study
    log.warning("synthetic localisation: inside %.3f vs uniform %.3f (per ROI %s vs %s), head accuracy %.2f",
                r["inside"].mean(), r["area"].mean(), r["inside"].round(2), r["area"].round(2), r["accuracy"])
    assert r["accuracy"] >= 0.75  # the head learned the task, so its map is worth checking
    assert r["inside"].mean() > r["area"].mean()


@pytest.mark.slow
def test_deletion_salient_beats_random_on_synthetic(study):
    """Deleting the decided class's evidence first moves the score more than random maps (all 12 test ROIs)."""
    from mammocadx.explain.deletion import deletion_check

    bb, r = study
    res = deletion_check(bb, r["head"], r["greys"], r["explanations"], steps=8, seeds=2, fill="blur")
    agg = res["aggregate"]
    log.warning("synthetic deletion: %s", agg)
    assert agg["mean_auc_drop_salient"] > agg["mean_auc_drop_random"]
    assert agg["fraction_salient_better"] > 0.5


def test_explaining_a_model_whose_backbone_is_missing_names_it(tmp_path):
    from sklearn.linear_model import LogisticRegression

    from mammocadx.explain.api import explain_lesion, model_backbone
    from mammocadx.model.cadx import CADx, CADxConfig

    head = LogisticRegression().fit(np.random.default_rng(0).normal(size=(10, 4)), np.arange(10) % 2)
    cadx = CADx(CADxConfig(backbone="no_such_backbone_net"))
    cadx.head_ = head
    with pytest.raises(BackboneError, match="no_such_backbone_net"):
        model_backbone(cadx)
    missing = tmp_path / "nasnet_weights.pth"
    cadx = CADx(CADxConfig(backbone="nasnetalarge", weights=str(missing)))
    cadx.head_ = head
    with pytest.raises(BackboneError) as info:
        explain_lesion(cadx, tmp_path / "image.png", Roi(circle=(10, 10, 5)))
    assert "nasnet_weights.pth" in str(info.value)


@pytest.mark.slow
def test_explain_prediction_of_a_fitted_cadx_writes_figures(tmp_path):
    """End to end on the synthetic cohort: CADx fitted, one held-out lesion explained, files named from its id."""
    import json

    from mammocadx.datasets.synthetic import (
        make_synthetic_cohort,
        read_synthetic_manifest,
    )
    from mammocadx.explain.api import explain_prediction
    from mammocadx.model.cadx import CADx

    if imagenet_backbone() is None:
        pytest.skip("ImageNet weights of tf_efficientnet_lite0 not installed")
    torch.set_num_threads(2)
    records = read_synthetic_manifest(make_synthetic_cohort(tmp_path / "syn", n_patients=8, size=256))
    train, held = records[:-1], records[-1]
    cadx = CADx.paper(n_components=8).fit(train)
    files = explain_prediction(cadx, held.image_path, held.roi, tmp_path / "out", sample_id=held.sample_id)
    assert [f.suffix for f in files] == [".png", ".png", ".json"] and all(f.stat().st_size > 0 for f in files)
    meta = json.loads(files[-1].read_text())
    assert meta["sample_id"] == held.sample_id and meta["label"] in ("benign", "malignant")
    # the explanation's score (fp32 CNN) agrees with the prediction's (extractor fast path)
    assert meta["score"] == pytest.approx(meta["prediction_score"], abs=0.05 * max(1.0, abs(meta["prediction_score"])))
    # records-level helpers used by the evaluation report
    from mammocadx.explain.api import deletion_for_records
    from mammocadx.explain.gallery import write_gallery

    res = deletion_for_records(cadx, [held], steps=2, seeds=1, fill="mean")
    assert res["aggregate"]["n"] == 1 and res["per_image"][0]["label"] == held.label_name
    assert res["protocol"]["pseudocolor"] == "sine" and res["skipped"] == []
    entries = write_gallery(cadx, records[-3:], tmp_path / "gallery", per_group=1)
    assert 1 <= len(entries) <= 3 and {e["group"] for e in entries} <= {"TP", "FP", "FN", "TN"}
    for e in entries:
        assert all(f.exists() and f.name.startswith(e["group"] + "_") for f in e["files"])
