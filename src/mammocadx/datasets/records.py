"""Compatibility: the records live in :mod:`mammocadx.records` (the bottom layer)."""
from mammocadx.records import BENIGN, LABEL_NAMES, MALIGNANT, ImageData, LesionRecord, Roi, parse_label

__all__ = ["BENIGN", "LABEL_NAMES", "MALIGNANT", "ImageData", "LesionRecord", "Roi", "parse_label"]
