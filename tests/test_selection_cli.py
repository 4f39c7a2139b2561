"""End to end: ``mammocadx compare`` and ``mammocadx ablate`` on a small synthetic cohort (slow: runs the CNN)."""
from __future__ import annotations

import json

import pytest

from mammocadx.cli import main


@pytest.mark.slow
def test_compare_and_ablate_on_synthetic(tmp_path):
    from mammocadx.datasets.synthetic import load_synthetic

    data = tmp_path / "cohort"
    load_synthetic(data, n_patients=24, seed=0)
    out = tmp_path / "cmp"
    rc = main(["-q", "compare", "--dataset", "synthetic", "--data", str(data), "--modes", "paper,best",
               "--folds", "3", "--repeats", "1", "--n-boot", "200", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["modes"]) == {"paper", "best"}
    for m in res["modes"].values():
        lo, hi = m["ci"]["auc"]
        assert lo <= m["summary"]["auc"]["mean"] <= hi
    html = (out / "report.html").read_text()
    assert f"{res['modes']['best']['summary']['auc']['mean']:.3f}" in html and "Petrini" in html
    rc = main(["-q", "ablate", "--dataset", "synthetic", "--data", str(data), "--factors", "pseudocolor,head",
               "--folds", "3", "--repeats", "1", "--n-boot", "200", "--out", str(tmp_path / "abl")])
    assert rc == 0
    rows = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert [r["factor"] for r in rows] == ["baseline", "pseudocolor", "head", "head"]
    assert len({r["n_lesions"] for r in rows}) == 1  # the same lesions (and folds) for every row
