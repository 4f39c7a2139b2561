"""Deep features: ImageNet CNN backbones (offline weights), fast batched extraction, on-disk cache."""
from __future__ import annotations

from mammocadx.features.backbones import Backbone, available_backbones, load_backbone
from mammocadx.features.extract import DeepFeatures, FeatureExtractor, Pseudocolor

__all__ = ["Backbone", "DeepFeatures", "FeatureExtractor", "Pseudocolor", "available_backbones", "load_backbone"]
