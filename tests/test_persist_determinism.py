"""Seeding and the training-data fingerprint recorded in model cards."""
from __future__ import annotations

import random
import shutil

import numpy as np
import pytest

from mammocadx.datasets.records import LesionRecord, Roi
from mammocadx.errors import DatasetError
from mammocadx.utils.determinism import fingerprint_records, seed_everything


def _draws():
    import torch

    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()


def test_seed_everything_repeats_every_random_source():
    import torch

    info = seed_everything(123)
    a = _draws()
    seed_everything(123)
    b = _draws()
    seed_everything(124)
    c = _draws()
    assert a == b and a != c
    assert info == {"seed": 123, "numpy": True, "torch": True, "torch_deterministic": True}
    assert torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)  # leave the process as other tests expect it
    for bad in (-1, 2**32, 1.5, True, "0"):
        with pytest.raises(ValueError):
            seed_everything(bad)


def _records(folder, n=4):
    folder.mkdir(parents=True, exist_ok=True)
    recs = []
    for i in range(n):
        img = folder / f"img{i // 2}.png"
        if not img.exists():
            img.write_bytes(bytes([i]) * 100)
        recs.append(LesionRecord(sample_id=f"s{i}", image_id=img.stem, image_path=img, patient_id=f"p{i // 2}",
                                 label=i % 2, roi=Roi(circle=(10.0 + i, 20.0, 5.0))))
    return recs


def test_fingerprint_is_stable_under_order_and_location(tmp_path):
    recs = _records(tmp_path / "a")
    fp = fingerprint_records(recs)
    assert len(fp) == 64 and fp == fingerprint_records(list(reversed(recs)))
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # new mtimes, new folder
    moved = [r.__class__(**{**r.__dict__, "image_path": tmp_path / "b" / r.image_path.name}) for r in recs]
    assert fingerprint_records(moved) == fp
    assert fingerprint_records(moved, content="name") == fingerprint_records(recs, content="name") != fp


def test_fingerprint_changes_with_labels_patients_rois_and_pixels(tmp_path):
    recs = _records(tmp_path)
    fp = fingerprint_records(recs)
    fp_name = fingerprint_records(recs, content="name")
    r0 = recs[0]
    variants = [
        [r0.__class__(**{**r0.__dict__, "label": 1 - r0.label}), *recs[1:]],
        [r0.__class__(**{**r0.__dict__, "patient_id": "other"}), *recs[1:]],
        [r0.with_roi(Roi(circle=(10.0, 20.0, 6.0))), *recs[1:]],
        recs[1:],
    ]
    for v in variants:
        assert fingerprint_records(v) != fp
    data = bytearray(r0.image_path.read_bytes())
    data[50] ^= 0xFF  # same size, one pixel changed
    r0.image_path.write_bytes(bytes(data))
    assert fingerprint_records(recs) != fp
    assert fingerprint_records(recs, content="name") == fp_name  # documented blind spot of "name"


def test_fingerprint_refuses_missing_files(tmp_path):
    recs = _records(tmp_path)
    recs[0].image_path.unlink()
    with pytest.raises(DatasetError, match="fingerprint"):
        fingerprint_records(recs)
    with pytest.raises(ValueError):
        fingerprint_records(recs, content="mtime")
