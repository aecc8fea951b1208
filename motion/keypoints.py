"""FOMM keypoint detector: K anchors as soft-argmax of heatmaps, plus a 2x2 Jacobian per anchor."""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from motion.blocks import Hourglass, maybe_downsample
from motion.config import KeypointDetectorParams
from motion.geometry import heatmap_weighted_sum, soft_argmax, spatial_softmax


class Keypoints(NamedTuple):
    """value: (b, k, 2) anchors in [-1, 1]; jacobian: (b, k, 2, 2) or None when not estimated."""
    value: torch.Tensor
    jacobian: torch.Tensor | None


def identity_affine_init(conv: nn.Conv2d, count: int) -> None:
    """Zero weights and identity bias, so every predicted 2x2 matrix starts at I (training stability)."""
    conv.weight.data.zero_()
    conv.bias.data.copy_(torch.tensor([1, 0, 0, 1], dtype=torch.float32).repeat(count))


def read_anchors(features: torch.Tensor, anchor_conv: nn.Conv2d, affine_conv: nn.Conv2d | None,
                 temperature: float, affine_maps: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Anchors (b, k, 2) as the soft-argmax of each heatmap, and each anchor's 2x2 matrix pooled under its
    heatmap (None without an affine conv). Shared by FOMM keypoints and co-part segments."""
    heatmap = spatial_softmax(anchor_conv(features), temperature)
    value = soft_argmax(heatmap)
    if affine_conv is None:
        return value, None
    b, k, h, w = heatmap.shape
    maps = affine_conv(features).reshape(b, affine_maps, 4, h, w)
    return value, heatmap_weighted_sum(heatmap, maps).view(b, k, 2, 2)


class KeypointDetector(nn.Module):
    def __init__(self, num_kp: int, num_channels: int, estimate_jacobian: bool = False, **params: Any):
        """``params``: the keys of model_params.kp_detector_params (block_expansion, max_features, num_blocks,
        temperature, scale_factor, single_jacobian_map, pad), read into KeypointDetectorParams, which holds
        their defaults."""
        super().__init__()
        kp = KeypointDetectorParams(**params)
        self.predictor = Hourglass(kp.block_expansion, in_features=num_channels,
                                   max_features=kp.max_features, num_blocks=kp.num_blocks)
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, kernel_size=7, padding=kp.pad)
        self.jacobian_maps = 1 if kp.single_jacobian_map else num_kp
        if estimate_jacobian:
            self.jacobian = nn.Conv2d(self.predictor.out_filters, 4 * self.jacobian_maps, kernel_size=7,
                                      padding=kp.pad)
            identity_affine_init(self.jacobian, self.jacobian_maps)
        else:
            self.jacobian = None
        self.temperature = kp.temperature
        self.down = maybe_downsample(num_channels, kp.scale_factor)

    def forward(self, image: torch.Tensor) -> Keypoints:
        features = self.predictor(self.down(image))
        return Keypoints(*read_anchors(features, self.kp, self.jacobian, self.temperature, self.jacobian_maps))
