"""Export a backbone to an ONNX graph that ONNX Runtime runs fast on a CPU.

Why this is more than ``torch.onnx.export``: timm builds TensorFlow-ported
networks (the EfficientNet-Lite family, among others) with "SAME" padding.
Where SAME padding is asymmetric (every stride-2 convolution on an even-sized
input), timm's ``Conv2dSame`` computes the padding at run time from the input's
shape. Traced to ONNX, that becomes a chain of Shape/Gather/Ceil/... nodes and a
``Pad`` node in front of the convolution. ONNX Runtime cannot fold such a Pad
into the convolution, so its blocked (NCHWc) layout is broken there: on the
2-core AVX2 development machine, the Pad nodes and the layout re-orders around
them took about 30 % of the time of ``tf_efficientnet_lite0`` (profiled).

The fix keeps the arithmetic identical:

1. :func:`freeze_same_padding` replaces each ``Conv2dSame`` by a convolution
   with the same weights behind a *constant* zero pad (``ZeroPad2d``), computed for the fixed input
   size the network is exported at;
2. ONNX Runtime's hardware-independent "basic" optimisations constant-fold the
   pad amounts;
3. :func:`fold_pads_into_convs` moves each zero ``Pad`` that feeds one ``Conv``
   into that Conv's own ``pads`` attribute (ONNX Conv allows asymmetric pads).

Written by hand because neither ONNX Runtime's ``PadFusion`` (it did not fire on
these graphs in onnxruntime 1.32) nor ``onnxoptimizer`` (no constant folding)
handles the traced pad sub-graph. Change the recipe, bump ``mammocadx.features.extract.EXPORT_VERSION`` (it names
the export file and enters feature-cache keys). The result is exact up to float rounding
(cosine > 0.99999 to eager fp32, checked in the tests and, per run, by
:class:`~mammocadx.features.extract.FeatureExtractor`).
"""
from __future__ import annotations

import copy
import io
import logging
import math
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported only when exporting (the package stays import-light)
    import torch

log = logging.getLogger(__name__)

def _same_pad(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Total TensorFlow-SAME padding along one axis (as timm's ``get_same_padding``)."""
    return max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


def static_pad_conv(conv: torch.nn.Conv2d, pad: tuple[int, int, int, int]) -> torch.nn.Module:
    """``ZeroPad2d(pad)`` then a copy of ``conv`` without padding; ``pad`` = (left, right, top, bottom).

    Equivalent to timm's ``Conv2dSame`` at the one input size the pad was computed for.
    """
    import torch

    plain = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0,
                            conv.dilation, conv.groups, conv.bias is not None)
    plain.load_state_dict(conv.state_dict())
    return torch.nn.Sequential(torch.nn.ZeroPad2d(tuple(int(p) for p in pad)), plain)


def freeze_same_padding(model: torch.nn.Module, input_size: int) -> int:
    """Replace timm ``Conv2dSame`` layers by :func:`static_pad_conv` for a fixed input size, in place.

    Parameters
    ----------
    model : torch.nn.Module
        A timm network in eval mode; it must have ``forward_features``.
    input_size : int
        Side of the square input the network will only ever see afterwards.

    Returns
    -------
    int
        Number of layers replaced (0 for networks without ``Conv2dSame``).
    """
    import torch

    try:
        from timm.layers.conv2d_same import Conv2dSame
    except ImportError:  # pragma: no cover - timm always has it in the supported versions
        return 0
    found = {name: m for name, m in model.named_modules() if isinstance(m, Conv2dSame)}
    if not found:
        return 0
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [m.register_forward_pre_hook(lambda _m, args, name=name: sizes.__setitem__(name, tuple(args[0].shape[-2:])))
             for name, m in found.items()]
    try:
        with torch.no_grad():
            model.forward_features(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
    for name, conv in found.items():
        if name not in sizes:  # layer not on the forward_features path: leave it
            continue
        ih, iw = sizes[name]
        ph = _same_pad(ih, conv.kernel_size[0], conv.stride[0], conv.dilation[0])
        pw = _same_pad(iw, conv.kernel_size[1], conv.stride[1], conv.dilation[1])
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, static_pad_conv(conv, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)))
    return len(sizes)


