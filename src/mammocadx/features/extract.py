"""Batched deep-feature extraction on a plain CPU, with an on-disk cache.

:class:`FeatureExtractor` turns pseudocolour ROIs ``(N, S, S, 3)`` into the
backbone's global-average-pooled features ``(N, D)``. It picks the fastest
*exact* way this machine offers ("engine"):

- ``torch`` + ``bf16`` (only on request, ``precision="bf16"``): bfloat16
  autocast on channels-last tensors, where the CPU computes bf16 natively (AMX
  or AVX-512-BF16); elsewhere bf16 is emulated and slower than fp32 (measured
  ~0.3 img/s on an AVX2-only EPYC), so the request falls back to fp32 with a
  warning. ``auto`` never picks bf16: on real mini-MIAS sine ROIs its features
  reached only min cosine 0.968 (mean 0.995) to fp32, short of the 0.999 every
  ROI must reach, and a check on the first batch could miss such ROIs.
- ``onnxruntime`` fp32: the backbone exported once to ONNX (kept in the cache
  folder; SAME padding frozen and folded into the convolutions, see
  :mod:`mammocadx.features.onnx_export`) and run by ONNX Runtime, which fuses
  BN into convolutions and uses blocked layouts. Fastest fp32 path measured on
  AVX2 CPUs (4-5x eager PyTorch for Lite0 on 2 cores).
- ``torch`` fp32: a private copy of the network with BN folded into the
  convolutions (EfficientNet) in channels-last layout; the fallback when
  ONNX Runtime is absent or cannot export the model.

With ``precision="auto"`` the first batch is checked against the plain eager
fp32 network (cosine >= 0.999 on every checked ROI); a path that disagrees is
dropped for the next one (finally the eager network), and the switch is
logged. The fp32 paths agree with eager fp32 to cosine > 0.99999 on every ROI
(benchmarks/bench_features.py). An explicit ``bf16`` is checked the same way
but only warned about, never replaced.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mammocadx import __version__
from mammocadx.features.backbones import (
    DEFAULT_BACKBONE,
    Backbone,
    BackboneSpec,
    backbone_spec,
    load_backbone,
)
from mammocadx.features.cache import (
    FeatureCache,
    array_digest,
    context_digest,
    entry_key,
    write_cache_file,
)
from mammocadx.utils.system import available_cpus
from mammocadx.utils.versions import dist_version

if TYPE_CHECKING:  # torch is imported where it runs: a run served from the feature cache never loads it
    import torch

log = logging.getLogger(__name__)

#: Version of the ONNX export recipe (:mod:`mammocadx.features.onnx_export`): in export file names and cache keys.
EXPORT_VERSION = 2

Precision = Literal["auto", "fp32", "bf16"]
Engine = Literal["auto", "torch", "onnxruntime"]
PRECISIONS = ("auto", "fp32", "bf16")
ENGINES = ("auto", "torch", "onnxruntime")

#: Agreement every fast path must reach with eager fp32, per ROI (cosine similarity).
MIN_COSINE = 0.999
#: ROIs of the first batch checked against eager fp32 in auto mode.
VERIFY_ROIS = 8


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bfloat16 in hardware (AMX tiles or AVX-512-BF16)."""
    import torch

    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None)
        if fn is not None:
            try:
                if fn():
                    return True
            except RuntimeError:
                continue
    return False


def onnxruntime_available() -> bool:
    """True when ONNX Runtime (and the ``onnx`` package the exporter uses) import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``(N, D)`` arrays."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return num / np.maximum(den, 1e-30)


# --------------------------------------------------------------------------- runners

class _Runner:
    """Runs normalised NCHW float32 batches to ``(N, D)`` float32 numpy features."""

    id: str = "base"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _EagerRunner(_Runner):
    """The reference: the backbone's own network, eager fp32, NCHW."""

    id = "torch-eager-fp32"

    def __init__(self, backbone: Backbone):
        self.backbone = backbone

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.backbone.features(torch.from_numpy(np.ascontiguousarray(x))).float().numpy()


def _fold_bn(conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d) -> torch.nn.Module:
    """Fold eval-mode BN into ``conv`` (in place); returns what replaces the BN (its activation)."""
    import torch

    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    conv.weight = torch.nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1), requires_grad=False)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.bias = torch.nn.Parameter((bias - bn.running_mean) * scale + bn.bias, requires_grad=False)
    drop = getattr(bn, "drop", torch.nn.Identity())
    act = getattr(bn, "act", torch.nn.Identity())
    return torch.nn.Sequential(drop, act)


