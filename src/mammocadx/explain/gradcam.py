"""Grad-CAM of the classifier's own malignancy score.

The CNN only extracts features; the decision is the head's
``decision_function`` (SVM over PCA over z-score in paper mode). A heat-map of
an ImageNet class would not explain "malignant", so the gradient that drives
the map is the exact gradient of the head's score with respect to the pooled
features (:mod:`mammocadx.explain.head_gradient`), pushed back through the
backbone by autograd to the target layer's activation ``A`` (N, C, h, w)::

    g_k      = d score / d pooled_k                     (exact, from the fitted arrays)
    alpha_k  = mean_ij  d score / d A_k(i, j)           (Grad-CAM weights)
    signed   = sum_k alpha_k A_k                        (h, w)
    cam      = ReLU(signed)

For the default target layer (the one whose output *is* the last convolutional
map that the backbone's global average pool reduces, ``bn2`` in timm's
EfficientNet-Lite), ``pooled_k = mean_ij A_k(i, j)``, hence
``d score / d A_k(i, j) = g_k / (h w)`` and ``alpha_k = g_k / (h w)``: the map is
``sum_k g_k A_k / (h w)``, whose sum over the grid is ``g . pooled``, the
first-order contribution of the features to the score. For any other layer
the same code gives the usual Grad-CAM with the score as the target.

Sign convention: **positive = towards malignant**. ``cam`` (ReLU) shows the
regions whose features push the score towards malignant, whatever the final
decision; ``signed_cam`` also shows, negative, the regions pushing towards
benign (for display with a diverging colour map).

As in pytorch-grad-cam, the activation is captured with a forward hook that
lives in a context manager (:class:`GradCAM`) and is always removed, even when
the forward or the head raises.
"""
from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

if TYPE_CHECKING:  # torch is imported where it runs (cached explanations need none)
    import torch

from mammocadx.errors import BackboneError
from mammocadx.explain.head_gradient import HeadGradient

log = logging.getLogger(__name__)

__all__ = ["BackboneLike", "Explanation", "GradCAM", "explain_roi", "explain_rois", "find_feature_map_layer", "upsample_map"]


