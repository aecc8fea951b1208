"""The one Tracker interface: the Haar box tracker and the landmark tracker (with a stand-in provider) both
implement it, and treat a face, a blank frame and the face's return alike."""
from __future__ import annotations

import numpy as np
import pytest

from core.faces import Box
from core.tracking import Tracker, make_tracker
from core.tracking.haar import HaarTracker
from core.tracking.landmarks import FaceShape, LandmarkTracker, shape_68

SHAPE = (240, 320, 3)


def face_points() -> np.ndarray:
    """68 landmark-like points: eyes at (140, 100) and (180, 100), mouth corners at (145, 145) and (175, 145)."""
    points = np.stack([np.linspace(120, 200, 68), np.full(68, 120.0)], axis=1)
    points[36:42] = [140, 100]
    points[42:48] = [180, 100]
    points[48], points[54] = [145, 145], [175, 145]
    return points


FACE = shape_68(face_points())


class StandInProvider:
    """A landmark provider that finds FACE in every frame it is asked about."""

    def __init__(self) -> None:
        self.calls: list[bool] = []  # whether each call was a full detection

    def landmarks(self, frame: np.ndarray, previous: FaceShape | None) -> FaceShape | None:
        self.calls.append(previous is None)
        return FACE


class StandInDetector:
    """Haar's place in HaarTracker: finds the box the landmark tracker makes of FACE, in every frame."""

    def detect(self, frame: np.ndarray, near: Box | None = None) -> Box | None:
        return FACE.box()


def trackers() -> list[Tracker]:
    return [HaarTracker(StandInDetector()), LandmarkTracker(StandInProvider())]


@pytest.mark.parametrize("tracker", trackers(), ids=["haar", "landmarks"])
def test_every_tracker_has_the_tracker_interface(tracker):
    assert isinstance(tracker, Tracker)
    for name in ("update", "reset"):
        assert callable(getattr(tracker, name))
    assert tracker.steady is False and tracker.landmarks is None and tracker.roll is None
    assert tracker.detections == 0 and tracker.losses == 0


def test_the_factory_makes_trackers():
    assert isinstance(make_tracker("haar"), Tracker)


@pytest.mark.parametrize("tracker", trackers(), ids=["haar", "landmarks"])
def test_face_blank_frame_and_return_are_treated_alike(tracker):
    face = np.random.default_rng(0).integers(0, 256, SHAPE, dtype=np.uint8)
    black = np.zeros(SHAPE, np.uint8)
    assert tracker.update(black, 0.0) is None  # a blank frame before any face: nothing searched, nothing lost
    assert (tracker.detections, tracker.losses, tracker.steady) == (0, 0, False)
    assert tracker.update(face, 1 / 30) == FACE.box()  # the first box is the detection itself (unsmoothed)
    assert (tracker.detections, tracker.losses) == (1, 0)
    assert tracker.update(black, 2 / 30) is None  # a blank frame drops the face at once, without a search
    assert (tracker.detections, tracker.losses, tracker.steady) == (1, 1, False)
    assert tracker.landmarks is None and tracker.roll is None
    assert tracker.update(face, 3 / 30) == FACE.box()  # found again by a whole-frame search
    assert (tracker.detections, tracker.losses) == (2, 1)
    for i in range(4, 9):
        assert tracker.update(face, i / 30) == FACE.box()  # a still box stays put
    assert tracker.steady and tracker.detections == 2
    tracker.reset()
    assert not tracker.steady and tracker.losses == 1  # forgetting the face is no loss
    assert tracker.update(face, 9 / 30) == FACE.box() and tracker.detections == 3
