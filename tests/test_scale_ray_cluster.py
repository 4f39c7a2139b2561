"""Issue 18: the Ray engine joins a multi-node cluster (simulated on one machine with Ray's own test utilities).

The head node has no CPU, so every decode task and actor runs on the two worker
nodes (separate raylets and object stores); the engine joins by address, as on
a real cluster, and must give the local engine's features.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest_ray import cohort_records, ray_cohort  # noqa: F401  (fixtures)

from mammocadx.features.featurizer import LesionFeaturizer
from mammocadx.scale.ray_engine import RayEngine


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    c.add_node(num_cpus=2)
    c.add_node(num_cpus=2)
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


def test_three_node_cluster_gives_the_local_features(cluster, ray_cohort: Path, tmp_path: Path) -> None:  # noqa: F811
    recs = cohort_records(ray_cohort)
    ref = LesionFeaturizer(cache_dir=str(tmp_path / "local")).featurize(recs)
    f = LesionFeaturizer(cache_dir=str(tmp_path / "shared"))  # the cache on storage every node sees
    engine = RayEngine(address=cluster.address, workers=3, actors=1, batch_size=4)
    f.engine = engine.start()
    try:
        info = engine.describe()
        assert info["nodes"] == 3 and info["cluster_cpus"] == 4.0  # the head holds no CPU: work runs on workers
        fs = f.featurize(recs)
    finally:
        engine.stop()
    assert [r.sample_id for r in fs.records] == [r.sample_id for r in ref.records]
    assert np.array_equal(fs.X, ref.X)
    assert engine.last_run["computed"] == len(recs) and engine.last_run["duplicates_dropped"] == 0
