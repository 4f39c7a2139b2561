"""Whole-evaluation speed: a cold ``mammocadx evaluate`` vs a re-run served from the feature cache, in one run.

Runs the command line exactly as a user would (a fresh Python process each
time) on mini-MIAS in paper mode, 5-fold x 5 patient-grouped CV:

1. cold: an empty, private cache folder (no features, no ONNX export);
2. cached: the same command again, ``--cached-runs`` times (best kept);
3. cold with the engine ready: after ``mammocadx cache clear`` (features and
   explanations gone, the backbone's ONNX export kept), as on a machine that
   has run mammocadx before.

for each ``--gallery`` setting asked (the CLI default is 2 lesions per outcome;
0 = no Grad-CAM gallery). It checks that the cached run's ``predictions.csv``
and ``metrics.json`` (less the command line) are identical to the cold run's,
and prints the wall times, their ratio, and the fixed start-up costs that every
run pays (Python + scikit-learn + SciPy + matplotlib imports; PyTorch + timm
imports, needed only to compute features or Grad-CAM).

    python benchmarks/bench_evaluate.py [--data ../shared/data/mini-mias] [--gallery 0,2] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    return dt


def _import_floor(code: str, env: dict[str, str], n: int = 2) -> float:
    return min(_timed([sys.executable, "-c", code], env) for _ in range(n))


def _same_results(a: Path, b: Path) -> bool:
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    ma.pop("command", None)
    mb.pop("command", None)
    return (a / "predictions.csv").read_bytes() == (b / "predictions.csv").read_bytes() and ma == mb


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    env_data = os.environ.get("MAMMOCADX_SHARED_DATA")
    default = (Path(env_data) if env_data else REPO.parent / "shared" / "data") / "mini-mias"
    ap.add_argument("--data", type=Path, default=default, help="mini-MIAS folder (default: %(default)s)")
    ap.add_argument("--mode", default="paper")
    ap.add_argument("--gallery", default="0,2", help="comma-separated --gallery settings to measure (default 0,2)")
    ap.add_argument("--cached-runs", type=int, default=2, help="cached re-runs per setting, best kept (default 2)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if not (args.data / "Info.txt").is_file():
        raise SystemExit(f"mini-MIAS not found at {args.data}")

    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    floor_light = _import_floor("import numpy, scipy.stats, sklearn.svm, sklearn.decomposition, matplotlib.figure", env)
    floor_torch = _import_floor("import torch, timm", env)
    print(f"start-up floor: python + numpy/scipy/sklearn/matplotlib imports {floor_light:.2f} s; "
          f"torch + timm imports {floor_torch:.2f} s (only when features or Grad-CAM are computed)")

    results = []
    for gallery in [int(g) for g in args.gallery.split(",") if g.strip()]:
        with tempfile.TemporaryDirectory(prefix="mammocadx-bench-") as tmp:
            t = Path(tmp)
            run_env = dict(env, MAMMOCADX_CACHE_DIR=str(t / "cache"))

            def cmd(out: str) -> list[str]:
                return [sys.executable, "-m", "mammocadx", "-q", "evaluate", "--dataset", "mias", "--data",
                        str(args.data), "--mode", args.mode, "--folds", "5", "--repeats", "5", "--gallery",
                        str(gallery), "--out", str(t / out)]

            cold = _timed(cmd("cold"), run_env)
            cached = min(_timed(cmd(f"cached{k}"), run_env) for k in range(max(1, args.cached_runs)))
            # features and explanations cleared, the backbone's ONNX export (and its check) kept
            _timed([sys.executable, "-m", "mammocadx", "-q", "cache", "clear", "--yes"], run_env)
            cold_ready = _timed(cmd("cold_ready"), run_env)
            same = _same_results(t / "cold", t / "cached0") and _same_results(t / "cold", t / "cold_ready")
        print(f"--gallery {gallery}: cold {cold:5.1f} s (engine ready: {cold_ready:5.1f} s) | cached re-run "
              f"{cached:5.2f} s | {cold / cached:4.1f}x ({cold_ready / cached:4.1f}x) faster | identical results: {same}")
        results.append({"gallery": gallery, "cold_s": cold, "cold_engine_ready_s": cold_ready, "cached_s": cached,
                        "ratio": cold / cached, "ratio_engine_ready": cold_ready / cached, "identical": same})
    if args.json:
        args.json.write_text(json.dumps({"mode": args.mode, "data": str(args.data), "import_floor_s": floor_light,
                                         "torch_timm_import_s": floor_torch, "runs": results}, indent=2))
    return 0 if all(r["identical"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
