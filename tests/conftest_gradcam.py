"""Helpers for the Grad-CAM tests: a backbone honouring the features contract.

Uses :func:`mammocadx.features.backbones.load_backbone` when the offline
ImageNet weights are installed; otherwise timm's ``tf_efficientnet_lite0`` with
random weights wrapped in the same interface (never downloads anything).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class TimmBackbone:
    """Minimal stand-in for ``features.backbones.Backbone`` (same methods, random weights)."""

    name: str
    model: torch.nn.Module
    input_size: int = 224
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.5, 0.5, 0.5)

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(np.asarray(rgb, np.float32))).permute(0, 3, 1, 2)
        m = torch.tensor(self.mean).view(1, 3, 1, 1)
        s = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - m) / s

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        return fmap.mean(dim=(2, 3))

    @property
    def feature_dim(self) -> int:
        return int(self.model.num_features)


def random_backbone(input_size: int = 224, seed: int = 0) -> TimmBackbone:
    import timm

    torch.manual_seed(seed)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    return TimmBackbone("tf_efficientnet_lite0", model, input_size)


def imagenet_backbone():
    """The project's default backbone with its offline ImageNet weights, or ``None`` if they are not installed."""
    from mammocadx.errors import BackboneError
    from mammocadx.features.backbones import load_backbone

    try:
        return load_backbone("tf_efficientnet_lite0")
    except BackboneError:
        return None
