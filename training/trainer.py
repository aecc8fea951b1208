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
from training.anchors import ANCHORS, anchor_loss
from training.distill import cross_identity_prediction, load_teacher
from training.identity_loss import IdentityLoss
from training.losses import RandomTps, ReconstructionLoss, equivariance_losses, masked_l1
from training.options import TrainOptions
from training.visualize import sample_sheet

OnStep = Callable[[int, dict[str, float]], None]  # called after each step with its number and losses

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

    def __init__(self, config: Config, nets: dict[str, nn.Module], vgg: str | None,
                 teacher: dict[str, nn.Module] | None = None, identity: IdentityLoss | None = None):
        super().__init__()
        train = _check_train(config)
        self.nets = nn.ModuleDict(nets)
        self.teacher = teacher  # a plain dict: neither trained, saved nor synchronised
        self.identity = identity  # likewise (needed when loss_weights.identity is set)
        self.kind = config.kind
        self.weights = train.loss_weights
        self.transform_params = train.transform_params
        self.anchor_keypoints = train.anchor_keypoints
        self.reconstruction = ReconstructionLoss(train.scales, train.loss_weights.perceptual, vgg,
                                                 config.model.num_channels)

    def detect(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(anchors, first-order matrices) of a frame."""
        raise NotImplementedError

    def predict(self, source: torch.Tensor, driving: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(prediction, source anchors, driving anchors)."""
        return predict(self.kind, self.nets, source, driving)

    def forward(self, source: torch.Tensor, driving: torch.Tensor, matte: torch.Tensor | None = None,
                has_matte: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                landmarks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The weighted loss terms; `matte`/`has_matte` (from a dataset with mattes) feed the matte term,
        `mask` (the driving frames' mouth and eye masks, from a dataset with masks) the expression term,
        `landmarks` ((B, 2, A, 2): both frames' lip and eyelid points, training/anchors.py) the anchor and
        identity terms."""
        prediction, source_points, driving_points = self.predict(source, driving)
        out = {"perceptual": self.reconstruction(prediction, driving)}
        if self.weights.expression and mask is not None:
            out["expression"] = self.weights.expression * masked_l1(prediction, driving, mask)
        if self.weights.anchor and landmarks is not None:
            out["anchor"] = self.weights.anchor / 2 * (anchor_loss(source_points, landmarks[:, 0], self.anchor_keypoints)
                                                       + anchor_loss(driving_points, landmarks[:, 1], self.anchor_keypoints))
        if (self.teacher is not None and self.weights.teacher) or self.identity is not None:
            cross = cross_identity_prediction(self.nets, source, driving)
            if self.teacher is not None and self.weights.teacher:
                with torch.no_grad():
                    taught = cross_identity_prediction(self.teacher, source, driving).prediction
                out["teacher"] = self.weights.teacher * self.reconstruction(cross.prediction, taught)
            if self.identity is not None and landmarks is not None:
                out["identity"] = self.weights.identity * self.identity(
                    cross.prediction, source.roll(1, 0), landmarks[:, 0].roll(1, 0), cross.avatar.value,
                    cross.moved.value)
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
    chosen = config.train.anchor_keypoints
    if config.train.loss_weights.anchor and (config.kind != "fomm" or len(chosen) != len(ANCHORS)
                                             or len(set(chosen)) != len(chosen) or max(chosen) >= config.model.num_kp):
        raise UserError(f"{config.path}: loss_weights.anchor needs a FOMM config whose train_params.anchor_keypoints "
                        f"lists {len(ANCHORS)} different keypoints ({', '.join(ANCHORS)}), each below num_kp")
    if config.train.loss_weights.identity and config.kind != "fomm":
        raise UserError(f"{config.path}: loss_weights.identity needs a FOMM model (a co-part model has no relative "
                        "keypoints to draw another person's motion with)")
    return config.train


def _check_teacher(config: Config, options: TrainOptions) -> None:
    """--teacher comes with its config, and with a loss weight for it (neither without the other)."""
    if (options.teacher is None) != (options.teacher_config is None):
        raise UserError("--teacher and --teacher-config go together: the teacher's checkpoint and its config")
    weight = config.train.loss_weights.teacher
    if options.teacher is not None and not weight:
        raise UserError(f"--teacher is unused: {config.path} sets no train_params.loss_weights.teacher")
    if options.teacher is None and weight:
        raise UserError(f"{config.path} sets loss_weights.teacher: pass the model to learn from with --teacher and "
                        "--teacher-config")


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


class _Run:
    """One training run as it goes: the networks with their optimizers and schedules, the objective (wrapped
    for the process group), where the run stands and every step's losses."""

    def __init__(self, config: Config, dataset: Dataset, options: TrainOptions, device: torch.device):
        """The run at its start: each process's generators seeded, the networks built (from ``options.init``
        where it fits) or resumed from ``options.resume`` with optimizers, schedules and random states."""
        _seed(options.seed + distributed.rank())  # own augmentations and warps per process; DDP copies rank 0's weights
        self.options, self.params, self.dataset, self.device = options, config.train, dataset, device
        self.out_dir = Path(options.output)
        self.checkpoint = self.out_dir / "checkpoint.pth.tar"
        self.nets = _networks(config, options.init, device)
        self.optimizers, self.schedulers = _optimizers(config, self.nets)
        self.epoch, self.step = 0, 0
        if options.resume is not None:
            self._resume(config, options.resume)
        teacher = None if options.teacher is None else load_teacher(options.teacher_config, options.teacher, config,
                                                                     device)
        identity = IdentityLoss(options.identity_model, device) if config.train.loss_weights.identity else None
        self.objective = (FommObjective if config.kind == "fomm" else CosegObjective)(config, self.nets, options.vgg,
                                                                                      teacher, identity)
        self.objective.reconstruction.to(device)
        self.model = distributed.wrap(self.objective, device)
        self.history: list[dict[str, float]] = []

    def _resume(self, config: Config, path: str | Path) -> None:
        data = read_checkpoint(path)
        load_state(self.nets, data, config, path)
        for name in self.optimizers:
            if f"optimizer_{name}" in data:
                self.optimizers[name].load_state_dict(data[f"optimizer_{name}"])
            if f"scheduler_{name}" in data:
                self.schedulers[name].load_state_dict(data[f"scheduler_{name}"])
        self.epoch, self.step = int(data.get("epoch", 0)), int(data.get("step", 0))
        _restore_rng(data, self.dataset)

    def save(self, epoch: int, every_rank: bool = True) -> None:
        """Rank 0 writes; ``every_rank`` (all processes call it) adds each one's random states."""
        rng = _rng_state(self.dataset)
        states = distributed.gather(rng) if every_rank else [rng]
        if not distributed.is_main():
            return
        extra = {f"scheduler_{n}": s.state_dict() for n, s in self.schedulers.items()}
        ranks = {"rng_ranks": states} if len(states) > 1 else {}
        save_checkpoint(self.checkpoint, self.nets, self.optimizers, epoch,
                        {**extra, "step": self.step, "rng": rng, **ranks})
        if self.options.snapshots:
            shutil.copyfile(self.checkpoint, self.out_dir / f"checkpoint_{epoch:03d}.pth.tar")

    def train_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """One optimizer step on a batch: (its source, its driving frames, the losses averaged over processes)."""
        source, driving = batch["source"].to(self.device), batch["driving"].to(self.device)
        matte = batch["matte"].to(self.device) if "matte" in batch else None
        mask = batch["mask"].to(self.device) if "mask" in batch else None
        landmarks = batch["anchors"].to(self.device) if "anchors" in batch else None
        losses = self.model(source, driving, matte, batch.get("has_matte"), mask, landmarks)
        loss = sum(losses.values())
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in self.optimizers.values():
            opt.step()
        self.step += 1
        record = distributed.average({k: v.item() for k, v in losses.items()} | {"total": loss.item()})
        self.history.append(record)
        return source, driving, record

    def train_epoch(self, loader: DataLoader, total_epochs: int, deadline: float | None,
                    on_step: OnStep | None) -> bool:
        """One pass over the loader, with sample sheets every options.sheet_every steps; True when
        options.max_steps or the deadline stopped it early."""
        main, sheet_every, max_steps = distributed.is_main(), self.options.sheet_every, self.options.max_steps
        bar = tqdm(loader, desc=f"epoch {self.epoch + 1}/{total_epochs}", file=sys.stderr,
                   disable=None if main else True)
        for batch in bar:
            source, driving, record = self.train_step(batch)
            bar.set_postfix({k: f"{v:.3f}" for k, v in record.items()})
            if on_step is not None:
                on_step(self.step, record)
            if main and sheet_every and self.step % sheet_every == 0:
                write_sheet(self.objective, source, driving, self.out_dir / f"sheet_{self.step:06d}.png")
            if ((max_steps is not None and self.step >= max_steps)
                    or (deadline is not None and distributed.any_rank(time.monotonic() > deadline, self.device))):
                return True
        return False

    def replan(self, deadline: float, started: float) -> int:
        """The epoch count that fits the time left at the last epoch's pace (epoch begun at ``started``),
        the schedules' milestones moved with it (see fit_schedule)."""
        now = time.monotonic()
        current = sorted(next(iter(self.schedulers.values())).milestones.elements())  # the same for every network
        total_epochs, milestones = distributed.from_main(fit_schedule(
            deadline - now, now - started, self.epoch, self.params.num_epochs, self.params.epoch_milestones, current))
        for scheduler in self.schedulers.values():
            scheduler.milestones = Counter(milestones)
        return total_epochs

    def run_epochs(self, loader: DataLoader, sampler: DistributedSampler | None, total_epochs: int,
                   deadline: float | None, on_step: OnStep | None) -> int:
        """Epochs until ``total_epochs`` are done (re-planned after each one under a deadline) or a step limit
        stops the run, saving every checkpoint_freq epochs and at the end; returns the final epoch count."""
        while self.epoch < total_epochs:
            started = time.monotonic()
            if sampler is not None:
                sampler.set_epoch(self.epoch)
            stop = self.train_epoch(loader, total_epochs, deadline, on_step)
            for scheduler in self.schedulers.values():
                scheduler.step()
            self.epoch += 1
            if stop:
                self.save(self.epoch)
                break
            if deadline is not None:
                total_epochs = self.replan(deadline, started)
            if self.epoch % self.params.checkpoint_freq == 0 or self.epoch == total_epochs:
                self.save(self.epoch)
        return total_epochs


def _networks(config: Config, init: str | Path | None, device: torch.device) -> dict[str, nn.Module]:
    """The config's networks, started from ``init``'s tensors where they fit, on the device (BatchNorm
    synchronised across a process group)."""
    nets = build_networks(config)
    if init is not None:
        for name, (taken, total) in initialise_from(nets, init).items():
            if distributed.is_main():
                print(f"{name}: {taken} of {total} tensors initialised from {init}", file=sys.stderr)
    return {name: net.to(device) for name, net in distributed.sync_batchnorm(nets, device).items()}


def _optimizers(config: Config, nets: dict[str, nn.Module]) -> tuple[dict[str, torch.optim.Optimizer],
                                                                     dict[str, torch.optim.lr_scheduler.MultiStepLR]]:
    """Adam per network at the config's lr_<key>, and its learning-rate schedule."""
    params = config.train
    optimizers = {}
    for name, net in nets.items():
        key = LEARNING_RATE_KEYS[name]
        if key not in params.learning_rates:
            raise UserError(f"{config.path}: train_params.lr_{key} is missing; add the learning rate for {name}")
        optimizers[name] = torch.optim.Adam(net.parameters(), lr=params.learning_rates[key], betas=(0.5, 0.999))
    schedulers = {name: torch.optim.lr_scheduler.MultiStepLR(opt, list(params.epoch_milestones), gamma=0.1)
                  for name, opt in optimizers.items()}
    return optimizers, schedulers


def train(config: Config, dataset: Dataset, options: TrainOptions, device: torch.device | str = "cpu",
          on_step: OnStep | None = None) -> TrainResult:
    """Train into ``options.output`` until ``options.epochs`` (None: the config's num_epochs) epochs are done.

    Each epoch visits every training video num_repeats times. Ctrl-C saves a checkpoint first.
    ``options.init`` starts a new run from the fitting tensors of another checkpoint; ``options.resume``
    continues one. ``options.minutes`` replaces the epoch count by a time budget (see fit_schedule);
    ``options.workers`` loads batches in that many processes, which a GPU needs to stay busy.
    ``options.snapshots`` also keeps each epoch's checkpoint as checkpoint_<epoch>.pth.tar (for
    `puppet.py average`). The options' config, data, cpu and overwrite are the caller's (see app.train).

    In a process group (torchrun, see distributed.py) every process runs this with its own share of the
    config's batch_size, the global batch; rank 0 alone prints and writes.
    """
    params = _check_train(config)
    _check_teacher(config, options)
    if options.minutes is not None and options.epochs is not None:
        raise UserError("give either --epochs or --minutes, not both: a time budget sets the number of epochs")
    Path(options.output).mkdir(parents=True, exist_ok=True)
    total_epochs = params.num_epochs if options.epochs is None else options.epochs
    run = _Run(config, dataset, options, torch.device(device))
    loader, sampler = _loader(dataset, params.batch_size, options.workers, options.seed)
    if len(loader) == 0:
        raise UserError(f"the training data has {len(dataset)} samples, fewer than one batch of "
                        f"{params.batch_size}; add videos or lower train_params.batch_size")
    start_epoch = run.epoch
    deadline = None if options.minutes is None else time.monotonic() + 60 * options.minutes
    if deadline is not None:
        total_epochs = start_epoch + 1  # re-planned after each epoch, at the pace measured
    for net in run.nets.values():
        net.train()
    try:
        total_epochs = run.run_epochs(loader, sampler, total_epochs, deadline, on_step)
    except KeyboardInterrupt:
        run.save(run.epoch, every_rank=False)  # the other processes are stopping too: no collective can be trusted
        if distributed.is_main():
            print(f"\ninterrupted: checkpoint saved to {run.checkpoint} (resume with --resume {run.checkpoint})",
                  file=sys.stderr)
        raise
    if total_epochs <= start_epoch:
        run.save(start_epoch)
    distributed.barrier()  # the checkpoint is on disk when train returns, in every process
    return TrainResult(run.checkpoint, run.epoch, run.step, run.history)


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
