"""Feature extraction: fast paths agree with eager fp32, cache, streaming, sklearn transformers, CLI."""
from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import torch

from mammocadx.features import cache as fcache
from mammocadx.features import extract as fx
from mammocadx.features.backbones import load_backbone

torch.set_num_threads(2)


def _rois(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    """Random-texture RGB ROIs in [0, 1] (smooth blobs, like tissue), (n, size, size, 3) float32."""
    import cv2

    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        small = rng.random((size // 16, size // 16, 3), dtype=np.float32)
        out[i] = np.clip(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1)
    return out


@pytest.fixture
def isolated_runners():
    """Let a test start without built engines, then give the others theirs back (no re-export)."""
    saved = dict(fx._RUNNERS), dict(fx._VERIFIED)
    fx.clear_runner_cache()
    yield
    fx.clear_runner_cache()
    fx._RUNNERS.update(saved[0])
    fx._VERIFIED.update(saved[1])


@pytest.fixture(scope="module")
def rois() -> np.ndarray:
    return _rois(4)


@pytest.fixture(scope="module")
def eager(rois) -> np.ndarray:
    b = load_backbone()
    with torch.inference_mode():
        return b.features(b.preprocess(rois)).numpy()


@pytest.mark.parametrize("engine", ["auto", "torch", "onnxruntime"])
def test_fast_paths_agree_with_eager_fp32(engine, rois, eager):
    if engine == "onnxruntime" and not fx.onnxruntime_available():
        pytest.skip("onnxruntime not installed")
    ext = fx.FeatureExtractor(engine=engine, cache_dir=False, progress=False, batch_size=3)
    feats = ext.transform(rois)
    assert feats.shape == (4, 1280) and feats.dtype == np.float32
    assert fx.cosine_rows(feats, eager).min() >= fx.MIN_COSINE
    np.testing.assert_allclose(feats, eager, rtol=1e-3, atol=1e-3)
    assert (feats >= 0).all()  # ReLU6 features, averaged


def test_bn_folding_is_exact():
    torch.manual_seed(0)
    b = load_backbone()
    import copy

    folded = copy.deepcopy(b.model)
    n = fx.fold_batchnorm(folded)
    assert n == 2 + sum(2 if type(m).__name__ == "DepthwiseSeparableConv" else 3
                        for s in b.model.blocks for m in s)
    x = torch.rand(1, 3, 224, 224) * 2 - 1
    with torch.inference_mode():
        np.testing.assert_allclose(folded.forward_features(x).numpy(), b.model.forward_features(x).numpy(),
                                   rtol=1e-3, atol=1e-4)


def test_bf16_without_native_support_falls_back_to_fp32(monkeypatch, caplog):
    monkeypatch.setattr(fx, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="mammocadx.features.extract"):
        plan = fx._plan("bf16", "torch")
    assert ("torch", True) not in plan and plan[0] == ("torch", False)
    assert "no native bf16" in caplog.text
    monkeypatch.setattr(fx, "cpu_has_native_bf16", lambda: True)
    assert fx._plan("bf16", "auto")[0] == ("torch", True)
    # auto and fp32 never pick bf16 (not within cosine 0.999 of fp32 on real ROIs)
    assert all(not bf16 for _, bf16 in fx._plan("auto", "auto") + fx._plan("fp32", "torch"))
    with pytest.raises(ValueError):
        fx._plan("fp16", "auto")


def test_auto_mode_drops_a_disagreeing_engine(monkeypatch, caplog, rois, eager, isolated_runners):
    monkeypatch.setattr(fx._TorchRunner, "__call__", lambda self, x: np.random.default_rng(1).random(
        (x.shape[0], 1280)).astype(np.float32))
    ext = fx.FeatureExtractor(engine="torch", cache_dir=False, progress=False)
    with caplog.at_level(logging.WARNING, logger="mammocadx.features.extract"):
        feats = ext.transform(rois)
    assert "disagrees with eager fp32" in caplog.text
    assert ext.runner_id == "torch-eager-fp32"
    np.testing.assert_allclose(feats, eager, rtol=1e-5, atol=1e-5)


def test_cache_reuses_recomputes_corrupt_and_keys_on_params(tmp_path, rois, eager, monkeypatch, caplog):
    ext = fx.FeatureExtractor(cache_dir=tmp_path, progress=False, batch_size=2)
    first = ext.transform(rois, key_params={"pseudocolor": "sine"})
    assert ext.cache.info().entries == 4
    # second run: served from disk, the network is never called
    runner = ext._get_runner()
    monkeypatch.setattr(type(runner), "__call__", lambda self, x: pytest.fail("network ran on a cache hit"))
    fresh = fx.FeatureExtractor(cache_dir=tmp_path, progress=False)
    again = fresh.transform(rois, key_params={"pseudocolor": "sine"})
    np.testing.assert_array_equal(again, first)
    assert fresh._backbone is None and fresh._runner is None  # a full hit never builds the CNN
    monkeypatch.undo()
    # other preprocessing parameters -> other keys
    fx.FeatureExtractor(cache_dir=tmp_path, progress=False).transform(rois[:1], key_params={"pseudocolor": "grey"})
    assert ext.cache.info().entries == 5
    # corrupt an entry: logged, ignored, recomputed, rewritten
    files = sorted((tmp_path / "v1").rglob("*.npy"))
    files[0].write_bytes(b"\x93NUMPY garbage")
    with caplog.at_level(logging.WARNING, logger="mammocadx.features.cache"):
        redo = ext.transform(rois, key_params={"pseudocolor": "sine"})
    assert "corrupt entry" in caplog.text
    np.testing.assert_array_equal(redo, first)
    assert fx.cosine_rows(redo, eager).min() >= fx.MIN_COSINE
    assert ext.cache.info().entries == 5
    removed = ext.cache.clear()
    assert removed.entries == 5 and ext.cache.info().entries == 0


def test_cache_key_covers_pixels_dtype_shape():
    a = np.zeros((4, 4, 3), np.float32)
    b = a.copy()
    b[0, 0, 0] = 1e-7
    assert fcache.array_digest(a) != fcache.array_digest(b)
    assert fcache.array_digest(a) != fcache.array_digest(a.astype(np.float64))
    assert fcache.array_digest(a) != fcache.array_digest(a.reshape(2, 8, 3))
    assert fcache.array_digest(a) == fcache.array_digest(a.copy())


def test_cache_concurrent_writers_never_tear(tmp_path):
    c = fcache.FeatureCache(tmp_path)
    vec = np.arange(1280, dtype=np.float32)
    errors: list[str] = []

    def work():
        for _ in range(30):
            c.put("ab" * 32, vec)
            got = c.get("ab" * 32, 1280)
            if got is not None and not np.array_equal(got, vec):
                errors.append("torn read")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert c.info().entries == 1
    assert not [p for p in tmp_path.rglob(".tmp-*")]  # no temp files left behind


def test_default_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MAMMOCADX_CACHE_DIR", str(tmp_path / "c"))
    assert fcache.default_cache_dir() == tmp_path / "c"
    assert fx.FeatureExtractor(progress=False).cache.root == tmp_path / "c"
    assert fx.FeatureExtractor(progress=False, cache_dir=False).cache is None


def test_streaming_matches_batch(rois):
    ext = fx.FeatureExtractor(cache_dir=False, progress=False, batch_size=2)
    whole = ext.transform(rois)
    gen = (r for r in rois)  # a generator: nothing materialised up front
    parts = list(ext.transform_iter(fx.stack_batches(gen, 3)))
    assert [p.shape[0] for p in parts] == [3, 1]
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-6, atol=1e-6)


def test_featurizer_colours_as_the_paper():
    from mammocadx.features.featurizer import LesionFeaturizer
    from mammocadx.preprocess.pseudocolor import pseudocolor

    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (2, 8, 8), dtype=np.uint8)
    out = LesionFeaturizer(pseudocolor="sine").colorize(u8 / 255.0)
    assert out.shape == (2, 8, 8, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, pseudocolor(u8, "sine"))
    np.testing.assert_array_equal(LesionFeaturizer(pseudocolor="grey").colorize(u8 / 255.0)[..., 1],
                                  u8 / np.float32(255.0))


def test_cli_cache_info_and_clear(tmp_path, capsys):
    from mammocadx.cli import main

    c = fcache.FeatureCache(tmp_path)
    c.put("cd" * 32, np.ones(8, np.float32))
    assert main(["cache", "info", "--dir", str(tmp_path)]) == 0
    assert "entries:  1" in capsys.readouterr().out
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "net.onnx").write_bytes(b"x")
    expl = tmp_path / fcache.EXPLANATIONS_DIR / "ab" / ("ab" * 32 + ".npz")
    expl.parent.mkdir(parents=True)
    expl.write_bytes(b"x")
    assert main(["cache", "clear", "--dir", str(tmp_path), "--yes"]) == 0
    assert "1 entries" in capsys.readouterr().out
    assert c.info().entries == 0 and (tmp_path / "onnx" / "net.onnx").exists()  # exports kept
    assert not expl.exists()  # explanations go with the features
    assert main(["cache", "clear", "--all", "--dir", str(tmp_path), "--yes"]) == 0
    assert not (tmp_path / "onnx").exists()


