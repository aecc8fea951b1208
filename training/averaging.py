"""Weight averaging of the checkpoints from the end of one run (stochastic weight averaging).

At the low learning rate successive epochs wander around one minimum; the mean of their weights sits
nearer its centre than any one of them, which evaluates better and steadier. Averaged BatchNorm
statistics do not belong to the averaged weights, so they are measured again on training pairs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from motion.checkpoint import model_from_checkpoint, read_checkpoint
from motion.config import Config
from motion.errors import UserError
from training.dataset import measuring_batch_size, seeded_batches
from training.trainer import predict


def average_states(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean of each floating-point tensor; integer ones (BatchNorm batch counters) come from the last state."""
    return {key: torch.stack([s[key] for s in states]).mean(0) if value.is_floating_point() else value
            for key, value in states[-1].items()}


@torch.no_grad()
def reestimate_batchnorm(kind: str, nets: dict[str, nn.Module], dataset: Dataset, batches: int, batch_size: int,
                         device: torch.device | str = "cpu", seed: int = 0) -> None:
    """Replace every BatchNorm's running mean and variance by their plain average over ``batches``
    training batches, seen as training sees them; the networks end in eval mode."""
    norms = [m for net in nets.values() for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    for net in nets.values():
        net.train()
    for batch in seeded_batches(dataset, batches, batch_size, seed):
        predict(kind, nets, batch["source"].to(device), batch["driving"].to(device))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    for net in nets.values():
        net.eval()


def average_checkpoints(config: Config, paths: Sequence[str | Path], dataset: Dataset, batches: int = 60,
                        device: torch.device | str = "cpu") -> tuple[dict[str, nn.Module], int]:
    """The inference networks with the mean weights of ``paths`` (all trained with ``config``), BatchNorm
    statistics re-measured; also the last checkpoint's epoch."""
    if not paths:
        raise UserError("give at least one checkpoint to average")
    models = []
    for path in paths:
        data = read_checkpoint(path)
        models.append(model_from_checkpoint(config, data, path, device))
    nets = models[-1]
    for name, net in nets.items():
        net.load_state_dict(average_states([m[name].state_dict() for m in models]))
    reestimate_batchnorm(config.kind, nets, dataset, batches, measuring_batch_size(config), device)
    return nets, int(data.get("epoch", 0))