def fold_pads_into_convs(model_proto) -> int:
    """Move zero ``Pad`` nodes with constant spatial pads into the ``Conv`` they feed, in place.

    A Pad is folded only when it is ``mode=constant`` with value 0 (or no value),
    its pads are an initializer that pads the two spatial axes of an NCHW tensor
    by non-negative amounts, and its output feeds exactly one Conv and nothing
    else (not a graph output). Returns the number folded.
    """
    from onnx import helper, numpy_helper

    graph = model_proto.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    outputs = {o.name for o in graph.output}
    keep, folded = [], 0
    for node in graph.node:
        if node.op_type == "Pad" and _foldable(node, inits, consumers, outputs):
            pads = numpy_helper.to_array(inits[node.input[1]]).astype(int)
            conv = consumers[node.output[0]][0]
            old = next((a for a in conv.attribute if a.name == "pads"), None)
            cur = list(old.ints) if old is not None else [0, 0, 0, 0]
            new = [cur[0] + pads[2], cur[1] + pads[3], cur[2] + pads[6], cur[3] + pads[7]]
            if old is not None:
                conv.attribute.remove(old)
            conv.attribute.append(helper.make_attribute("pads", [int(p) for p in new]))
            conv.input[0] = node.input[0]
            folded += 1
            continue
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    return folded


def _foldable(node, inits, consumers, outputs) -> bool:
    from onnx import numpy_helper

    mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
    if mode != b"constant" or len(node.input) < 2 or node.input[1] not in inits:
        return False
    if len(node.input) > 2 and node.input[2]:
        value = inits.get(node.input[2])
        if value is None or numpy_helper.to_array(value).any():
            return False
    if len(node.input) > 3 and node.input[3]:  # explicit axes: not produced by our export
        return False
    pads = numpy_helper.to_array(inits[node.input[1]])
    if pads.shape != (8,) or (pads < 0).any() or pads[[0, 1, 4, 5]].any():
        return False
    users = consumers[node.output[0]]
    if node.output[0] in outputs or len(users) != 1 or users[0].op_type != "Conv":
        return False
    conv = users[0]
    auto_pad = next((a.s for a in conv.attribute if a.name == "auto_pad"), b"NOTSET")
    return conv.input[0] == node.output[0] and auto_pad == b"NOTSET"


def export_pooled_onnx(model: torch.nn.Module, input_size: int, name: str = "backbone") -> bytes:
    """ONNX bytes of ``x (N, 3, S, S) -> global-average-pooled features (N, D)`` (output ``features``).

    :func:`export_onnx` of the network's pooled ``forward_features``; ``model`` is left unchanged.
    """
    return export_onnx(model, input_size, lambda net, x: net.forward_features(x).mean(dim=(2, 3)), "features", name)


def export_onnx(model: torch.nn.Module, input_size: int, forward: Any, output: str, name: str = "backbone") -> bytes:
    """ONNX bytes of ``x (N, 3, S, S) -> forward(model, x)``, with SAME padding frozen and folded.

    Parameters
    ----------
    model : torch.nn.Module
        The timm network (left unchanged: a copy is exported).
    input_size : int
        Fixed side ``S`` of the input; the batch axis stays dynamic.
    forward : callable
        ``(network, x) -> tensor``: which part of the network is exported (e.g. the
        pooled features, or the frozen first blocks of a fine-tuned network).
    output : str
        Name of the graph's output.
    name : str
        For log messages.
    """
    import onnx
    import onnxruntime as ort
    import torch

    class _Part(torch.nn.Module):
        """``x -> forward(net, x)`` as one module."""

        def __init__(self, net: torch.nn.Module):
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return forward(self.net, x)

    net = copy.deepcopy(model).eval()
    frozen = freeze_same_padding(net, input_size)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Part(net), (torch.zeros(2, 3, input_size, input_size),), buf, input_names=["x"],
                          output_names=[output], dynamic_axes={"x": {0: "n"}, output: {0: "n"}},
                          opset_version=17, dynamo=False)
    if not frozen:
        return buf.getvalue()
    # Constant-fold the pad amounts with ORT's basic (hardware-independent) optimisations, then fold the pads.
    with tempfile.TemporaryDirectory(prefix="mammocadx-onnx-") as tmp:
        path = Path(tmp) / "basic.onnx"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = str(path)
        opts.log_severity_level = 3
        ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
        proto = onnx.load(str(path))
    n = fold_pads_into_convs(proto)
    log.debug("%s: %d SAME-padding layers frozen at %d px, %d pads folded into convolutions",
              name, frozen, input_size, n)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()
