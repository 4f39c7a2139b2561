"""Segmentation on CBIS-DDSM mass training images (800x800 JPEG, ../shared/data): mass boxes inside the breast.

A sample of 40 images runs by default; all 1,231 images are marked slow. Overlays
of the sample and of every miss go to ``$MAMMOCADX_GALLERY_DIR`` (or tmp).
"""
from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from mammocadx.io.images import read_image
from mammocadx.preprocess.breast import segment_breast
from mammocadx.preprocess.overlay import contact_sheet, overlay_segmentation


def _images(cbis: Path) -> list[tuple[str, str, list[tuple[float, float]]]]:
    boxes: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    with (cbis / "manifest.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            x, y, w, h = (float(row[k]) for k in ("box_x", "box_y", "box_w", "box_h"))
            boxes[(row["path"], row["view"])].append((x + w / 2.0, y + h / 2.0))
    return [(path, view, centres) for (path, view), centres in sorted(boxes.items())]


def _run(cbis: Path, items: list, gallery: Path, name: str) -> dict:
    stats = {"images": 0, "masses": 0, "in_breast": 0, "in_pectoral": 0, "misses": [], "pectoral_on_mlo": 0, "mlo": 0}
    tiles, captions, miss_tiles, miss_captions = [], [], [], []
    for path, view, centres in items:
        image = read_image(cbis / path)
        seg = segment_breast(image.pixels, view=view, source=image.source)
        stats["images"] += 1
        n, _ = cv2.connectedComponents(seg.breast.astype(np.uint8), connectivity=8)
        assert n == 2, f"{path}: {n - 1} components"
        if view == "MLO":
            stats["mlo"] += 1
            stats["pectoral_on_mlo"] += seg.has_pectoral
        missed = False
        for cx, cy in centres:
            stats["masses"] += 1
            r, c = min(int(cy), seg.breast.shape[0] - 1), min(int(cx), seg.breast.shape[1] - 1)
            if seg.breast[r, c]:
                stats["in_breast"] += 1
            else:
                missed = True
                stats["in_pectoral"] += bool(seg.pectoral[r, c])
                stats["misses"].append({"image": path, "x": cx, "y": cy, "in_pectoral": bool(seg.pectoral[r, c])})
        rgb = overlay_segmentation(image.pixels, seg, thickness=3, points=centres)
        cap = f"{Path(path).stem[:14]} {'P' if seg.has_pectoral else '-'}"
        if len(tiles) < 80:
            tiles.append(rgb)
            captions.append(cap)
        if missed:
            miss_tiles.append(rgb)
            miss_captions.append(cap)
    for label, t, c in (("sample", tiles, captions), ("misses", miss_tiles, miss_captions)):
        if t:
            sheet = contact_sheet(t[:80], c[:80], tile=200, columns=8)
            cv2.imwrite(str(gallery / f"cbis_{name}_{label}.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    (gallery / f"cbis_{name}.json").write_text(json.dumps(stats, indent=2))
    return stats


def _gallery(tmp_path: Path) -> Path:
    d = Path(os.environ.get("MAMMOCADX_GALLERY_DIR") or tmp_path / "gallery")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.mark.shared_data
def test_sample_of_40_images(cbis800_dir: Path, tmp_path: Path) -> None:
    items = _images(cbis800_dir)
    pick = np.random.default_rng(0).choice(len(items), 40, replace=False)
    stats = _run(cbis800_dir, [items[i] for i in sorted(pick)], _gallery(tmp_path), "sample40")
    # Masses near the chest wall may sit behind a pectoral line; none may fall in the background.
    assert stats["in_breast"] + stats["in_pectoral"] == stats["masses"]
    assert stats["in_breast"] >= 0.95 * stats["masses"]


@pytest.mark.shared_data
@pytest.mark.slow
def test_all_images(cbis800_dir: Path, tmp_path: Path) -> None:
    items = _images(cbis800_dir)
    stats = _run(cbis800_dir, items, _gallery(tmp_path), "all")
    assert stats["images"] == len(items) > 1000
    assert stats["in_breast"] >= 0.95 * stats["masses"]
    assert stats["in_breast"] + stats["in_pectoral"] >= 0.99 * stats["masses"]
