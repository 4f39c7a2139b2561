"""The built-in synthetic cohort: determinism, truth masks, cohort structure, loading."""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.measure import perimeter

from mammocadx.datasets.records import BENIGN, MALIGNANT
from mammocadx.datasets.synthetic import (
    GENERATOR_VERSION,
    MANIFEST_COLUMNS,
    cohort_dir,
    generate_case,
    load_synthetic,
    make_synthetic_cohort,
    read_synthetic_manifest,
)
from mammocadx.errors import DatasetError
from mammocadx.io.images import read_image

N_PATIENTS = 10
SIZE = 256


def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_cohort(tmp_path_factory.mktemp("syn") / "cohort", n_patients=N_PATIENTS, seed=7, size=SIZE)


@pytest.fixture(scope="module")
def rows(cohort: Path) -> list[dict[str, str]]:
    with (cohort / "manifest.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


# ----------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_files(cohort: Path, tmp_path: Path) -> None:
    again = make_synthetic_cohort(tmp_path / "again", n_patients=N_PATIENTS, seed=7, size=SIZE)
    first, second = _tree_hashes(cohort), _tree_hashes(again)
    assert len(first) == 1 + 1 + 5 * 2 * N_PATIENTS  # manifest, cohort.json, image + 4 masks per image
    assert first == second


def test_other_seed_gives_other_images(cohort: Path, tmp_path: Path) -> None:
    other = make_synthetic_cohort(tmp_path / "other", n_patients=N_PATIENTS, seed=8, size=SIZE)
    a, b = _tree_hashes(cohort), _tree_hashes(other)
    ia = {v for k, v in a.items() if k.startswith("images/")}
    ib = {v for k, v in b.items() if k.startswith("images/")}
    assert len(ia) == len(ib) == 2 * N_PATIENTS and not ia & ib


def test_generate_case_is_reproducible_from_its_seed() -> None:
    one = generate_case(123, "malignant", "L", "MLO")
    two = generate_case(np.random.default_rng(123), "malignant", "L", "MLO")
    assert one.image.dtype == np.uint8 and one.image.shape == (512, 512)
    assert hashlib.sha256(one.image.tobytes()).digest() == hashlib.sha256(two.image.tobytes()).digest()
    for name, mask in one.masks().items():
        assert np.array_equal(mask, two.masks()[name]), name
    assert not np.array_equal(one.image, generate_case(124, "malignant", "L", "MLO").image)


# ----------------------------------------------------------------- truth masks


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("view", ["CC", "MLO"])
@pytest.mark.parametrize("laterality", ["L", "R"])
def test_masks_are_consistent(seed: int, view: str, laterality: str) -> None:
    case = generate_case(seed, seed % 2, laterality, view, size=SIZE)
    lesion, breast, pect, label = case.lesion_mask, case.breast_mask, case.pectoral_mask, case.label_mask
    assert lesion.sum() > 50
    assert not (lesion & ~breast).any(), "lesion must lie inside the breast"
    assert not (breast & pect).any() and not (breast & label).any() and not (pect & label).any()
    # The lesion keeps clear of the pectoral muscle.
    ys, xs = np.nonzero(lesion)
    assert not pect[max(ys.min() - 2, 0) : ys.max() + 3, max(xs.min() - 2, 0) : xs.max() + 3].any()
    # The film label is detached from the breast (a gap of background between them).
    if label.any():
        gy, gx = np.nonzero(label)
        by, bx = np.nonzero(breast | pect)
        gap = np.hypot(gy[::50, None] - by[None, ::97], gx[::50, None] - bx[None, ::97]).min()
        assert gap >= 3
    chest_col = 0 if laterality == "L" else SIZE - 1
    if view == "CC":
        assert not pect.any()
    else:
        ys, xs = np.nonzero(pect)
        assert pect.sum() > 0.02 * SIZE * SIZE
        assert pect[0, chest_col], "the muscle fills the upper chest-wall corner"
        assert ys.max() < 0.8 * SIZE and ys.mean() < 0.35 * SIZE
        assert np.abs(xs - chest_col).max() < 0.5 * SIZE
    # The breast rests on the chest-wall edge and leaves the opposite edge free.
    assert breast[:, chest_col].sum() > (0.3 if view == "CC" else 0.15) * SIZE
    assert not breast[:, SIZE - 1 - chest_col].any()


def test_laterality_mirrors_the_breast() -> None:
    left = generate_case(5, "benign", "L", "CC", size=SIZE)
    right = generate_case(5, "benign", "R", "CC", size=SIZE)
    assert np.array_equal(left.image[:, ::-1], right.image)
    assert np.array_equal(left.breast_mask[:, ::-1], right.breast_mask)
    assert right.centre[0] == pytest.approx(SIZE - left.centre[0])
    half = SIZE // 2
    assert left.image[:, :half].mean() > 2 * left.image[:, half:][~left.label_mask[:, half:]].mean()


def test_images_look_like_mammograms() -> None:
    for seed in range(4):
        case = generate_case(seed, seed % 2, "L", ["CC", "MLO"][seed % 2])
        img = case.image.astype(float)
        background = ~(case.breast_mask | case.pectoral_mask | case.label_mask | case.lesion_mask)
        # Leave a band round the breast out (the blurred skin edge).
        from scipy import ndimage as ndi

        background &= ~ndi.binary_dilation(case.breast_mask | case.pectoral_mask, iterations=4)
        assert img[background].mean() < 25  # dark film background
        breast = img[case.breast_mask]
        assert np.median(breast) > 2 * img[background].mean() + 40
        assert img[case.label_mask].mean() > np.median(breast)  # burned-in labels are bright
        if case.pectoral_mask.any():
            assert np.median(img[case.pectoral_mask]) > np.median(breast)  # muscle brighter than tissue
        # Intensity falls off towards the skin: the outer rim is darker than the inside.
        # (rim: breast pixels within 6 px of the background, i.e. of the skin; not the
        # chest-wall edge, not the muscle border)
        outside = ~(case.breast_mask | case.pectoral_mask | case.lesion_mask)
        outside[:, 0] = outside[0, :] = outside[-1, :] = False
        rim = case.breast_mask & ndi.binary_dilation(outside, iterations=6)
        inner = ndi.binary_erosion(case.breast_mask, iterations=25)
        assert rim.sum() > 500
        assert img[rim].mean() < img[inner].mean() - 20
        # Fibroglandular texture: the breast is not flat.
        assert breast.std() > 8


def test_malignant_masks_are_less_compact_than_benign() -> None:
    def compactness(seed: int, label: str) -> float:
        m = generate_case(seed, label, "L", "CC").lesion_mask
        return perimeter(m) ** 2 / (4 * np.pi * m.sum())

    benign = [compactness(s, "benign") for s in range(10)]
    malignant = [compactness(s, "malignant") for s in range(10)]
    assert max(benign) < 1.3  # round/oval, smooth margin (a disc gives about 1.0-1.1)
    assert min(malignant) > 3.0  # irregular outline with spicules
    assert min(malignant) > 2 * max(benign)


def test_classes_share_size_and_brightness() -> None:
    stats: dict[int, list[tuple[float, float]]] = {BENIGN: [], MALIGNANT: []}
    for seed in range(12):
        for label in (BENIGN, MALIGNANT):
            case = generate_case(seed, label, "L", "CC")
            img = case.image.astype(float)
            excess = img[case.lesion_mask].mean() - np.median(img[case.breast_mask])
            stats[label].append((case.radius, excess))
    r_b, e_b = np.array(stats[BENIGN]).T
    r_m, e_m = np.array(stats[MALIGNANT]).T
    assert 0.75 < r_m.mean() / r_b.mean() < 1.33  # core radii from the same range
    assert e_b.mean() > 15 and e_m.mean() > 15  # visible masses in both classes
    assert 0.6 < e_m.mean() / e_b.mean() < 1.4  # not separable by brightness alone


def test_sixteen_bit_option(tmp_path: Path) -> None:
    case = generate_case(3, "benign", "R", "MLO", size=SIZE, bit_depth=16)
    assert case.image.dtype == np.uint16 and case.image.max() > 50_000
    path = tmp_path / "x.png"
    Image.fromarray(case.image).save(path)
    data = read_image(path)
    assert data.bit_depth == 16
    eight = generate_case(3, "benign", "R", "MLO", size=SIZE)
    assert np.abs(data.pixels * 255 - eight.image).max() <= 1.0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="laterality"):
        generate_case(0, "benign", "X", "CC")
    with pytest.raises(ValueError, match="view"):
        generate_case(0, "benign", "L", "ML")
    with pytest.raises(ValueError, match="label"):
        generate_case(0, "maybe", "L", "CC")


