"""Scale-out: images/s of the local engine and of the Ray engine with 1 and 2 decode workers, in one run.

The same full-field images go through the whole feature stage each time (read
DICOM -> breast segmentation -> ROI -> sine pseudocolour -> CNN features), each
run with its own empty feature cache (the ONNX export made once beforehand, so
no run pays for it), after a warm-up job on other images (worker start-up and
imports are not counted: a long job pays them once). Prints images/s, the
scaling efficiency of 2 workers over 1, the peak resident memory of each Ray
worker process (VmHWM from /proc), and the per-image costs that
``docs/scale.md`` projects to 100,000 images. Features are checked identical
across the three runs.

Images: ``--n`` full-field 16-bit DICOMs of ``--rows`` x ``--cols`` (default
4096 x 3328, 12 bits stored, MG), made from the CBIS-DDSM-800 training images
when ``../shared/data`` has them (upsampled: real breasts, so segmentation does
its real work), else from the synthetic cohort. One mass per image.

    python benchmarks/bench_ray.py [--n 48] [--rows 4096 --cols 3328] [--no-segment] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

SYSTEM_ACTORS = ("ray::RuntimeEnvAgent", "ray::_StatsActor", "ray::_AutoscalingCoordinatorActor",
                 "ray::ActorLocationTracker", "ray::DashboardAgent", "ray::SplitCoordinator")


def _write_dicom(path: Path, pixels: np.ndarray, uid_seed: int) -> None:
    """A plain MG DICOM (uncompressed, 12 bits stored in 16, MONOCHROME2), as CBIS-DDSM's files are."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image - For Presentation
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(uid_seed)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[f"study{uid_seed}"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[f"series{uid_seed}"])
    ds.Modality, ds.PatientID, ds.PatientName = "MG", f"BENCH{uid_seed:04d}", "Bench^Synthetic"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.ascontiguousarray(pixels, np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def make_images(n: int, rows: int, cols: int, folder: Path) -> tuple[Path, str]:
    """``n`` full-field DICOMs and a manifest (one mass each); returns (manifest, what they are made from)."""
    import cv2

    from mammocadx.datasets import load_dataset

    env = os.environ.get("MAMMOCADX_SHARED_DATA")
    cbis = (Path(env) if env else REPO.parent / "shared" / "data") / "cbis-ddsm-mass-800-train"
    if (cbis / "manifest.csv").is_file():
        records, source = load_dataset("manifest", str(cbis / "manifest.csv")), "CBIS-DDSM-800 training images"
    else:
        from mammocadx.datasets.synthetic import make_synthetic_cohort

        make_synthetic_cohort(folder / "cohort", n_patients=max(1, n // 2 + 1), seed=0, size=800)
        records, source = load_dataset("synthetic", str(folder / "cohort")), "the synthetic cohort"
    seen: set[str] = set()
    lines = ["path,label,patient_id,box_x,box_y,box_w,box_h,laterality,view"]
    for r in records:
        if len(seen) == n + 4:  # n timed + 4 for the warm-up jobs
            break
        if str(r.image_path) in seen or r.roi.box is None and r.roi.circle is None:
            continue
        seen.add(str(r.image_path))
        img = cv2.imread(str(r.image_path), cv2.IMREAD_GRAYSCALE)
        sy, sx = rows / img.shape[0], cols / img.shape[1]
        big = cv2.resize(img, (cols, rows), interpolation=cv2.INTER_LINEAR).astype(np.uint16) * 16  # 12-bit
        name = f"img{len(seen):04d}.dcm"
        _write_dicom(folder / name, big, len(seen))
        if r.roi.box is not None:
            x, y, w, h = r.roi.box
        else:
            cx, cy, rad = r.roi.circle
            x, y, w, h = cx - rad, cy - rad, 2 * rad, 2 * rad
        lines.append(f"{name},{'malignant' if r.label else 'benign'},{r.patient_id},{x * sx:.1f},{y * sy:.1f},"
                     f"{w * sx:.1f},{h * sy:.1f},{r.laterality or ''},{r.view or ''}")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, source


def ray_worker_peaks() -> dict[str, float]:
    """Peak resident memory (MB, VmHWM) of this machine's Ray worker processes, by role."""
    peaks: dict[str, float] = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            title = (p / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").strip()
            status = (p / "status").read_text()
        except OSError:
            continue
        if not title.startswith("ray::") or title.startswith(SYSTEM_ACTORS):
            continue
        hwm = next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM")), 0.0)
        role = "actor (CNN)" if "MapWorker" in title else "decode worker"
        peaks.setdefault(role, 0.0)
        peaks[role] = max(peaks[role], hwm)
    return peaks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=48, help="timed images (default: 48)")
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=3328)
    ap.add_argument("--no-segment", action="store_true", help="skip breast segmentation")
    ap.add_argument("--keep", metavar="DIR", help="keep the generated DICOMs in DIR (default: a temporary folder)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    from mammocadx.datasets import load_dataset
    from mammocadx.features.featurizer import LesionFeaturizer
    from mammocadx.scale.ray_engine import RayEngine
    from mammocadx.utils.system import available_cpus

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-ray-"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    manifest, source = make_images(args.n, args.rows, args.cols, work)
    records = load_dataset("manifest", str(manifest))
    warm, timed = records[:4], records[4:4 + args.n]
    print(f"{len(timed)} full-field DICOMs {args.rows}x{args.cols}, 16-bit (12 stored), "
          f"{os.path.getsize(work / Path(timed[0].image_path).name) / 1e6:.1f} MB each, from {source} "
          f"(made in {time.perf_counter() - t:.0f} s); {available_cpus()} CPUs; "
          f"segmentation {'off' if args.no_segment else 'on'}; sine pseudocolour, EfficientNet-Lite0")

    base_cache = work / "cache-base"
    settings = {"segment": not args.no_segment, "pseudocolor": "sine"}
    LesionFeaturizer(cache_dir=str(base_cache), **settings).extractor.prepare()  # the ONNX export, once

    def fresh_cache(name: str) -> str:
        d = work / f"cache-{name}"
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(base_cache, d)
        return str(d)

    results: dict[str, dict] = {}
    ref = None

    # local engine (this process; the CNN on every CPU)
    LesionFeaturizer(cache_dir=fresh_cache("warm-local"), **settings).featurize(warm)
    f = LesionFeaturizer(cache_dir=fresh_cache("local"), **settings)
    t = time.perf_counter()
    fs = f.featurize(timed)
    secs = time.perf_counter() - t
    ref = fs.X
    results["local"] = {"seconds": secs, "images_per_s": len(timed) / secs,
                        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(f"local engine            : {len(timed) / secs:6.2f} images/s ({secs:.1f} s)")

    for workers in (1, 2):
        import ray

        engine = RayEngine(workers=workers, actors=1, batch_size=8)
        with engine:
            f = LesionFeaturizer(cache_dir=fresh_cache(f"warm-ray{workers}"), **settings)
            f.engine = engine
            f.featurize(warm)
            f = LesionFeaturizer(cache_dir=fresh_cache(f"ray{workers}"), **settings)
            f.engine = engine
            t = time.perf_counter()
            fs = f.featurize(timed)
            secs = time.perf_counter() - t
            peaks = ray_worker_peaks()
            cpus = ray.cluster_resources().get("CPU")
        same = bool(np.array_equal(fs.X, ref))
        results[f"ray-{workers}"] = {"seconds": secs, "images_per_s": len(timed) / secs, "workers": workers,
                                     "ray_cpus": cpus, "peak_rss_mb_by_role": peaks, "identical_to_local": same}
        print(f"Ray, {workers} decode worker{'s' if workers > 1 else ' '} : {len(timed) / secs:6.2f} images/s "
              f"({secs:.1f} s; + 1 CNN actor; features identical to local: {same}); peak memory per worker: "
              + ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(peaks.items())))

    r1, r2 = results["ray-1"]["images_per_s"], results["ray-2"]["images_per_s"]
    eff = r2 / (2 * r1)
    per_image = 1 / r1  # seconds of one decode worker per image (the CNN actor runs alongside)
    results["scaling"] = {"ray2_over_ray1": r2 / r1, "efficiency": eff, "ray2_over_local": r2 / results["local"]["images_per_s"],
                          "worker_seconds_per_image": per_image}
    print(f"scaling 1 -> 2 workers  : {r2 / r1:.2f}x (efficiency {100 * eff:.0f}% of linear, on {available_cpus()} "
          f"CPUs shared with the CNN actor and the driver); Ray 2 workers / local: "
          f"{r2 / results['local']['images_per_s']:.2f}x")
    print(f"per image               : {per_image:.2f} worker-seconds (read + segment + ROI + CNN), "
          f"so 100,000 images = {100_000 * per_image / 3600:.0f} worker-hours")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
