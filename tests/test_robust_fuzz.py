"""Property-based fuzzing of the readers and parsers: a result or a typed error, never a crash or a hang.

Bounded to a few seconds in the default suite (fixed example counts, derandomised
so CI is repeatable). For a long run::

    MAMMOCADX_FUZZ_EXAMPLES=5000 python -m pytest tests/test_robust_fuzz.py -m "slow or not slow"

The ``slow``-marked twins run 20x more (random) examples by default.
"""
from __future__ import annotations

import atexit
import contextlib
import csv
import importlib.util
import io
import logging
import math
import shutil
import struct
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest_persist import fuzz_examples, guarded, sample_image, valid_files
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mammocadx.datasets.records import LesionRecord
from mammocadx.errors import DatasetError, DicomError, ImageReadError
from mammocadx.io.images import read_image

FAST = dict(deadline=None, derandomize=True, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LONG = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def twin(strategy: Any, body: Callable[..., None], fast: int, long: int | None = None):
    """A fast test (``fast`` examples) and a slow-marked twin (``long``) for the same body."""
    quick = settings(max_examples=fuzz_examples(fast), **FAST)(given(strategy)(body))
    slow = pytest.mark.slow(settings(max_examples=fuzz_examples(long or 20 * fast), **LONG)(given(strategy)(body)))
    return quick, slow


_WORK = Path(tempfile.mkdtemp(prefix="mammocadx-fuzz-"))
atexit.register(shutil.rmtree, _WORK, ignore_errors=True)
_VALID = valid_files(_WORK)


def _write(data: bytes, name: str) -> Path:
    p = _WORK / name
    p.write_bytes(data)
    return p


def _check_image(im) -> None:
    px = im.pixels
    assert px.ndim == 2 and px.dtype == np.float32 and min(px.shape) >= 1
    assert np.isfinite(px).all() and px.min() >= 0.0 and px.max() <= 1.0


# ------------------------------------------------------------------------------- image bytes

MAGICS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", b"II*\x00", b"MM\x00*",
          b"II+\x00", b"P5", b"P5 4 4 255\n", b"P2 3 3 255\n", b"BM", b"\x00" * 128 + b"DICM", b""]
EXTS = [".png", ".jpg", ".tif", ".pgm", ".bmp", ".dcm", ".bin"]

magic_then_noise = st.tuples(st.sampled_from(MAGICS), st.binary(max_size=600), st.sampled_from(EXTS)).map(
    lambda t: (t[0] + t[1], f"noise{t[2]}"))


@st.composite
def mutated_valid(draw):
    name = draw(st.sampled_from(sorted(_VALID)))
    data = bytearray(_VALID[name])
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        # Headers live at the start: bias positions there, where parsers make decisions.
        pos = draw(st.one_of(st.integers(0, min(400, len(data) - 1)), st.integers(0, len(data) - 1)))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[pos] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        else:
            del data[max(pos, 1):]
        if not data:
            data = bytearray(b"\0")
    return bytes(data), name


def _read_bytes_body(case: tuple[bytes, str]) -> None:
    data, name = case
    p = _write(data, name)
    kind, value = guarded(read_image, p, expected=ImageReadError)
    if kind == "ok":
        _check_image(value)
    else:
        assert value.reason and p.name in str(value)


test_fuzz_read_image_magic_prefixes, test_fuzz_read_image_magic_prefixes_long = twin(
    magic_then_noise, _read_bytes_body, fast=60)
test_fuzz_read_image_mutated_files, test_fuzz_read_image_mutated_files_long = twin(
    mutated_valid(), _read_bytes_body, fast=100)


# ------------------------------------------------------------------------------- DICOM headers

def _num_text():
    return st.one_of(st.sampled_from(["0", "-1", "1", "4095", "nan", "inf", "-inf", "1e308", "", "abc", "1\\2"]),
                     st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda v: f"{v:.6g}"))


