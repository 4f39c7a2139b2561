"""The built-in synthetic cohort: seeded, mammogram-like images with known truth.

It is the embedded default data of ``mammocadx demo`` and of the fast tests: it
needs no download, is generated in a few seconds, and every pixel's meaning is
known, so segmentation and classification can be checked against true masks.

What one image holds (canonical orientation: chest wall at the left image edge;
right breasts (``R``) are the mirror image, chest wall at the right edge)

- a dark film background with slight fog and grain;
- the breast: a half-ellipse-like outline with a wobbly skin edge, the chest
  wall on the image edge, an intensity fall-off towards the skin (thinner
  tissue) and a faint skin line;
- fibroglandular texture: band-limited, slightly anisotropic noise, densest in
  a cone behind the nipple, with a per-image density;
- on MLO views only, the pectoral muscle: a bright, smooth, slightly curved
  triangle in the upper chest-wall corner;
- a burned-in film label (bright rectangle with dark text-like glyphs) in the
  background, detached from the breast, and sometimes a bright scanner-border
  strip along the edge opposite the chest wall;
- one mass. **Benign**: round or oval, circumscribed (sharp, smooth margin).
  **Malignant**: irregular outline, ill-defined (blurred) margin and radiating
  spicules. Both classes draw core size and contrast from the *same*
  distributions, so they differ in shape and margin, not in brightness.

True masks (boolean arrays, written as 0/255 PNGs)

- ``lesion``: the mass; for malignant masses the core *and* its spicules;
- ``breast``: breast tissue, **without** the pectoral muscle and without any
  label or border strip (the region a segmentation should keep);
- ``pectoral``: the pectoral muscle (empty on CC views);
- ``label``: burned-in film label and scanner-border strip (all background
  artefacts a segmentation should drop).
``breast``, ``pectoral`` and ``label`` are pairwise disjoint; ``lesion`` lies
inside ``breast``.

Cohort: patients with a CC and an MLO view of one breast, the same mass (same
class and shape, its own position and rotation per view) on both, about 40 %
malignant patients, about 25 % of patients in a deterministic, class-stratified
``test`` split. Ids: patient ``SYN0001``, image ``SYN0001_L_CC``.

Determinism: the same seed gives byte-identical PNGs on a given platform. All
randomness comes from one :class:`numpy.random.Generator` per patient (spawned
from the cohort seed with :class:`numpy.random.SeedSequence`), nothing depends
on time, process or file-system order, and ``cohort.json`` holds no timestamp.
(Across CPUs, vectorised maths libraries may round the last bit of a float
differently, which can move a pixel by one grey level; the cache is keyed on the
generator version and parameters, not on pixel hashes.)
"""
from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
import cv2

from mammocadx.errors import DatasetError
from mammocadx.records import BENIGN, LABEL_NAMES, MALIGNANT, LesionRecord, Roi, parse_label
from mammocadx.utils.system import default_cache_dir

log = logging.getLogger(__name__)

#: Bump whenever the pixels a seed produces change: cached cohorts are keyed on it.
GENERATOR_VERSION = 2

DEFAULT_N_PATIENTS = 80
DEFAULT_SEED = 0
DEFAULT_SIZE = 512
MALIGNANT_FRACTION = 0.4
TEST_FRACTION = 0.25
VIEWS = ("CC", "MLO")
MASK_KINDS = ("lesion", "breast", "pectoral", "label")

MANIFEST_COLUMNS = (
    "path", "label", "patient_id", "split", "laterality", "view",
    "box_x", "box_y", "box_w", "box_h", "mask_path",
    "image_id", "breast_mask_path", "pectoral_mask_path", "label_mask_path",
    "lesion_cx", "lesion_cy", "lesion_radius", "lesion_extent", "shape", "margin", "density",
)


# --------------------------------------------------------------------------- lesion shape


@dataclass(frozen=True)
class LesionShape:
    """The shape of one mass, shared by the CC and MLO views of a patient.

    Lengths are fractions of the image side, so one shape renders at any size.

    Attributes
    ----------
    label : int
        ``0`` benign, ``1`` malignant.
    radius : float
        Core radius (the major semi-axis for an oval), fraction of the image side.
    aspect : float
        Minor / major semi-axis of the core (1 = round).
    harmonics : tuple of (k, amplitude, phase)
        Outline modulation ``r(a) = radius * (1 + sum amp * cos(k a + phase))``;
        empty for benign (smooth) masses.
    spicule_angles, spicule_lengths, spicule_widths : tuple of float
        Spicule directions (radians, relative to the mass), lengths beyond the
        core (multiples of ``radius``) and base widths (fraction of the image
        side); empty for benign masses.
    contrast : float
        Peak brightness added to the tissue (same distribution for both classes).
    margin_blur : float
        Gaussian blur of the core margin as a fraction of ``radius``
        (small = circumscribed, large = ill-defined).
    """

    label: int
    radius: float
    aspect: float
    harmonics: tuple[tuple[int, float, float], ...]
    spicule_angles: tuple[float, ...]
    spicule_lengths: tuple[float, ...]
    spicule_widths: tuple[float, ...]
    contrast: float
    margin_blur: float

    @property
    def extent(self) -> float:
        """Radius of the circle holding the whole mass, spicules included (fraction of side)."""
        amp = sum(abs(a) for _, a, _ in self.harmonics)
        spic = max(self.spicule_lengths, default=0.0)
        return self.radius * (1.0 + max(amp, spic))

    @property
    def shape_name(self) -> str:
        """``round``, ``oval`` or ``irregular``."""
        if self.label == MALIGNANT:
            return "irregular"
        return "round" if self.aspect > 0.85 else "oval"

    @property
    def margin_name(self) -> str:
        """``circumscribed`` or ``spiculated``."""
        return "spiculated" if self.spicule_angles else "circumscribed"


