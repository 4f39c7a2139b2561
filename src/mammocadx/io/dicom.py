"""Read a mammogram from a DICOM file, the way a viewer would show it.

The grey levels follow the DICOM standard's display pipeline (PS3.4 N.2.1),
in this order:

1. **Modality LUT** -- the *Modality LUT Sequence* or *Rescale Slope /
   Intercept* turn stored values into modality values (pydicom's
   :func:`~pydicom.pixels.apply_modality_lut`), kept as float64: 12-16 bits
   stored are never squeezed to 8 bits before windowing.
2. **VOI** (when ``apply_voi=True``, the default) -- the file's own *VOI LUT
   Sequence* (preferred when present, as pydicom does), else its first *Window
   Center / Width* pair with its *VOI LUT Function* (``LINEAR``,
   ``LINEAR_EXACT`` or ``SIGMOID``). A file without any VOI gets a fallback:
   the min-max range of its modality values, except ``FOR PROCESSING`` images
   (raw detector data, not meant to be displayed as is), which get a
   0.5-99.5 percentile window and a logged warning. ``apply_voi=False`` always
   takes the min-max range.
3. **Presentation** -- ``MONOCHROME1`` images (and any image whose
   *Presentation LUT Shape* is ``INVERSE``) are inverted once, so that the
   output is always "bright = dense".

The result is float32 in [0, 1]. What was done is recorded in
:attr:`ImageData.meta <mammocadx.records.ImageData.meta>` (keys listed in
:func:`read_dicom`).

Before a single pixel is decoded the header is read alone
(``stop_before_pixels``) and checked: single frame, ``MONOCHROME1``/``2``,
modality ``MG`` (others refused unless ``force=True``), a bounded size (a
decompression-bomb guard), pixel data present and, for uncompressed transfer
syntaxes, as long as the header says. Compressed transfer syntaxes (RLE, JPEG
lossless, JPEG 2000, JPEG-LS ...) are decoded by pydicom's plugins
(pylibjpeg, pylibjpeg-libjpeg/-openjpeg/-rle, pyjpegls). Every failure is a
:class:`~mammocadx.errors.DicomError` naming the file and the reason.

Orientation is *not* changed here: laterality and view are read and recorded
so that a later stage can flip to a canonical side and record it.
"""
from __future__ import annotations

import logging
import re
import warnings
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from mammocadx.errors import DicomError
from mammocadx.io.limits import MAX_PIXELS
from mammocadx.records import ImageData

log = logging.getLogger(__name__)

#: Modalities read without ``force``.
ACCEPTED_MODALITIES = frozenset({"MG"})
#: SOP classes of mammography images (For Presentation, For Processing).
MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
MG_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
MAMMOGRAPHY_SOP_CLASSES = frozenset({MG_FOR_PRESENTATION, MG_FOR_PROCESSING})
#: Series descriptions of images derived from a mammogram (CBIS-DDSM ROI masks
#: and crops), accepted whatever their Modality tag says.
_DERIVED_SERIES = re.compile(r"roi\s*mask|cropped", re.IGNORECASE)
#: Percentiles of the fallback window used for FOR PROCESSING images without VOI.
PROCESSING_PERCENTILES = (0.5, 99.5)

_VIEW_CODES = ("XCCL", "XCCM", "MLO", "LMO", "CC", "ML", "LM", "FB", "SIO", "AT", "CV")
_VIEW_MEANINGS = {
    "medio-lateral oblique": "MLO",
    "cranio-caudal exaggerated laterally": "XCCL",
    "cranio-caudal exaggerated medially": "XCCM",
    "cranio-caudal": "CC",
    "medio-lateral": "ML",
    "latero-medial oblique": "LMO",
    "latero-medial": "LM",
}


