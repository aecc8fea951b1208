"""FOMM multi-scale patch discriminator. Only training with a GAN weight uses it, but it is part of
the official FOMM checkpoint layout, so it is built to load and save those files whole."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from motion.blocks import _width
from motion.config import DiscriminatorParams


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_features: int, out_features: int, norm: bool, pool: bool, sn: bool):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=4)
        if sn:
            self.conv = nn.utils.spectral_norm(self.conv)
        self.norm = nn.InstanceNorm2d(out_features, affine=True) if norm else None
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        out = F.leaky_relu(out, 0.2)
        return F.avg_pool2d(out, 2) if self.pool else out


class Discriminator(nn.Module):
    """Returns the feature maps of every block (for feature matching) and the patch scores last."""

    def __init__(self, num_channels: int, block_expansion: int, num_blocks: int, max_features: int, sn: bool):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DiscriminatorBlock(num_channels if i == 0 else _width(block_expansion, max_features, i),
                               _width(block_expansion, max_features, i + 1),
                               norm=i != 0, pool=i != num_blocks - 1, sn=sn)
            for i in range(num_blocks))
        self.conv = nn.Conv2d(_width(block_expansion, max_features, num_blocks), 1, kernel_size=1)
        if sn:
            self.conv = nn.utils.spectral_norm(self.conv)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for block in self.down_blocks:
            x = block(x)
            features.append(x)
        return features + [self.conv(x)]


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, params: DiscriminatorParams, num_channels: int):
        super().__init__()
        if params.use_kp:
            raise NotImplementedError("discriminator_params.use_kp=True is not supported; set it to False")
        self.scales = params.scales
        self.discs = nn.ModuleDict({
            str(scale).replace(".", "-"): Discriminator(num_channels, params.block_expansion, params.num_blocks,
                                                        params.max_features, params.sn)
            for scale in params.scales})

    def forward(self, pyramid: dict[float, torch.Tensor]) -> dict[float, list[torch.Tensor]]:
        return {scale: self.discs[str(scale).replace(".", "-")](pyramid[scale]) for scale in self.scales}