@contextlib.contextmanager
def _quiet_pydicom():
    """pydicom logs a warning per odd value; thousands of them only slow the run down."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@st.composite
def dicom_headers(draw):
    """A tiny DICOM whose image attributes are drawn at random, pixel data of a plausible or wrong length."""
    from conftest_dicom import make_dataset
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    rows, cols = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.int16]))
    arr = sample_image(draw(st.integers(0, 3)), (rows, cols)).astype(dtype)
    ds = make_dataset(arr, modality=draw(st.sampled_from(["MG", "CT", None])))
    tags: dict[str, Any] = {}
    if draw(st.booleans()):
        tags["BitsAllocated"] = draw(st.sampled_from([0, 1, 8, 12, 16, 24, 32, 64]))
    if draw(st.booleans()):
        tags["BitsStored"] = draw(st.integers(0, 40))
    if draw(st.booleans()):
        tags["HighBit"] = draw(st.integers(0, 40))
    if draw(st.booleans()):
        tags["PixelRepresentation"] = draw(st.integers(0, 2))
    if draw(st.booleans()):
        tags["PhotometricInterpretation"] = draw(st.sampled_from(
            ["MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "", "monochrome2"]))
    if draw(st.booleans()):
        tags["SamplesPerPixel"] = draw(st.integers(0, 4))
    if draw(st.booleans()):
        tags["NumberOfFrames"] = draw(st.sampled_from(["1", "2", "0", "-1", "x", ""]))
    if draw(st.booleans()):
        tags["Rows"] = draw(st.sampled_from([0, 1, rows + 1, 65535]))
    if draw(st.booleans()):
        tags["WindowCenter"] = draw(_num_text())
        tags["WindowWidth"] = draw(_num_text())
    if draw(st.booleans()):
        tags["VOILUTFunction"] = draw(st.sampled_from(["LINEAR", "LINEAR_EXACT", "SIGMOID", "BOGUS", ""]))
    if draw(st.booleans()):
        tags["RescaleSlope"] = draw(_num_text())
        tags["RescaleIntercept"] = draw(_num_text())
    if draw(st.booleans()):
        tags["PresentationIntentType"] = draw(st.sampled_from(["FOR PROCESSING", "FOR PRESENTATION", "?"]))
    if draw(st.booleans()):
        tags["ImageLaterality"] = draw(st.sampled_from(["L", "R", "B", "", "LEFT", "\x00"]))
    voi = None
    if draw(st.booleans()):
        n = draw(st.integers(0, 8))
        voi = ([draw(st.integers(0, 70000)), draw(st.integers(-5, 5)), draw(st.sampled_from([0, 8, 16, 17]))],
               [draw(st.integers(0, 65535)) for _ in range(n)])
    pixel_delta = draw(st.sampled_from([0, 0, 0, -1, 1, -arr.nbytes // 2, 100]))
    try:
        with _quiet_pydicom(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for k, v in tags.items():
                setattr(ds, k, v)
            if voi is not None:
                item = Dataset()
                item.LUTDescriptor = voi[0]
                item.LUTData = voi[1]
                item["LUTData"].VR = "US"
                ds.VOILUTSequence = Sequence([item])
            raw = arr.tobytes()
            ds.PixelData = raw[: max(len(raw) + pixel_delta, 0)] if pixel_delta <= 0 else raw + b"\0" * pixel_delta
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
    except (ValueError, TypeError, OverflowError, KeyError, AttributeError, OSError, struct.error):
        assume(False)  # pydicom refuses to write it: not an input a reader can meet
    return buf.getvalue()


def _dicom_body(data: bytes) -> None:
    from mammocadx.io.dicom import read_dicom

    p = _write(data, "fuzz.dcm")
    for force in (False, True):
        with _quiet_pydicom():
            kind, value = guarded(read_dicom, p, force=force, expected=DicomError)
        if kind == "ok":
            _check_image(value)
        else:
            assert value.reason


test_fuzz_dicom_attributes, test_fuzz_dicom_attributes_long = twin(dicom_headers(), _dicom_body, fast=40)


# ------------------------------------------------------------------------------- mini-MIAS Info.txt

_MIAS_TOKENS = ["F", "G", "D", "CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM", "NORM", "B", "M", "*NOTE", "3*",
                "535", "425", "197", "0", "1024", "1025", "-1", "nan", "inf", "1e309", "1_000", "0x10", "+5",
                "\u0661\u0662", "\uff15", "", "mdb001", "\t"]

_NUM = st.one_of(st.sampled_from(["535", "425", "197", "0", "1024", "1025", "-1", "nan", "NaN", "inf", "-0",
                                   "1e309", "1_000", "0x10", "+5", "5.", ".5", "\uff15", "\u0661"]),
                 st.floats(-10, 1100).map(lambda v: f"{v:g}"), st.integers(0, 1024).map(str))
info_row = st.tuples(
    st.integers(0, 999), st.sampled_from(["F", "G", "D", "X"]),
    st.sampled_from(["CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM", "NORM", "circ"]),
    st.one_of(st.none(), st.tuples(st.sampled_from(["B", "M", "b", "*"]),
                                   st.one_of(st.lists(_NUM, min_size=3, max_size=3), st.none(), st.just(["*NOTE", "3*"]),
                                             st.lists(_NUM, max_size=4)))),
).map(lambda t: " ".join([f"mdb{t[0]:03d}", t[1], t[2]] + ([] if t[3] is None else
                                                            [t[3][0], *(t[3][1] or [])])))
info_line = st.one_of(
    info_row,
    st.tuples(st.integers(0, 999), st.lists(st.sampled_from(_MIAS_TOKENS), max_size=8),
              st.sampled_from([" ", "  ", "\t", " \t "])).map(
        lambda t: f"mdb{t[0]:03d}{t[2]}" + t[2].join(t[1])),
    st.text(max_size=60),
    st.sampled_from(["mdb001 G CIRC B 535 425 197", "mdb059 F CIRC B", "mdb219 G CALC B *NOTE 3*",
                     "mdb003 D NORM", "mdb144 F MISC M 233 994 29", "=" * 40]),
)
info_text = st.lists(info_line, max_size=25).map("\n".join)


def _info_body(text: str) -> None:
    from mammocadx.datasets import mias

    kind, rows = guarded(mias.parse_info, text, expected=DatasetError, timeout=10)
    if kind == "refused":
        assert rows.reason
        return
    assert rows
    for r in rows:
        assert r.refnum.startswith("mdb") and len(r.refnum) == 6
        if r.x is not None:  # what later stages rely on: a circle inside the 1024 x 1024 film
            assert math.isfinite(r.x) and math.isfinite(r.y) and 0 <= r.x <= 1024 and 0 <= r.y <= 1024
            assert math.isfinite(r.radius) and r.radius > 0, f"radius {r.radius!r} accepted"


_no_mias = pytest.mark.skipif(importlib.util.find_spec("mammocadx.datasets.mias") is None,
                              reason="mammocadx.datasets.mias not in this tree yet")
test_fuzz_mias_info_parser, test_fuzz_mias_info_parser_long = (
    _no_mias(t) for t in twin(info_text, _info_body, fast=200))


# ------------------------------------------------------------------------------- CSV manifest

_COLUMNS = ["path", "label", "patient_id", "split", "laterality", "view", "box_x", "box_y", "box_w", "box_h",
            "cx", "cy", "r", "mask_path", "notes", " PATH ", "Label", ""]
_VALUES = ["img0.png", "sub/img1.png", "img2.png", "../img0.png", "/etc/passwd", "C:\\x.png", "sub/../img0.png",
           "sub\\img1.png", "missing.png", ".", "", "benign", "malignant", "B", "M", "0", "1", "BENIGN_WITHOUT_CALLBACK",
           "maybe", "p1", "p2", "train", "test", "L", "RIGHT", "X", "CC", "10", "0", "-5", "1e400", "nan", "inf",
           "3.5", "img0.png\x00", "\ufeffbenign", "=cmd|' /C calc'!A0", "a,b", 'quo"te', "line\nbreak"]


@st.composite
def manifests(draw):
    header = draw(st.lists(st.sampled_from(_COLUMNS), min_size=1, max_size=10))
    if draw(st.booleans()):
        header = ["path", "label", "patient_id"] + header
    rows = draw(st.lists(st.lists(st.sampled_from(_VALUES) | st.text(max_size=12),
                                  min_size=len(header) - 1, max_size=len(header) + 1), max_size=8))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    text = buf.getvalue()
    if draw(st.booleans()):
        text = draw(st.sampled_from(["\ufeff", "", ";"])) + text
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "latin-1", "utf-16"]))
    return text.encode(encoding, errors="replace")


def _manifest_root() -> Path:
    root = _WORK / "manifest" / "ds"
    if not root.is_dir():
        (root / "sub").mkdir(parents=True)
        for rel in ("img0.png", "sub/img1.png", "img2.png"):
            (root / rel).write_bytes(b"x")
        (root.parent / "img0.png").write_bytes(b"outside")  # what "../img0.png" would reach
    return root


def _manifest_body(data: bytes) -> None:
    from mammocadx.datasets.manifest import load_manifest

    root = _manifest_root()
    (root / "manifest.csv").write_bytes(data)
    logger = logging.getLogger("mammocadx.datasets.manifest")
    level = logger.level
    logger.setLevel(logging.ERROR)  # skipped-row warnings, one per example
    try:
        kind, records = guarded(load_manifest, root, expected=DatasetError, timeout=10)
    finally:
        logger.setLevel(level)
    if kind == "refused":
        assert records.reason
        return
    base = root.resolve()
    for rec in records:
        assert isinstance(rec, LesionRecord) and rec.label in (0, 1) and rec.patient_id
        assert Path(rec.image_path).resolve().is_relative_to(base), rec.image_path  # never outside
        assert Path(rec.image_path).is_file()
        for values in (rec.roi.circle, rec.roi.box):
            if values is not None:
                assert all(math.isfinite(v) for v in values)
        if rec.roi.mask_path is not None:
            assert Path(rec.roi.mask_path).resolve().is_relative_to(base)


test_fuzz_csv_manifest, test_fuzz_csv_manifest_long = twin(manifests(), _manifest_body, fast=80)
