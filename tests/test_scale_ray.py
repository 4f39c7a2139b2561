"""Issue 18: the Ray engine gives the local engine's answers, survives a killed worker, resumes, reports bad files.

A real local Ray runs here (skipped where Ray is not installed); the simulated
multi-node cluster is in ``test_scale_ray_cluster.py``.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from conftest_ray import cohort_records, ray_cohort, ray_local  # noqa: F401  (fixtures)

from mammocadx.errors import EngineError
from mammocadx.features.featurizer import LesionFeaturizer
from mammocadx.scale.engines import create_engine, list_engines
from mammocadx.scale.ray_engine import RayEngine


def _featurizer(cache: Path | None, **kw: object) -> LesionFeaturizer:
    return LesionFeaturizer(cache_dir=str(cache) if cache is not None else False, **kw)


def _ray_processes(title: str) -> list[int]:
    """PIDs of this machine's Ray worker processes whose title starts with ``title`` (Linux /proc)."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith(title):
                pids.append(int(p.name))
    return pids


@pytest.fixture(scope="module")
def local_features(ray_cohort: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    """The local engine's features of the cohort with one broken image (its own empty cache)."""
    recs = cohort_records(ray_cohort, tmp_path_factory.getbasetemp() / "broken")
    f = _featurizer(tmp_path_factory.mktemp("cache-local"))
    return recs, f.featurize(recs)


def test_registry_knows_local_and_ray() -> None:
    assert list_engines()[:2] == ["local", "ray"]
    assert create_engine("local") is None
    with pytest.raises(Exception, match="--address: only with --engine ray"):
        create_engine("local", address="auto")
    assert isinstance(create_engine("ray", workers=2), RayEngine)
    with pytest.raises(EngineError, match="--workers must be >= 1"):
        RayEngine(workers=0)


def test_same_features_rows_and_skipped_as_local(ray_local, local_features, tmp_path: Path) -> None:  # noqa: F811
    recs, ref = local_features
    f = _featurizer(tmp_path / "cache")
    engine = RayEngine(workers=2, batch_size=4)
    f.engine = engine.start()
    fs = f.featurize(recs)
    assert [r.sample_id for r in fs.records] == [r.sample_id for r in ref.records]
    assert np.array_equal(fs.X, ref.X)  # bit-identical (1 engine thread in the actor, 2 locally)
    # the broken image is reported per lesion, with the local engine's reason
    assert len(fs.skipped) == len(ref.skipped) == 1
    assert [(r.sample_id, why) for r, why in fs.skipped] == [(r.sample_id, why) for r, why in ref.skipped]
    assert "features" in fs.skipped[0][1] or "image" in fs.skipped[0][1]
    run = engine.last_run
    assert run["rows"] == len(recs) and run["errors"] == 1 and run["duplicates_dropped"] == 0
    assert run["computed"] == len(recs) - 1 and run["from_cache"] == 0
    # a second run finds every vector in the cache by the lesion's source: nothing decoded, same values
    again = f.featurize(recs)
    assert engine.last_run["from_cache"] == len(recs) - 1 and engine.last_run["computed"] == 0
    assert np.array_equal(again.X, ref.X)


def test_cache_is_shared_with_the_local_engine(ray_local, ray_cohort: Path, tmp_path: Path) -> None:  # noqa: F811
    recs = cohort_records(ray_cohort)[:12]
    local = _featurizer(tmp_path / "cache").featurize(recs)  # the local engine fills the cache
    f = _featurizer(tmp_path / "cache")
    f.engine = engine = RayEngine(workers=2).start()
    fs = f.featurize(recs)
    assert engine.last_run["from_cache"] == 12 and engine.last_run["computed"] == 0
    assert np.array_equal(fs.X, local.X)


def test_grey_rois_match_local(ray_local, ray_cohort: Path) -> None:  # noqa: F811
    recs = cohort_records(ray_cohort)[:10]
    ref = _featurizer(None, roi_size=96).rois(recs)
    f = _featurizer(None, roi_size=96)
    f.engine = RayEngine(workers=2).start()
    got = f.rois(recs)
    assert got.X.shape == (10, 96, 96) and np.array_equal(got.X, ref.X)


def test_a_killed_worker_loses_and_duplicates_nothing(ray_local, local_features, tmp_path: Path) -> None:  # noqa: F811
    recs, ref = local_features
    killed: list[int] = []

    def kill_once(done: int, total: int) -> None:
        if killed:
            return
        victims = _ray_processes("ray::MapWorker(MapBatches(FeatureActor))")
        assert victims, "no feature actor process found"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        killed.extend(victims)

    f = _featurizer(tmp_path / "cache")
    engine = RayEngine(workers=2, batch_size=2, on_progress=kill_once)
    f.engine = engine.start()
    fs = f.featurize(recs)
    assert killed and engine.last_run["rows"] == len(recs)
    assert [r.sample_id for r in fs.records] == [r.sample_id for r in ref.records]
    assert np.array_equal(fs.X, ref.X)
    assert len(fs.skipped) == 1


def test_interrupted_job_resumes_from_what_is_done(ray_local, local_features, tmp_path: Path) -> None:  # noqa: F811
    recs, ref = local_features

    class Stop(Exception):
        pass

    delivered: list[int] = []

    def stop_after_first(done: int, total: int) -> None:
        delivered.append(done)
        raise Stop

    f = _featurizer(tmp_path / "cache")
    f.engine = RayEngine(workers=1, batch_size=2, on_progress=stop_after_first).start()
    with pytest.raises(Stop):
        f.featurize(recs)
    assert 0 < delivered[0] < len(recs)
    f.engine = engine = RayEngine(workers=2, batch_size=4).start()
    fs = f.featurize(recs)
    # what the first run computed (at least what reached the driver) is found, not decoded again
    assert engine.last_run["from_cache"] >= delivered[0] - 1  # minus the broken image's error row, if delivered
    assert engine.last_run["from_cache"] + engine.last_run["computed"] + engine.last_run["errors"] == len(recs)
    assert np.array_equal(fs.X, ref.X)


def test_nothing_readable_is_an_error_not_an_empty_table(ray_local, tmp_path: Path) -> None:  # noqa: F811
    from mammocadx.errors import ModelError
    from mammocadx.records import LesionRecord, Roi

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    recs = [LesionRecord(sample_id="s1", image_id="i1", image_path=bad, patient_id="p", label=0,
                         roi=Roi(circle=(10, 10, 5)))]
    f = _featurizer(None)
    f.engine = RayEngine(workers=1).start()
    with pytest.raises(ModelError, match="no lesion could be read"):
        f.featurize(recs)
