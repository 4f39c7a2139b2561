"""Dataset readers. Each returns a list of :class:`LesionRecord`, one per lesion.

:func:`load_dataset` picks a reader by name; readers are imported lazily so a
missing optional dependency of one never breaks the others.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from mammocadx.records import BENIGN, MALIGNANT, LesionRecord, Roi, parse_label
from mammocadx.errors import DatasetError

#: name -> "module:function"; every function is ``load_x(data, **options) -> list[LesionRecord]``.
LOADERS: dict[str, str] = {
    "mias": "mammocadx.datasets.mias:load_mias",
    "synthetic": "mammocadx.datasets.synthetic:load_synthetic",
    "cbis-ddsm": "mammocadx.datasets.cbis_ddsm:load_cbis_ddsm",
    "manifest": "mammocadx.datasets.manifest:load_manifest",
    "folder": "mammocadx.datasets.folder:load_folder",
}


def load_dataset(name: str, data: str | Path | None, **options: Any) -> list[LesionRecord]:
    """Load the dataset ``name`` from ``data`` (a folder or file).

    Raises
    ------
    DatasetError
        For an unknown name, or whatever the reader raises.
    """
    try:
        target = LOADERS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {sorted(LOADERS)}") from None
    module_name, func_name = target.split(":")
    loader = getattr(importlib.import_module(module_name), func_name)
    records = loader(Path(data) if data is not None else None, **options)
    if not records:
        raise DatasetError(f"no lesions found by the {name} reader", data)
    return records


__all__ = ["BENIGN", "MALIGNANT", "LOADERS", "LesionRecord", "Roi", "load_dataset", "parse_label"]
