"""The Ray engine: the featurizer's stages, and batch scoring, as a Ray Data pipeline.

::

    lesion records, grouped by image (one item per image, on the driver)
      -> decode_image   Ray tasks, 1 CPU each, in parallel: feature-cache lookup by source,
                        read + prepare (segment, CLAHE) + cut the ROIs; one image in memory per task
      -> FeatureActor   an actor pool: each actor builds the ONNX engine once, with as many
         / ScoreActor   threads as it has CPUs (Ray sets OMP_NUM_THREADS to its share), and
                        writes new vectors to the feature cache
      -> the driver     collects rows by lesion index: every lesion exactly once, or an error

Ray Data streams the blocks (bounded memory, back-pressure), retries a task or
restarts an actor whose worker died (its block is recomputed, never counted
twice: the driver keys rows by lesion index and checks that each arrives once),
and runs unchanged on a laptop or a cluster. The feature cache is the
checkpoint: a job stopped half-way and started again finds what it computed by
each lesion's source and decodes only the rest, whichever engine computed it.

Why these choices, as the ONNX Runtime and Ray reports warn: an actor's engine
uses exactly its CPU share (oversubscribed threads made Ray slower than one
process), and decoding, the expensive part for full-field images, runs in
plain tasks that Ray can spread over every CPU of the cluster.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mammocadx.errors import EngineError, ModelError
from mammocadx.features.featurizer import FeatureSet, LesionFeaturizer, RoiSet, in_record_order, none_read
from mammocadx.records import LesionRecord, Roi
from mammocadx.scale.stages import FeatureActor, ScoreActor, decode_image, lesion_item
from mammocadx.utils.system import available_cpus

log = logging.getLogger(__name__)

#: At most this many input blocks (one image each up to it): small blocks keep retries cheap and memory flat.
MAX_BLOCKS = 20_000
#: Retries of a decode task whose worker died, and restarts of an actor (then the job fails loudly).
MAX_RETRIES = 3


def require_ray() -> Any:
    """The ``ray`` module, with Ray Data importable.

    Raises
    ------
    EngineError
        Ray is not installed (``pip install 'mammocadx[ray]'``).
    """
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise EngineError("the Ray engine needs Ray: pip install 'mammocadx[ray]'") from exc
    return ray


class RayEngine:
    """Runs featurization and scoring on Ray (a local Ray, or a cluster at ``address``).

    Parameters
    ----------
    address : str, optional
        ``ray://host:10001``, ``host:6379`` or ``auto`` to join an existing cluster; ``None`` starts a
        local Ray on this machine (stopped again by :meth:`stop`).
    workers : int, optional
        Decode tasks running at once (each takes 1 CPU); default: every CPU left (local Ray: this
        machine's CPUs).
    actors : int
        Feature (or scoring) actors, each loading the engine once.
    actor_cpus : float
        CPUs each actor reserves; its engine runs ``max(1, round(actor_cpus))`` threads.
    batch_size : int
        ROIs per actor call.
    on_progress : callable, optional
        Called on the driver with ``(lesions done, lesions in all)`` as results arrive.

    Attributes
    ----------
    last_run : dict
        Counts and seconds of the latest job (``rows``, ``from_cache``, ``computed``, ``errors``,
        ``duplicates_dropped``, ``seconds``).
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, actors: int = 1,
                 actor_cpus: float = 1.0, batch_size: int = 32,
                 on_progress: Callable[[int, int], None] | None = None):
        if workers is not None and workers < 1:
            raise EngineError(f"--workers must be >= 1, got {workers}")
        if actors < 1:
            raise EngineError(f"--actors must be >= 1, got {actors}")
        if actor_cpus <= 0:
            raise EngineError(f"actor CPUs must be > 0, got {actor_cpus}")
        self.address = address
        self.workers = workers
        self.actors = int(actors)
        self.actor_cpus = float(actor_cpus)
        self.batch_size = int(batch_size)
        self.on_progress = on_progress
        self.last_run: dict[str, Any] = {}
        self._owned = False

    # ----------------------------------------------------------------- lifecycle
    def __enter__(self) -> "RayEngine":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "RayEngine":
        """Start a local Ray or join the cluster at :attr:`address` (an initialised Ray is used as it is).

        Raises
        ------
        EngineError
            Ray is not installed, or the cluster cannot be reached.
        """
        ray = require_ray()
        from ray.data import DataContext
        # Ray's C++ core logs a harmless notice about Ray Data's actor arguments (ray#53727) on every job;
        # errors that matter reach us as Python exceptions. A user's own setting wins.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        if not ray.is_initialized():
            opts: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                    "logging_level": logging.ERROR}
            try:
                if self.address:
                    ray.init(address=self.address, **opts)
                else:
                    ray.init(num_cpus=self.local_cpus(), **opts)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
                raise EngineError(f"cannot start or join {where}: {exc}") from exc
            self._owned = True
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(max(logging.ERROR, logging.getLogger(name).level))
        ctx = DataContext.get_current()
        for flag in ("enable_progress_bars", "enable_operator_progress_bars", "print_on_execution_start",
                     "verbose_stats_logs"):
            if hasattr(ctx, flag):
                setattr(ctx, flag, False)
        return self

    def stop(self) -> None:
        """Shut down the Ray this engine started (never one it joined or found running)."""
        if self._owned:
            import ray

            ray.shutdown()
            self._owned = False

    def local_cpus(self) -> int:
        """Logical CPUs of a local Ray: the decode workers plus the actors' shares."""
        workers = self.workers or available_cpus()
        return int(workers + math.ceil(self.actors * self.actor_cpus))

    def describe(self) -> dict[str, Any]:
        """The engine and the cluster it ran on (for ``engine.json`` in a run folder)."""
        import ray

        out: dict[str, Any] = {"engine": self.name, "ray": ray.__version__, "address": self.address or "local",
                               "workers": self.workers, "actors": self.actors, "actor_cpus": self.actor_cpus,
                               "batch_size": self.batch_size}
        if ray.is_initialized():
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            out.update(nodes=len(nodes), cluster_cpus=float(ray.cluster_resources().get("CPU", 0)))
        out["last_run"] = self.last_run
        return out

    # ----------------------------------------------------------------- the pipeline
    def _items(self, lesions: Sequence[tuple[Path, Roi, str | None, str | None]]) -> list[dict[str, Any]]:
        """One item per image (first-appearance order), holding its lesions with their indices."""
        by_image: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for i, (path, roi, view, laterality) in enumerate(lesions):
            by_image[str(path)].append(lesion_item(i, roi, view, laterality))
        return [{"image": path, "lesions": json.dumps(les)} for path, les in by_image.items()]

    def _dataset(self, items: list[dict[str, Any]], settings: dict[str, Any], want: str,
                 model_dir: str | None = None, facts: bool = False) -> Any:
        import ray.data

        if not items:
            raise EngineError("nothing to run: no lesions")
        settings_json = json.dumps(settings, sort_keys=True)
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS))
        with warnings.catch_warnings():
            # Bounded retries (Ray Data's default is to retry without end, so a file that kills its decoder every
            # time would never let the job finish); the keyword is deprecated in Ray 2.60 with no named
            # replacement yet, hence the pin below 2.64 in the ``ray`` extra.
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*ray_remote_args.*")
            ds = ds.flat_map(decode_image, fn_kwargs={"settings_json": settings_json, "want": want, "facts": facts},
                             num_cpus=1, compute=ray.data.TaskPoolStrategy(size=self.workers),
                             max_retries=MAX_RETRIES)
            actor_opts: dict[str, Any] = {"batch_size": self.batch_size, "batch_format": "numpy",
                                          "compute": ray.data.ActorPoolStrategy(size=self.actors),
                                          "num_cpus": self.actor_cpus, "max_restarts": MAX_RETRIES,
                                          "max_task_retries": MAX_RETRIES}
            if want == "features":
                ds = ds.map_batches(FeatureActor, fn_constructor_kwargs={"settings_json": settings_json},
                                    **actor_opts)
            elif want == "score":
                ds = ds.map_batches(ScoreActor, fn_constructor_kwargs={"model_dir": str(model_dir)}, **actor_opts)
        return ds

    def _collect(self, ds: Any, n: int, columns: Sequence[str]) -> dict[int, dict[str, Any]]:
        """Rows by lesion index; each index exactly once (a retried block's rows are dropped if seen)."""
        from mammocadx.utils.progress import progress

        t0 = time.perf_counter()
        got: dict[int, dict[str, Any]] = {}
        duplicates = 0
        bar = progress(total=n, desc="Ray", unit="lesion")
        try:
            for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
                for k, i in enumerate(batch["i"].tolist()):
                    if i in got:
                        duplicates += 1
                        continue
                    got[i] = {c: batch[c][k] for c in columns}
                bar.update(len(batch["i"]))
                if self.on_progress is not None:
                    self.on_progress(len(got), n)
        finally:
            bar.close()
        missing = sorted(set(range(n)) - set(got))
        if missing:
            raise EngineError(f"the Ray job returned no result for {len(missing)} of {n} lesions "
                              f"(first: index {missing[0]}); nothing was written")
        if duplicates:
            log.warning("Ray: %d rows arrived twice (retried blocks) and were dropped", duplicates)
        status = [str(r["status"]) for r in got.values()]
        self.last_run = {"rows": n, "from_cache": status.count("cached"),
                         "computed": status.count("computed") + status.count("scored") + status.count("roi"),
                         "errors": status.count("error"), "duplicates_dropped": duplicates,
                         "seconds": round(time.perf_counter() - t0, 3)}
        log.info("Ray: %s", self.last_run)
        return got

    @staticmethod
    def _lesions(records: Sequence[LesionRecord]) -> list[tuple[Path, Roi, str | None, str | None]]:
        return [(Path(r.image_path), r.roi, r.view, r.laterality) for r in records]

    # ----------------------------------------------------------------- FeatureEngine
    def featurize(self, featurizer: LesionFeaturizer, records: Sequence[LesionRecord]) -> FeatureSet:
        """As :meth:`LesionFeaturizer.featurize`, on Ray: same rows, order, vectors and skipped list."""
        featurizer.extractor.prepare()  # the ONNX export made once, here, not by every actor
        items = self._items(self._lesions(records))
        got = self._collect(self._dataset(items, featurizer.settings(), "features"), len(records),
                            ("status", "feature", "reason"))
        return _feature_set(got, records, lambda r: np.asarray(r["feature"], np.float32))

    def rois(self, featurizer: LesionFeaturizer, records: Sequence[LesionRecord]) -> RoiSet:
        """As :meth:`LesionFeaturizer.rois`, on Ray: the grey ROIs, cut in parallel tasks."""
        items = self._items(self._lesions(records))
        got = self._collect(self._dataset(items, featurizer.settings(), "rois"), len(records),
                            ("status", "roi", "reason"))
        fs = _feature_set(got, records, lambda r: np.asarray(r["roi"], np.float32))
        return RoiSet(X=fs.X, records=fs.records, skipped=fs.skipped)

    # ----------------------------------------------------------------- scoring
    def score(self, cadx: Any, model_dir: str | Path, jobs: Sequence[tuple[Path, Roi]]) -> list[dict[str, Any]]:
        """Score ``(image, roi)`` jobs with the model saved at ``model_dir`` (``cadx``: that model, loaded here).

        Returns one dict per job, in job order: ``status`` (``"ok"`` or ``"error"``), ``score``, ``label``,
        ``probability`` (None without a calibrator), ``answer``, ``ood``, ``ood_reasons``, ``reason``.
        """
        items = self._items([(Path(p), roi, None, None) for p, roi in jobs])
        ds = self._dataset(items, cadx.featurizer.settings(), "score", model_dir=str(Path(model_dir).resolve()),
                           facts=cadx.ood_ is not None)
        got = self._collect(ds, len(jobs), ("status", "reason", "score", "label", "probability", "answer", "ood",
                                            "ood_reasons"))
        out = []
        for i in range(len(jobs)):
            r = got[i]
            if str(r["status"]) != "scored":
                out.append({"status": "error", "reason": str(r["reason"])})
                continue
            p = float(r["probability"])
            out.append({"status": "ok", "score": float(r["score"]), "label": str(r["label"]),
                        "probability": None if math.isnan(p) else p, "answer": str(r["answer"]),
                        "ood": str(r["ood"]), "ood_reasons": str(r["ood_reasons"]), "reason": ""})
        return out


def _feature_set(got: dict[int, dict[str, Any]], records: Sequence[LesionRecord],
                 value: Callable[[dict[str, Any]], np.ndarray]) -> FeatureSet:
    """Rows collected by index -> the :class:`FeatureSet` the local engine returns (record order)."""
    kept = [i for i in range(len(records)) if str(got[i]["status"]) != "error"]
    skipped = in_record_order([(records[i], str(got[i]["reason"])) for i in range(len(records))
                               if str(got[i]["status"]) == "error"], records)
    if not kept:
        raise ModelError(none_read(skipped))
    X = np.stack([value(got[i]) for i in kept]).astype(np.float32)
    return FeatureSet(X=X, records=[records[i] for i in kept], skipped=skipped)
