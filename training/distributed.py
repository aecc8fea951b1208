"""Several processes training one model under `torchrun`, on PyTorch's own DistributedDataParallel.

torchrun starts one process per GPU and tells each its place through the environment (WORLD_SIZE, RANK,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Here are the process group built from that environment, this
process's rank and device, and the few collectives the trainer needs besides DDP's gradient averaging.
Without that environment (or with WORLD_SIZE=1) nothing touches torch.distributed and every helper
answers as a lone process would, so single-process training runs exactly as before.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from motion.errors import UserError

T = TypeVar("T")


def launched() -> bool:
    """Whether a launcher such as torchrun started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if _active() else 1


def rank() -> int:
    return dist.get_rank() if _active() else 0


def is_main() -> bool:
    """The one process that writes checkpoints and sample sheets and prints progress."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """On CUDA each process drives the GPU torchrun gave it (LOCAL_RANK); the CPU is shared."""
    if not launched() or device.type != "cuda":
        return device
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


@contextmanager
def session(device: torch.device) -> Iterator[torch.device]:
    """The process group of a torchrun launch (NCCL on CUDA, gloo on the CPU) for the duration of the block,
    yielding this process's device. The group is destroyed however the block ends (return, error, Ctrl-C),
    so no process lingers holding the rendezvous port. A lone process, or one already in a group, gets
    its device and nothing else."""
    device = local_device(device)
    if not launched() or dist.is_initialized():
        yield device
        return
    if not dist.is_available():
        raise UserError("WORLD_SIZE > 1 asks for distributed training, but this PyTorch build has no "
                        "torch.distributed; run without torchrun")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield device
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process gets here (e.g. until rank 0 has written the checkpoint)."""
    if world_size() > 1:
        dist.barrier()


def gather(value: T) -> list[T]:
    """Every process's ``value`` (any picklable object), in rank order, on every process."""
    if world_size() == 1:
        return [value]
    values: list[Any] = [None] * world_size()
    dist.all_gather_object(values, value)
    return values


def from_main(value: T) -> T:
    """Rank 0's ``value`` on every process: decisions that must agree (e.g. a schedule fitted to a clock)."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(flag: bool, device: torch.device) -> bool:
    """True everywhere when any process says True, so that all of them stop at the same step."""
    if world_size() == 1:
        return flag
    vote = torch.tensor([int(flag)], device=device)
    dist.all_reduce(vote, op=dist.ReduceOp.MAX)
    return bool(vote.item())


def average(record: dict[str, float]) -> dict[str, float]:
    """Each figure's mean over the processes that have it: the figures of the global batch, since every
    process holds an equal share of it (a matte term exists only where a share has keyed frames)."""
    if world_size() == 1:
        return record
    records = gather(record)
    keys = dict.fromkeys(key for r in records for key in r)
    return {key: sum(r[key] for r in records if key in r) / sum(key in r for r in records) for key in keys}


def sync_batchnorm(nets: dict[str, nn.Module], device: torch.device) -> dict[str, nn.Module]:
    """BatchNorm over the global batch, as the official code's multi-GPU training has it. Only on CUDA:
    torch's SyncBatchNorm refuses CPU input in training, so gloo runs keep per-process statistics (and
    say so once). The state_dict keys stay the official ones."""
    if world_size() == 1:
        return nets
    if device.type != "cuda":
        if is_main():
            print("note: BatchNorm statistics stay per process on the CPU (torch's SyncBatchNorm needs GPUs)",
                  file=sys.stderr)
        return nets
    return {name: nn.SyncBatchNorm.convert_sync_batchnorm(net) for name, net in nets.items()}


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` under DistributedDataParallel, which averages over processes the gradients of everything
    its forward runs; the module itself when alone. Every parameter must receive a gradient each step."""
    if world_size() == 1:
        return module
    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)
