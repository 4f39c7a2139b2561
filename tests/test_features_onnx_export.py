"""ONNX export for ONNX Runtime: SAME padding frozen and folded into convolutions, arithmetic unchanged."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mammocadx.features import onnx_export as ox
from mammocadx.features.backbones import load_backbone

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("tf_efficientnet_lite0")


def test_same_padding_matches_timm_formula():
    # stride 2, k 3 on 224: TF pads 0 before, 1 after; stride 1, k 5 on 7: 2 and 2; nothing when it fits
    assert ox._same_pad(224, 3, 2, 1) == 1
    assert ox._same_pad(7, 5, 1, 1) == 4
    assert ox._same_pad(225, 3, 2, 1) == 2
    assert ox._same_pad(4, 1, 1, 1) == 0


def test_frozen_padding_gives_the_same_features(lite0):
    from timm.layers.conv2d_same import Conv2dSame

    net = copy.deepcopy(lite0.model).eval()
    n = ox.freeze_same_padding(net, 224)
    assert n == sum(isinstance(m, Conv2dSame) for m in lite0.model.modules()) == 5
    assert not any(isinstance(m, Conv2dSame) for m in net.modules())
    x = torch.rand(2, 3, 224, 224) * 2 - 1
    with torch.inference_mode():
        np.testing.assert_array_equal(net.forward_features(x).numpy(), lite0.model.forward_features(x).numpy())
    # the original network is untouched by the export helper
    assert sum(isinstance(m, Conv2dSame) for m in lite0.model.modules()) == 5


def test_exported_graph_has_no_pads_and_agrees_with_eager(lite0):
    data = ox.export_pooled_onnx(lite0.model, 224, "lite0")
    proto = onnx.load_from_string(data)
    ops = [n.op_type for n in proto.graph.node]
    assert "Pad" not in ops and "Shape" not in ops  # no run-time padding arithmetic left
    assert ops.count("Conv") == 49
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = (torch.rand(3, 3, 224, 224) * 2 - 1)
    with torch.inference_mode():
        ref = lite0.model.forward_features(x).mean(dim=(2, 3)).numpy()
    got = sess.run(None, {"x": x.numpy()})[0]
    assert got.shape == (3, 1280)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def _pad_conv_model(pads, value=None, mode="constant", second_user=False):
    """x -> Pad -> Conv(3x3, stride 2) [-> also Relu of the pad when second_user]."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((2, 1, 3, 3)).astype(np.float32), "w")
    p = numpy_helper.from_array(np.array(pads, np.int64), "p")
    inits = [w, p]
    pad_inputs = ["x", "p"]
    if value is not None:
        inits.append(numpy_helper.from_array(np.array(value, np.float32), "v"))
        pad_inputs.append("v")
    nodes = [helper.make_node("Pad", pad_inputs, ["xp"], mode=mode),
             helper.make_node("Conv", ["xp", "w"], ["y"], strides=[2, 2])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if second_user:
        nodes.append(helper.make_node("Relu", ["xp"], ["r"]))
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]


def test_fold_moves_asymmetric_zero_pad_into_conv_exactly():
    x = np.random.default_rng(1).standard_normal((1, 1, 8, 8)).astype(np.float32)
    model = _pad_conv_model([0, 0, 0, 1, 0, 0, 1, 2])  # top 0, left 1, bottom 1, right 2
    before = _run(model, x)
    assert ox.fold_pads_into_convs(model) == 1
    (conv,) = model.graph.node
    assert conv.op_type == "Conv" and conv.input[0] == "x"
    assert list(next(a for a in conv.attribute if a.name == "pads").ints) == [0, 1, 1, 2]
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kwargs", [
    {"pads": [0, 0, 1, 1, 0, 0, 1, 1], "value": 1.0},       # non-zero fill
    {"pads": [0, 0, 1, 1, 0, 0, 1, 1], "mode": "reflect"},  # not zeros at all
    {"pads": [0, 1, 1, 1, 0, 0, 1, 1]},                     # pads the channel axis
    {"pads": [0, 0, 1, 1, 0, 0, 1, 1], "second_user": True},  # padded tensor also used elsewhere
])
def test_fold_leaves_pads_it_cannot_express(kwargs):
    model = _pad_conv_model(**kwargs)
    assert ox.fold_pads_into_convs(model) == 0
    assert [n.op_type for n in model.graph.node][:2] == ["Pad", "Conv"]


def test_networks_without_same_padding_export_unchanged():
    import timm

    net = timm.create_model("resnet10t", pretrained=False, num_classes=0).eval()
    assert ox.freeze_same_padding(net, 64) == 0
    data = ox.export_pooled_onnx(net, 64)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        ref = net.forward_features(x).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(sess.run(None, {"x": x.numpy()})[0], ref, rtol=1e-4, atol=1e-4)