def laterality_from_text(text: str | None) -> str | None:
    """Find a breast side in a name such as ``Mass-Training_P_00001_LEFT_CC`` or ``R_MLO``.

    Returns ``"L"``, ``"R"`` or ``None`` when the text names no side or both.
    Tokens are separated by anything that is not a letter, so ``P_00001_LEFT_CC``,
    ``left-cc`` and ``RMLO`` are understood; words that merely contain "left"
    (``cleft``) are not.
    """
    if not text:
        return None
    found: set[str] = set()
    for m in re.finditer(r"(?<![A-Za-z])(LEFT|RIGHT)(?![A-Za-z])", text, re.IGNORECASE):
        found.add(m.group(1)[0].upper())
    for m in re.finditer(r"(?<![A-Za-z])([LR])[_\- ]?(XCCL|XCCM|CC|MLO|ML|LM)(?![A-Za-z])", text, re.IGNORECASE):
        found.add(m.group(1).upper())
    return found.pop() if len(found) == 1 else None


def view_from_text(text: str | None) -> str | None:
    """Find a mammographic view (``CC``, ``MLO``, ``ML``, ``LM``, ``XCCL`` ...) in a name.

    Returns the view in capitals, or ``None`` when the text names none or several.
    """
    if not text:
        return None
    found: set[str] = set()
    codes = "|".join(_VIEW_CODES)
    for m in re.finditer(rf"(?<![A-Za-z])(?:LEFT|RIGHT|[LR])?[_\- ]?({codes})(?![A-Za-z])", text, re.IGNORECASE):
        found.add(m.group(1).upper())
    return found.pop() if len(found) == 1 else None


def _text(ds: Any, keyword: str) -> str:
    """A tag's value as a plain string ('' when absent or empty)."""
    value = ds.get(keyword, None)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _laterality(ds: Any, path: Path) -> tuple[str | None, str | None]:
    """(laterality, where it came from) following ImageLaterality > Laterality > PatientOrientation > names."""
    for keyword in ("ImageLaterality", "Laterality"):
        value = _text(ds, keyword).upper()
        if value in {"L", "R"}:
            return value, keyword
    side = _side_from_orientation(ds)
    if side:
        return side, "PatientOrientation"
    return _from_names(ds, path, laterality_from_text)


def _side_from_orientation(ds: Any) -> str | None:
    """The breast side implied by Patient Orientation under standard hanging, or None."""
    orientation = ds.get("PatientOrientation", None)
    if orientation is not None and len(orientation) == 2:
        # Standard hanging (PS3.3 C.8.11.7, e.g. left CC = "A\R", right MLO = "P\FL"): the
        # column direction points medially, i.e. towards the patient's other side.
        col = str(orientation[1]).upper()
        if ("R" in col) != ("L" in col):
            return "L" if "R" in col else "R"
    return None


_NAME_KEYWORDS = ("PatientID", "SeriesDescription", "StudyDescription", "PatientName")


def _from_names(ds: Any, path: Path, parse: Any) -> tuple[str | None, str | None]:
    """Last resort for laterality/view: names such as ``LEFT_CC`` in text tags, then in the path."""
    for where, value in _name_values(ds, path, parse).items():
        return value, where
    return None, None


def _name_values(ds: Any, path: Path, parse: Any) -> dict[str, str]:
    """Every text tag (and the nearest path part) that names a side or view, with what it names."""
    found = {k: v for k in _NAME_KEYWORDS if (v := parse(_text(ds, k)))}
    for part in reversed(path.parts):
        if value := parse(part):
            found["path"] = value
            break
    return found


_VIEW_FAMILY = {"XCCL": "CC", "XCCM": "CC"}


def _disagreement(what: str, values: dict[str, str], family: dict[str, str] | None = None) -> str | None:
    """A warning when ``values`` (where each came from -> value) name more than one thing."""
    family = family or {}
    if len({family.get(v, v) for v in values.values()}) < 2:
        return None
    listed = ", ".join(f"{where} {value}" for where, value in values.items())
    return f"{what} contradicts itself ({listed}); check the image is the one meant"