# Conv -> BN pairs of timm's EfficientNet blocks (by block class name).
_EFFNET_PAIRS = {
    "DepthwiseSeparableConv": (("conv_dw", "bn1"), ("conv_pw", "bn2")),
    "InvertedResidual": (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")),
}


def fold_batchnorm(model: torch.nn.Module) -> int:
    """Fold BatchNorm into the preceding convolutions of a timm EfficientNet, in place.

    Hand-written because torch.fx's ``fuse`` only matches plain ``BatchNorm2d``,
    not timm's ``BatchNormAct2d``. Other architectures are left unchanged.
    Returns the number of BN layers folded.
    """
    import torch

    n = 0
    with torch.no_grad():
        if hasattr(model, "conv_stem") and isinstance(getattr(model, "bn1", None), torch.nn.BatchNorm2d):
            model.bn1 = _fold_bn(model.conv_stem, model.bn1)
            n += 1
        if hasattr(model, "conv_head") and isinstance(getattr(model, "bn2", None), torch.nn.BatchNorm2d):
            model.bn2 = _fold_bn(model.conv_head, model.bn2)
            n += 1
        for block in model.modules():
            for conv_name, bn_name in _EFFNET_PAIRS.get(type(block).__name__, ()):
                conv, bn = getattr(block, conv_name, None), getattr(block, bn_name, None)
                if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                    setattr(block, bn_name, _fold_bn(conv, bn))
                    n += 1
    return n


class _TorchRunner(_Runner):
    """Private copy of the network: BN folded, channels-last, optional bf16 autocast."""

    def __init__(self, backbone: Backbone, bf16: bool):
        import torch

        self.bf16 = bf16
        self.id = _runner_id("torch", bf16)
        model = copy.deepcopy(backbone.model).eval()
        folded = fold_batchnorm(model)
        log.debug("%s: folded %d BN layers", backbone.name, folded)
        self.model = model.to(memory_format=torch.channels_last)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(x)).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self.bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    fmap = self.model.forward_features(x)
                return fmap.float().mean(dim=(2, 3)).numpy()
            return self.model.forward_features(x).mean(dim=(2, 3)).numpy()


class _OrtRunner(_Runner):
    """The pooled network exported to ONNX (once, kept in the cache folder) and run by ONNX Runtime.

    With the export on disk the runner needs neither PyTorch nor timm: ``spec``
    names the file, and ``load_backbone_fn`` is called only to export it. The
    check against eager fp32 is remembered next to the export
    (``*.verified.json``: export hash, ONNX Runtime version, CPU), so later
    processes on the same machine skip it too.
    """

    id = "onnxruntime-fp32"

    def __init__(self, spec: BackboneSpec, load_backbone_fn: Any, onnx_dir: Path | None, threads: int):
        import onnxruntime as ort

        self.id = _runner_id("onnxruntime", False)
        self.spec = spec
        self._load_backbone = load_backbone_fn
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # Idle worker threads sleep instead of spinning: on a small shared CPU, spinning threads steal
        # the cores the busy ones need (measured on 2 loaded cores: 22.7 vs 16.3 img/s at batch 32).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = onnx_dir / f"{self._tag(spec)}.onnx" if onnx_dir is not None else None
        data = self._model_bytes()
        try:
            self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT's own exception classes (Fail, InvalidProtobuf ...) share no public base
            if self.path is None:
                raise RuntimeError(f"ONNX Runtime cannot load the exported {spec.name}: {exc}") from exc
            log.warning("cached ONNX export of %s is unusable (%s): exporting again", spec.name, exc)
            data = self._model_bytes(fresh=True)
            self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        self.model_sha256 = hashlib.sha256(data).hexdigest()
        self.input_name = self.session.get_inputs()[0].name

    @staticmethod
    def _tag(spec: BackboneSpec) -> str:
        tag = (f"{spec.name}-{spec.weights_sha256[:16]}-{spec.input_size}-x{EXPORT_VERSION}"
               f"-torch{dist_version('torch')}-timm{dist_version('timm')}")
        return "".join(c if c.isalnum() or c in "-._" else "_" for c in tag)

    def _model_bytes(self, fresh: bool = False) -> bytes:
        if self.path is not None and self.path.is_file() and not fresh:
            return self.path.read_bytes()
        from mammocadx.features.onnx_export import export_pooled_onnx

        backbone = self._load_backbone()
        data = export_pooled_onnx(backbone.model, backbone.input_size, backbone.name)
        if self.path is not None:
            try:
                write_cache_file(self.path, data)
            except OSError as exc:
                log.warning("cannot keep the ONNX export in %s (%s)", self.path, exc)
        log.info("%s exported to ONNX (%.1f MB)%s", backbone.name, len(data) / 1e6,
                 f" -> {self.path}" if self.path else "")
        return data

    # -- remembered agreement with eager fp32 ------------------------------------------
    def _verification_record(self) -> dict[str, Any]:
        return {"onnx_sha256": self.model_sha256, "onnxruntime": dist_version("onnxruntime"),
                "cpu": _cpu_signature(), "min_cosine_required": MIN_COSINE}

    def previously_verified(self) -> bool:
        """True if this export was checked against eager fp32 on this machine with this ONNX Runtime."""
        if self.path is None:
            return False
        try:
            doc = json.loads(self.path.with_suffix(".verified.json").read_text())
        except (OSError, ValueError):
            return False
        want = self._verification_record()
        return isinstance(doc, dict) and all(doc.get(k) == v for k, v in want.items()) \
            and float(doc.get("min_cosine", 0.0)) >= MIN_COSINE

    def record_verification(self, min_cosine: float, n: int) -> None:
        """Remember a passed check next to the export (best effort)."""
        if self.path is None:
            return
        doc = {**self._verification_record(), "min_cosine": min_cosine, "rois": n}
        try:
            write_cache_file(self.path.with_suffix(".verified.json"), json.dumps(doc, indent=2).encode())
        except OSError as exc:
            log.debug("cannot record the verification of %s (%s)", self.path, exc)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0] \
            .astype(np.float32, copy=False)