# ----------------------------------------------------------------- cohort structure


def test_manifest_layout_and_patient_structure(cohort: Path, rows: list[dict[str, str]]) -> None:
    assert list(rows[0].keys()) == list(MANIFEST_COLUMNS)
    assert len(rows) == 2 * N_PATIENTS
    by_patient: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_patient.setdefault(r["patient_id"], []).append(r)
        assert r["path"] == f"images/{r['image_id']}.png"
        assert r["image_id"] == f"{r['patient_id']}_{r['laterality']}_{r['view']}"
        assert (cohort / r["path"]).is_file() and (cohort / r["mask_path"]).is_file()
    assert sorted(by_patient) == [f"SYN{i:04d}" for i in range(1, N_PATIENTS + 1)]
    for pid, views in by_patient.items():
        assert sorted(v["view"] for v in views) == ["CC", "MLO"], pid
        assert len({(v["label"], v["laterality"], v["split"], v["shape"]) for v in views}) == 1, pid
    labels = [v[0]["label"] for v in by_patient.values()]
    assert labels.count("malignant") == round(0.4 * N_PATIENTS)
    splits = [v[0]["split"] for v in by_patient.values()]
    assert set(splits) == {"train", "test"} and 1 <= splits.count("test") <= N_PATIENTS // 2
    meta = json.loads((cohort / "cohort.json").read_text())
    assert meta["version"] == GENERATOR_VERSION and meta["seed"] == 7 and meta["n_patients"] == N_PATIENTS
    assert meta["n_images"] == 2 * N_PATIENTS and meta["size"] == SIZE


