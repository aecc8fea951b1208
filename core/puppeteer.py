"""The per-avatar cache and the per-frame stages, shared by offline animation, the real-time loop
and the export backends: one definition, cut where the loop times and caches.

FOMM: prepare(avatar) once -> per frame keypoints(frame) -> motion(avatar, kp) -> render(avatar, motion).
Co-part: prepare(avatar) once -> per frame segments(frame) -> swap(avatar, frame, segments, parts).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from motion.dense_motion import DenseMotion
from motion.generator import warp_features
from motion.geometry import movement_scale, relative_jacobians, relative_keypoints
from motion.keypoints import Keypoints
from motion.reconstruction import parts_mask
from motion.segmentation import Segments


def to_tensor(frame: np.ndarray, device: torch.device) -> torch.Tensor:
    """(h, w, 3) float [0, 1] -> (1, 3, h, w) on device."""
    return torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0).to(device)


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """(1, 3, h, w) -> (h, w, 3) float numpy."""
    return tensor[0].permute(1, 2, 0).float().cpu().numpy()


def normalize_keypoints(kp_source: Keypoints, kp_driving: Keypoints, kp_driving_initial: Keypoints,
                        relative: bool, adapt_scale: bool) -> Keypoints:
    """Driving keypoints for the avatar: relative motion (kp_src + displacement since the first frame,
    optionally rescaled to the avatar's face size) or the driver's absolute keypoints."""
    if not relative:
        return kp_driving
    scale = movement_scale(kp_source.value, kp_driving_initial.value) if adapt_scale else 1.0
    value = relative_keypoints(kp_source.value, kp_driving.value, kp_driving_initial.value, scale)
    jacobian = kp_driving.jacobian
    if kp_driving.jacobian is not None and kp_source.jacobian is not None:
        jacobian = relative_jacobians(kp_source.jacobian, kp_driving.jacobian, kp_driving_initial.jacobian)
    return Keypoints(value, jacobian)


class Puppeteer(Protocol):
    """The FOMM stages, cut where the loop caches and times: FommPuppeteer, and every export backend
    (export/backends.py BACKENDS). The prepared avatar carries its keypoints as ``.kp``."""

    def prepare(self, image: np.ndarray) -> Any: ...

    def keypoints(self, frame: np.ndarray) -> Keypoints: ...

    def motion(self, avatar: Any, kp_driving: Keypoints) -> Any: ...

    def render(self, avatar: Any, motion: Any) -> np.ndarray: ...


@dataclass
class FommAvatar:
    """Everything about the avatar a frame needs, computed once."""
    image: torch.Tensor
    kp: Keypoints
    features: torch.Tensor  # generator encoder output
    small: torch.Tensor  # image at dense-motion resolution


class FommPuppeteer:
    """PyTorch eager FOMM, split in stages."""

    def __init__(self, nets: dict[str, nn.Module], device: torch.device):
        self.kp_detector = nets["kp_detector"]
        self.generator = nets["generator"]
        self.device = device

    @torch.no_grad()
    def prepare(self, image: np.ndarray) -> FommAvatar:
        source = to_tensor(image, self.device)
        return FommAvatar(source, self.kp_detector(source), self.generator.encode(source),
                          self.generator.dense_motion_network.downsample(source))

    @torch.no_grad()
    def keypoints(self, frame: np.ndarray) -> Keypoints:
        return self.kp_detector(to_tensor(frame, self.device))

    @torch.no_grad()
    def motion(self, avatar: FommAvatar, kp_driving: Keypoints) -> DenseMotion:
        """kp_driving already normalised (relative or absolute) for this avatar."""
        return self.generator.motion(avatar.small, kp_driving, avatar.kp)

    @torch.no_grad()
    def render(self, avatar: FommAvatar, motion: DenseMotion) -> np.ndarray:
        return to_image(self.generator.decode(warp_features(avatar.features, motion.deformation, motion.occlusion)))


@dataclass
class SwapAvatar:
    image: torch.Tensor
    segments: Segments
    features: torch.Tensor


class SwapPuppeteer:
    """PyTorch eager co-part segmentation part swap, split in stages."""

    def __init__(self, nets: dict[str, nn.Module], device: torch.device):
        self.segmenter = nets["segmentation_module"]
        self.reconstruction = nets["reconstruction_module"]
        self.device = device

    @torch.no_grad()
    def prepare(self, image: np.ndarray) -> SwapAvatar:
        source = to_tensor(image, self.device)
        return SwapAvatar(source, self.segmenter(source), self.reconstruction.encode(source))

    @torch.no_grad()
    def segments(self, frame: np.ndarray) -> tuple[torch.Tensor, Segments]:
        target = to_tensor(frame, self.device)
        return target, self.segmenter(target)

    @torch.no_grad()
    def swap(self, avatar: SwapAvatar, target: torch.Tensor, seg_target: Segments, swap_index: Sequence[int],
             use_source_segmentation: bool = False) -> np.ndarray:
        mask = parts_mask(avatar.segments if use_source_segmentation else seg_target, swap_index)
        out = self.reconstruction.swap(avatar.features, self.reconstruction.encode(target), seg_target,
                                       avatar.segments, mask, use_source_segmentation)
        return to_image(out)