def _cpu_signature() -> str:
    """Model name and instruction-set flags of this CPU (what decides ONNX Runtime's kernels)."""
    import platform

    text = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("model name", "flags", "Features")):
                    text += line
                if line.strip() == "":
                    break  # the first processor is enough
    except OSError:
        pass
    return hashlib.sha256(f"{platform.machine()}|{platform.processor()}|{text}".encode()).hexdigest()[:16]


def _num_threads() -> int:
    """Threads for the CNN: PyTorch's setting when PyTorch is loaded, else ``OMP_NUM_THREADS`` when set (a Ray
    worker gets its CPU share there, so its engine never oversubscribes the node), else the CPUs this process may use."""
    torch_mod = sys.modules.get("torch")
    if torch_mod is not None:
        return int(torch_mod.get_num_threads())
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        return min(int(omp), available_cpus())
    return available_cpus()


# Runners are built once per process and shared (cross-validation clones, several extractors).
_RUNNERS: dict[tuple[Any, ...], _Runner] = {}
_VERIFIED: dict[tuple[Any, ...], bool] = {}
_RLOCK = threading.Lock()


def _runner_id(kind: str, bf16: bool) -> str:
    """Name of an engine/precision, used in cache keys (known before the engine is built)."""
    if kind == "eager":
        return "torch-eager-fp32"
    if kind == "onnxruntime":
        return f"onnxruntime{dist_version('onnxruntime')}-fp32"
    return f"torch-cl-{'bf16' if bf16 else 'fp32'}"


def clear_runner_cache() -> None:
    """Forget the engines built in this process and their verification (tests, memory)."""
    with _RLOCK:
        _RUNNERS.clear()
        _VERIFIED.clear()


