"""Temporal smoothing of driving keypoints: a One Euro filter against detector jitter, a blend that
brings a held pose back smoothly when the face reappears, and a jitter meter that makes both measurable.

The One Euro filter (core/smoothing.py, Casiez et al., CHI 2012) is a low-pass filter whose cut-off rises
with speed: still keypoints are smoothed hard, fast motion passes with little lag. It works elementwise on
numpy arrays and torch tensors alike, so the real-time loop filters keypoints where they live.
"""
from __future__ import annotations

from typing import Any

from core.smoothing import OneEuroFilter
from motion.keypoints import Keypoints


class KeypointSmoother:
    """One Euro filters on the keypoint positions and on their Jacobians."""

    def __init__(self, min_cutoff: float = 1.5, beta: float = 1.0):
        self.value = OneEuroFilter(min_cutoff, beta)
        self.jacobian = OneEuroFilter(min_cutoff, beta)

    def reset(self) -> None:
        self.value.reset()
        self.jacobian.reset()

    def __call__(self, kp: Keypoints, t: float) -> Keypoints:
        jacobian = None if kp.jacobian is None else self.jacobian(kp.jacobian, t)
        return Keypoints(self.value(kp.value, t), jacobian)


class PoseReturn:
    """Holds the last pose while the face is lost, then eases from it to the live pose over `frames`
    frames, so the avatar neither freezes on garbage nor jumps when tracking resumes."""

    def __init__(self, frames: int = 8):
        self.frames = frames
        self._last: Keypoints | None = None
        self._held: Keypoints | None = None
        self._step = 0

    def lost(self) -> None:
        if self._held is None and self._last is not None:
            self._held, self._step = self._last, 0

    def __call__(self, kp: Keypoints) -> Keypoints:
        if self._held is not None:
            self._step += 1
            weight = min(1.0, self._step / self.frames)
            kp = Keypoints(_lerp(self._held.value, kp.value, weight),
                           None if kp.jacobian is None or self._held.jacobian is None
                           else _lerp(self._held.jacobian, kp.jacobian, weight))
            if weight >= 1.0:
                self._held = None
        self._last = kp
        return kp


def _lerp(a: Any, b: Any, weight: float) -> Any:
    return a + (b - a) * weight


class JitterMeter:
    """Mean absolute second difference (acceleration per frame) of a signal, x1000: near zero for a
    steady or uniformly moving signal, large for frame-to-frame shake."""

    def __init__(self) -> None:
        self._prev: Any = None
        self._prev2: Any = None
        self._total = 0.0
        self._count = 0

    def add(self, x: Any) -> None:
        if self._prev2 is not None:
            self._total += float(abs(x - 2 * self._prev + self._prev2).mean())
            self._count += 1
        self._prev2, self._prev = self._prev, x

    def gap(self) -> None:
        """The signal was interrupted (face lost): do not count the jump across the gap."""
        self._prev = self._prev2 = None

    @property
    def value(self) -> float:
        return round(1000 * self._total / self._count, 4) if self._count else 0.0
