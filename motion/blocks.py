"""Building blocks of every network: conv + BatchNorm + ReLU units, the U-Net hourglass, and the
Gaussian anti-alias downscale. Attribute names (conv, norm, down_blocks, ...) are the official
state_dict names, so official checkpoints load strictly."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvNormRelu(nn.Module):
    """conv -> BatchNorm -> ReLU at unchanged resolution (the official 'SameBlock2d')."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class DownBlock(ConvNormRelu):
    """ConvNormRelu then 2x2 average pooling: halves the resolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(super().forward(x), kernel_size=2)


class UpBlock(ConvNormRelu):
    """Nearest-neighbour x2 upsampling then ConvNormRelu: doubles the resolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.interpolate(x, scale_factor=2, mode="nearest"))


class ResBlock(nn.Module):
    """Pre-activation residual block: x + conv(relu(bn(conv(relu(bn(x))))))."""

    def __init__(self, features: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(features, features, kernel_size=kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm2d(features, affine=True)
        self.norm2 = nn.BatchNorm2d(features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


def _width(block_expansion: int, max_features: int, level: int) -> int:
    return min(max_features, block_expansion * (2 ** level))


class HourglassEncoder(nn.Module):
    """num_blocks DownBlocks; returns every intermediate map for the decoder's skip connections."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock(in_features if i == 0 else _width(block_expansion, max_features, i),
                      _width(block_expansion, max_features, i + 1))
            for i in range(num_blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class HourglassDecoder(nn.Module):
    """num_blocks UpBlocks, each output concatenated with the encoder map of the same size."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            widen = 1 if i == num_blocks - 1 else 2
            blocks.append(UpBlock(widen * _width(block_expansion, max_features, i + 1),
                                  _width(block_expansion, max_features, i)))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        skips = list(skips)
        out = skips.pop()
        for block in self.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out


class Hourglass(nn.Module):
    """U-Net: the output keeps the input channels concatenated to block_expansion learned ones."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256):
        super().__init__()
        self.encoder = HourglassEncoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = HourglassDecoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def gaussian_kernel(scale: float) -> torch.Tensor:
    """The 2-D Gaussian that removes frequencies above the new Nyquist limit before subsampling.

    sigma = (1/scale - 1)/2, size 2*round(4 sigma) + 1, normalised to sum 1 (the official constants).
    """
    sigma = (1 / scale - 1) / 2
    size = 2 * round(sigma * 4) + 1
    coords = torch.arange(size, dtype=torch.float32)
    mean = (size - 1) / 2
    one_d = torch.exp(-((coords - mean) ** 2) / (2 * sigma ** 2))
    kernel = one_d.view(-1, 1) * one_d.view(1, -1)
    return kernel / kernel.sum()


class AntiAliasDownsample(nn.Module):
    """Gaussian blur then take every (1/scale)-th pixel. The kernel is a state_dict buffer ('weight')."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        kernel = gaussian_kernel(scale)
        self.register_buffer("weight", kernel.view(1, 1, *kernel.shape).repeat(channels, 1, 1, 1))
        self.scale = scale
        size = kernel.shape[0]
        self.pad_before = size // 2
        self.pad_after = self.pad_before - 1 if size % 2 == 0 else self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = F.pad(x, (self.pad_before, self.pad_after, self.pad_before, self.pad_after))
        step = round(1 / self.scale)
        if step * self.scale == 1:  # nearest keeps pixels 0, step, 2 step...: blur only those (step^2 less work)
            x = F.conv2d(x, self.weight, stride=step, groups=x.shape[1])
            return x[..., :int(height * self.scale), :int(width * self.scale)]
        x = F.conv2d(x, self.weight, groups=x.shape[1])
        return F.interpolate(x, scale_factor=(self.scale, self.scale), mode="nearest")


def maybe_downsample(channels: int, scale: float) -> nn.Module:
    """Identity at scale 1 (no buffer in the state_dict, as the official modules), else the anti-alias downscale."""
    return nn.Identity() if scale == 1 else AntiAliasDownsample(channels, scale)
