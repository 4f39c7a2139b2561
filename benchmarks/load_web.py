"""Bounded load test of the reader's web API, loopback only.

Uploads one mammogram, then fires ``--requests`` predictions (``/api/predict``,
Grad-CAM included) with ``--concurrency`` of them in flight at once, and
reports errors and latency (p50, p95, max) and throughput. Everything is
bounded: the request count, the concurrency and a wall-clock limit
(``--max-seconds``), and only 127.0.0.1 / ::1 / localhost are accepted.

Usage::

    # start a server on a free loopback port for MODEL_DIR, then load it
    python benchmarks/load_web.py --model runs/model
    # no model at hand: fit a tiny paper-mode model on the synthetic cohort first
    python benchmarks/load_web.py --tiny-model
    # an already running 'mammocadx serve' (loopback only)
    python benchmarks/load_web.py --url http://127.0.0.1:8000 --image case.png --roi 300,180,28

Prints one JSON object (the figures) on the last line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


async def _run(url: str, image: bytes, rois: list[dict[str, float]], concurrency: int,
               max_seconds: float, explain: bool) -> dict[str, Any]:
    import httpx

    timeout = httpx.Timeout(max_seconds, connect=10.0)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits, trust_env=False) as client:
        r = await client.post("/api/image", files={"file": ("case", image, "application/octet-stream")})
        r.raise_for_status()
        image_id = r.json()["image_id"]
        sem = asyncio.Semaphore(concurrency)
        latencies: list[float] = []
        errors: list[str] = []
        labels: dict[str, int] = {}

        async def one(roi: dict[str, float]) -> None:
            async with sem:
                t0 = time.perf_counter()
                try:
                    resp = await client.post("/api/predict", json={"image_id": image_id, "roi": roi, "explain": explain})
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    return
                dt = time.perf_counter() - t0
                if resp.status_code != 200:
                    errors.append(f"HTTP {resp.status_code}: {resp.text[:200]}")
                    return
                body = resp.json()
                if explain and not body.get("cam_png"):
                    errors.append("no heat-map in the response: " + str(body.get("explain_error")))
                    return
                latencies.append(dt)
                labels[body["label"]] = labels.get(body["label"], 0) + 1

        t_start = time.perf_counter()
        tasks = [asyncio.create_task(one(roi)) for roi in rois]
        done, pending = await asyncio.wait(tasks, timeout=max_seconds)
        for task in pending:
            task.cancel()
        wall = time.perf_counter() - t_start
    lat = np.array(latencies) * 1000.0
    return {
        "requests": len(rois), "concurrency": concurrency, "ok": len(latencies), "errors": len(errors),
        "unfinished": len(pending), "error_samples": errors[:5], "labels": labels,
        "wall_s": round(wall, 3), "throughput_per_s": round(len(latencies) / wall, 3) if wall > 0 else None,
        "latency_ms": {"p50": _pct(lat, 50), "p95": _pct(lat, 95), "max": _pct(lat, 100), "min": _pct(lat, 0)},
        "explain": explain,
    }


def _pct(a: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(a, q)), 1) if a.size else None


def run_load(url: str, image: bytes, rois: list[dict[str, float]], concurrency: int = 50,
             max_seconds: float = 300.0, explain: bool = True) -> dict[str, Any]:
    """Fire ``len(rois)`` predictions at ``url`` (loopback only), ``concurrency`` at a time; returns the figures."""
    host = urlparse(url).hostname or ""
    if host not in LOOPBACK:
        raise SystemExit(f"refusing {url}: this load test only targets loopback addresses ({sorted(LOOPBACK)})")
    if not 1 <= concurrency <= 256 or not 1 <= len(rois) <= 1000:
        raise SystemExit("concurrency must be 1..256 and requests 1..1000")
    return asyncio.run(_run(url, image, rois, concurrency, max_seconds, explain))


def jittered_rois(cx: float, cy: float, r: float, n: int, seed: int = 0) -> list[dict[str, float]]:
    """``n`` circles around (cx, cy): distinct requests, same lesion."""
    rng = np.random.default_rng(seed)
    return [{"cx": float(cx + dx), "cy": float(cy + dy), "r": float(r * s)}
            for dx, dy, s in zip(rng.uniform(-0.2 * r, 0.2 * r, n), rng.uniform(-0.2 * r, 0.2 * r, n),
                                 rng.uniform(0.8, 1.2, n))]


class _Server:
    """uvicorn on a free 127.0.0.1 port in a thread."""

    def __init__(self, app: Any):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                   limit_concurrency=512, backlog=512))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "_Server":
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if time.monotonic() - t0 > 30 or not self.thread.is_alive():
                raise SystemExit("the server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _tiny_model(out: Path, n_patients: int) -> tuple[Path, bytes, tuple[float, float, float]]:
    """Fit a small paper-mode model on the synthetic cohort; returns (model dir, a test image, its lesion)."""
    from mammocadx.datasets.synthetic import load_synthetic
    from mammocadx.model.cadx import CADx

    records = load_synthetic(out / "cohort", n_patients=n_patients, seed=0)
    train = [r for r in records if r.split != "test"]
    test = [r for r in records if r.split == "test"] or records
    model_dir = CADx.paper(n_components=8).fit(train).save(out / "model")
    case = test[0]
    cx, cy = case.extra["centre"]
    return Path(model_dir), Path(case.image_path).read_bytes(), (float(cx), float(cy), float(case.extra["radius"]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, help="saved model folder: served here on a free loopback port")
    src.add_argument("--tiny-model", action="store_true", help="fit a tiny model on the synthetic cohort and serve it")
    src.add_argument("--url", help="an already running server (loopback only)")
    p.add_argument("--image", type=Path, help="the mammogram to upload (default: a synthetic case)")
    p.add_argument("--roi", help="CX,CY,R of its lesion in image pixels")
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--max-seconds", type=float, default=300.0, help="wall-clock bound for all requests")
    p.add_argument("--no-explain", action="store_true", help="scores only, no Grad-CAM")
    p.add_argument("--threads", type=int, default=2, help="torch threads for an in-process server")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mammocadx-load-") as tmp:
        image = lesion = None
        model_dir = args.model
        if args.tiny_model:
            model_dir, image, lesion = _tiny_model(Path(tmp), n_patients=16)
        if args.image:
            image = args.image.read_bytes()
        if args.roi:
            lesion = tuple(float(v) for v in args.roi.split(","))
        if image is None or lesion is None:
            p.error("give --image and --roi (or use --tiny-model)")
        rois = jittered_rois(*lesion, n=args.requests)
        if args.url:
            figures = run_load(args.url, image, rois, args.concurrency, args.max_seconds, not args.no_explain)
        else:
            import torch

            from mammocadx.web.app import WebConfig, create_app

            torch.set_num_threads(args.threads)
            app = create_app(model_dir=model_dir, config=WebConfig(timeout_s=args.max_seconds,
                                                                  max_pending=max(64, args.concurrency)))
            with _Server(app) as server:
                # one warm-up request so the first-use model loading is not in the figures
                run_load(server.url, image, rois[:1], 1, args.max_seconds, not args.no_explain)
                figures = run_load(server.url, image, rois, args.concurrency, args.max_seconds, not args.no_explain)
    figures["torch_threads"] = None if args.url else args.threads
    print(f"{figures['ok']}/{figures['requests']} ok, {figures['errors']} errors, {figures['unfinished']} unfinished; "
          f"latency p50 {figures['latency_ms']['p50']} ms, p95 {figures['latency_ms']['p95']} ms, "
          f"max {figures['latency_ms']['max']} ms; {figures['throughput_per_s']} predictions/s "
          f"(concurrency {figures['concurrency']}, wall {figures['wall_s']} s)", file=sys.stderr)
    print(json.dumps(figures))
    return 0 if figures["errors"] == 0 and figures["unfinished"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
