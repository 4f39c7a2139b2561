"""Deep features: ImageNet CNN backbones (offline weights), fast batched extraction, on-disk cache.

The names below are loaded on first use (PEP 562), so importing a light part of
this package (``features.cache``, ``features.source_keys``) does not import
scikit-learn or PyTorch.
"""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Backbone": "backbones", "available_backbones": "backbones", "load_backbone": "backbones",
    "FeatureExtractor": "extract", "FeatureSet": "featurizer", "LesionFeaturizer": "featurizer",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
