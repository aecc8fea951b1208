"""core/smoothing.py and realtime/smoothing.py against a naive scalar One Euro filter written from the paper
(Casiez, Roussel and Vogel, CHI 2012) and against hand-computed pose returns and jitter values (mutation
testing, issue 12)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.smoothing import OneEuroFilter
from motion.keypoints import Keypoints
from realtime.smoothing import JitterMeter, KeypointSmoother, PoseReturn


def naive_one_euro(samples: list[float], times: list[float], min_cutoff: float, beta: float,
                   d_cutoff: float) -> list[float]:
    """The paper's algorithm for one scalar, line by line: alpha(fc) = 1 / (1 + tau / Te), tau = 1 / (2 pi fc);
    the first sample passes and its derivative estimate is 0; Te is clamped to at least 1 ms (repeated stamps)."""
    out = []
    x_hat = dx_hat = t_prev = None
    for x, t in zip(samples, times):
        if x_hat is None:
            x_hat, dx_hat, t_prev = x, 0.0, t
            out.append(x)
            continue
        te = t - t_prev
        if te < 0.001:
            te = 0.001
        dx = (x - x_hat) / te
        a_d = 1.0 / (1.0 + (1.0 / (2.0 * math.pi * d_cutoff)) / te)
        dx_hat = a_d * dx + (1.0 - a_d) * dx_hat
        cutoff = min_cutoff + beta * abs(dx_hat)
        a = 1.0 / (1.0 + (1.0 / (2.0 * math.pi * cutoff)) / te)
        x_hat = a * x + (1.0 - a) * x_hat
        t_prev = t
        out.append(x_hat)
    return out


# irregular sampling, a repeated time stamp (clamped to 1 ms) and a jump: every term of the filter matters
TIMES = [0.0, 0.03, 0.07, 0.07, 0.1, 0.2, 0.21]
SIGNAL = [0.2, 0.25, 0.1, 0.4, 0.45, -0.3, -0.25]


@pytest.mark.parametrize("params", [dict(min_cutoff=0.7, beta=3.0, d_cutoff=2.5), dict(min_cutoff=4.0, beta=0.0,
                                                                                      d_cutoff=0.3)])
def test_one_euro_equals_the_papers_algorithm(params):
    f = OneEuroFilter(**params)
    got = [float(f(np.array([x]), t)[0]) for x, t in zip(SIGNAL, TIMES)]
    assert got == pytest.approx(naive_one_euro(SIGNAL, TIMES, **params), rel=1e-12, abs=1e-15)


def test_one_euro_defaults_are_min_cutoff_1_5_beta_1_d_cutoff_1():
    f = OneEuroFilter()
    assert (f.min_cutoff, f.beta, f.d_cutoff) == (1.5, 1.0, 1.0)
    got = [float(f(np.array([x]), t)[0]) for x, t in zip(SIGNAL, TIMES)]
    assert got == pytest.approx(naive_one_euro(SIGNAL, TIMES, 1.5, 1.0, 1.0), rel=1e-12, abs=1e-15)


def test_one_euro_one_step_by_hand():
    # min_cutoff 1, beta 0: cut-off 1 Hz, Te = 1 s -> alpha = 1 / (1 + 1 / (2 pi)) = 2 pi / (2 pi + 1)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    f(0.0, 0.0)
    assert f(1.0, 1.0) == pytest.approx(2 * math.pi / (2 * math.pi + 1), rel=1e-12)


def test_one_euro_works_elementwise_and_restarts_after_reset():
    f = OneEuroFilter(min_cutoff=0.5, beta=2.0, d_cutoff=1.5)
    a, b = [0.1, 0.5, -0.2, 0.3], [-0.4, 0.0, 0.9, 0.2]
    both = [f(np.array([x, y]), t) for x, y, t in zip(a[:3], b[:3], TIMES)]
    assert [float(v[0]) for v in both] == pytest.approx(naive_one_euro(a[:3], TIMES[:3], 0.5, 2.0, 1.5), rel=1e-12)
    assert [float(v[1]) for v in both] == pytest.approx(naive_one_euro(b[:3], TIMES[:3], 0.5, 2.0, 1.5), rel=1e-12)
    f.reset()  # a fresh start: the first sample after it passes and the derivative starts at 0 again
    later = [5.0, 5.5, 4.0]
    got = [float(f(np.array([x, x]), t)[0]) for x, t in zip(later, [7.0, 7.1, 7.15])]
    assert got == pytest.approx(naive_one_euro(later, [7.0, 7.1, 7.15], 0.5, 2.0, 1.5), rel=1e-12)


@pytest.mark.parametrize("kwargs, expected", [({}, (1.5, 1.0)), ({"min_cutoff": 0.3, "beta": 4.0}, (0.3, 4.0))])
def test_keypoint_smoother_filters_values_and_jacobians_with_its_parameters(kwargs, expected):
    smoother = KeypointSmoother(**kwargs)
    values = [0.1, 0.3, -0.2, 0.25]
    jacobians = [1.0, 1.2, 0.7, 0.9]
    times = [0.0, 0.04, 0.05, 0.12]
    outs = [smoother(Keypoints(torch.full((1, 1, 2), v, dtype=torch.float64),
                               torch.full((1, 1, 2, 2), j, dtype=torch.float64)), t)
            for v, j, t in zip(values, jacobians, times)]
    assert [float(o.value[0, 0, 0]) for o in outs] == pytest.approx(naive_one_euro(values, times, *expected, 1.0),
                                                                    rel=1e-12)
    assert [float(o.jacobian[0, 0, 1, 1]) for o in outs] == pytest.approx(
        naive_one_euro(jacobians, times, *expected, 1.0), rel=1e-12)


def kp(value: float, jacobian: float | None = None) -> Keypoints:
    return Keypoints(torch.full((1, 1, 2), value, dtype=torch.float64),
                     None if jacobian is None else torch.full((1, 1, 2, 2), jacobian, dtype=torch.float64))


def test_pose_return_eases_from_the_held_pose_over_8_frames_by_default_then_passes_through():
    ret = PoseReturn()
    ret(kp(0.2, 3.0))
    ret.lost()
    live = kp(1.0, 1.0)
    # weight k / 8: held + (live - held) * k / 8, for the values and the Jacobians alike
    for k in range(1, 9):
        out = ret(live)
        assert float(out.value[0, 0, 0]) == pytest.approx(0.2 + 0.8 * k / 8, rel=1e-12)
        assert float(out.jacobian[0, 0, 0, 0]) == pytest.approx(3.0 - 2.0 * k / 8, rel=1e-12)
    assert ret(live) is live  # the return is over: the live pose passes untouched


def test_pose_return_ends_on_the_frame_whose_weight_reaches_one():
    ret = PoseReturn(frames=2)
    ret(kp(0.0))
    ret.lost()
    live = kp(1.0)
    assert float(ret(live).value[0, 0, 0]) == 0.5
    assert ret(live) is not live  # weight 1: still the blend's own object, equal to the live pose
    assert ret(live) is live  # over


def test_pose_return_without_jacobians_on_either_side_gives_none():
    ret = PoseReturn(frames=2)
    ret(kp(0.0, 1.0))
    ret.lost()
    assert ret(kp(1.0)).jacobian is None  # the live pose has none
    ret = PoseReturn(frames=2)
    ret(kp(0.0))
    ret.lost()
    assert ret(kp(1.0, 2.0)).jacobian is None  # the held pose has none


def test_a_second_loss_during_the_return_keeps_easing_from_the_first_held_pose():
    ret = PoseReturn(frames=4)
    ret(kp(0.0))
    ret.lost()
    live = kp(1.0)
    assert float(ret(live).value[0, 0, 0]) == 0.25
    ret.lost()  # lost again before the return finished: the hold and its progress stand
    assert float(ret(live).value[0, 0, 0]) == 0.5


def test_jitter_meter_by_hand():
    meter = JitterMeter()
    for x in [0.0, 0.0, 1.0, 0.0, 0.0]:
        meter.add(np.array([x]))
    # second differences: 1, -2, 1 -> mean |.| = 4 / 3, times 1000
    assert meter.value == round(4000 / 3, 4)
    fresh = JitterMeter()
    fresh.add(np.array([1.0]))
    fresh.add(np.array([3.0]))
    assert fresh.value == 0.0  # fewer than three samples: nothing measured yet
    fresh.add(np.array([4.0]))
    assert fresh.value == 1000.0  # |4 - 6 + 1|
