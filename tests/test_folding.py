"""BatchNorm folding (export/folding.py): a folded network computes what the unfolded one computes in eval
mode, with randomised running statistics; and a hand-computed 1x1 case."""
from __future__ import annotations

import copy

import torch
from torch import nn

from export.folding import fold_batchnorm
from motion.blocks import ConvNormRelu, Hourglass, ResBlock


def randomise_norms(module: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    for norm in module.modules():
        if isinstance(norm, nn.BatchNorm2d):
            shape = norm.running_mean.shape
            norm.running_mean.copy_(torch.randn(shape, generator=generator))
            norm.running_var.copy_(torch.rand(shape, generator=generator) * 2 + 0.1)
            norm.weight.data.copy_(torch.randn(shape, generator=generator))
            norm.bias.data.copy_(torch.randn(shape, generator=generator))
    return module.eval()


def count_norms(module: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in module.modules())


def test_hand_computed_fold():
    block = ConvNormRelu(1, 1, kernel_size=1, padding=0).eval()
    block.conv.weight.data.fill_(2.0)
    block.conv.bias.data.fill_(1.0)
    block.norm.running_mean.fill_(3.0)
    block.norm.running_var.fill_(3.0)
    block.norm.eps = 1.0  # sqrt(3 + 1) = 2
    block.norm.weight.data.fill_(4.0)
    block.norm.bias.data.fill_(0.5)
    fold_batchnorm(block)
    # gain 4 / 2 = 2: weight 2 * 2 = 4, bias (1 - 3) * 2 + 0.5 = -3.5
    assert block.conv.weight.item() == 4.0 and block.conv.bias.item() == -3.5
    assert isinstance(block.norm, nn.Identity)
    x = torch.tensor([[[[1.0, 0.5]]]])
    assert torch.equal(block(x), torch.tensor([[[[0.5, 0.0]]]]))  # relu(4x - 3.5)


@torch.no_grad()
def test_folded_networks_match_the_unfolded_ones():
    cases = ((Hourglass(4, 3, num_blocks=3, max_features=16), 3, 0), (ResBlock(6), 6, 1),
             (nn.Sequential(ConvNormRelu(3, 6), ResBlock(6), ResBlock(6)), 3, 2))
    for module, channels, left in cases:
        reference = randomise_norms(module)
        folded = fold_batchnorm(copy.deepcopy(reference))
        assert count_norms(folded) == left < count_norms(reference)  # a ResBlock keeps norm1 (residual stream)
        x = torch.randn(2, channels, 16, 24)
        torch.testing.assert_close(folded(x), reference(x), rtol=1e-5, atol=1e-5)
