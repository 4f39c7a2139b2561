"""Fixtures of the command-line tests of issue 14: a small synthetic cohort and a model trained on it."""
from __future__ import annotations

from pathlib import Path

import pytest

from mammocadx.cli import main
from mammocadx.datasets.synthetic import make_synthetic_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """15 patients, 30 lesions, 384 px: seconds to generate."""
    d = tmp_path_factory.mktemp("cohort")
    make_synthetic_cohort(d, n_patients=15, seed=3, size=384)
    return d


@pytest.fixture(scope="module")
def model(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A paper-mode model folder fitted on :func:`cohort` (5 PCA components)."""
    out = tmp_path_factory.mktemp("m") / "model"
    assert main(["-q", "train", "--mode", "paper", "--cv", "0", "--dataset", "synthetic", "--data", str(cohort), "--n-components", "5",
                 "--model-out", str(out)]) == 0
    return out
