"""Table 4 rows name their protocol; the HTML report shows the numbers; modes registry."""
from __future__ import annotations

import re

import numpy as np
import pytest

from mammocadx.evaluate.figures import plot_forest
from mammocadx.evaluate.html_report import write_html_report
from mammocadx.evaluate.table4 import our_row, published_rows, table4, to_markdown, write_table4


def test_published_rows_have_dataset_and_protocol():
    rows = published_rows()
    assert len(rows) >= 10
    for r in rows:
        assert r["method"] and r["dataset"] and r["protocol"] and r["source"]
    petrini = {r["protocol"]: r["auc"] for r in rows if r["method"].startswith("Petrini")}
    assert petrini == {"official split": 0.848, "k-fold CV (k=5)": 0.934}
    paper = [r for r in rows if "proposed" in r["method"] and r["dataset"].startswith("CBIS")]
    assert {r["auc"] for r in paper} == {0.94, 0.97}
    ragab = next(r for r in rows if r["method"].startswith("Ragab"))
    assert (ragab["accuracy"], ragab["f1"], ragab["auc"]) == (0.872, 0.871, 0.94)


def test_table4_puts_ours_first_and_refuses_rows_without_protocol(tmp_path):
    ours = our_row("mammocadx, paper mode", "mini-MIAS (119 lesions)", "patient-grouped 5-fold CV x 5",
                   {"auc": 0.58, "accuracy": 0.6}, {"auc": (0.49, 0.67)})
    rows = table4([ours])
    assert rows[0]["ours"] and rows[0]["auc_ci"] == [0.49, 0.67]
    md = to_markdown(rows)
    assert "0.580 [0.490, 0.670]" in md and "official split" in md and "N/A" in md
    paths = write_table4(rows, tmp_path)
    assert paths["csv"].read_text().count("\n") == len(rows) + 1
    with pytest.raises(ValueError):
        table4([{"method": "x", "dataset": "y", "protocol": ""}], include_published=False)


def test_html_report_contains_metrics_and_is_self_contained(tmp_path):
    png = plot_forest([{"label": "a", "auc_mean": 0.7, "auc_ci": [0.6, 0.8]}], tmp_path / "f.png")
    summary = {m: {"mean": v, "sd": 0.012, "min": v - 0.02, "max": v + 0.02}
               for m, v in zip(("auc", "accuracy", "sensitivity", "specificity", "precision", "f1"),
                               (0.6789, 0.61, 0.55, 0.66, 0.52, 0.53))}
    results = {
        "dataset": "mias",
        "protocol": {"name": "patient-grouped stratified k-fold", "folds": 5, "repeats": 5, "seed": 0,
                     "n_lesions": 119, "n_malignant": 51, "n_patients": 111, "grouping": "patient"},
        "modes": {"best": {"summary": summary, "ci": {"auc": [0.5876, 0.7712]}, "roc_png": "f.png",
                           "folds": [{"pca_components": 17, "threshold": 0.1}]}},
        "table4": table4([our_row("mammocadx best", "mini-MIAS", "patient-grouped 5-fold CV", {"auc": 0.6789})]),
        "ablation": [{"factor": "baseline", "setting": "paper mode", "label": "mode=paper", "baseline": True,
                      "auc_mean": 0.5812, "auc_sd": 0.011, "auc_ci": [0.49, 0.67]}],
        "command": "mammocadx compare --dataset mias --modes paper,best",
        "versions": {"mammocadx": "0.1.0", "scikit-learn": "1.9.1"},
        "seed": 0,
    }
    out = write_html_report(tmp_path, results, gradcam=[(png, "lesion mdb001 <B>")])
    text = out.read_text()
    for needle in ("0.679", "[0.588, 0.771]", "0.581", "Petrini", "official split", "mammocadx compare --dataset mias",
                   "scikit-learn 1.9.1", "Seed: 0", "119 lesions", "lesion mdb001 &lt;B&gt;", "17"):
        assert needle in text, needle
    assert text.count("data:image/png;base64,") == 2  # the ROC and the gallery image, embedded
    assert not re.search(r"(src|href)=['\"]https?://", text)  # nothing from the internet