def _plan(precision: str, engine: str) -> list[tuple[str, bool]]:
    """Ordered (engine, bf16) candidates for a request; the eager reference is always last."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    plan: list[tuple[str, bool]] = []
    want_bf16 = precision == "bf16"
    native = want_bf16 and cpu_has_native_bf16()
    if want_bf16 and not native:
        log.warning("bf16 requested but this CPU has no native bf16 (AMX / AVX-512-BF16): using fp32")
    if want_bf16 and native:
        plan.append(("torch", True))
    if engine in ("auto", "onnxruntime"):
        if onnxruntime_available():
            plan.append(("onnxruntime", False))
        elif engine == "onnxruntime":
            log.warning("engine onnxruntime requested but onnxruntime/onnx are not installed: using torch")
    plan.append(("torch", False))
    plan.append(("eager", False))
    return plan


# --------------------------------------------------------------------------- extractor

class FeatureExtractor:
    """Global-average-pooled CNN features of RGB ROIs, batched, fast on CPU, cached on disk.

    Parameters
    ----------
    backbone : str
        timm architecture (see :func:`~mammocadx.features.backbones.load_backbone`).
    weights : str or Path, optional
        Weight file; default the backbone's packaged ImageNet weights.
    batch_size : int
        ROIs per forward pass.
    precision : {"auto", "fp32", "bf16"}
        ``auto``: the fastest fp32 engine; the first batch is checked against
        eager fp32 and a disagreeing engine is dropped. ``fp32``: the same
        without the check. ``bf16``: bf16 autocast where the CPU has native
        bf16 (else fp32); faster on AMX CPUs but not exact (see module doc).
    cache_dir : str, Path, None or False
        Feature cache folder; ``None`` = :func:`~mammocadx.features.cache.default_cache_dir`,
        ``False`` = no cache.
    progress : bool
        Show a tqdm progress bar.
    engine : {"auto", "torch", "onnxruntime"}
        Inference engine; ``auto`` takes the fastest available (see module doc).
    """

    def __init__(self, backbone: str = DEFAULT_BACKBONE, weights: str | Path | None = None, batch_size: int = 32,
                 precision: Precision = "auto", cache_dir: str | Path | None | Literal[False] = None,
                 progress: bool = True, engine: Engine = "auto"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.backbone_name = backbone
        self.weights = weights
        self.batch_size = int(batch_size)
        self.precision = precision
        self.engine = engine
        self.progress = progress
        self._plan = _plan(precision, engine)
        self.cache: FeatureCache | None = None if cache_dir is False else FeatureCache(cache_dir)
        self._backbone: Backbone | None = None
        self._spec: BackboneSpec | None = None
        self._runner: _Runner | None = None
        self._runner_key: tuple[Any, ...] | None = None

    # -- lazy parts ---------------------------------------------------------------
    @property
    def backbone(self) -> Backbone:
        """The loaded :class:`Backbone` (loaded on first use)."""
        if self._backbone is None:
            self._backbone = load_backbone(self.backbone_name, self.weights)
        return self._backbone

    @property
    def spec(self) -> BackboneSpec:
        """Input size, normalisation and weights hash, without building the network (packaged backbones)."""
        if self._spec is None:
            self._spec = self._backbone or backbone_spec(self.backbone_name, self.weights)
        return self._spec

    @property
    def input_size(self) -> int:
        """Side of the square RGB input."""
        return self.spec.input_size

    @property
    def feature_dim(self) -> int:
        """Length of one feature vector."""
        return self.spec.feature_dim

    @property
    def weights_sha256(self) -> str:
        """SHA-256 of the weight file in use."""
        return self.spec.weights_sha256

    @property
    def runner_id(self) -> str:
        """The engine/precision that computes (or will compute) the features, e.g. ``onnxruntime1.32.0-fp32``.

        Before the first computation this is the planned engine; an engine that
        fails to build or disagrees with eager fp32 is replaced by the next one.
        """
        if self._runner is not None:
            return self._runner.id
        return _runner_id(*self._plan[0])

    def describe(self) -> dict[str, Any]:
        """JSON-friendly record of how features are made (for run records and model cards)."""
        out = dict(self.spec.describe())
        out.update(precision=self.precision, engine=self.engine, runner=self.runner_id, batch_size=self.batch_size,
                   cache=str(self.cache.root) if self.cache else None)
        return out

    def _runner_cache_key(self, kind: str, bf16: bool) -> tuple[Any, ...]:
        b = self.spec
        return (b.name, b.weights_sha256, kind, bf16, _num_threads())

    def _build(self, kind: str, bf16: bool) -> _Runner:
        if kind == "eager":
            return _EagerRunner(self.backbone)
        if kind == "torch":
            return _TorchRunner(self.backbone, bf16)
        return _OrtRunner(self.spec, lambda: self.backbone, self.cache.root / "onnx" if self.cache else None,
                          _num_threads())

    def _get_runner(self, skip: int = 0) -> _Runner:
        if self._runner is not None and skip == 0:
            return self._runner
        with _RLOCK:
            for kind, bf16 in self._plan[skip:]:
                key = self._runner_cache_key(kind, bf16)
                runner = _RUNNERS.get(key)
                if runner is None:
                    try:
                        runner = self._build(kind, bf16)
                    except (RuntimeError, ImportError, OSError, ValueError, TypeError) as exc:
                        log.warning("feature engine %s unavailable for %s (%s: %s); trying the next one",
                                    kind, self.backbone_name, type(exc).__name__, exc)
                        continue
                    _RUNNERS[key] = runner
                self._runner, self._runner_key = runner, key
                self._plan_pos = self._plan.index((kind, bf16))
                return runner
        raise AssertionError("the eager runner cannot fail to build")  # pragma: no cover

    def _verified_run(self, x: np.ndarray) -> np.ndarray:
        """Run a batch; in auto mode, check the first one against eager fp32 and fall back if it disagrees."""
        runner = self._get_runner()
        explicit_bf16 = self.precision == "bf16" and getattr(runner, "bf16", False)
        if (self.precision != "auto" and not explicit_bf16) or isinstance(runner, _EagerRunner) \
                or _VERIFIED.get(self._runner_key):
            return runner(x)
        if isinstance(runner, _OrtRunner) and runner.previously_verified():
            _VERIFIED[self._runner_key] = True
            log.debug("feature engine %s: agreement with eager fp32 already checked on this machine", runner.id)
            return runner(x)
        ref = _EagerRunner(self.backbone)(x[:VERIFY_ROIS])
        if explicit_bf16:
            out = runner(x)
            cos = cosine_rows(out[: len(ref)], ref)
            _VERIFIED[self._runner_key] = True
            if float(cos.min()) < MIN_COSINE:
                log.warning("bf16 features differ from fp32 (min cosine %.4f < %.3f on the first batch); "
                            "use precision='auto' or 'fp32' for exact features", float(cos.min()), MIN_COSINE)
            return out
        while True:
            out = runner(x)
            cos = cosine_rows(out[: len(ref)], ref)
            if float(cos.min()) >= MIN_COSINE:
                _VERIFIED[self._runner_key] = True
                if isinstance(runner, _OrtRunner):
                    runner.record_verification(float(cos.min()), len(ref))
                log.info("feature engine %s agrees with eager fp32 (min cosine %.6f over %d ROIs)",
                         runner.id, float(cos.min()), len(ref))
                return out
            log.warning("feature engine %s disagrees with eager fp32 (min cosine %.5f < %.3f): falling back",
                        runner.id, float(cos.min()), MIN_COSINE)
            runner = self._get_runner(skip=self._plan_pos + 1)
            if isinstance(runner, _EagerRunner):
                return runner(x)

    # -- public API -----------------------------------------------------------------
    def prepare(self) -> str:
        """Build the engine now, check it, and return its :attr:`runner_id`.

        The ONNX export is written to the cache folder once, here, and (in ``auto``
        precision) checked against eager fp32 on a seeded batch of textured inputs,
        the check recorded beside the export: workers sharing that folder
        (:mod:`mammocadx.scale`) then load it as it is, instead of each exporting it
        and importing PyTorch to check it.
        """
        runner = self._get_runner()
        if self.precision == "auto" and isinstance(runner, _OrtRunner) and not runner.previously_verified():
            size = self.input_size
            rng = np.random.default_rng(0)
            x = rng.random((VERIFY_ROIS, size, size, 3), dtype=np.float32)
            x = 0.5 * x + 0.5 * np.linspace(0, 1, size, dtype=np.float32)[None, :, None, None]  # texture + gradient
            self._verified_run(self.spec.preprocess_array(x))
        return self.runner_id

    def _context(self, key_params: Mapping[str, Any] | None) -> str:
        b = self.spec
        return context_digest({
            "backbone": b.name, "weights_sha256": b.weights_sha256, "input_size": b.input_size,
            "mean": b.mean, "std": b.std, "interpolation": b.interpolation, "runner": self.runner_id,
            "pool": "avg", "params": dict(key_params or {}),
            "export": EXPORT_VERSION if self.runner_id.startswith("onnxruntime") else None,
            "versions": {"torch": dist_version("torch"), "timm": dist_version("timm"), "mammocadx": __version__},
        })

    def context_key(self, key_params: Mapping[str, Any] | None = None) -> str:
        """Digest of how this extractor makes features (backbone, weights, engine, versions); builds nothing."""
        return self._context(key_params)

    def cached(self, digests: Sequence[str], key_params: Mapping[str, Any] | None = None) -> list[np.ndarray | None]:
        """Vectors stored under other digests of the input (e.g. a lesion's source digest), or ``None`` each.

        Looked up under this extractor's context (backbone, weights, engine,
        versions), exactly as :meth:`transform` keys ROI pixels; builds no network.
        """
        if self.cache is None or not digests:
            return [None] * len(digests)
        ctx = self._context(key_params)
        return [self.cache.get(entry_key(d, ctx), self.feature_dim) for d in digests]

    def remember(self, digests: Sequence[str], features: np.ndarray,
                 key_params: Mapping[str, Any] | None = None) -> None:
        """Store ``features[i]`` under ``digests[i]`` too (after :meth:`transform` computed them)."""
        if self.cache is None:
            return
        ctx = self._context(key_params)
        for d, vec in zip(digests, features):
            self.cache.put(entry_key(d, ctx), vec)

    def transform(self, rgb: np.ndarray, key_params: Mapping[str, Any] | None = None) -> np.ndarray:
        """Features of a stack of RGB ROIs.

        Parameters
        ----------
        rgb : numpy.ndarray
            ``(N, S, S, 3)`` float32 in [0, 1] (or uint8), normally at ``input_size``
            (other sizes are resized by :meth:`Backbone.preprocess`).
        key_params : mapping, optional
            Preprocessing parameters to fold into the cache key (ROI context,
            pseudocolour mode ...). The pixels themselves always are.

        Returns
        -------
        numpy.ndarray
            float32 ``(N, feature_dim)``.
        """
        rgb = np.asarray(rgb)
        if rgb.ndim == 3:
            rgb = rgb[None]
        if rgb.ndim != 4 or rgb.shape[-1] != 3:
            raise ValueError(f"expected RGB ROIs (N, S, S, 3), got shape {rgb.shape}")
        n = rgb.shape[0]
        out = np.empty((n, self.feature_dim), dtype=np.float32)
        if n == 0:
            return out
        from mammocadx.utils.progress import progress

        todo = np.arange(n)
        keys: list[str] = []
        digests: list[str] = []
        bar = progress(total=n, desc=f"features ({self.backbone_name})", unit="ROI", enabled=self.progress)
        try:
            if self.cache is not None:
                digests = [array_digest(rgb[i]) for i in range(n)]
                hit = np.zeros(n, dtype=bool)
                for attempt in range(2):
                    # first with the planned engine's key; if another engine gets built, with its key
                    ctx = self._context(key_params)
                    keys = [entry_key(d, ctx) for d in digests]
                    for i in np.flatnonzero(~hit):
                        vec = self.cache.get(keys[i], self.feature_dim)
                        if vec is not None:
                            out[i] = vec
                            hit[i] = True
                    if hit.all() or attempt == 1:
                        break
                    planned = self.runner_id
                    if self._get_runner().id == planned:
                        break
                todo = np.flatnonzero(~hit)
                bar.update(int(hit.sum()))
                if hit.any():
                    log.debug("feature cache: %d of %d ROIs reused", int(hit.sum()), n)
            for start in range(0, len(todo), self.batch_size):
                idx = todo[start:start + self.batch_size]
                runner_before = self._runner
                feats = self._verified_run(self.spec.preprocess_array(rgb[idx]))
                out[idx] = feats
                if self.cache is not None:
                    if self._runner is not runner_before and runner_before is not None:
                        ctx = self._context(key_params)  # fell back to another engine: new keys
                        keys = [entry_key(d, ctx) for d in digests]
                    for j, i in enumerate(idx):
                        self.cache.put(keys[i], feats[j])
                bar.update(len(idx))
        finally:
            bar.close()
        return out

    def transform_iter(self, batches: Iterable[np.ndarray], key_params: Mapping[str, Any] | None = None
                       ) -> Iterator[np.ndarray]:
        """Stream features: one ``(n_i, D)`` array per incoming ``(n_i, S, S, 3)`` batch.

        Only one incoming batch (and its features) is held at a time, so a data set
        of any size runs in bounded memory when ``batches`` is a generator
        (see :func:`stack_batches` to group single ROIs).
        """
        for batch in batches:
            yield self.transform(batch, key_params=key_params)


def stack_batches(items: Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """Group an iterator of single ROIs ``(S, S, 3)`` into stacked batches ``(<=batch_size, S, S, 3)``."""
    buf: list[np.ndarray] = []
    for item in items:
        buf.append(np.asarray(item))
        if len(buf) >= batch_size:
            yield np.stack(buf)
            buf = []
    if buf:
        yield np.stack(buf)
