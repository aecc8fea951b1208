"""Co-part segmentation module: K+1 soft part masks (channel 0 = background) plus, per part, an
anchor (soft-argmax of a heatmap) and a 2x2 affine, the part's first-order motion."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from motion.blocks import Hourglass, maybe_downsample
from motion.keypoints import identity_affine_init, read_anchors


class Segments(NamedTuple):
    """segmentation: (b, k+1, h, w) softmax over parts; shift: (b, k, 2); affine: (b, k, 2, 2) or None."""
    segmentation: torch.Tensor
    shift: torch.Tensor
    affine: torch.Tensor | None


class SegmentationModule(nn.Module):
    def __init__(self, block_expansion: int, num_segments: int, num_channels: int, max_features: int,
                 num_blocks: int, temperature: float, estimate_affine_part: bool = False,
                 scale_factor: float = 1):
        super().__init__()
        self.predictor = Hourglass(block_expansion, in_features=num_channels,
                                   max_features=max_features, num_blocks=num_blocks)
        width = self.predictor.out_filters
        self.shift = nn.Conv2d(width, num_segments, kernel_size=7, padding=3)
        if estimate_affine_part:
            self.affine = nn.Conv2d(width, 4 * num_segments, kernel_size=7, padding=3)
            identity_affine_init(self.affine, num_segments)
        else:
            self.affine = None
        self.segmentation = nn.Conv2d(width, 1 + num_segments, kernel_size=7, padding=3)
        self.temperature = temperature
        self.down = maybe_downsample(num_channels, scale_factor)

    def forward(self, image: torch.Tensor) -> Segments:
        features = self.predictor(self.down(image))
        shift, affine = read_anchors(features, self.shift, self.affine, self.temperature, self.shift.out_channels)
        return Segments(F.softmax(self.segmentation(features), dim=1), shift, affine)
