"""Following the face in the live loop: a box tracker that smooths the box, holds it through short
misses and re-detects when the face is lost. The box, the detector and the crop geometry come from
core/faces.py, which prepare-data uses too, so live crops frame a face as the training clips do."""
from __future__ import annotations

from collections import deque

import numpy as np

from core.faces import BLANK_STD, Box, HaarFaceDetector
from realtime.smoothing import OneEuroFilter


STEADY_FRAMES = 5
STEADY_TOLERANCE = 0.04  # of the box's side: the smoothed box glides into place after a jump


class SteadyBox:
    """Has the face box held still? Over the last `frames` boxes, their sides agree within `tolerance` and
    their centres within `tolerance` of a side. Calibration waits for it: a first detection can be off
    (a Haar box of 156 pixels against a steady 111 on a textured background), and a reference pose taken
    from its crop would keep the avatar enlarged for the whole session."""

    def __init__(self, frames: int = STEADY_FRAMES, tolerance: float = STEADY_TOLERANCE):
        self.tolerance = tolerance
        self.boxes: deque[Box] = deque(maxlen=frames)

    def add(self, box: Box | None) -> None:
        """This frame's box; None (no face) starts the count again."""
        if box is None:
            self.boxes.clear()
        else:
            self.boxes.append(box)

    @property
    def steady(self) -> bool:
        if len(self.boxes) < (self.boxes.maxlen or 0):
            return False
        sides = [b.side for b in self.boxes]
        spread = max(np.ptp([b.cx for b in self.boxes]), np.ptp([b.cy for b in self.boxes]))
        return max(sides) <= (1 + self.tolerance) * min(sides) and spread <= self.tolerance * min(sides)


class FaceTracker:
    """Follows one face across frames.

    The box is smoothed with a One Euro filter (relative to the frame size) so the crop does not shake,
    held for `patience` frames when detection misses (a turned head, motion blur), and dropped after
    that: update() then returns None until a face is detected again. A blank frame (covered lens, black
    frame) drops it at once: there is nothing there to estimate keypoints from. `steady` says whether
    the box has held still for a few frames (see SteadyBox); `detections` counts the searches of the
    whole frame (without a box to search near), as the landmark tracker counts its full detections.
    """

    def __init__(self, detector: HaarFaceDetector | None = None, patience: int = 5):
        self.detector = detector or HaarFaceDetector()
        self.patience = patience
        self.filter = OneEuroFilter(min_cutoff=1.0, beta=2.0)
        self.box: Box | None = None
        self.misses = 0
        self.stillness = SteadyBox()
        self.detections = 0

    @property
    def steady(self) -> bool:
        """Has the box held still for a few frames (see SteadyBox)?"""
        return self.stillness.steady

    def reset(self) -> None:
        """Forget the face: the next update searches the whole frame (the landmark tracker's interface)."""
        self.box = None
        self.misses = 0
        self.filter.reset()
        self.stillness.add(None)

    def update(self, frame: np.ndarray, t: float) -> Box | None:
        """The face box (held through a few misses), or None. Only fresh detections count as holding still:
        a box held through misses is no evidence that the face is where it says."""
        self.stillness.add(self._update(frame, t))
        return self.box

    def _update(self, frame: np.ndarray, t: float) -> Box | None:
        """The freshly detected (smoothed) box, or None on a miss."""
        blank = float(frame[::4, ::4].std()) < BLANK_STD
        self.detections += not blank and self.box is None
        found = None if blank else self.detector.detect(frame, self.box)
        if found is None:
            self.misses += 1
            if self.box is not None and (blank or self.misses > self.patience):
                self.box = None
                self.filter.reset()
            return None
        self.misses = 0
        norm = float(max(frame.shape[:2]))
        smoothed = self.filter(np.array([found.cx, found.cy, found.side]) / norm, t) * norm
        self.box = Box(*map(float, smoothed))
        return self.box


