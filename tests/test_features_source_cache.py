"""Lesions found in the feature cache by their source: no decoding, same vectors, never stale."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from mammocadx.datasets.synthetic import load_synthetic
from mammocadx.features import source_keys
from mammocadx.features import featurizer as featurizer_module
from mammocadx.model.cadx import CADx


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> list:
    return load_synthetic(tmp_path_factory.mktemp("syn") / "c", n_patients=3, seed=2, size=256)


def _copy_records(records, folder: Path) -> list:
    """The records with their image (and mask) files copied to ``folder`` (so a test may modify them)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for r in records:
        img = folder / Path(r.image_path).name
        if not img.exists():
            shutil.copy(r.image_path, img)
        roi = r.roi
        if roi.mask_path is not None:
            mask = folder / ("mask_" + Path(roi.mask_path).name)
            shutil.copy(roi.mask_path, mask)
            roi = dataclasses.replace(roi, mask_path=mask)
        out.append(dataclasses.replace(r, image_path=img, roi=roi))
    return out


def _no_decoding(monkeypatch) -> list:
    calls: list = []

    def refuse(path, *a, **k):
        calls.append(path)
        raise AssertionError(f"decoded {path} although its features are cached")

    monkeypatch.setattr(featurizer_module, "read_image", refuse)
    return calls


def test_second_featurize_reads_no_image_and_gives_identical_features(cohort, tmp_path, monkeypatch):
    monkeypatch.setenv("MAMMOCADX_CACHE_DIR", str(tmp_path / "cache"))
    recs = _copy_records(cohort, tmp_path / "imgs")
    first = CADx.paper().featurize(recs)
    _no_decoding(monkeypatch)
    again = CADx.paper().featurize(recs)
    np.testing.assert_array_equal(again.X, first.X)
    assert [r.sample_id for r in again.records] == [r.sample_id for r in first.records]
    # a subset in another order is served too, in the order asked
    sub = [recs[2], recs[0]]
    np.testing.assert_array_equal(CADx.paper().featurize(sub).X, first.X[[2, 0]])


def test_changed_file_roi_or_setting_is_recomputed(cohort, tmp_path, monkeypatch):
    monkeypatch.setenv("MAMMOCADX_CACHE_DIR", str(tmp_path / "cache"))
    recs = _copy_records(cohort[:2], tmp_path / "imgs")
    base = CADx.paper().featurize(recs).X

    decoded: list = []
    real = featurizer_module.read_image

    def counting(path, *a, **k):
        decoded.append(Path(path).name)
        return real(path, *a, **k)

    monkeypatch.setattr(featurizer_module, "read_image", counting)
    # other context: a different ROI, so new features
    wider = CADx.paper(context=2.5).featurize(recs).X
    assert len(decoded) == len({r.image_path for r in recs}) and not np.allclose(wider, base)
    decoded.clear()
    # the same image content under another name and mtime: still served from the cache
    moved = _copy_records(recs, tmp_path / "moved")
    np.testing.assert_array_equal(CADx.paper().featurize(moved).X, base)
    assert decoded == []
    # new bytes in one image file: that lesion is decoded again, and its features follow the new pixels
    from PIL import Image

    target = moved[0].image_path
    arr = np.asarray(Image.open(target))
    Image.fromarray(np.ascontiguousarray(arr[:, ::-1])).save(target)  # mirrored image, same size
    again = CADx.paper().featurize(moved).X
    assert decoded == [Path(target).name]
    for k, r in enumerate(moved):
        if r.image_path == target:
            assert not np.allclose(again[k], base[k])
        else:
            np.testing.assert_array_equal(again[k], base[k])


def test_code_digest_follows_the_pixel_code(tmp_path, monkeypatch):
    pkg = tmp_path / "mammocadx"
    for part in source_keys.PIXEL_CODE:
        src = source_keys._PACKAGE_ROOT / part
        dst = pkg / part
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    monkeypatch.setattr(source_keys, "_PACKAGE_ROOT", pkg)
    source_keys.code_digest.cache_clear()
    try:
        before = source_keys.code_digest()
        roi_py = pkg / "preprocess" / "roi.py"
        roi_py.write_text(roi_py.read_text() + "\n# a change to how ROIs are cut\n")
        source_keys.code_digest.cache_clear()
        assert source_keys.code_digest() != before
    finally:
        source_keys.code_digest.cache_clear()


def test_unreadable_image_is_still_reported_not_cached(cohort, tmp_path, monkeypatch):
    monkeypatch.setenv("MAMMOCADX_CACHE_DIR", str(tmp_path / "cache"))
    recs = _copy_records(cohort[:2], tmp_path / "imgs")
    Path(recs[0].image_path).write_bytes(b"not an image at all")
    for _ in range(2):  # second time: the broken file is read (and refused) again, not served
        fs = CADx.paper().featurize(recs)
        assert [r.sample_id for r, _ in fs.skipped] == [recs[0].sample_id]
        assert len(fs.X) == len(recs) - 1


def test_without_a_cache_nothing_is_looked_up(cohort, monkeypatch):
    cadx = CADx.paper()
    cadx.extractor.cache = None
    monkeypatch.setattr(cadx.featurizer, "_source_digests", lambda recs: pytest.fail("hashed sources without a cache"))
    assert cadx.featurize(cohort[:1]).X.shape == (1, 1280)
