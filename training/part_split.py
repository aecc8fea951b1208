"""Give a co-part model's empty parts mass by splitting its heaviest parts in two.

A part channel that the softmax over parts never picks gets no gradient, so parts added by growing a
model (``train --init``) stay empty. Splitting part d into d and e (copy d's heads to e, lower both
segmentation logits by log 2) leaves every mask sum, anchor, affine and so every prediction unchanged,
while both halves now carry mass; a little noise on the copy lets training pull them apart.
"""
from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

from motion.errors import UserError
from motion.segmentation import SegmentationModule
from training.dataset import seeded_batches


@torch.no_grad()
def part_shares(segmentation: SegmentationModule, dataset: Dataset, batches: int, batch_size: int,
                device: torch.device | str = "cpu", seed: int = 0) -> torch.Tensor:
    """(K,) mean share of the image area each part's mask holds over ``batches`` seeded training batches."""
    total, seen = 0, 0
    for batch in seeded_batches(dataset, batches, batch_size, seed):
        total = total + segmentation(batch["source"].to(device)).segmentation[:, 1:].mean((2, 3)).sum(0).cpu()
        seen += batch["source"].shape[0]
    if not seen:
        raise UserError(f"the training data gives fewer than {batch_size} pairs (videos x num_repeats), so no "
                        "full batch to measure the parts on; pass --data with more training videos")
    return total / seen


def split_plan(shares: torch.Tensor, min_share: float) -> list[tuple[int, int]]:
    """(donor, empty) part pairs: each part under ``min_share`` takes half of the heaviest part at that
    moment (a donor may be split again), so the new parts start where the model already puts mass."""
    shares = shares.clone().double()
    empty = [int(k) for k in torch.nonzero(shares < min_share).flatten()]
    if len(empty) == len(shares):
        return []
    shares[empty] = -1.0
    plan = []
    for part in empty:
        donor = int(torch.argmax(shares))
        shares[donor] /= 2
        shares[part] = shares[donor]
        plan.append((donor, part))
    return plan


@torch.no_grad()
def split_parts(segmentation: SegmentationModule, plan: list[tuple[int, int]], noise: float = 0.05,
                seed: int = 0) -> None:
    """Apply ``split_plan`` pairs in place. ``noise`` is relative to each copied filter's standard deviation."""
    generator = torch.Generator().manual_seed(seed)
    heads = [(segmentation.segmentation, 1, 1), (segmentation.shift, 0, 1)]  # (conv, first part channel, width)
    if segmentation.affine is not None:
        heads.append((segmentation.affine, 0, 4))
    for donor, part in plan:
        for conv, offset, width in heads:
            src = slice(offset + width * donor, offset + width * (donor + 1))
            dst = slice(offset + width * part, offset + width * (part + 1))
            weight = conv.weight[src]
            jitter = torch.randn(weight.shape, generator=generator) * weight.std() * noise
            conv.weight[dst] = weight + jitter.to(weight)
            conv.bias[dst] = conv.bias[src]
        seg_bias = segmentation.segmentation.bias
        seg_bias[1 + donor] -= math.log(2)
        seg_bias[1 + part] = seg_bias[1 + donor]
