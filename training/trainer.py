"""Training both models from their configs: one loop, two objectives (FOMM, co-part segmentation).

Checkpoints are saved in the official layout (loadable by `puppet.py animate` and the official demo)
plus scheduler and random-generator states, so a resumed run continues exactly at an epoch boundary.
Under torchrun the same loop runs in every process with DistributedDataParallel (see distributed.py).
"""
from __future__ import annotations

import random
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import imageio.v2 as imageio
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from motion.checkpoint import load_matching, load_state, read_checkpoint, save_checkpoint, start_coseg_from_fomm
from motion.config import Config, TrainParams
from motion.errors import UserError
from motion.networks import build_networks
from motion.segmentation import Segments
from training import distributed
from training.losses import RandomTps, ReconstructionLoss, equivariance_losses, masked_l1
from training.visualize import sample_sheet

# Which optimizer (official key 'optimizer_<name>') trains which networks, and its lr_<key> in the config.
LEARNING_RATE_KEYS = {"kp_detector": "kp_detector", "generator": "generator",
                      "segmentation_module": "segmentation", "reconstruction_module": "reconstruction"}


def predict(kind: str, nets: dict[str, nn.Module], source: torch.Tensor,
            driving: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The driving frame rebuilt from the source, as training sees it: (prediction, source anchors,
    driving anchors) of a FOMM ("fomm") or co-part ("coseg") model."""
    if kind == "fomm":
        kp_source, kp_driving = nets["kp_detector"](source), nets["kp_detector"](driving)
        return nets["generator"](source, kp_driving, kp_source).prediction, kp_source.value, kp_driving.value
    seg_source, seg_target = nets["segmentation_module"](source), nets["segmentation_module"](driving)
    prediction = nets["reconstruction_module"](source, seg_target, seg_source)
    return prediction, seg_source.shift, seg_target.shift


def matte_loss(segments: Segments, matte: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the foreground (everything but the background part 0), at the matte's size,
    against a person mask (1 = person)."""
    background = torch.nn.functional.interpolate(segments.segmentation[:, :1], size=matte.shape[2:], mode="bilinear")
    return torch.nn.functional.binary_cross_entropy((1 - background).clamp(1e-6, 1 - 1e-6), matte)


class Objective(nn.Module):
    """The losses of one model on a batch of (source, driving) pairs, and what to draw of them.

    One module whose forward computes every loss term: DistributedDataParallel averages the gradients
    of what runs inside its forward only, and a step calls the networks several times.
    """

    def __init__(self, config: Config, nets: dict[str, nn.Module], vgg: str | None):
        super().__init__()
        train = _check_train(config)
        self.nets = nn.ModuleDict(nets)
        self.kind = config.kind
        self.weights = train.loss_weights
        self.transform_params = train.transform_params
        self.reconstruction = ReconstructionLoss(train.scales, train.loss_weights.perceptual, vgg,
                                                 config.model.num_channels)

    def detect(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(anchors, first-order matrices) of a frame."""
        raise NotImplementedError

    def predict(self, source: torch.Tensor, driving: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(prediction, source anchors, driving anchors)."""
        return predict(self.kind, self.nets, source, driving)

    def forward(self, source: torch.Tensor, driving: torch.Tensor, matte: torch.Tensor | None = None,
                has_matte: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The weighted loss terms; `matte`/`has_matte` (from a dataset with mattes) feed the matte term,
        `mask` (the driving frames' mouth and eye masks, from a dataset with masks) the expression term."""
        prediction, _, _ = self.predict(source, driving)
        out = {"perceptual": self.reconstruction(prediction, driving)}
        if self.weights.expression and mask is not None:
            out["expression"] = self.weights.expression * masked_l1(prediction, driving, mask)
        value_weight, jacobian_weight = self.equivariance_weights()
        if value_weight or jacobian_weight:
            transform = RandomTps.sample(driving.shape[0], self.transform_params, driving.device)
            value, jacobian = self.detect(driving)
            warped_value, warped_jacobian = self.detect(transform.warp_image(driving))
            value_loss, jacobian_loss = equivariance_losses(value, jacobian, warped_value, warped_jacobian, transform)
            if value_weight:
                out["equivariance_value"] = value_weight * value_loss
            if jacobian_weight and jacobian_loss is not None:
                out["equivariance_jacobian"] = jacobian_weight * jacobian_loss
        if self.kind == "coseg" and self.weights.matte and matte is not None and bool(has_matte.any()):
            # the whole batch through BatchNorm, as in the other terms; only keyed frames are scored
            segments = self.nets["segmentation_module"](driving)
            keyed = Segments(segments.segmentation[has_matte], segments.shift[has_matte], None)
            out["matte"] = self.weights.matte * matte_loss(keyed, matte[has_matte])
        return out

    def equivariance_weights(self) -> tuple[float, float]:
        raise NotImplementedError


class FommObjective(Objective):
    def detect(self, image):
        kp = self.nets["kp_detector"](image)
        return kp.value, kp.jacobian

    def equivariance_weights(self):
        return self.weights.equivariance_value, self.weights.equivariance_jacobian


class CosegObjective(Objective):
    def detect(self, image):
        seg = self.nets["segmentation_module"](image)
        return seg.shift, seg.affine

    def equivariance_weights(self):
        return self.weights.equivariance, self.weights.equivariance


def _rng_state(dataset: Dataset) -> dict:
    """Every random generator the next epoch draws from, in types weights_only loading accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
             "numpy_rest": (int(pos), int(has_gauss), float(cached)), "python": random.getstate()}
    if isinstance(getattr(dataset, "rng", None), np.random.Generator):  # the dataset's own pair sampler
        state["dataset"] = dataset.rng.bit_generator.state
    return state


def _set_rng_state(state: dict, dataset: Dataset) -> None:
    torch.set_rng_state(state["torch"])
    pos, has_gauss, cached = state["numpy_rest"]
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "dataset" in state and isinstance(getattr(dataset, "rng", None), np.random.Generator):
        dataset.rng.bit_generator.state = state["dataset"]


def _restore_rng(data: dict, dataset: Dataset) -> None:
    """Each process takes back its own random generators ('rng_ranks' of a distributed run, 'rng' of a
    single one). Saved by another number of processes, they cannot continue the same streams: the run
    goes on from this run's seeds, not bit for bit, and says so."""
    states = data.get("rng_ranks") or ([data["rng"]] if "rng" in data else [])
    if len(states) == distributed.world_size():
        _set_rng_state(states[distributed.rank()], dataset)
    elif states and distributed.is_main():
        print(f"note: the checkpoint's random states come from {len(states)} process(es), this run has "
              f"{distributed.world_size()}: data order and augmentations continue from --seed instead",
              file=sys.stderr)


def _loader(dataset: Dataset, batch_size: int, workers: int,
            seed: int) -> tuple[DataLoader, DistributedSampler | None]:
    """Batches of ``batch_size`` pairs; under torchrun that is the global batch, each process loading an
    equal share of it from its own disjoint part of the epoch (the sampler wants set_epoch each epoch)."""
    world = distributed.world_size()
    if world == 1:
        return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
                          persistent_workers=workers > 0), None
    if batch_size % world:
        raise UserError(f"train_params.batch_size {batch_size} is the global batch and must split evenly over "
                        f"the {world} processes; use a multiple of {world}")
    sampler = DistributedSampler(dataset, num_replicas=world, rank=distributed.rank(), shuffle=True, seed=seed,
                                 drop_last=True)
    return DataLoader(dataset, batch_size=batch_size // world, sampler=sampler, drop_last=True,
                      num_workers=workers, persistent_workers=workers > 0), sampler


@dataclass
class TrainResult:
    checkpoint: Path
    epochs_done: int
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)


def _check_train(config: Config) -> TrainParams:
    if config.train is None:
        raise UserError(f"config {config.path} has no train_params section; add one (see configs/vox-256.yaml)")
    if config.train.loss_weights.generator_gan:
        raise UserError(f"{config.path}: adversarial training (train_params.loss_weights.generator_gan > 0) is not "
                        "supported; set generator_gan: 0 as the official vox-256.yaml does")
    return config.train


def initialise_from(nets: dict[str, nn.Module], path: str | Path) -> dict[str, tuple[int, int]]:
    """Start from another checkpoint's tensors wherever name and shape fit (e.g. a trained keypoint
    detector under a wider generator); heads with more output channels (more parts) take the saved
    channels first. Returns {network: (tensors taken, tensors in the network)}."""
    data = read_checkpoint(path)
    if "segmentation_module" in nets and all(isinstance(data.get(k), dict) for k in ("kp_detector", "generator")):
        return start_coseg_from_fomm(nets, data)
    return {name: (load_matching(net, data[name], grow=True), len(net.state_dict()))
            for name, net in nets.items() if isinstance(data.get(name), dict)}


def fit_schedule(seconds_left: float, epoch_seconds: float, epochs_done: int, num_epochs: int,
                 config_milestones: Sequence[int], milestones: Sequence[int]) -> tuple[int, list[int]]:
    """The epoch count and learning-rate milestones that fit a time budget at the last epoch's pace.

    The run gets as many more epochs as the time left holds; each milestone not yet passed moves to the
    same fraction of the run as the config puts it (14 of 20 epochs -> 70 %), so a short budget still
    ends with its low-learning-rate phase. Milestones already passed stay where they were.
    """
    total = epochs_done + max(0, int(seconds_left // max(epoch_seconds, 1e-9)))
    moved = [m if m <= epochs_done else max(epochs_done + 1, round(c / num_epochs * total))
             for c, m in zip(config_milestones, milestones)]
    return total, moved


def train(config: Config, dataset: Dataset, out_dir: str | Path, resume: str | Path | None = None,
          epochs: int | None = None, device: torch.device | str = "cpu", vgg: str | None = None,
          sheet_every: int = 200, max_steps: int | None = None, seed: int = 0,
          on_step: Callable[[int, dict[str, float]], None] | None = None,
          init: str | Path | None = None, minutes: float | None = None, workers: int = 0,
          snapshots: bool = False) -> TrainResult:
    """Train until ``epochs`` (default: the config's num_epochs) epochs are done.

    Each epoch visits every training video num_repeats times. Ctrl-C saves a checkpoint first.
    ``init`` starts a new run from the fitting tensors of another checkpoint; ``resume`` continues one.
    ``minutes`` replaces the epoch count by a time budget (see fit_schedule); ``workers`` loads
    batches in that many processes, which a GPU needs to stay busy. ``snapshots`` also keeps each
    epoch's checkpoint as checkpoint_<epoch>.pth.tar (for `puppet.py average`).

    In a process group (torchrun, see distributed.py) every process runs this with its own share of the
    config's batch_size, the global batch; rank 0 alone prints and writes.
    """
    params = _check_train(config)
    if minutes is not None and epochs is not None:
        raise UserError("give either --epochs or --minutes, not both: a time budget sets the number of epochs")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    total_epochs = params.num_epochs if epochs is None else epochs
    device = torch.device(device)
    main = distributed.is_main()
    _seed(seed + distributed.rank())  # own augmentations and warps per process; DDP copies rank 0's weights
    nets = build_networks(config)
    if init is not None:
        for name, (taken, total) in initialise_from(nets, init).items():
            if main:
                print(f"{name}: {taken} of {total} tensors initialised from {init}", file=sys.stderr)
    nets = {name: net.to(device) for name, net in distributed.sync_batchnorm(nets, device).items()}
    optimizers = {}
    for name, net in nets.items():
        key = LEARNING_RATE_KEYS[name]
        if key not in params.learning_rates:
            raise UserError(f"{config.path}: train_params.lr_{key} is missing; add the learning rate for {name}")
        optimizers[name] = torch.optim.Adam(net.parameters(), lr=params.learning_rates[key], betas=(0.5, 0.999))
    schedulers = {name: torch.optim.lr_scheduler.MultiStepLR(opt, list(params.epoch_milestones), gamma=0.1)
                  for name, opt in optimizers.items()}
    start_epoch, step = 0, 0
    if resume is not None:
        data = read_checkpoint(resume)
        load_state(nets, data, config, resume)
        for name in optimizers:
            if f"optimizer_{name}" in data:
                optimizers[name].load_state_dict(data[f"optimizer_{name}"])
            if f"scheduler_{name}" in data:
                schedulers[name].load_state_dict(data[f"scheduler_{name}"])
        start_epoch, step = int(data.get("epoch", 0)), int(data.get("step", 0))
        _restore_rng(data, dataset)
    objective = (FommObjective if config.kind == "fomm" else CosegObjective)(config, nets, vgg)
    objective.reconstruction.to(device)
    model = distributed.wrap(objective, device)
    checkpoint = out_dir / "checkpoint.pth.tar"

    def save(epoch: int, every_rank: bool = True) -> None:
        """Rank 0 writes; ``every_rank`` (all processes call it) adds each one's random states."""
        rng = _rng_state(dataset)
        states = distributed.gather(rng) if every_rank else [rng]
        if not main:
            return
        extra = {f"scheduler_{n}": s.state_dict() for n, s in schedulers.items()}
        ranks = {"rng_ranks": states} if len(states) > 1 else {}
        save_checkpoint(checkpoint, nets, optimizers, epoch, {**extra, "step": step, "rng": rng, **ranks})
        if snapshots:
            shutil.copyfile(checkpoint, out_dir / f"checkpoint_{epoch:03d}.pth.tar")

    loader, sampler = _loader(dataset, params.batch_size, workers, seed)
    if len(loader) == 0:
        raise UserError(f"the training data has {len(dataset)} samples, fewer than one batch of "
                        f"{params.batch_size}; add videos or lower train_params.batch_size")
    history: list[dict[str, float]] = []
    epoch = start_epoch
    deadline = None if minutes is None else time.monotonic() + 60 * minutes
    if deadline is not None:
        total_epochs = start_epoch + 1  # re-planned after each epoch, at the pace measured
    for net in nets.values():
        net.train()
    try:
        while epoch < total_epochs:
            started, stop = time.monotonic(), False
            if sampler is not None:
                sampler.set_epoch(epoch)
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{total_epochs}", file=sys.stderr,
                       disable=None if main else True)
            for batch in bar:
                source, driving = batch["source"].to(device), batch["driving"].to(device)
                matte = batch["matte"].to(device) if "matte" in batch else None
                mask = batch["mask"].to(device) if "mask" in batch else None
                losses = model(source, driving, matte, batch.get("has_matte"), mask)
                loss = sum(losses.values())
                for opt in optimizers.values():
                    opt.zero_grad(set_to_none=True)
                loss.backward()
                for opt in optimizers.values():
                    opt.step()
                step += 1
                record = distributed.average({k: v.item() for k, v in losses.items()} | {"total": loss.item()})
                history.append(record)
                bar.set_postfix({k: f"{v:.3f}" for k, v in record.items()})
                if on_step is not None:
                    on_step(step, record)
                if main and sheet_every and step % sheet_every == 0:
                    write_sheet(objective, source, driving, out_dir / f"sheet_{step:06d}.png")
                stop = ((max_steps is not None and step >= max_steps)
                        or (deadline is not None and distributed.any_rank(time.monotonic() > deadline, device)))
                if stop:
                    break
            for scheduler in schedulers.values():
                scheduler.step()
            epoch += 1
            if stop:
                save(epoch)
                break
            if deadline is not None:
                now = time.monotonic()
                current = sorted(next(iter(schedulers.values())).milestones.elements())  # the same for every network
                total_epochs, milestones = distributed.from_main(fit_schedule(
                    deadline - now, now - started, epoch, params.num_epochs, params.epoch_milestones, current))
                for scheduler in schedulers.values():
                    scheduler.milestones = Counter(milestones)
            if epoch % params.checkpoint_freq == 0 or epoch == total_epochs:
                save(epoch)
    except KeyboardInterrupt:
        save(epoch, every_rank=False)  # the other processes are stopping too: no collective can be trusted
        if main:
            print(f"\ninterrupted: checkpoint saved to {checkpoint} (resume with --resume {checkpoint})",
                  file=sys.stderr)
        raise
    if total_epochs <= start_epoch:
        save(start_epoch)
    distributed.barrier()  # the checkpoint is on disk when train returns, in every process
    return TrainResult(checkpoint, epoch, step, history)


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


@torch.no_grad()
def write_sheet(objective: Objective, source: torch.Tensor, driving: torch.Tensor, path: Path) -> None:
    """Source / driving / prediction rows with anchors drawn, for looking at training progress."""
    nets = objective.nets
    modes = {name: net.training for name, net in nets.items()}
    for net in nets.values():
        net.eval()
    prediction, kp_source, kp_driving = objective.predict(source, driving)
    for name, net in nets.items():
        net.train(modes[name])
    imageio.imwrite(path, sample_sheet(source, driving, prediction, kp_source, kp_driving))
