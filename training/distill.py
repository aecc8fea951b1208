"""Distillation: a light model taught a heavier one's cross-identity frames (the live model from fomm-face).

FOMM's training rebuilds a clip's frame from another frame of the same clip, so it never shows a model another
person's face moved by a driver, which is all `live` does. There the live model loses the avatar's identity more
than fomm-face does (#23: half of both the sunglasses portrait's and the drawing's frames taken for another
person), and its motion and its generator share the blame (either swapped in from fomm-face alone cut that share
by a fifth to three fifths on the three hardest portraits). So
each batch also pairs every sample's source with the previous sample's clip as the driver, in relative motion as
`live` moves an avatar (that clip's own source frame as the reference pose), and the student's frame learns the
teacher's by the reconstruction loss the driving frame is learnt by.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from core.puppeteer import normalize_keypoints
from motion.checkpoint import load_model
from motion.config import Config, load_config
from motion.errors import UserError
from motion.keypoints import Keypoints


class CrossIdentity(NamedTuple):
    """A cross-identity frame (B, 3, h, w), its avatar's keypoints and the moved keypoints it was drawn for."""
    prediction: torch.Tensor
    avatar: Keypoints
    moved: Keypoints


def cross_identity_prediction(nets: dict[str, nn.Module], source: torch.Tensor, driving: torch.Tensor) -> CrossIdentity:
    """Frame i: sample i-1's source (cyclically; the avatars are source.roll(1, 0)) moved by sample i's clip, in
    relative motion from that clip's source frame to its driving frame, Jacobians relative too, not rescaled
    (live's defaults)."""
    detector = nets["kp_detector"]
    kp_source, kp_driving = detector(source), detector(driving)
    jacobian = None if kp_source.jacobian is None else kp_source.jacobian.roll(1, 0)
    avatar = Keypoints(kp_source.value.roll(1, 0), jacobian)
    moved = normalize_keypoints(avatar, kp_driving, kp_source, relative=True, adapt_scale=False)
    return CrossIdentity(nets["generator"](source.roll(1, 0), moved, avatar).prediction, avatar, moved)


def load_teacher(config_path: str | Path, checkpoint: str | Path, student: Config,
                 device: torch.device) -> dict[str, nn.Module]:
    """The teacher's networks, frozen in eval mode; a FOMM model drawing frames of the student's size."""
    for path, option in ((config_path, "--teacher-config"), (checkpoint, "--teacher")):
        if not Path(path).is_file():
            raise UserError(f"{option} {path} does not exist; pass the teacher's "
                            f"{'YAML config' if option.endswith('config') else '.pth.tar checkpoint'}")
    config = load_config(config_path)
    if config.kind != "fomm" or student.kind != "fomm":
        raise UserError("--teacher needs FOMM models on both sides (a co-part model has no relative keypoints)")
    if config.size != student.size:
        raise UserError(f"--teacher draws {config.size} frames, the model being trained {student.size}; "
                        "both must have the same frame_shape")
    nets = load_model(config, checkpoint, device)
    for net in nets.values():
        net.requires_grad_(False)
    return nets
