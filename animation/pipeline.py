"""The offline loops: animate a photo with FOMM, or swap parts with co-part segmentation.

The avatar's keypoints/segments, encoder features and downsampled image are computed once; each
driving frame then costs its keypoints, the dense motion and the decoder only.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from motion.errors import UserError
from motion.geometry import movement_scale, relative_jacobians, relative_keypoints
from motion.keypoints import Keypoints
from motion.reconstruction import parts_mask


def pick_device(cpu: bool) -> torch.device:
    """The GPU when one is present, unless --cpu asks otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")


def to_tensor(frame: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).unsqueeze(0).to(device)


def to_image(tensor: torch.Tensor) -> np.ndarray:
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


@torch.no_grad()
def animate_frames(nets: dict[str, nn.Module], source: np.ndarray, frames: Iterable[np.ndarray],
                   device: torch.device, relative: bool = True, adapt_scale: bool = False) -> Iterator[np.ndarray]:
    """Yield the avatar (float (h, w, 3) in [0, 1]) following each driving frame."""
    kp_detector, generator = nets["kp_detector"], nets["generator"]
    source_t = to_tensor(source, device)
    kp_source = kp_detector(source_t)
    features = generator.encode(source_t)
    source_small = generator.dense_motion_network.downsample(source_t)
    kp_initial = None
    for frame in frames:
        kp_driving = kp_detector(to_tensor(frame, device))
        kp_initial = kp_driving if kp_initial is None else kp_initial
        kp_norm = normalize_keypoints(kp_source, kp_driving, kp_initial, relative, adapt_scale)
        yield to_image(generator.animate(features, source_small, kp_norm, kp_source).prediction)


def check_swap_index(swap_index: Sequence[int], num_segments: int) -> None:
    bad = [i for i in swap_index if not 0 <= i <= num_segments]
    if bad or not swap_index:
        raise UserError(f"--swap-index {','.join(map(str, swap_index))} is invalid: parts are numbered 1 to "
                        f"{num_segments} (0 is the background); pass e.g. --swap-index 1,2,3")


@torch.no_grad()
def swap_frames(nets: dict[str, nn.Module], source: np.ndarray, frames: Iterable[np.ndarray],
                device: torch.device, swap_index: Sequence[int],
                use_source_segmentation: bool = False) -> Iterator[np.ndarray]:
    """Yield each driving frame with the chosen parts replaced by the source's, moved into its pose."""
    segmenter, reconstruction = nets["segmentation_module"], nets["reconstruction_module"]
    source_t = to_tensor(source, device)
    seg_source = segmenter(source_t)
    source_features = reconstruction.encode(source_t)
    for frame in frames:
        target = to_tensor(frame, device)
        seg_target = segmenter(target)
        mask = parts_mask(seg_source if use_source_segmentation else seg_target, swap_index)
        out = reconstruction.swap(source_features, reconstruction.encode(target), seg_target, seg_source,
                                  mask, use_source_segmentation)
        yield to_image(out)