def random_lesion(rng: np.random.Generator, label: int | str) -> LesionShape:
    """Draw a mass shape of class ``label`` (benign: circumscribed oval; malignant: spiculated).

    Core radius and contrast come from the same distributions for both classes.
    """
    y = parse_label(label)
    # Core size and contrast come from one range for both classes: the classes
    # differ in shape and margin (the spicules make a malignant finding's
    # overall extent larger, as on real films), not in core size or brightness.
    radius = float(rng.uniform(0.024, 0.046))
    contrast = float(rng.uniform(0.19, 0.23))
    if y == BENIGN:
        return LesionShape(
            label=BENIGN, radius=radius, aspect=float(rng.uniform(0.75, 1.0)), harmonics=(),
            spicule_angles=(), spicule_lengths=(), spicule_widths=(), contrast=contrast,
            margin_blur=float(rng.uniform(0.0, 0.02)),
        )
    n_harm = int(rng.integers(3, 6))
    ks = rng.choice(np.arange(2, 9), size=n_harm, replace=False)
    harmonics = tuple(
        (int(k), float(rng.uniform(0.03, 0.08)), float(rng.uniform(0, 2 * np.pi))) for k in sorted(ks)
    )
    n_sp = int(rng.integers(14, 21))
    base = np.linspace(0, 2 * np.pi, n_sp, endpoint=False) + rng.uniform(0, 2 * np.pi)
    angles = base + rng.uniform(-0.3, 0.3, n_sp) * (2 * np.pi / n_sp)
    lengths = rng.uniform(0.9, 1.5, n_sp)
    return LesionShape(
        label=MALIGNANT, radius=radius, aspect=float(rng.uniform(0.75, 1.0)), harmonics=harmonics,
        spicule_angles=tuple(float(a) for a in angles),
        spicule_lengths=tuple(float(v) for v in lengths),
        spicule_widths=tuple(float(v) for v in rng.uniform(0.005, 0.009, n_sp)),
        contrast=contrast, margin_blur=float(rng.uniform(0.08, 0.16)),
    )


