"""BatchNorm folded into the convolution before it, for inference: in eval mode BatchNorm is the per-channel
affine y = (x - mean) * gamma / sqrt(var + eps) + beta, so conv-then-BN is one convolution with scaled
weights and a shifted bias. The bf16 backends fold before casting (folding in FP32, rounding once) and
skip a memory-bound pass over every activation of the folded layers. Only a BN that directly follows a
convolution folds: ConvNormRelu's, and a ResBlock's norm2 (after conv1); a ResBlock's norm1 acts on the
residual stream, which the skip connection also reads, and stays."""
from __future__ import annotations

import torch
from torch import nn

from motion.blocks import ConvNormRelu, ResBlock


@torch.no_grad()
def fold_into(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    """Rewrite conv's weight and bias so that conv alone computes norm(conv(x)) with norm's running stats."""
    gain = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    conv.weight.mul_(gain.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    conv.bias = nn.Parameter((bias - norm.running_mean) * gain + norm.bias)


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every foldable BatchNorm inside ``module`` (in place; eval-mode only) and return it."""
    for block in list(module.modules()):
        if isinstance(block, ConvNormRelu) and isinstance(block.norm, nn.BatchNorm2d):
            fold_into(block.conv, block.norm)
            block.norm = nn.Identity()
        elif isinstance(block, ResBlock) and isinstance(block.norm2, nn.BatchNorm2d):
            fold_into(block.conv1, block.norm2)
            block.norm2 = nn.Identity()
    return module
