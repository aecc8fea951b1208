"""Head position (realtime/framing.py) on hand-computed boxes: a point of the current crop lands where a
fixed calibration crop sees the same frame pixel."""
from __future__ import annotations

import pytest
import torch

from core.faces import Box
from motion.keypoints import Keypoints
from realtime.framing import MAX_SHIFT, SCALE_RANGE, Reframe, reframe, reframe_of


def test_a_crop_moved_and_grown_maps_its_points_to_the_calibration_crops():
    calibration = Box(200, 150, 100)  # spans x 150..250, y 100..200
    current = Box(210, 145, 110)  # 10 px right, 5 px up, 10% larger
    mapping = reframe_of(calibration, current)
    assert mapping.shift == pytest.approx((0.2, -0.1)) and mapping.scale == pytest.approx(1.1)
    # the current crop's right edge centre (u = (1, 0)) is frame pixel (265, 145): in the calibration crop
    # that is ((265 - 200) / 50, (145 - 150) / 50) = (1.3, -0.1)
    kp = Keypoints(torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]), torch.eye(2).expand(1, 2, 2, 2).clone())
    moved = reframe(kp, mapping)
    assert torch.allclose(moved.value, torch.tensor([[[1.3, -0.1], [0.2, -0.1]]]))
    assert torch.allclose(moved.jacobian, 1.1 * torch.eye(2).expand(1, 2, 2, 2))


def test_the_same_crop_is_no_motion_and_no_jacobian_stays_none():
    box = Box(80.5, 60.25, 47)
    assert reframe_of(box, box) == Reframe((0.0, 0.0), 1.0)
    kp = Keypoints(torch.rand(1, 10, 2) * 2 - 1, None)
    moved = reframe(kp, reframe_of(box, box))
    assert torch.equal(moved.value, kp.value) and moved.jacobian is None


def test_the_mapping_is_bounded_so_the_face_stays_in_its_picture():
    calibration = Box(200, 150, 100)
    far = reframe_of(calibration, Box(400, -100, 400))  # far right, far up, four times as big
    assert far.shift == (MAX_SHIFT, -MAX_SHIFT) and far.scale == SCALE_RANGE[1]
    assert reframe_of(calibration, Box(0, 400, 10)) == Reframe((-MAX_SHIFT, MAX_SHIFT), SCALE_RANGE[0])
