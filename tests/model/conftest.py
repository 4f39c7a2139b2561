"""Shared fixtures of the model tests."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from mammocadx.records import LesionRecord, Roi


def write_cohort(root, n: int = 24, seed: int = 0, smooth: bool = False) -> list[LesionRecord]:
    """``n`` tiny 64 px images, one lesion each, one patient each, alternating benign/malignant.

    Default: noisy backgrounds, malignant lesions brighter with a blurred edge. ``smooth``: blurred backgrounds
    (smooth at the pixel scale, as mammograms are) and lesion brightness overlapping between the classes.
    """
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        label = i % 2
        img = (rng.random((64, 64)) * (80 if smooth else 60) + (60 if smooth else 40)).astype(np.float32)
        if smooth:
            img = cv2.GaussianBlur(img, (0, 0), 4)
        value = float(135 + 25 * label + rng.normal(0, 15)) if smooth else (200.0 if label else 130.0)
        cv2.circle(img, (32, 32), 9, value, -1)
        if label or smooth:
            img = cv2.GaussianBlur(img, (0, 0), 1.5) if smooth else cv2.GaussianBlur(img, (5, 5), 0)
        path = root / f"img{i:02d}.png"
        cv2.imwrite(str(path), np.clip(img, 0, 255).astype(np.uint8))
        records.append(LesionRecord(sample_id=f"s{i}", image_id=f"img{i:02d}", image_path=path,
                                    patient_id=f"p{i}", label=label, roi=Roi(circle=(32.0, 32.0, 9.0))))
    return records


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> list[LesionRecord]:
    """24 tiny images: malignant lesions are brighter, with a blurred edge (12 patients per class)."""
    return write_cohort(tmp_path_factory.mktemp("cohort"))