def header_warnings(ds: Any, path: str | PathLike[str]) -> list[str]:
    """What a PACS user should hear about before trusting a result on this image (never a refusal).

    - a ``FOR PROCESSING`` image (raw detector data, not meant to be read);
    - a presentation intent that contradicts the SOP class (For Presentation vs For Processing storage);
    - a laterality or view that contradicts itself across the header (Image Laterality, Laterality,
      Patient Orientation, View Position, View Code Sequence) or the names (Series Description,
      Patient ID ..., the file path), e.g. a ``LEFT_CC`` series whose Image Laterality is ``R``.
    """
    path = Path(path)
    out: list[str] = []
    intent = _text(ds, "PresentationIntentType").upper()
    sop = _text(ds, "SOPClassUID")
    if intent == "FOR PROCESSING" or sop == MG_FOR_PROCESSING:
        out.append("FOR PROCESSING image (raw detector data, not meant to be read): results may differ from those "
                   "on the FOR PRESENTATION image of the same exposure")
    if intent == "FOR PROCESSING" and sop == MG_FOR_PRESENTATION:
        out.append("Presentation Intent Type FOR PROCESSING contradicts the SOP class (Digital Mammography For "
                   "Presentation)")
    elif intent == "FOR PRESENTATION" and sop == MG_FOR_PROCESSING:
        out.append("Presentation Intent Type FOR PRESENTATION contradicts the SOP class (Digital Mammography For "
                   "Processing)")
    sides = {k: v for k in ("ImageLaterality", "Laterality") if (v := _text(ds, k).upper()) in {"L", "R"}}
    if side := _side_from_orientation(ds):
        sides["PatientOrientation"] = side
    sides |= _name_values(ds, path, laterality_from_text)
    views: dict[str, str] = {}
    if value := _text(ds, "ViewPosition").upper():
        views["ViewPosition"] = value
    if value := _view_from_code(ds):
        views["ViewCodeSequence"] = value
    views |= _name_values(ds, path, view_from_text)
    out += [w for w in (_disagreement("laterality", sides), _disagreement("view", views, _VIEW_FAMILY)) if w]
    return out


def _view(ds: Any, path: Path) -> tuple[str | None, str | None]:
    """(view, where it came from) following ViewPosition > ViewCodeSequence > names."""
    value = _text(ds, "ViewPosition").upper()
    if value:
        return value, "ViewPosition"
    value = _view_from_code(ds)
    if value:
        return value, "ViewCodeSequence"
    return _from_names(ds, path, view_from_text)


def _view_from_code(ds: Any) -> str | None:
    """The view named by the View Code Sequence's first code meaning, or None."""
    seq = ds.get("ViewCodeSequence", None)
    if seq:
        meaning = str(seq[0].get("CodeMeaning", "")).strip().lower()
        for words, code in _VIEW_MEANINGS.items():
            if meaning.startswith(words):
                return code
    return None


def _int_tag(ds: Any, keyword: str, path: Path, default: int | None = None) -> int:
    value = ds.get(keyword, default)
    if value is None:
        raise DicomError(f"header lacks {keyword}", path)
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise DicomError(f"header has an invalid {keyword} ({value!r})", path) from exc


def _dcmread(path: Path, stop_before_pixels: bool) -> Any:
    """pydicom.dcmread with every failure turned into DicomError.

    Files without the 128-byte preamble + ``DICM`` (old ACR-NEMA style) are
    retried with ``force=True`` and kept only if they hold an image header.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
            except InvalidDicomError:
                ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
                if "Rows" not in ds or "Columns" not in ds:
                    raise DicomError("not a DICOM file (no DICM header and no image attributes)", path) from None
                return ds
    except DicomError:
        raise
    except OSError as exc:
        raise DicomError(f"cannot open ({exc.strerror or exc})", path) from exc
    except Exception as exc:  # pydicom raises many kinds on corrupt files (EOFError, struct.error, KeyError ...)
        raise DicomError(f"corrupt DICOM header ({type(exc).__name__}: {exc})", path) from exc


def read_dicom_header(path: str | PathLike[str], force: bool = False, max_pixels: int = MAX_PIXELS) -> Any:
    """Read and check a DICOM header without touching its pixel data.

    Parameters
    ----------
    path : str or PathLike
        The file.
    force : bool
        Accept modalities other than ``MG`` (and files without a Modality).
    max_pixels : int
        Largest rows x columns accepted (decompression-bomb guard).

    Returns
    -------
    pydicom.dataset.FileDataset
        The header (no pixel data).

    Raises
    ------
    DicomError
        Empty or corrupt header, multi-frame, colour, unsupported bits, too
        large, wrong modality (unless ``force``).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about odd tag values; we check what matters
        return _read_dicom_header(Path(path), force, max_pixels)


