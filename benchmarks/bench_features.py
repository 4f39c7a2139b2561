"""Feature-extraction speed: eager fp32 PyTorch vs mammocadx's fast path, on the same ROIs, in one run.

Prints images/s of (a) eager fp32 NCHW PyTorch at batch 16 (the plain way) and
(b) :class:`mammocadx.features.FeatureExtractor` (engine/precision picked
automatically), their ratio, peak RSS, the per-ROI cosine agreement of (b) with
(a), and the feature cache: cold extraction vs a cached re-run.

ROIs: the 119 mini-MIAS lesions with coordinates (sine pseudocolour, context
1.5) when ``../shared/data/mini-mias`` (or ``$MAMMOCADX_SHARED_DATA``) exists,
else seeded random-texture ROIs. Throughput is steady-state: each path is
warmed up first (engine build, ONNX export, auto-mode verification), and with
``--repeats`` > 1 the two paths alternate and each keeps its best pass, which
is fairer on a shared machine.

    python benchmarks/bench_features.py [--threads 2] [--repeats 1] [--limit N] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def mias_rois(size: int, limit: int | None) -> tuple[np.ndarray, str, list] | None:
    from mammocadx.datasets import load_dataset
    from mammocadx.io.images import read_image, to_uint8
    from mammocadx.preprocess.pseudocolor import pseudocolor
    from mammocadx.preprocess.roi import RoiConfig, extract_roi

    env = os.environ.get("MAMMOCADX_SHARED_DATA")
    data = (Path(env) if env else REPO.parent / "shared" / "data") / "mini-mias"
    if not (data / "Info.txt").is_file():
        return None
    records = load_dataset("mias", data)[:limit]
    cfg = RoiConfig(size=size, context=1.5)
    greys, cache = [], {}
    for r in records:
        if r.image_path not in cache:
            cache.clear()
            cache[r.image_path] = read_image(r.image_path).pixels
        greys.append(extract_roi(cache[r.image_path], r.roi, cfg))
    rgb = pseudocolor(to_uint8(np.stack(greys)), "sine")
    return rgb.astype(np.float32), f"mini-MIAS lesions ({len(records)}, sine pseudocolour, context 1.5)", records


def synthetic_rois(n: int, size: int) -> tuple[np.ndarray, str, list]:
    import cv2

    rng = np.random.default_rng(0)
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        small = rng.random((size // 8, size // 8, 3), dtype=np.float32)
        out[i] = np.clip(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1)
    return out, f"synthetic random-texture ROIs ({n})", []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="tf_efficientnet_lite0")
    ap.add_argument("--threads", type=int, default=2, help="torch / ONNX Runtime threads (default 2)")
    ap.add_argument("--batch-size", type=int, default=32, help="batch size of the fast path (default 32)")
    ap.add_argument("--repeats", type=int, default=1, help="alternating timed passes per path, best kept")
    ap.add_argument("--limit", type=int, default=None, help="use at most N ROIs")
    ap.add_argument("--synthetic", type=int, default=0, help="force N synthetic ROIs instead of mini-MIAS")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from mammocadx.features.backbones import load_backbone
    from mammocadx.features.extract import (
        FeatureExtractor,
        cosine_rows,
        cpu_has_native_bf16,
    )

    t0 = time.perf_counter()
    b = load_backbone(args.backbone)
    t_load = time.perf_counter() - t0
    got = None if args.synthetic else mias_rois(b.input_size, args.limit)
    rgb, what, records = got if got is not None else synthetic_rois(args.synthetic or 119, b.input_size)
    n = len(rgb)
    print(f"ROIs: {what}, {b.input_size} px; backbone {b.name} ({b.feature_dim}-d, weights {b.weights_sha256[:12]}); "
          f"torch {torch.__version__}, {args.threads} threads; native bf16: {cpu_has_native_bf16()}")
    print(f"backbone load {t_load:.2f} s; peak RSS after ROIs {peak_rss_mb():.0f} MB")

    def eager_pass() -> np.ndarray:
        feats = []
        with torch.inference_mode():
            for i in range(0, n, 16):
                feats.append(b.features(b.preprocess(rgb[i:i + 16])).numpy())
        return np.concatenate(feats)

    fast = FeatureExtractor(args.backbone, batch_size=args.batch_size, cache_dir=False, progress=False)
    t0 = time.perf_counter()
    fast.transform(rgb[: min(8, n)])  # engine build (+ ONNX export) + auto-mode verification
    t_setup = time.perf_counter() - t0
    with torch.inference_mode():
        b.features(b.preprocess(rgb[:2]))  # eager warm-up

    best_a = best_b = float("inf")
    fa = fb = None
    for _ in range(max(1, args.repeats)):
        t0 = time.perf_counter(); fa = eager_pass(); best_a = min(best_a, time.perf_counter() - t0)
        rss_a = peak_rss_mb()
        t0 = time.perf_counter(); fb = fast.transform(rgb); best_b = min(best_b, time.perf_counter() - t0)
    rss_b = peak_rss_mb()
    cos = cosine_rows(fb, fa)
    ips_a, ips_b = n / best_a, n / best_b
    print(f"(a) eager fp32 NCHW batch 16     : {ips_a:7.1f} img/s  ({best_a:.1f} s for {n})")
    print(f"(b) mammocadx [{fast.runner_id}] batch {args.batch_size}: {ips_b:7.1f} img/s  ({best_b:.1f} s)"
          f"  [one-time setup {t_setup:.1f} s]")
    print(f"ratio (b)/(a)                    : {ips_b / ips_a:7.2f}x")
    print(f"agreement cosine (b) vs (a)      : min {cos.min():.6f}  mean {cos.mean():.6f}")
    print(f"peak RSS                         : {rss_a:.0f} MB after (a), {rss_b:.0f} MB after (b)")

    with tempfile.TemporaryDirectory() as tmp:
        cold_ext = FeatureExtractor(args.backbone, batch_size=args.batch_size, cache_dir=tmp, progress=False)
        t0 = time.perf_counter(); cold = cold_ext.transform(rgb, key_params={"bench": 1}); t_cold = time.perf_counter() - t0
        warm_ext = FeatureExtractor(args.backbone, batch_size=args.batch_size, cache_dir=tmp, progress=False)
        t0 = time.perf_counter(); warm = warm_ext.transform(rgb, key_params={"bench": 1}); t_warm = time.perf_counter() - t0
        info = warm_ext.cache.info()
        assert np.array_equal(cold, warm)
    print(f"cache: cold {t_cold:.2f} s ({n / t_cold:.1f} img/s), cached re-run {t_warm:.3f} s "
          f"({n / t_warm:.0f} img/s): {t_cold / t_warm:.0f}x faster; {info.entries} entries, {info.bytes / 1e6:.1f} MB")
    aucs = None
    if records:
        # Same evaluation on both feature sets: paper head, patient-grouped stratified 5-fold x 5 repeats.
        from mammocadx.evaluate.crossval import run_splits
        from mammocadx.evaluate.splits import grouped_kfold
        from mammocadx.model.config import resolve

        y = np.array([r.label for r in records])
        groups = np.array([r.patient_id for r in records])
        splits = grouped_kfold(y, groups, folds=5, repeats=5, seed=0)
        aucs = [run_splits(X, y, groups, splits, resolve("paper").head_factory()).summary()["auc"]["mean"]
                for X in (fa, fb)]
        print(f"paper-mode AUC (5x5 grouped CV)  : eager fp32 {aucs[0]:.4f}  vs  fast path {aucs[1]:.4f}")
    if args.json:
        args.json.write_text(json.dumps({
            "rois": what, "n": n, "input_size": b.input_size, "threads": args.threads, "runner": fast.runner_id,
            "eager_fp32_b16_img_s": ips_a, "fast_img_s": ips_b, "ratio": ips_b / ips_a,
            "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()), "peak_rss_mb": rss_b,
            "setup_s": t_setup, "cache_cold_s": t_cold, "cache_warm_s": t_warm, "auc_eager_fast": aucs,
        }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
