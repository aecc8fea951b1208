"""Following the face in the live loop: a box tracker that smooths the box, holds it through short
misses and re-detects when the face is lost. The box, the detector and the crop geometry come from
animation/faces.py, which prepare-data uses too, so live crops frame a face as the training clips do."""
from __future__ import annotations

import numpy as np

from animation.faces import BLANK_STD, Box, HaarFaceDetector
from realtime.smoothing import OneEuroFilter


class FaceTracker:
    """Follows one face across frames.

    The box is smoothed with a One Euro filter (relative to the frame size) so the crop does not shake,
    held for `patience` frames when detection misses (a turned head, motion blur), and dropped after
    that: update() then returns None until a face is detected again. A blank frame (covered lens, black
    frame) drops it at once: there is nothing there to estimate keypoints from.
    """

    def __init__(self, detector: HaarFaceDetector | None = None, patience: int = 5):
        self.detector = detector or HaarFaceDetector()
        self.patience = patience
        self.filter = OneEuroFilter(min_cutoff=1.0, beta=2.0)
        self.box: Box | None = None
        self.misses = 0

    def reset(self) -> None:
        """Forget the face: the next update searches the whole frame (the landmark tracker's interface)."""
        self.box = None
        self.misses = 0
        self.filter.reset()

    def update(self, frame: np.ndarray, t: float) -> Box | None:
        blank = float(frame[::4, ::4].std()) < BLANK_STD
        found = None if blank else self.detector.detect(frame, self.box)
        if found is None:
            self.misses += 1
            if self.box is not None and (blank or self.misses > self.patience):
                self.box = None
                self.filter.reset()
            return self.box
        self.misses = 0
        norm = float(max(frame.shape[:2]))
        smoothed = self.filter(np.array([found.cx, found.cy, found.side]) / norm, t) * norm
        self.box = Box(*map(float, smoothed))
        return self.box