def _read_dicom_header(path: Path, force: bool, max_pixels: int) -> Any:
    if not path.is_file():
        raise DicomError("file not found" if not path.exists() else "not a regular file", path)
    if path.stat().st_size == 0:
        raise DicomError("empty file (0 bytes)", path)
    ds = _dcmread(path, stop_before_pixels=True)
    frames = ds.get("NumberOfFrames", 1)
    try:
        frames = int(frames) if frames not in (None, "") else 1
    except (TypeError, ValueError):
        raise DicomError(f"header has an invalid NumberOfFrames ({frames!r})", path) from None
    if frames > 1:
        raise DicomError(f"multi-frame DICOM ({frames} frames; tomosynthesis?) is not supported: one 2-D mammogram per file", path)
    if "Rows" not in ds or "Columns" not in ds:
        sop = getattr(ds.get("SOPClassUID", None), "name", None) or _text(ds, "SOPClassUID") or "unknown SOP class"
        raise DicomError(f"not an image (no Rows/Columns; {sop})", path)
    samples = _int_tag(ds, "SamplesPerPixel", path, default=1)
    photometric = _text(ds, "PhotometricInterpretation").upper()
    if samples != 1 or photometric not in {"MONOCHROME1", "MONOCHROME2"}:
        raise DicomError(
            f"only greyscale MONOCHROME1/MONOCHROME2 images are read, this one is {photometric or 'unknown'} "
            f"with {samples} sample(s) per pixel",
            path,
        )
    rows, cols = _int_tag(ds, "Rows", path), _int_tag(ds, "Columns", path)
    bits_alloc = _int_tag(ds, "BitsAllocated", path)
    bits_stored = _int_tag(ds, "BitsStored", path, default=bits_alloc)
    if rows < 1 or cols < 1:
        raise DicomError(f"image has no pixels ({cols}x{rows})", path)
    if bits_alloc not in (1, 8, 16, 32) or not 1 <= bits_stored <= bits_alloc:
        raise DicomError(f"unsupported bit layout (BitsAllocated {bits_alloc}, BitsStored {bits_stored})", path)
    if rows * cols > max_pixels:
        raise DicomError(f"image too large ({cols}x{rows} pixels; limit {max_pixels})", path)
    modality = _text(ds, "Modality").upper()
    sop_class = _text(ds, "SOPClassUID")
    derived = bool(_DERIVED_SERIES.search(_text(ds, "SeriesDescription")))
    if modality not in ACCEPTED_MODALITIES and sop_class not in MAMMOGRAPHY_SOP_CLASSES and not derived and not force:
        raise DicomError(
            f"modality {modality or 'missing'} is not a mammogram (MG expected); force=True (CLI: --force) reads it anyway",
            path,
        )
    return ds