def test_default_cohort_balance_and_split() -> None:
    # The plan alone (no pixels): the default 80 patients.
    from mammocadx.datasets.synthetic import _plan

    plan = _plan(80, 0)
    labels = np.array([p.label for p in plan])
    test = np.array([p.split == "test" for p in plan])
    assert labels.sum() == 32  # 40 % malignant
    assert test.sum() == 20  # 25 % of patients
    assert labels[test].sum() == 8  # stratified: 40 % malignant in test too
    assert {p.laterality for p in plan} == {"L", "R"}
    assert [p.patient_id for p in plan] == [p.patient_id for p in _plan(80, 0)]


def test_records_match_the_masks(cohort: Path) -> None:
    records = read_synthetic_manifest(cohort)
    assert len(records) == 2 * N_PATIENTS
    for rec in records:
        mask = _png(rec.roi.mask_path) > 0
        ys, xs = np.nonzero(mask)
        assert rec.extra["box"] == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        cx, cy = rec.extra["centre"]
        assert mask[int(cy), int(cx)], "the mass centre lies in its mask"
        breast = _png(rec.extra["breast_mask"]) > 0
        assert not (mask & ~breast).any()
        pect = _png(rec.extra["pectoral_mask"]) > 0
        assert pect.any() == (rec.view == "MLO")
        image = read_image(rec.image_path)
        assert image.shape == (SIZE, SIZE) and image.bit_depth == 8
        assert rec.label in (BENIGN, MALIGNANT) and rec.laterality in {"L", "R"}
        assert rec.sample_id == rec.image_id == rec.image_path.stem
        assert rec.extra["margin"] == ("spiculated" if rec.label == MALIGNANT else "circumscribed")


# ----------------------------------------------------------------- loading and caching


def test_load_synthetic_caches_under_the_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAMMOCADX_CACHE_DIR", str(tmp_path / "cache"))
    records = load_synthetic(n_patients=3, seed=1, size=SIZE)
    folder = cohort_dir(3, 1, SIZE)
    assert folder == tmp_path / "cache" / f"synthetic-v{GENERATOR_VERSION}-s1-n3-{SIZE}"
    assert len(records) == 6 and all(r.image_path.is_file() for r in records)
    assert all(folder in r.image_path.parents for r in records)
    stamp = (folder / "cohort.json").stat().st_mtime_ns
    again = load_synthetic(n_patients=3, seed=1, size=SIZE)
    assert (folder / "cohort.json").stat().st_mtime_ns == stamp  # reused, not regenerated
    assert [r.image_id for r in again] == [r.image_id for r in records]
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]  # no temp folders left


def test_load_synthetic_into_a_user_folder(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()  # empty folder: generated into
    records = load_synthetic(folder, n_patients=2, seed=3, size=SIZE)
    assert len(records) == 4 and (folder / "manifest.csv").is_file()
    # No parameters: whatever the folder holds.
    assert len(load_synthetic(folder)) == 4
    # A parameter that differs from cohort.json: regenerated.
    assert len(load_synthetic(folder, n_patients=3, size=SIZE)) == 6
    assert json.loads((folder / "cohort.json").read_text())["n_patients"] == 3


def test_load_synthetic_refuses_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"not ours")
    with pytest.raises(DatasetError, match="not a synthetic cohort"):
        load_synthetic(tmp_path / "photos")
    assert (tmp_path / "photos" / "cat.jpg").read_bytes() == b"not ours"


def test_malformed_manifest_names_the_file(tmp_path: Path) -> None:
    folder = make_synthetic_cohort(tmp_path / "c", n_patients=1, size=SIZE)
    text = (folder / "manifest.csv").read_text().splitlines()
    text[1] = text[1].replace("benign", "unsure").replace("malignant", "unsure")
    (folder / "manifest.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(DatasetError, match="row 2") as info:
        read_synthetic_manifest(folder)
    assert info.value.path == folder / "manifest.csv"
