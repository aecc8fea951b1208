"""FOMM occlusion-aware generator, split at the seams the real-time loop and the exporter cut at:
encode (once per avatar), warp (per frame: flow + occlusion on the feature map), decode (per frame)."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from motion.blocks import ConvNormRelu, DownBlock, ResBlock, UpBlock, _width
from motion.dense_motion import DenseMotion, DenseMotionNetwork
from motion.geometry import resize_map, warp
from motion.keypoints import Keypoints


class EncoderDecoder(nn.Module):
    """The image encoder/decoder shared by the FOMM generator and the co-part reconstruction module:
    7x7 conv, num_down_blocks DownBlocks, residual bottleneck, as many UpBlocks, 7x7 conv, sigmoid."""

    def __init__(self, num_channels: int, block_expansion: int, max_features: int,
                 num_down_blocks: int, num_bottleneck_blocks: int):
        super().__init__()
        self.first = ConvNormRelu(num_channels, block_expansion, kernel_size=7, padding=3)
        self.down_blocks = nn.ModuleList(
            DownBlock(_width(block_expansion, max_features, i), _width(block_expansion, max_features, i + 1))
            for i in range(num_down_blocks))
        self.up_blocks = nn.ModuleList(
            UpBlock(_width(block_expansion, max_features, num_down_blocks - i),
                    _width(block_expansion, max_features, num_down_blocks - i - 1))
            for i in range(num_down_blocks))
        bottleneck_width = _width(block_expansion, max_features, num_down_blocks)
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock(bottleneck_width))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=7, padding=3)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        out = self.first(image)
        for block in self.down_blocks:
            out = block(out)
        return out

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        out = self.bottleneck(features)
        for block in self.up_blocks:
            out = block(out)
        return torch.sigmoid(self.final(out))


def warp_features(features: torch.Tensor, deformation: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Warp the encoded source by the flow, then hide what the mask (occlusion/visibility) marks unseen."""
    out = warp(features, deformation)
    if mask is not None:
        out = out * resize_map(mask, out.shape[2], out.shape[3])
    return out


class GeneratorOutput(NamedTuple):
    prediction: torch.Tensor
    motion: DenseMotion


class OcclusionAwareGenerator(EncoderDecoder):
    def __init__(self, num_channels: int, num_kp: int, block_expansion: int, max_features: int,
                 num_down_blocks: int, num_bottleneck_blocks: int, estimate_occlusion_map: bool = False,
                 dense_motion_params: dict | None = None):
        super().__init__(num_channels, block_expansion, max_features, num_down_blocks, num_bottleneck_blocks)
        if not dense_motion_params:
            raise ValueError("the generator needs dense_motion_params (the official configs all have them)")
        self.dense_motion_network = DenseMotionNetwork(num_kp=num_kp, num_channels=num_channels,
                                                       estimate_occlusion_map=estimate_occlusion_map,
                                                       **dense_motion_params)

    def motion(self, source_small: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints) -> DenseMotion:
        return self.dense_motion_network(source_small, kp_driving, kp_source)

    def animate(self, source_features: torch.Tensor, source_small: torch.Tensor,
                kp_driving: Keypoints, kp_source: Keypoints) -> GeneratorOutput:
        """Per-frame work given the avatar's cached encoding and downsampled image."""
        motion = self.motion(source_small, kp_driving, kp_source)
        warped = warp_features(source_features, motion.deformation, motion.occlusion)
        return GeneratorOutput(self.decode(warped), motion)

    def forward(self, source: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints) -> GeneratorOutput:
        return self.animate(self.encode(source), self.dense_motion_network.downsample(source), kp_driving, kp_source)
