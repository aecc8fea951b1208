"""Head position: the face crop follows the user's head, so the keypoints alone never see the head move,
lean in or step back. Mapping each frame's keypoints from its own crop into the crop taken at calibration
gives them what a fixed camera box would have seen; relative motion then carries that into the avatar.
The crop is axis-aligned, so a head's roll is already in the crop and needs no help here.

Bounded so the avatar's face never leaves its picture: the shift to MAX_SHIFT of the crop's half side and
the scale to SCALE_RANGE. `--stabilize` skips the mapping (the avatar's framing stays fixed).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from core.faces import Box
from motion.keypoints import Keypoints

MAX_SHIFT = 0.3  # in crop half-sides ([-1, 1] units): the face moves at most 15% of the crop's side
SCALE_RANGE = (0.8, 1.25)


@dataclass(frozen=True)
class Reframe:
    """kp_calibration = scale * kp_crop + shift, in [-1, 1] units of the calibration crop."""
    shift: tuple[float, float]
    scale: float


def reframe_of(calibration: Box, current: Box, max_shift: float = MAX_SHIFT,
               scale_range: tuple[float, float] = SCALE_RANGE) -> Reframe:
    """The mapping from the current crop's coordinates into the calibration crop's, bounded. A crop point
    at u (in [-1, 1]) is the frame pixel c + u * side / 2; in calibration units that is
    (c - c0) / (side0 / 2) + u * side / side0."""
    half = calibration.side / 2
    clamp = lambda v, low, high: min(max(v, low), high)  # noqa: E731
    shift = (clamp((current.cx - calibration.cx) / half, -max_shift, max_shift),
             clamp((current.cy - calibration.cy) / half, -max_shift, max_shift))
    return Reframe(shift, clamp(current.side / calibration.side, *scale_range))


def reframe(kp: Keypoints, mapping: Reframe) -> Keypoints:
    """Keypoints and Jacobians in the calibration crop's coordinates (a Jacobian maps local offsets, so it
    scales and does not shift)."""
    shift = torch.tensor(mapping.shift, dtype=kp.value.dtype, device=kp.value.device)
    jacobian = None if kp.jacobian is None else kp.jacobian * mapping.scale
    return Keypoints(kp.value * mapping.scale + shift, jacobian)
