"""Fixtures of the Ray engine tests (issue 18): skip cleanly without Ray; one local Ray per module."""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mammocadx.datasets import load_dataset
from mammocadx.datasets.synthetic import make_synthetic_cohort
from mammocadx.records import LesionRecord

pytest.importorskip("ray.data", reason="Ray is not installed (pip install 'mammocadx[ray]')")


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A local Ray with 3 logical CPUs (2 decode workers + 1 actor), shut down after the module."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """15 patients, 30 lesions on 30 images of 384 px, plus one image overwritten with garbage."""
    d = tmp_path_factory.mktemp("raycohort") / "cohort"
    make_synthetic_cohort(d, n_patients=15, seed=3, size=384)
    return d


def cohort_records(cohort: Path, broken: Path | None = None) -> list[LesionRecord]:
    """The cohort's lesion records; with ``broken``, a copy whose first image is not an image any more."""
    if broken is None:
        return load_dataset("synthetic", str(cohort))
    if not broken.exists():
        shutil.copytree(cohort, broken)
        recs = load_dataset("synthetic", str(broken))
        Path(recs[0].image_path).write_bytes(b"this is not a PNG" * 10)
    return load_dataset("synthetic", str(broken))
