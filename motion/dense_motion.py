"""FOMM dense motion: mixes the K local affine motions and the background identity into one flow
with soft masks predicted from the source deformed by each motion, and predicts an occlusion map."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from motion.blocks import Hourglass, maybe_downsample
from motion.geometry import blend_motions, gaussian_heatmaps, local_affine_motions
from motion.keypoints import Keypoints


class DenseMotion(NamedTuple):
    """deformation: (b, h, w, 2) backward flow; mask: (b, k+1, h, w); occlusion: (b, 1, h, w) or None;
    sparse_deformed: (b, k+1, c, h, w) the source warped by each motion (for visualisation)."""
    deformation: torch.Tensor
    mask: torch.Tensor
    occlusion: torch.Tensor | None
    sparse_deformed: torch.Tensor


class DenseMotionNetwork(nn.Module):
    def __init__(self, block_expansion: int, num_blocks: int, max_features: int, num_kp: int,
                 num_channels: int, estimate_occlusion_map: bool = False, scale_factor: float = 1,
                 kp_variance: float = 0.01):
        super().__init__()
        self.hourglass = Hourglass(block_expansion, in_features=(num_kp + 1) * (num_channels + 1),
                                   max_features=max_features, num_blocks=num_blocks)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=7, padding=3)
        self.occlusion = (nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=7, padding=3)
                          if estimate_occlusion_map else None)
        self.num_kp = num_kp
        self.kp_variance = kp_variance
        self.down = maybe_downsample(num_channels, scale_factor)

    def downsample(self, source: torch.Tensor) -> torch.Tensor:
        """The source at motion resolution; depends only on the avatar, so callers may cache it."""
        return self.down(source)

    def forward(self, source_small: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints) -> DenseMotion:
        """source_small is ``downsample(source)``; the flow is at its resolution."""
        b, c, h, w = source_small.shape
        heat = (gaussian_heatmaps(kp_driving.value, h, w, self.kp_variance)
                - gaussian_heatmaps(kp_source.value, h, w, self.kp_variance))
        heat = torch.cat([heat.new_zeros(b, 1, h, w), heat], dim=1).unsqueeze(2)
        motions = local_affine_motions(kp_source.value, kp_driving.value, kp_source.jacobian,
                                       kp_driving.jacobian, h, w)
        n = self.num_kp + 1
        repeated = source_small.unsqueeze(1).expand(b, n, c, h, w).reshape(b * n, c, h, w)
        deformed = F.grid_sample(repeated, motions.reshape(b * n, h, w, 2), align_corners=False).view(b, n, c, h, w)
        features = self.hourglass(torch.cat([heat, deformed], dim=2).view(b, -1, h, w))
        mask = F.softmax(self.mask(features), dim=1)
        occlusion = torch.sigmoid(self.occlusion(features)) if self.occlusion is not None else None
        return DenseMotion(blend_motions(motions, mask), mask, occlusion, deformed)
