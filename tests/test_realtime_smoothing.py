"""One Euro filter, pose hold/return and the jitter meter, on signals with known answers."""
from __future__ import annotations

import numpy as np
import torch

from core.smoothing import OneEuroFilter
from motion.keypoints import Keypoints
from realtime.smoothing import JitterMeter, KeypointSmoother, PoseReturn


def test_one_euro_passes_first_sample_and_constants():
    f = OneEuroFilter()
    x = np.array([0.3, -0.2])
    assert np.array_equal(f(x, 0.0), x)
    for i in range(1, 20):
        assert np.allclose(f(x, i / 30), x)


def test_one_euro_reduces_jitter_of_a_still_point():
    rng = np.random.default_rng(0)
    noisy = 0.1 + 0.01 * rng.standard_normal((300, 5, 2))
    f = OneEuroFilter()
    smoothed = np.stack([f(x, i / 30) for i, x in enumerate(noisy)])
    raw, out = JitterMeter(), JitterMeter()
    for a, b in zip(noisy, smoothed):
        raw.add(a)
        out.add(b)
    assert out.value < 0.25 * raw.value
    assert abs(smoothed[100:].mean() - 0.1) < 0.002  # no bias


def test_one_euro_follows_fast_motion_with_little_lag():
    """A fast ramp raises the cut-off: lag stays far below that of a fixed 1.5 Hz low-pass."""
    t = np.arange(60) / 30
    ramp = 2.0 * t  # 2 units per second, fast for keypoints in [-1, 1]
    adaptive, fixed = OneEuroFilter(beta=1.0), OneEuroFilter(beta=0.0)
    lag_adaptive = [x - adaptive(x, ti) for x, ti in zip(ramp, t)][-1]
    lag_fixed = [x - fixed(x, ti) for x, ti in zip(ramp, t)][-1]
    assert 0 <= lag_adaptive < 0.3 * lag_fixed


def test_one_euro_works_on_tensors_and_resets():
    f = OneEuroFilter()
    a, b = torch.zeros(1, 3, 2), torch.ones(1, 3, 2)
    f(a, 0.0)
    out = f(b, 1 / 30)
    assert isinstance(out, torch.Tensor) and 0 < float(out.mean()) < 1
    f.reset()
    assert torch.equal(f(b, 2 / 30), b)


def test_keypoint_smoother_filters_values_and_jacobians():
    smoother = KeypointSmoother()
    kp0 = Keypoints(torch.zeros(1, 2, 2), torch.eye(2).expand(1, 2, 2, 2).clone())
    kp1 = Keypoints(torch.full((1, 2, 2), 0.01), 1.01 * torch.eye(2).expand(1, 2, 2, 2))
    smoother(kp0, 0.0)
    out = smoother(kp1, 1 / 30)
    assert 0 < float(out.value.mean()) < 0.01
    assert 1 < float(out.jacobian[0, 0, 0, 0]) < 1.01
    assert smoother(Keypoints(kp0.value, None), 2 / 30).jacobian is None


def test_pose_return_holds_then_eases_back():
    ret = PoseReturn(frames=4)
    held = Keypoints(torch.zeros(1, 1, 2), None)
    assert ret(held) is held
    ret.lost()
    new = Keypoints(torch.ones(1, 1, 2), None)
    steps = [float(ret(new).value.mean()) for _ in range(6)]
    assert steps == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_pose_return_before_any_pose_is_a_no_op():
    ret = PoseReturn()
    ret.lost()
    kp = Keypoints(torch.ones(1, 1, 2), None)
    assert ret(kp) is kp


def test_jitter_meter_ignores_uniform_motion_and_gaps():
    meter = JitterMeter()
    for i in range(10):
        meter.add(np.array([0.1 * i]))
    assert meter.value == 0
    meter.gap()
    meter.add(np.array([5.0]))
    meter.add(np.array([5.0]))
    assert meter.value == 0