def render_lesion(shape: LesionShape, size: int, rotation: float, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Render a mass on a local patch around (cx, cy) of a ``size``-pixel image.

    Returns
    -------
    profile : numpy.ndarray
        float64 brightness profile in [0, 1] (multiply by ``shape.contrast``).
    mask : numpy.ndarray
        bool true mask of the mass (core, plus spicules when malignant).
    origin : (x0, y0)
        Image coordinates of the patch's top-left pixel.
    """
    r = shape.radius * size
    half = int(np.ceil(shape.extent * size + 3.0 * shape.margin_blur * r + 4))
    x0, y0 = int(np.floor(cx)) - half, int(np.floor(cy)) - half
    n = 2 * half + 1
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    dx, dy = xx + x0 - cx, yy + y0 - cy
    c, s = np.cos(rotation), np.sin(rotation)
    u, v = c * dx + s * dy, -s * dx + c * dy  # coordinates in the mass's own frame
    rr = np.hypot(u, v / shape.aspect)  # elliptical radius, = r on the core outline
    ang = np.arctan2(v / shape.aspect, u)
    rb = np.full_like(rr, r)
    for k, amp, phase in shape.harmonics:
        rb += r * amp * np.cos(k * ang + phase)
    # Signed distance to the outline (approximate, in pixels; negative inside).
    sd = (rr - rb) * np.minimum(1.0, shape.aspect + (1 - shape.aspect) * np.abs(np.cos(ang)))
    core = sd <= 0.0
    dome = 0.8 + 0.2 * np.clip(1.0 - (rr / rb) ** 2, 0.0, 1.0)  # denser centre
    # Anti-aliased edge, then the class's margin blur (tiny for circumscribed masses).
    alpha = np.clip(0.5 - sd, 0.0, 1.0)
    profile = alpha * dome
    blur = shape.margin_blur * r
    if blur > 0.3:
        profile = ndi.gaussian_filter(profile, blur, mode="constant")
    mask = core.copy()
    if shape.spicule_angles:
        spic = np.zeros_like(profile)
        for a, length, width in zip(shape.spicule_angles, shape.spicule_lengths, shape.spicule_widths):
            # Segment from inside the core out to the spicule tip, tapering to a point.
            ca, sa = np.cos(a), np.sin(a)
            start = 0.6 * r
            total = (1.0 + length) * r - start
            t = (u * ca + v * sa - start) / total  # 0 at the start, 1 at the tip
            perp = np.abs(-u * sa + v * ca)
            w_half = np.maximum(0.5 * width * size * (1.0 - np.clip(t, 0, 1)), 0.35)
            inside = (t >= 0.0) & (t <= 1.0)
            spic = np.maximum(spic, np.where(inside, np.exp(-((perp / w_half) ** 2)) * (1.0 - 0.5 * t), 0.0))
            mask |= inside & (perp <= np.maximum(w_half, 0.5)) & (t <= 0.97)
        spic = ndi.gaussian_filter(spic, 0.7, mode="constant")
        profile = np.maximum(profile, spic)
    return profile, mask, (x0, y0)


# --------------------------------------------------------------------------- one case


@dataclass
class SyntheticCase:
    """One generated mammogram with its truth.

    Attributes
    ----------
    image : numpy.ndarray
        ``uint8`` (or ``uint16`` with ``bit_depth=16``) greyscale image, ``size x size``.
    lesion_mask, breast_mask, pectoral_mask, label_mask : numpy.ndarray
        bool masks (see the module docstring for their exact meaning).
    label : int
        ``0`` benign, ``1`` malignant.
    laterality : str
        ``"L"`` (chest wall at the left edge) or ``"R"`` (mirrored, chest wall at the right edge).
    view : str
        ``"CC"`` or ``"MLO"`` (only MLO has a pectoral muscle).
    box : (x, y, w, h)
        Bounding box of ``lesion_mask`` in pixels (x from the left, y from the top).
    centre : (cx, cy)
        Centre of the mass (image pixels).
    radius : float
        Core radius in pixels (major semi-axis).
    extent : float
        Radius in pixels of the circle holding the whole mass, spicules included.
    shape : LesionShape
        The mass's shape parameters.
    params : dict
        The drawn image parameters (density, levels, outline ...), for reports.
    """

    image: np.ndarray
    lesion_mask: np.ndarray
    breast_mask: np.ndarray
    pectoral_mask: np.ndarray
    label_mask: np.ndarray
    label: int
    laterality: str
    view: str
    box: tuple[int, int, int, int]
    centre: tuple[float, float]
    radius: float
    extent: float
    shape: LesionShape
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label_name(self) -> str:
        """``"benign"`` or ``"malignant"``."""
        return LABEL_NAMES[self.label]

    def masks(self) -> dict[str, np.ndarray]:
        """The four masks by name (``lesion``, ``breast``, ``pectoral``, ``label``)."""
        return {"lesion": self.lesion_mask, "breast": self.breast_mask,
                "pectoral": self.pectoral_mask, "label": self.label_mask}


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: tuple[float, float]) -> np.ndarray:
    """Unit-variance Gaussian noise low-passed with ``sigma`` (rows, cols) pixels, float32.

    Coarse noise is drawn on a grid downsampled by a factor tied to ``sigma``,
    filtered there and brought back with linear interpolation: the same
    spectrum for a fraction of the cost of filtering at full size (OpenCV
    filters: a few milliseconds per 512 x 512 field).
    """
    f = max(1, int(min(sigma) // 3))
    hs, ws = shape[0] // f + 3, shape[1] // f + 3
    # Uniform white noise (faster to draw than normal; Gaussian after filtering anyway).
    small = rng.random((hs, ws), dtype=np.float32) - np.float32(0.5)
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma[1] / f, sigmaY=sigma[0] / f, borderType=cv2.BORDER_REFLECT)
    if f > 1:
        small = cv2.resize(small, (ws * f, hs * f), interpolation=cv2.INTER_LINEAR)
    out = small[: shape[0], : shape[1]]
    mean, sd = cv2.meanStdDev(out)
    return (out - np.float32(mean[0, 0])) / np.float32(sd[0, 0] if sd[0, 0] > 0 else 1.0)


def _glyphs(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Text-like glyph blocks filling an ``h x w`` label: rows of 3x5 random bitmaps."""
    out = np.zeros((h, w), dtype=bool)
    n_rows = int(rng.integers(2, 4))
    px = max(1, int(h / (n_rows * 7 + 2)))  # glyph pixel size
    cols = max(1, (w - 4 * px) // (4 * px))
    bits = rng.random((n_rows * 6, cols * 4)) < 0.55
    bits[5::6, :] = False  # line spacing
    bits[:, 3::4] = False  # letter spacing
    # Random word gaps and line lengths.
    for i in range(n_rows):
        gaps = rng.random(cols) < 0.15
        bits[i * 6 : i * 6 + 5, np.repeat(gaps, 4)] = False
        bits[i * 6 : i * 6 + 5, int(rng.integers(cols // 2, cols + 1)) * 4 :] = False
    big = np.repeat(np.repeat(bits, px, axis=0), px, axis=1)
    y0, x0 = 2 * px, 2 * px
    hh, ww = min(big.shape[0], h - y0 - px), min(big.shape[1], w - x0 - px)
    if hh > 0 and ww > 0:
        out[y0 : y0 + hh, x0 : x0 + ww] = big[:hh, :ww]
    return out


def _as_rng(rng_or_seed: np.random.Generator | int | np.random.SeedSequence) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng(rng_or_seed)


def generate_case(
    rng_or_seed: np.random.Generator | int | np.random.SeedSequence,
    label: int | str,
    laterality: str,
    view: str,
    size: int = DEFAULT_SIZE,
    *,
    lesion: LesionShape | None = None,
    bit_depth: int = 8,
) -> SyntheticCase:
    """Generate one mammogram-like image with one mass and its true masks.

    Parameters
    ----------
    rng_or_seed : numpy.random.Generator, int or SeedSequence
        Source of randomness; an int or seed sequence makes the case reproducible.
    label : int or str
        ``"benign"``/``"malignant"`` (or ``0``/``1``, ``B``/``M``).
    laterality : {"L", "R"}
        ``L``: chest wall at the left image edge; ``R``: mirror image.
    view : {"CC", "MLO"}
        ``MLO`` adds the pectoral muscle in the upper chest-wall corner.
    size : int
        Image side in pixels (square images; at least 128).
    lesion : LesionShape, optional
        A mass shape to reuse (the other view of the same breast); drawn from
        ``rng`` when omitted. Its class must equal ``label``.
    bit_depth : {8, 16}
        ``uint8`` or ``uint16`` pixels.

    Returns
    -------
    SyntheticCase
    """
    y = parse_label(label)
    laterality = str(laterality).upper()
    view = str(view).upper()
    if laterality not in {"L", "R"}:
        raise ValueError(f"laterality must be 'L' or 'R', got {laterality!r}")
    if view not in VIEWS:
        raise ValueError(f"view must be 'CC' or 'MLO', got {view!r}")
    if size < 128:
        raise ValueError(f"size must be at least 128 pixels, got {size}")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    rng = _as_rng(rng_or_seed)
    if lesion is None:
        lesion = random_lesion(rng, y)
    elif lesion.label != y:
        raise ValueError(f"lesion shape is {LABEL_NAMES[lesion.label]} but label is {LABEL_NAMES[y]}")
    mlo = view == "MLO"
    S = int(size)
    px = S / 512.0  # one pixel at the reference size
    xn = ((np.arange(S, dtype=np.float32) + 0.5) / S)[None, :]
    yn = ((np.arange(S, dtype=np.float32) + 0.5) / S)[:, None]

    # ---- breast outline (canonical: chest wall at x = 0)
    a = rng.uniform(0.56, 0.76)
    if mlo:
        cy = rng.uniform(0.50, 0.58)
        b_top = cy * rng.uniform(1.25, 1.55)  # reaches the top edge: the axillary tail
        b_bot = rng.uniform(0.34, 0.42)
        shear = rng.uniform(0.06, 0.2)  # nipple lower than the chest-wall centre
    else:
        cy = rng.uniform(0.45, 0.55)
        b_top = rng.uniform(0.34, 0.43)
        b_bot = rng.uniform(0.34, 0.43)
        shear = rng.uniform(-0.05, 0.05)
    dy = yn - cy - shear * xn
    b = np.where(dy < 0, np.float32(b_top), np.float32(b_bot))
    ex, ey = xn / a, dy / b
    rho = np.hypot(ex, ey)
    # Skin-edge wobble: sum of cos(k theta + phase), evaluated as Re(z^k e^(i phase))
    # with z = e^(i theta) (no arctan2: this is the hot loop of the generator).
    z = ((ex + 1j * ey) / np.maximum(rho, 1e-6)).astype(np.complex64)
    zk = z
    wobble = np.zeros_like(rho)
    for k in range(2, 7):
        zk = zk * z
        amp, phase = rng.uniform(0.004, 0.018) / (k / 2), rng.uniform(0, 2 * np.pi)
        wobble += amp * (zk * np.complex64(np.exp(1j * phase))).real
    outline = rho < 1.0 + wobble

    # ---- tissue: fall-off towards the skin, fibroglandular texture
    # Distance to the skin in pixels, to first order: (1 + wobble - rho) / |grad rho|.
    # Analytic (no distance transform); the chest wall (image edge) is not skin.
    grad = np.hypot(ex / a, ey / b) / np.maximum(rho, 1e-3)
    d_skin = np.maximum(1.0 + wobble - rho, 0.0) / np.maximum(grad, 1e-3) * S
    thick = 1.0 - np.exp(-d_skin / (0.04 * S))
    fat = rng.uniform(0.3, 0.34)
    density = float(rng.uniform(0.05, 0.6))
    dense_amp = rng.uniform(0.08, 0.14)
    gland = (0.6 * _smooth_noise(rng, (S, S), (14 * px, 26 * px))
             + 0.3 * _smooth_noise(rng, (S, S), (5 * px, 10 * px))
             + 0.1 * _smooth_noise(rng, (S, S), (2 * px, 3 * px)))
    cone = np.exp(-(((xn / a) - 0.35) / 0.38) ** 2 - (ey / 0.65) ** 2)
    thr = 1.6 - 2.6 * density
    dense = 1.0 / (1.0 + np.exp(-(gland + 1.6 * cone - 0.8 - thr) / 0.3))
    fine = _smooth_noise(rng, (S, S), (1.2 * px, 1.2 * px))
    tissue = fat * (0.55 + 0.45 * thick) + dense_amp * dense * thick + 0.01 * fine
    skin = 0.05 * np.exp(-(((d_skin - 2.0 * px) / (1.5 * px)) ** 2))
    bg = rng.uniform(0.015, 0.045)
    fog = bg * (1.0 + 0.25 * _smooth_noise(rng, (S, S), (60 * px, 60 * px)))
    img = np.where(outline, tissue + skin, fog)

    # ---- pectoral muscle (MLO only)
    pect = np.zeros((S, S), dtype=bool)
    pw = ph = curv = 0.0
    if mlo:
        row0 = np.flatnonzero(outline[0])
        x_top = (row0.max() + 1) / S if row0.size else 0.3
        pw = min(rng.uniform(0.24, 0.4), 0.85 * x_top)
        ph = rng.uniform(0.45, 0.7)
        curv = rng.uniform(-0.35, 0.15)  # < 0: convex muscle edge
        g = xn / pw + yn / ph + curv * (xn / pw) * (yn / ph)
        pect = (g < 1.0) & outline
        level = rng.uniform(0.66, 0.82)
        muscle = level * (0.9 + 0.1 * np.clip(1.0 - g, 0, 1)) + 0.012 * _smooth_noise(rng, (S, S), (6 * px, 6 * px))
        alpha = cv2.GaussianBlur(pect.astype(np.float32), (0, 0), 1.2 * px)
        img = img * (1.0 - alpha) + muscle * alpha

    # ---- the mass: inside the breast, clear of the skin, chest wall and muscle
    region = outline & ~pect
    # Distance to the nearest non-region pixel on a 4x coarser grid (cheap; the
    # margin below absorbs the coarseness); image edges count as boundary.
    q = 4
    d_in = ndi.distance_transform_edt(np.pad(region[q // 2 :: q, q // 2 :: q], 1))[1:-1, 1:-1] * q - q
    ws_small = d_in.shape[1]
    rotation = float(rng.uniform(0, 2 * np.pi))
    scale = 1.0
    # Prefer spots where the whole ROI crop (1.5 x the extent each side) is breast
    # tissue; fall back to "the mass itself clear of the edges", then shrink.
    for need_factor in (1.6, 1.0, 1.0, 1.0, 1.0, 1.0):
        need = need_factor * lesion.extent * S * scale + 0.02 * S + 2
        cand = np.flatnonzero(d_in > need)
        if cand.size:
            break
        if need_factor == 1.0:
            scale *= 0.85
    else:  # pragma: no cover - outlines are always far larger than masses
        raise RuntimeError("no room for the mass in the synthetic breast")
    if scale != 1.0:
        lesion = replace(lesion, radius=lesion.radius * scale)
    idx = int(cand[int(rng.integers(cand.size))])
    lcy = (idx // ws_small) * q + float(rng.uniform(0.0, q))
    lcx = (idx % ws_small) * q + float(rng.uniform(0.0, q))
    profile, lmask_local, (x0, y0) = render_lesion(lesion, S, rotation, lcx, lcy)
    lesion_mask = np.zeros((S, S), dtype=bool)
    hp, wp = profile.shape
    # The patch lies inside the image (the mass is at least 3 % of the side from every edge).
    sl = (slice(max(y0, 0), min(y0 + hp, S)), slice(max(x0, 0), min(x0 + wp, S)))
    psl = (slice(sl[0].start - y0, sl[0].stop - y0), slice(sl[1].start - x0, sl[1].stop - x0))
    img[sl] += lesion.contrast * profile[psl]
    lesion_mask[sl] = lmask_local[psl]
    lesion_mask &= region

    # ---- scanner-border strip and burned-in film label, detached from the breast
    label_mask = np.zeros((S, S), dtype=bool)
    strip_w = 0
    if rng.random() < 0.35:
        strip_w = int(round(rng.uniform(4, 12) * px))
        label_mask[:, S - strip_w :] = True
        img[:, S - strip_w :] = rng.uniform(0.88, 0.98)
    m = max(2, int(0.03 * S))
    clear = cv2.dilate(outline.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * m + 1, 2 * m + 1))) > 0
    lw, lh = int(rng.uniform(0.12, 0.22) * S), int(rng.uniform(0.05, 0.09) * S)
    placed = None
    margin = int(0.02 * S)
    for attempt in range(60):
        lx = int(rng.integers(int(0.45 * S), max(int(0.45 * S) + 1, S - strip_w - margin - lw)))
        ly = int(rng.integers(margin, S - margin - lh))
        if not clear[ly : ly + lh, lx : lx + lw].any():
            placed = (lx, ly)
            break
        if attempt % 20 == 19:
            lw, lh = int(lw * 0.8), int(lh * 0.8)
    if placed is not None:
        lx, ly = placed
        glyph = _glyphs(rng, lh, lw)
        box = np.full((lh, lw), rng.uniform(0.86, 1.0))
        box[glyph] = rng.uniform(0.12, 0.35)
        img[ly : ly + lh, lx : lx + lw] = box
        label_mask[ly : ly + lh, lx : lx + lw] = True
    else:
        log.debug("no free background for the film label; case generated without one")

    # ---- acquisition: slight blur, grain, quantisation
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.6 * px)
    img += np.float32(0.006 * np.sqrt(12.0)) * (rng.random((S, S), dtype=np.float32) - np.float32(0.5))
    img = np.clip(img, 0.0, 1.0)
    maxval = 255 if bit_depth == 8 else 65535
    image = np.rint(img * maxval).astype(np.uint8 if bit_depth == 8 else np.uint16)
    breast_mask = outline & ~pect & ~label_mask

    if laterality == "R":
        image, lesion_mask, breast_mask, pect, label_mask = (
            np.ascontiguousarray(m[:, ::-1]) for m in (image, lesion_mask, breast_mask, pect, label_mask)
        )
        lcx = S - lcx
    ys, xs = np.nonzero(lesion_mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    params = {
        "outline": {"a": a, "cy": cy, "b_top": b_top, "b_bottom": b_bot, "shear": shear},
        "density": density, "fat_level": fat, "dense_amplitude": dense_amp, "background": bg,
        "pectoral": {"top_width": pw, "height": ph, "curvature": curv} if mlo else None,
        "strip_width": strip_w, "label_box": list(placed) + [lw, lh] if placed else None,
        "lesion_rotation": rotation, "lesion_scale": scale,
    }
    return SyntheticCase(
        image=image, lesion_mask=lesion_mask, breast_mask=breast_mask, pectoral_mask=pect,
        label_mask=label_mask, label=y, laterality=laterality, view=view, box=box,
        centre=(float(lcx), float(lcy)), radius=float(lesion.radius * S), extent=float(lesion.extent * S),
        shape=lesion, params=params,
    )


# --------------------------------------------------------------------------- cohort


@dataclass(frozen=True)
class _Patient:
    patient_id: str
    label: int
    laterality: str
    split: str
    seed: np.random.SeedSequence


def _plan(n_patients: int, seed: int) -> list[_Patient]:
    """Who is malignant, which breast, which split: deterministic from ``seed``."""
    ss = np.random.SeedSequence(seed)
    plan_ss, *case_ss = ss.spawn(n_patients + 1)
    rng = np.random.default_rng(plan_ss)
    n_mal = int(round(MALIGNANT_FRACTION * n_patients))
    labels = np.array([MALIGNANT] * n_mal + [BENIGN] * (n_patients - n_mal))
    rng.shuffle(labels)
    lat = rng.choice(np.array(["L", "R"]), size=n_patients)
    test = np.zeros(n_patients, dtype=bool)
    for cls in (BENIGN, MALIGNANT):  # class-stratified test split
        idx = np.flatnonzero(labels == cls)
        k = int(round(TEST_FRACTION * idx.size))
        test[rng.permutation(idx)[:k]] = True
    return [
        _Patient(f"SYN{i + 1:04d}", int(labels[i]), str(lat[i]), "test" if test[i] else "train", case_ss[i])
        for i in range(n_patients)
    ]


def _cohort_params(n_patients: int, seed: int, size: int, bit_depth: int) -> dict[str, Any]:
    return {
        "generator": "mammocadx.datasets.synthetic",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "n_patients": int(n_patients),
        "size": int(size),
        "bit_depth": int(bit_depth),
        "malignant_fraction": MALIGNANT_FRACTION,
        "test_fraction": TEST_FRACTION,
        "views": list(VIEWS),
    }


def _save_png(path: Path, arr: np.ndarray) -> None:
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    # Fast zlib level: noisy images barely compress further, and level 6 costs 5x the time.
    Image.fromarray(arr).save(path, format="PNG", optimize=False, compress_level=1)


def make_synthetic_cohort(
    out_dir: str | os.PathLike[str],
    n_patients: int = DEFAULT_N_PATIENTS,
    seed: int = DEFAULT_SEED,
    size: int = DEFAULT_SIZE,
    *,
    bit_depth: int = 8,
) -> Path:
    """Write a synthetic cohort (images, true masks, ``manifest.csv``, ``cohort.json``).

    The cohort is built in a temporary folder next to ``out_dir`` and renamed
    into place, so a reader never sees half a cohort. An existing synthetic
    cohort in ``out_dir`` is replaced; any other non-empty folder is refused.

    Parameters
    ----------
    out_dir : path
        Folder to create (its parent is created when missing).
    n_patients : int
        Patients; each gets a CC and an MLO view of one breast (2 images, 2 lesions).
    seed : int
        Seed of everything random: same seed, byte-identical files.
    size : int
        Image side in pixels.
    bit_depth : {8, 16}
        Bits per image pixel (masks are always 8-bit 0/255).

    Returns
    -------
    Path
        ``out_dir``.

    Layout::

        out_dir/images/SYN0001_L_CC.png
        out_dir/masks/{lesion,breast,pectoral,label}/SYN0001_L_CC.png
        out_dir/manifest.csv   # path,label,patient_id,split,laterality,view,box_x,box_y,box_w,box_h,mask_path,...
        out_dir/cohort.json    # generator version and parameters

    Raises
    ------
    DatasetError
        If ``out_dir`` holds something other than a synthetic cohort, or cannot be written.
    """
    if n_patients < 1:
        raise ValueError(f"n_patients must be at least 1, got {n_patients}")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / "cohort.json").is_file())):
        raise DatasetError("exists and is not a synthetic cohort; give an empty or new folder", out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    except OSError as exc:
        raise DatasetError(f"cannot create the cohort folder ({exc.strerror or exc})", out_dir) from exc
    try:
        _write_cohort(tmp, n_patients, seed, size, bit_depth)
        _move_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("synthetic cohort written to %s (%d patients, %d images)", out_dir, n_patients, 2 * n_patients)
    return out_dir


def _write_cohort(root: Path, n_patients: int, seed: int, size: int, bit_depth: int) -> None:
    (root / "images").mkdir()
    for kind in MASK_KINDS:
        (root / "masks" / kind).mkdir(parents=True)
    rows = []
    for p in _plan(n_patients, seed):
        rng = np.random.default_rng(p.seed)
        shape = random_lesion(rng, p.label)
        for view in VIEWS:
            case = generate_case(rng, p.label, p.laterality, view, size, lesion=shape, bit_depth=bit_depth)
            image_id = f"{p.patient_id}_{p.laterality}_{view}"
            name = f"{image_id}.png"
            _save_png(root / "images" / name, case.image)
            for kind, m in case.masks().items():
                _save_png(root / "masks" / kind / name, m)
            x, yb, w, h = case.box
            rows.append({
                "path": f"images/{name}", "label": case.label_name, "patient_id": p.patient_id,
                "split": p.split, "laterality": p.laterality, "view": view,
                "box_x": x, "box_y": yb, "box_w": w, "box_h": h, "mask_path": f"masks/lesion/{name}",
                "image_id": image_id, "breast_mask_path": f"masks/breast/{name}",
                "pectoral_mask_path": f"masks/pectoral/{name}", "label_mask_path": f"masks/label/{name}",
                "lesion_cx": f"{case.centre[0]:.2f}", "lesion_cy": f"{case.centre[1]:.2f}",
                "lesion_radius": f"{case.radius:.2f}", "lesion_extent": f"{case.extent:.2f}",
                "shape": case.shape.shape_name, "margin": case.shape.margin_name,
                "density": f"{case.params['density']:.3f}",
            })
    with (root / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(MANIFEST_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    meta = {**_cohort_params(n_patients, seed, size, bit_depth), "n_images": len(rows),
            "mask_meaning": {
                "lesion": "the mass (malignant: core and spicules)",
                "breast": "breast tissue without the pectoral muscle, labels and border strip",
                "pectoral": "pectoral muscle (MLO views only)",
                "label": "burned-in film label and scanner-border strip",
            },
            "orientation": "L: chest wall at the left image edge; R: mirrored (chest wall at the right edge)"}
    (root / "cohort.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename ``tmp`` to ``out_dir``, replacing an empty folder or an older synthetic cohort."""
    old = None
    if out_dir.exists():
        if any(out_dir.iterdir()):
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            out_dir.rename(old)
        else:
            out_dir.rmdir()
    try:
        tmp.rename(out_dir)
    except OSError as exc:
        if out_dir.is_dir() and _matches(out_dir, json.loads((tmp / "cohort.json").read_text())):
            # Another process wrote the same cohort at the same time: theirs is as good as ours.
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            raise DatasetError(f"cannot move the new cohort into place ({exc.strerror or exc})", out_dir) from exc
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- loading


def cohort_dir(n_patients: int = DEFAULT_N_PATIENTS, seed: int = DEFAULT_SEED, size: int = DEFAULT_SIZE) -> Path:
    """Cache folder of the cohort with these parameters (``synthetic-v<version>-s<seed>-n<n>-<size>``)."""
    return default_cache_dir() / f"synthetic-v{GENERATOR_VERSION}-s{seed}-n{n_patients}-{size}"


def _read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / "cohort.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _matches(folder: Path, want: dict[str, Any]) -> bool:
    meta = _read_meta(folder)
    if meta is None or not (folder / "manifest.csv").is_file():
        return False
    return all(meta.get(k) == v for k, v in want.items())


def load_synthetic(
    data: str | os.PathLike[str] | None = None,
    n_patients: int | None = None,
    seed: int | None = None,
    size: int | None = None,
) -> list[LesionRecord]:
    """Records of the synthetic cohort, generating it first when needed.

    Parameters
    ----------
    data : path, optional
        Cohort folder. ``None``: the cache folder :func:`cohort_dir` under
        ``$MAMMOCADX_CACHE_DIR`` (default ``~/.cache/mammocadx``). A missing or
        empty folder is generated into; a folder holding a synthetic cohort is
        used as it is unless a parameter given here differs from its
        ``cohort.json`` (then it is regenerated); any other non-empty folder is
        refused.
    n_patients, seed, size : int, optional
        Cohort parameters (defaults 80 patients, seed 0, 512 px when generating).
        ``None`` with an existing cohort folder means "whatever it holds".

    Returns
    -------
    list of LesionRecord
        One per image (one mass per image), ordered by patient then view;
        ``roi=Roi(mask_path=<lesion mask>)``, ``label`` 0/1, ``laterality``
        ``"L"``/``"R"``, ``view`` ``"CC"``/``"MLO"``, ``split`` ``train``/``test``;
        ``extra`` holds ``breast_mask``, ``pectoral_mask``, ``label_mask`` (paths),
        ``box`` (x, y, w, h), ``centre`` (cx, cy), ``radius`` and ``extent``
        (pixels), ``shape``, ``margin``, ``density`` and ``dataset="synthetic"``.

    Raises
    ------
    DatasetError
        If the folder is not a synthetic cohort or its manifest is malformed.
    """
    if data is None:
        folder = cohort_dir(n_patients or DEFAULT_N_PATIENTS,
                            DEFAULT_SEED if seed is None else seed, size or DEFAULT_SIZE)
    else:
        folder = Path(data).expanduser()
    given = {k: v for k, v in (("n_patients", n_patients), ("seed", seed), ("size", size)) if v is not None}
    want = {"generator": "mammocadx.datasets.synthetic", "version": GENERATOR_VERSION, **given}
    if not _matches(folder, want):
        if folder.exists() and folder.is_dir() and any(folder.iterdir()) and _read_meta(folder) is None:
            raise DatasetError("not a synthetic cohort (no cohort.json); give an empty or new folder, "
                               "or omit the folder to use the cache", folder)
        params = {"n_patients": DEFAULT_N_PATIENTS, "seed": DEFAULT_SEED, "size": DEFAULT_SIZE, **given}
        log.info("generating the synthetic cohort in %s", folder)
        make_synthetic_cohort(folder, **params)
    return read_synthetic_manifest(folder)


def read_synthetic_manifest(folder: str | os.PathLike[str]) -> list[LesionRecord]:
    """Read the records of a written synthetic cohort (no generation).

    Raises
    ------
    DatasetError
        Missing or malformed ``manifest.csv`` (names the file and the row).
    """
    folder = Path(folder)
    manifest = folder / "manifest.csv"
    try:
        with manifest.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise DatasetError(f"cannot read the manifest ({exc.strerror or exc})", manifest) from exc
    records = []
    for i, row in enumerate(rows, start=2):
        try:
            box = tuple(float(row[k]) for k in ("box_x", "box_y", "box_w", "box_h"))
            rec = LesionRecord(
                sample_id=row["image_id"], image_id=row["image_id"], image_path=folder / row["path"],
                patient_id=row["patient_id"], label=parse_label(row["label"]),
                roi=Roi(mask_path=folder / row["mask_path"]), laterality=row["laterality"],
                view=row["view"], split=row["split"],
                extra={
                    "dataset": "synthetic",
                    "breast_mask": folder / row["breast_mask_path"],
                    "pectoral_mask": folder / row["pectoral_mask_path"],
                    "label_mask": folder / row["label_mask_path"],
                    "box": box,
                    "centre": (float(row["lesion_cx"]), float(row["lesion_cy"])),
                    "radius": float(row["lesion_radius"]),
                    "extent": float(row["lesion_extent"]),
                    "shape": row["shape"], "margin": row["margin"], "density": float(row["density"]),
                },
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise DatasetError(f"row {i}: malformed ({type(exc).__name__}: {exc})", manifest) from exc
        records.append(rec)
    if not records:
        raise DatasetError("the manifest lists no images", manifest)
    return records


__all__ = [
    "GENERATOR_VERSION", "LesionShape", "SyntheticCase", "cohort_dir", "default_cache_dir",
    "generate_case", "load_synthetic", "make_synthetic_cohort", "random_lesion",
    "read_synthetic_manifest", "render_lesion",
]
