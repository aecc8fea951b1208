"""The One Euro filter (Casiez et al., CHI 2012): a low-pass filter whose cut-off rises with speed, so a still
signal is smoothed hard and fast motion passes with little lag. It works elementwise on numpy arrays and
torch tensors alike. The face trackers (core/tracking/) smooth their box with it, the live loop its keypoints
(realtime/smoothing.py)."""
from __future__ import annotations

import math
from typing import Any


def _alpha(cutoff: Any, dt: float) -> Any:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Speed-adaptive low-pass filter of a fixed-shape signal sampled at irregular times.

    min_cutoff (Hz) sets the smoothing of a still signal, beta how fast the cut-off grows with speed
    (in signal units per second), d_cutoff the smoothing of the speed estimate itself.
    """

    def __init__(self, min_cutoff: float = 1.5, beta: float = 1.0, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.reset()

    def reset(self) -> None:
        self._x: Any = None
        self._dx: Any = None
        self._t = 0.0

    def __call__(self, x: Any, t: float) -> Any:
        if self._x is None:
            self._x, self._dx, self._t = x, x * 0, t
            return x
        dt = max(t - self._t, 1e-3)
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * abs(self._dx)
        self._x = self._x + _alpha(cutoff, dt) * (x - self._x)
        self._t = t
        return self._x