class BackboneLike(Protocol):
    """What Grad-CAM needs from a :class:`mammocadx.features.backbones.Backbone`."""

    name: str
    model: torch.nn.Module
    input_size: int

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor: ...

    def feature_map(self, x: torch.Tensor) -> torch.Tensor: ...

    def pool(self, fmap: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Explanation:
    """Grad-CAM of the malignancy score for one ROI.

    Attributes
    ----------
    cam : numpy.ndarray
        ``(S, S)`` float32 in [0, 1] at ROI resolution: ReLU Grad-CAM divided by
        its maximum (all zeros when nothing points towards malignant).
    signed_cam : numpy.ndarray
        ``(S, S)`` float32 in [-1, 1]: the map before the ReLU divided by its
        largest absolute value; positive = towards malignant, negative =
        towards benign.
    score : float
        The head's ``decision_function`` on the features computed here (float32
        CNN, no autocast); positive = towards malignant.
    features : numpy.ndarray
        ``(D,)`` float32 pooled features the score was computed from.
    feature_gradient : numpy.ndarray
        ``(D,)`` float64 exact ``d score / d features``.
    cam_lowres : numpy.ndarray
        ``(h, w)`` float32 un-normalised signed map at the target layer's
        resolution (``sum_k alpha_k A_k``, in score units).
    target_layer : str
        Name of the module whose output was explained.
    """

    cam: np.ndarray
    signed_cam: np.ndarray
    score: float
    features: np.ndarray
    feature_gradient: np.ndarray
    cam_lowres: np.ndarray
    target_layer: str
    meta: dict[str, Any] = field(default_factory=dict)

    def cam_for(self, towards: str) -> np.ndarray:
        """Evidence map ``(S, S)`` in [0, 1] towards ``"malignant"`` (= :attr:`cam`) or ``"benign"``.

        The benign map is ``ReLU(-signed)`` rescaled to [0, 1]: Grad-CAM of the
        negated score, i.e. of the benign class.
        """
        if towards == "malignant":
            return self.cam
        if towards == "benign":
            neg = np.maximum(-self.signed_cam, 0.0)
            peak = float(neg.max())
            return (neg / peak if peak > 0 else neg).astype(np.float32)
        raise ValueError(f"towards must be 'malignant' or 'benign', got {towards!r}")

    def decided(self, threshold: float = 0.0) -> str:
        """``"malignant"`` if ``score > threshold`` else ``"benign"``."""
        return "malignant" if self.score > threshold else "benign"

    def decision_cam(self, threshold: float = 0.0) -> np.ndarray:
        """Evidence for the class the model decided (classic Grad-CAM of the predicted class)."""
        return self.cam_for(self.decided(threshold))


def upsample_map(m: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map to ``size`` (an int for a square, or (rows, cols)); float32."""
    rows, cols = (size, size) if isinstance(size, int) else size
    return cv2.resize(np.asarray(m, np.float32), (int(cols), int(rows)), interpolation=cv2.INTER_LINEAR)


#: Target layer found per backbone model (weak keys: forgotten with the model).
_LAYER_CACHE: weakref.WeakKeyDictionary[torch.nn.Module, str] = weakref.WeakKeyDictionary()


def _resolve_module(model: torch.nn.Module, layer: str | torch.nn.Module) -> tuple[str, torch.nn.Module]:
    import torch

    if isinstance(layer, torch.nn.Module):
        for name, mod in model.named_modules():
            if mod is layer:
                return name, mod
        raise BackboneError("the Grad-CAM target layer is not a module of the backbone")
    modules = dict(model.named_modules())
    if layer not in modules:
        raise BackboneError(f"the backbone has no layer named {layer!r} to explain")
    return layer, modules[layer]


def find_feature_map_layer(backbone: BackboneLike) -> str:
    """Name of the last module whose output is the backbone's last convolutional map.

    One forward pass of a noise image with a forward hook on every sub-module
    (all removed afterwards): the last module to finish whose output equals
    ``backbone.feature_map(x)`` is the one whose activation the global pool
    reduces (``bn2`` for timm EfficientNet-Lite; BatchNormAct2d includes the
    activation). This reads the map off the network instead of re-implementing it.

    Raises
    ------
    BackboneError
        If no sub-module produces the feature map.
    """
    import torch

    model = backbone.model
    cached = _LAYER_CACHE.get(model)
    if cached is not None:
        return cached
    seen: list[tuple[str, torch.Tensor]] = []
    handles = []
    me = threading.get_ident()

    def make_hook(name: str):
        def hook(_mod, _inp, out):
            if threading.get_ident() == me and isinstance(out, torch.Tensor) and out.dim() == 4:
                seen.append((name, out.detach().clone()))

        return hook

    try:
        for name, mod in model.named_modules():
            if name:  # the root is not called when feature_map uses forward_features
                handles.append(mod.register_forward_hook(make_hook(name)))
        # seeded noise, not a blank image: distinct layers then give distinct outputs
        probe = np.random.default_rng(0).uniform(size=(1, backbone.input_size, backbone.input_size, 3))
        with torch.no_grad():
            fmap = backbone.feature_map(backbone.preprocess(probe.astype(np.float32)).float())
    finally:
        for h in handles:
            h.remove()
    for name, out in reversed(seen):
        if out.shape == fmap.shape and torch.equal(out, fmap):
            _LAYER_CACHE[model] = name
            return name
    raise BackboneError(f"no layer of backbone {getattr(backbone, 'name', '?')!r} outputs its last feature map")


class GradCAM:
    """Grad-CAM of a fitted head's score on a backbone; use as a context manager.

    Parameters
    ----------
    backbone : Backbone
        The CNN that produced the features the head was fitted on
        (:func:`mammocadx.features.backbones.load_backbone`).
    head : sklearn estimator or Pipeline
        The fitted binary head; its ``decision_function`` is the explained score.
    target_layer : str or torch.nn.Module, optional
        Module (or its dotted name in ``backbone.model``) whose output is
        explained; default: the module that outputs the last convolutional map
        (:func:`find_feature_map_layer`).

    Examples
    --------
    >>> with GradCAM(backbone, cadx.head_) as cam:          # doctest: +SKIP
    ...     explanations = cam(rgb_rois)                      # (N, S, S, 3) float32 [0, 1]
    """

    def __init__(self, backbone: BackboneLike, head: Any, target_layer: str | torch.nn.Module | None = None):
        self.backbone = backbone
        self.gradient = HeadGradient(head)
        if target_layer is None:
            target_layer = find_feature_map_layer(backbone)
        self.layer_name, self.layer = _resolve_module(backbone.model, target_layer)
        self._handle: torch.utils.hooks.RemovableHandle | None = None
        self._activation: torch.Tensor | None = None
        self._thread: int | None = None

    # -- hooks ------------------------------------------------------------
    def _hook(self, _module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        import torch

        # load_backbone shares one model per process: ignore forwards that other
        # threads (e.g. a web server's feature extraction) run while we hold the hook.
        if threading.get_ident() != self._thread:
            return None
        self._activation = output
        # Hand the rest of the network a copy, so that an in-place op after the
        # target layer cannot overwrite the activation we differentiate against.
        return output.clone()

    def __enter__(self) -> GradCAM:  # noqa: PYI034 - GradCAM is not meant to be subclassed
        if self._handle is None:
            self._handle = self.layer.register_forward_hook(self._hook)
        return self

    def release(self) -> None:
        """Remove the hook and drop the stored activation (idempotent)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._activation = None
        self._thread = None

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # last resort; the context manager is the contract
        try:
            self.release()
        except Exception as exc:  # noqa: BLE001 - never raise from a finaliser
            log.debug("GradCAM hook release at finalisation failed: %s", exc)

    # -- computation ------------------------------------------------------
    def __call__(self, rgb: np.ndarray, batch_size: int = 16) -> list[Explanation]:
        """Explain a batch of pseudocoloured ROIs.

        Parameters
        ----------
        rgb : numpy.ndarray
            ``(N, S, S, 3)`` or ``(S, S, 3)`` float32 in [0, 1], the images the
            CNN sees (``S`` = ``backbone.input_size``).
        batch_size : int
            ROIs per forward/backward pass.

        Returns
        -------
        list of Explanation
            One per ROI, maps at ``S x S``.
        """
        if self._handle is None:
            raise RuntimeError("use GradCAM inside a 'with' block (it installs and releases its hook)")
        rgb = np.asarray(rgb, np.float32)
        if rgb.ndim == 3:
            rgb = rgb[None]
        if rgb.ndim != 4 or rgb.shape[-1] != 3:
            raise ValueError(f"expected (N, S, S, 3) RGB ROIs, got shape {rgb.shape}")
        out: list[Explanation] = []
        for start in range(0, len(rgb), batch_size):
            out.extend(self._explain_batch(rgb[start : start + batch_size]))
        return out

    def _explain_batch(self, rgb: np.ndarray) -> list[Explanation]:
        import torch

        bb = self.backbone
        size = rgb.shape[1:3]
        self._activation = None
        self._thread = threading.get_ident()
        try:
            with torch.enable_grad(), torch.autocast("cpu", enabled=False):
                x = bb.preprocess(rgb).float()
                # Requiring a gradient on the input keeps a graph even for frozen weights.
                x.requires_grad_(True)
                fmap = bb.feature_map(x)
                pooled = bb.pool(fmap)
                act = self._activation
                if act is None:
                    raise BackboneError(
                        f"the target layer {self.layer_name!r} was not run by the backbone's feature_map"
                    )
                features = pooled.detach().double().cpu().numpy()
                scores, grads = self.gradient(features)
                # Exact: the score depends on the image only through `pooled`, so the
                # vector-Jacobian product with g = dscore/dpooled is dscore/dA.
                (dact,) = torch.autograd.grad(pooled, act, grad_outputs=torch.from_numpy(grads).to(pooled.dtype))
        finally:
            self._activation = None
            self._thread = None
        a = act.detach().double()
        alpha = dact.double().mean(dim=(2, 3))  # (N, C)
        signed_low = torch.einsum("nc,nchw->nhw", alpha, a).cpu().numpy()
        res = []
        for i in range(len(rgb)):
            low = signed_low[i].astype(np.float32)
            signed = upsample_map(low, size)
            cam = np.maximum(signed, 0.0)
            peak = float(cam.max())
            cam = cam / peak if peak > 0 else np.zeros_like(cam)
            amax = float(np.abs(signed).max())
            signed_n = signed / amax if amax > 0 else np.zeros_like(signed)
            res.append(
                Explanation(
                    cam=cam.astype(np.float32),
                    signed_cam=signed_n.astype(np.float32),
                    score=float(scores[i]),
                    features=features[i].astype(np.float32),
                    feature_gradient=grads[i],
                    cam_lowres=low,
                    target_layer=self.layer_name,
                )
            )
        return res


def explain_rois(
    backbone: BackboneLike, head: Any, rgb_rois: np.ndarray, target_layer: str | None = None, batch_size: int = 16
) -> list[Explanation]:
    """Grad-CAM of the malignancy score for a batch of ``(N, S, S, 3)`` ROIs (hooks released on return)."""
    with GradCAM(backbone, head, target_layer) as gc:
        return gc(rgb_rois, batch_size=batch_size)


def explain_roi(backbone: BackboneLike, head: Any, rgb_roi: np.ndarray, target_layer: str | None = None) -> Explanation:
    """Grad-CAM of the malignancy score for one ``(S, S, 3)`` float32 [0, 1] pseudocoloured ROI.

    Returns
    -------
    Explanation
        ``cam`` (S, S) float32 in [0, 1], ``signed_cam`` in [-1, 1] (positive =
        towards malignant), ``score`` (decision_function), ``features``.
    """
    return explain_rois(backbone, head, np.asarray(rgb_roi)[None], target_layer)[0]

