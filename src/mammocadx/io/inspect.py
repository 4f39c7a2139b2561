"""What the image reader sees in a file: the facts ``mammocadx inspect`` prints, and a preview PNG."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from mammocadx.errors import ImageReadError
from mammocadx.io.images import ImageData, read_image, sniff_format


@dataclass
class Inspection:
    """One file's inspection: ``image`` is None and ``error`` says why when it could not be read."""

    path: Path
    image: ImageData | None = None
    error: str | None = None
    preview: Path | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def clean_text(value: Any, limit: int = 80) -> str:
    """A tag value made safe to print: control and non-printing characters replaced, length capped."""
    text = "".join(ch if unicodedata.category(ch)[0] not in "CZ" or ch == " " else "?" for ch in str(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def safe_name(path: Path, index: int) -> str:
    """A preview file name built from the input's file name only (never from tag content): ``007_name.png``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).strip("._-")[:60] or "image"
    return f"{index:03d}_{stem}.png"


def window_text(meta: dict[str, Any]) -> str:
    """The VOI stage in words (DICOM), e.g. ``LINEAR centre 2047 width 4096``."""
    w = meta.get("window") or {}
    kind = w.get("kind")
    if kind == "window":
        alt = f" (1st of {w['alternatives']})" if w.get("alternatives", 1) > 1 else ""
        return f"{w['function']} centre {w['center']:g} width {w['width']:g}{alt}"
    if kind == "voi_lut":
        expl = f" '{clean_text(w['explanation'], 40)}'" if w.get("explanation") else ""
        return f"VOI LUT{expl} ({w['entries']} entries)"
    if kind == "percentile":
        return f"percentile window {w['percentiles'][0]:g}-{w['percentiles'][1]:g} % ({w['low']:g}..{w['high']:g})"
    if kind == "minmax":
        return f"min-max {w['low']:g}..{w['high']:g} ({w.get('reason', '')})"
    return "none"


def describe(image: ImageData) -> dict[str, Any]:
    """The printable facts of a read image (strings cleaned of control characters)."""
    meta = image.meta
    rows, cols = image.shape
    facts: dict[str, Any] = {
        "format": image.format,
        "size": f"{cols}x{rows}",
        "bits": image.bit_depth,
        "photometric": meta.get("photometric", "MONOCHROME2 (grey)" if image.format != "dicom" else None),
        "laterality": meta.get("laterality"),
        "view": meta.get("view"),
        "windowing": window_text(meta) if image.format == "dicom" else f"scaled by bit depth (/{2 ** min(image.bit_depth, 16) - 1})",
    }
    if image.format != "dicom":
        from mammocadx.io.dicom import laterality_from_text, view_from_text

        name = image.source.name
        lat, view = laterality_from_text(name), view_from_text(name)
        facts |= {"laterality": lat, "view": view, "laterality_source": "file name" if lat else None,
                  "view_source": "file name" if view else None}
    if image.format == "dicom":
        facts |= {
            "inverted": meta.get("inversion") or "no",
            "laterality_source": meta.get("laterality_source"),
            "view_source": meta.get("view_source"),
            "modality": meta.get("modality"),
            "presentation_intent": meta.get("presentation_intent"),
            "rescale": meta.get("rescale"),
            "transfer_syntax": meta.get("transfer_syntax"),
            "series_description": meta.get("series_description"),
            "warnings": [clean_text(w, 300) for w in meta.get("warnings") or []],
        }
    return {k: (clean_text(v) if isinstance(v, str) else v) for k, v in facts.items()}


def write_preview(image: ImageData, out_dir: Path, name: str, max_side: int = 1024) -> Path:
    """Write an 8-bit PNG of ``image`` (long side at most ``max_side``; 0 = full size) inside ``out_dir``."""
    import cv2
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    target = (out_dir / name).resolve()
    if target.parent != out_dir.resolve() or target.suffix != ".png":
        raise ImageReadError(f"refusing to write a preview outside {out_dir}", target)
    u8 = image.to_uint8()
    rows, cols = u8.shape
    if max_side and max(rows, cols) > max_side:
        scale = max_side / max(rows, cols)
        u8 = cv2.resize(u8, (max(1, round(cols * scale)), max(1, round(rows * scale))), interpolation=cv2.INTER_AREA)
    Image.fromarray(np.ascontiguousarray(u8)).save(target)
    return target


def expand_inputs(paths: list[Path], skipped: list[tuple[Path, str]] | None = None) -> list[tuple[Path, bool]]:
    """Files to read: named files as given; folders walked, keeping files whose content is an image.

    Returns ``(path, named)`` pairs; a named file that is not an image is still
    returned (and fails when read). A file inside a folder that is not kept (not
    an image, empty, hidden) is appended to ``skipped`` as ``(path, reason)``
    when a list is given, so the caller can account for every file.
    """
    out: list[tuple[Path, bool]] = []
    for p in paths:
        if p.is_dir():
            for f in sorted(q for q in p.rglob("*") if q.is_file()):
                if any(part.startswith(".") for part in f.relative_to(p).parts):
                    if skipped is not None:
                        skipped.append((f, "hidden file or folder (name starts with '.')"))
                    continue
                try:
                    sniff_format(f)
                except ImageReadError as exc:
                    if skipped is not None:
                        skipped.append((f, exc.reason))
                    continue
                out.append((f, False))
        else:
            out.append((p, True))
    return out


def inspect_file(
    path: str | PathLike[str],
    out_dir: Path | None = None,
    index: int = 1,
    max_side: int = 1024,
    **read_options: Any,
) -> Inspection:
    """Read one file as the pipeline would and describe it; never raises for a bad file.

    Parameters
    ----------
    path : str or PathLike
        The image.
    out_dir : Path, optional
        Where to write the preview PNG (named by :func:`safe_name`).
    index : int
        Position in the batch, used in the preview name.
    max_side : int
        Preview's longest side in pixels (0 = full size).
    **read_options
        Passed to :func:`~mammocadx.io.images.read_image` (``apply_voi``, ``force``).
    """
    path = Path(path)
    result = Inspection(path=path)
    try:
        result.image = read_image(path, **read_options)
    except ImageReadError as exc:
        result.error = exc.reason
        return result
    result.facts = describe(result.image)
    if out_dir is not None:
        try:
            result.preview = write_preview(result.image, out_dir, safe_name(path, index), max_side)
        except (OSError, ImageReadError) as exc:
            result.error = f"read, but the preview could not be written ({exc})"
    return result