def _windowed(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """Window centre/width to [0, 1] by PS3.3 C.11.2.1.2 (LINEAR) and C.11.2.1.3 (LINEAR_EXACT, SIGMOID).

    Hand-written rather than pydicom's ``apply_windowing`` because that one scales
    its output to the stored bit range (which depends on rescale and signedness),
    which would have to be undone; these formulas give [0, 1] directly.
    """
    x = values.astype(np.float64, copy=False)
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    c, w = center - 0.5, width - 1.0
    if w <= 0:  # width 1: a hard threshold
        return (x > c).astype(np.float64)
    out = (x - c) / w + 0.5
    out[x <= c - w / 2.0] = 0.0
    out[x > c + w / 2.0] = 1.0
    return np.clip(out, 0.0, 1.0)


def _minmax(values: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    lo = float(values.min()) if lo is None else lo
    hi = float(values.max()) if hi is None else hi
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.float64)
    return np.clip((values.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0)


def _first(value: Any) -> float:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return float(value[0])
    return float(value)


def _apply_voi(ds: Any, modality: np.ndarray, intent: str, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """VOI stage: (values in [0, 1], what was applied)."""
    from pydicom.pixels import apply_voi

    seq = ds.get("VOILUTSequence", None)
    if seq and seq[0].get("LUTDescriptor", None) is not None and seq[0].get("LUTData", None) is not None:
        item = seq[0]
        n_entries, first_map, bits = (int(v) for v in item.LUTDescriptor)
        n_entries = n_entries or 65536
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                index = np.rint(modality).astype(np.int64)
                out = apply_voi(index, ds).astype(np.float64)
                # The LUT's own output range maps to [0, 1]: descriptors often misstate the
                # entry bit depth (16 declared, 12 used), so the declared range is not trusted.
                table = apply_voi(np.arange(first_map, first_map + n_entries, dtype=np.int64), ds)
        except Exception as exc:  # pydicom raises NotImplementedError/ValueError/AttributeError on bad LUTs
            log.warning("%s: unusable VOI LUT (%s); falling back to window/min-max", path, exc)
        else:
            lo, hi = float(table.min()), float(table.max())
            explanation = str(item.get("LUTExplanation", "")).strip()
            info = {"kind": "voi_lut", "entries": n_entries, "first_mapped": first_map, "bits": bits,
                    "explanation": explanation, "alternatives": len(seq)}
            return _minmax(out, lo, hi), info
    if ds.get("WindowCenter", None) not in (None, "") and ds.get("WindowWidth", None) not in (None, ""):
        try:
            center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        except (TypeError, ValueError, IndexError):
            center = width = float("nan")
        function = _text(ds, "VOILUTFunction").upper() or "LINEAR"
        if function not in {"LINEAR", "LINEAR_EXACT", "SIGMOID"}:
            log.warning("%s: unknown VOI LUT Function %r, LINEAR used", path, function)
            function = "LINEAR"
        minimum = 1.0 if function == "LINEAR" else 0.0
        if np.isfinite(center) and np.isfinite(width) and width >= minimum and width > 0:
            wc = ds.WindowCenter
            alternatives = len(wc) if isinstance(wc, (list, tuple)) or type(wc).__name__ == "MultiValue" else 1
            info = {"kind": "window", "center": center, "width": width, "function": function,
                    "alternatives": alternatives}
            return _windowed(modality, center, width, function), info
        log.warning("%s: invalid window (centre %s, width %s), ignored", path, center, width)
    if intent == "FOR PROCESSING":
        lo, hi = (float(v) for v in np.percentile(modality, PROCESSING_PERCENTILES))
        log.warning(
            "%s: FOR PROCESSING image without a VOI window: %.1f-%.1f percentile window used (%g..%g); "
            "a FOR PRESENTATION image of the same exposure is the better input",
            path, *PROCESSING_PERCENTILES, lo, hi,
        )
        return _minmax(modality, lo, hi), {"kind": "percentile", "percentiles": list(PROCESSING_PERCENTILES),
                                           "low": lo, "high": hi}
    lo, hi = float(modality.min()), float(modality.max())
    return _minmax(modality, lo, hi), {"kind": "minmax", "low": lo, "high": hi, "reason": "no VOI in the file"}


def read_dicom(
    path: str | PathLike[str],
    apply_voi: bool = True,
    force: bool = False,
    max_pixels: int = MAX_PIXELS,
) -> ImageData:
    """Read one single-frame greyscale DICOM mammogram as float32 in [0, 1], bright = dense.

    Parameters
    ----------
    path : str or PathLike
        The DICOM file (with or without the ``DICM`` preamble).
    apply_voi : bool, default True
        Apply the file's VOI (VOI LUT Sequence, else Window Center/Width with
        LINEAR, LINEAR_EXACT or SIGMOID). Files without VOI get the min-max
        range of their modality values (``FOR PROCESSING`` images: a
        0.5-99.5 percentile window and a warning). ``False``: always the
        min-max range of the modality values.
    force : bool, default False
        Read images whose Modality is not ``MG`` (or is missing).
    max_pixels : int
        Largest rows x columns accepted (a decompression-bomb guard).

    Returns
    -------
    ImageData
        ``format="dicom"``, ``bit_depth`` = Bits Stored, and ``meta`` with:
        ``laterality`` (``"L"``/``"R"``/None) and ``laterality_source``,
        ``view`` and ``view_source``, ``photometric``, ``bits_stored``,
        ``bits_allocated``, ``signed``, ``transfer_syntax``, ``modality``,
        ``presentation_intent`` (``"FOR PRESENTATION"``, ``"FOR PROCESSING"``
        or None), ``rescale`` (``{"slope", "intercept"}``, ``{"lut": ...}`` or
        None), ``window`` (what the VOI stage did: ``kind`` = ``voi_lut``,
        ``window``, ``percentile``, ``minmax`` or ``none``, with its
        parameters), ``inverted`` (bool) and ``inversion`` (why),
        ``sop_instance_uid``, ``series_description``, ``patient_id``,
        ``flipped`` (always False here: orientation is left to segmentation),
        ``warnings`` (list of str, see :func:`header_warnings`: FOR PROCESSING,
        contradicting intent, laterality or view; each also logged).

    Raises
    ------
    DicomError
        Not DICOM, empty, corrupt, multi-frame, colour, wrong modality
        (without ``force``), too large, no or truncated pixel data, a
        compressed syntax that cannot be decoded.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about odd tag values; we check what matters
        return _read_dicom(Path(path), apply_voi, force, max_pixels)


def _read_dicom(path: Path, apply_voi: bool, force: bool, max_pixels: int) -> ImageData:
    from pydicom.pixels import apply_modality_lut

    header = _read_dicom_header(path, force, max_pixels)
    rows, cols = int(header.Rows), int(header.Columns)
    bits_alloc = int(header.BitsAllocated)
    # The raw bytes can't exceed the uncompressed size by much; a bigger file is not one image.
    size_limit = rows * cols * max(bits_alloc, 8) // 8 * 2 + (16 << 20)
    if path.stat().st_size > size_limit:
        raise DicomError(f"file is {path.stat().st_size} bytes, far more than a {cols}x{rows} image needs", path)

    ds = _dcmread(path, stop_before_pixels=False)
    if "PixelData" not in ds:
        kinds = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        raise DicomError("no Pixel Data" + (f" (only {kinds[0]}, not supported)" if kinds else ""), path)
    tsyntax = ds.file_meta.get("TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
    ts_name = getattr(tsyntax, "name", str(tsyntax)) if tsyntax else "Implicit VR Little Endian (assumed)"
    if tsyntax is not None and not getattr(tsyntax, "is_transfer_syntax", True):
        # pydicom's UID.is_compressed raises ValueError for a UID that names no transfer syntax
        raise DicomError(f"Transfer Syntax UID {str(tsyntax)[:64]!r} is not a known transfer syntax", path)
    compressed = bool(tsyntax is not None and getattr(tsyntax, "is_compressed", False))
    if compressed:
        from pydicom.pixels import get_decoder

        try:
            decoder = get_decoder(tsyntax)
        except (NotImplementedError, ValueError) as exc:
            raise DicomError(f"no decoder for transfer syntax {ts_name} ({exc})", path) from exc
        if not decoder.is_available:
            missing = "; ".join(f"{k}: {', '.join(v)}" for k, v in decoder.missing_dependencies.items()) or "none installed"
            raise DicomError(f"cannot decode {ts_name}: missing plugin ({missing})", path)
    else:
        from pydicom.pixels.utils import get_expected_length

        try:
            expected = int(get_expected_length(ds))
        except Exception as exc:  # inconsistent group 0028 values
            raise DicomError(f"inconsistent image attributes ({exc})", path) from exc
        actual = len(ds.PixelData or b"")  # an empty element reads as None
        if actual < expected:
            raise DicomError(f"truncated pixel data ({actual} of {expected} bytes)", path)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stored = ds.pixel_array
    except MemoryError as exc:
        raise DicomError("not enough memory to decode the pixel data", path) from exc
    except Exception as exc:  # decoder plugins raise RuntimeError/ValueError/... on corrupt streams
        raise DicomError(f"cannot decode pixel data ({ts_name}; {type(exc).__name__}: {exc})", path) from exc
    if stored.ndim != 2 or stored.shape != (rows, cols):
        raise DicomError(f"decoded pixels have shape {stored.shape}, expected ({rows}, {cols})", path)

    # 1. Modality LUT / rescale, full precision.
    rescale: dict[str, Any] | None = None
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        # A multi-valued slope would broadcast into the pixel array (found by fuzzing).
        if keyword in ds and ds[keyword].VM > 1:
            raise DicomError(f"header has a multi-valued {keyword} ({ds[keyword].value!r})", path)
    try:
        modality = apply_modality_lut(stored, ds)
    except Exception as exc:  # malformed Modality LUT
        raise DicomError(f"unusable modality LUT ({type(exc).__name__}: {exc})", path) from exc
    if ds.get("ModalityLUTSequence"):
        rescale = {"lut": str(ds.ModalityLUTSequence[0].get("ModalityLUTType", "")).strip() or "unspecified"}
    elif "RescaleSlope" in ds and "RescaleIntercept" in ds:
        try:
            rescale = {"slope": float(ds.RescaleSlope), "intercept": float(ds.RescaleIntercept)}
        except (TypeError, ValueError) as exc:
            raise DicomError(f"header has an invalid rescale ({exc})", path) from exc
    modality = np.asarray(modality, dtype=np.float64)
    if not np.isfinite(modality).all():
        raise DicomError("pixel values are not finite after the modality LUT", path)

    # 2. VOI.
    intent = _text(ds, "PresentationIntentType").upper() or None
    if apply_voi:
        values, window = _apply_voi(ds, modality, intent or "", path)
    else:
        lo, hi = float(modality.min()), float(modality.max())
        values, window = _minmax(modality, lo, hi), {"kind": "minmax", "low": lo, "high": hi, "reason": "apply_voi=False"}

    # 3. Presentation: MONOCHROME1 (and Presentation LUT Shape INVERSE) -> invert once.
    photometric = _text(ds, "PhotometricInterpretation").upper()
    shape = _text(ds, "PresentationLUTShape").upper()
    inverted, inversion = False, None
    if photometric == "MONOCHROME1":
        inverted, inversion = True, "MONOCHROME1"
    elif shape == "INVERSE":
        inverted, inversion = True, "Presentation LUT Shape INVERSE"
    if inverted:
        values = 1.0 - values
    if "PresentationLUTSequence" in ds:
        log.warning("%s: Presentation LUT Sequence ignored (only its shape is honoured)", path)

    laterality, lat_source = _laterality(ds, path)
    view, view_source = _view(ds, path)
    warned = header_warnings(ds, path)
    for text in warned:
        log.warning("%s: %s", path, text)
    meta: dict[str, Any] = {
        "laterality": laterality,
        "laterality_source": lat_source,
        "view": view,
        "view_source": view_source,
        "photometric": photometric,
        "bits_stored": int(ds.get("BitsStored", bits_alloc)),
        "bits_allocated": bits_alloc,
        "signed": bool(int(ds.get("PixelRepresentation", 0) or 0)),
        "transfer_syntax": ts_name,
        "modality": _text(ds, "Modality") or None,
        "presentation_intent": intent,
        "rescale": rescale,
        "window": window,
        "inverted": inverted,
        "inversion": inversion,
        "sop_instance_uid": _text(ds, "SOPInstanceUID") or None,
        "series_description": _text(ds, "SeriesDescription") or None,
        "patient_id": _text(ds, "PatientID") or None,
        # Row/column directions (e.g. ["A", "R"]): preprocess.orientation.side_from_patient_orientation reads it.
        "patient_orientation": [str(v) for v in ds.get("PatientOrientation", None) or []] or None,
        "flipped": False,
        "warnings": warned,
    }
    log.debug("read %s: %dx%d, %s, window %s", path, cols, rows, photometric, window.get("kind"))
    pixels = np.clip(values, 0.0, 1.0).astype(np.float32)
    return ImageData(pixels=np.ascontiguousarray(pixels), source=path, format="dicom",
                     bit_depth=meta["bits_stored"], meta=meta)
