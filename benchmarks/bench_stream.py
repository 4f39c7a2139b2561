"""Streaming memory check: peak RSS while N random ROIs flow through ``FeatureExtractor.transform_iter``.

The ROIs come from a generator and are grouped by ``stack_batches``, so at most
one batch of images is alive at a time; peak RSS should plateau after the
first batches whatever N is (measured: 1304 MB at 320 ROIs, 1305 MB at 1280,
most of it PyTorch and the one-time ONNX export of the backbone).

    python benchmarks/bench_stream.py [N=1280]
"""
from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> int:
    import torch

    torch.set_num_threads(2)
    from mammocadx.features.extract import FeatureExtractor, stack_batches

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1280

    def rois():
        rng = np.random.default_rng(0)
        for _ in range(n):
            yield rng.random((224, 224, 3), dtype=np.float32)

    ext = FeatureExtractor(cache_dir=False, progress=False, batch_size=32)
    done, t0 = 0, time.time()
    for feats in ext.transform_iter(stack_batches(rois(), 32)):
        done += len(feats)
        if done % 160 == 0 or done == n:
            print(f"{done:6d} ROIs  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB", flush=True)
    print(f"{done / (time.time() - t0):.1f} img/s including engine setup")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