@pytest.mark.slow
def test_corrupt_onnx_export_is_rebuilt(tmp_path, rois, eager, caplog, isolated_runners):
    if not fx.onnxruntime_available():
        pytest.skip("onnxruntime not installed")
    ext = fx.FeatureExtractor(engine="onnxruntime", precision="fp32", cache_dir=tmp_path, progress=False)
    ext.transform(rois[:1])
    (onnx_file,) = (tmp_path / "onnx").glob("*.onnx")
    onnx_file.write_bytes(b"garbage")
    fx.clear_runner_cache()
    ext2 = fx.FeatureExtractor(engine="onnxruntime", precision="fp32", cache_dir=tmp_path, progress=False)
    with caplog.at_level(logging.WARNING, logger="mammocadx.features.extract"):
        feats = ext2.transform(rois[1:2])
    assert "exporting again" in caplog.text and ext2.runner_id.startswith("onnxruntime")
    assert fx.cosine_rows(feats, eager[1:2]).min() >= fx.MIN_COSINE
    assert onnx_file.stat().st_size > 1_000_000


def test_explicit_bf16_is_checked_and_warned_not_replaced(monkeypatch, caplog, rois, eager, isolated_runners):
    monkeypatch.setattr(fx, "cpu_has_native_bf16", lambda: True)
    noisy = eager + np.random.default_rng(0).random(eager.shape).astype(np.float32)
    monkeypatch.setattr(fx._TorchRunner, "__call__", lambda self, x: noisy[: x.shape[0]])
    ext = fx.FeatureExtractor(precision="bf16", engine="torch", cache_dir=False, progress=False)
    with caplog.at_level(logging.WARNING, logger="mammocadx.features.extract"):
        feats = ext.transform(rois)
    assert ext.runner_id == "torch-cl-bf16" and "bf16 features differ from fp32" in caplog.text
    np.testing.assert_array_equal(feats, noisy)
