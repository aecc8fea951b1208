"""What every tracker does with the face box it returns: no box on a blank frame, the box smoothed by the one
set of One Euro settings, and SteadyBox, which says whether it has held still (calibration waits for it)."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from core.faces import Box
from core.smoothing import OneEuroFilter

BLANK_STD = 4.0  # grey levels: a frame flatter than this has no face
STEADY_FRAMES = 5
STEADY_TOLERANCE = 0.04  # of the box's side: the smoothed box glides into place after a jump


def blank(frame: np.ndarray) -> bool:
    """A frame with nothing to find a face in (covered lens, black frame): the tracker drops its face at once."""
    return float(frame[::4, ::4].std()) < BLANK_STD


@dataclass(frozen=True)
class BoxFilter:
    """One Euro settings of the face box's smoothing, whose signal is the box's centre and side relative to
    the frame size (and the landmark tracker's roll in radians): every tracker smooths its box alike."""
    min_cutoff: float = 1.0  # Hz
    beta: float = 2.0

    def make(self) -> OneEuroFilter:
        return OneEuroFilter(min_cutoff=self.min_cutoff, beta=self.beta)


BOX_FILTER = BoxFilter()


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
