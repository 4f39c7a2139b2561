"""Shared fixtures of the model tests."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from mammocadx.records import LesionRecord, Roi


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> list[LesionRecord]:
    """24 tiny images: malignant lesions are brighter, with a blurred edge (12 patients per class)."""
    root = tmp_path_factory.mktemp("cohort")
    rng = np.random.default_rng(0)
    records = []
    for i in range(24):
        label = i % 2
        img = (rng.random((64, 64)) * 60 + 40).astype(np.float32)
        cv2.circle(img, (32, 32), 9, 200.0 if label else 130.0, -1)
        if label:
            img = cv2.GaussianBlur(img, (5, 5), 0)
        path = root / f"img{i:02d}.png"
        cv2.imwrite(str(path), np.clip(img, 0, 255).astype(np.uint8))
        records.append(LesionRecord(sample_id=f"s{i}", image_id=f"img{i:02d}", image_path=path,
                                    patient_id=f"p{i}", label=label, roi=Roi(circle=(32.0, 32.0, 9.0))))
    return records
