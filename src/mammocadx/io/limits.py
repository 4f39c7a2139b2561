"""Limits every image reader applies (no imports of ours: both ``io.images`` and ``io.dicom`` use it)."""
from __future__ import annotations

#: Refuse images above this many pixels (a decompression-bomb guard). A full-field
#: digital mammogram is at most about 4096 x 5928 = 24 Mpx.
MAX_PIXELS = 80_000_000
