"""Trackers by name, made in this process (core.tracking.make_tracker may also run one in a child process,
which makes its tracker with this)."""
from __future__ import annotations

from core.tracking.haar import HaarTracker
from core.tracking.landmarks import LANDMARK_MODEL, DlibLandmarks, FaceAlignmentLandmarks, LandmarkTracker, MediaPipeLandmarks
from motion.errors import UserError

TRACKERS = ("auto", "dlib", "mediapipe", "face-alignment", "haar")


def local_tracker(name: str) -> HaarTracker | LandmarkTracker:
    """The tracker `name` (resolved: not "auto") in this process."""
    if name == "haar":
        return HaarTracker()
    if name == "dlib":
        return LandmarkTracker(DlibLandmarks(LANDMARK_MODEL))
    if name == "mediapipe":
        return LandmarkTracker(MediaPipeLandmarks())
    if name == "face-alignment":
        return LandmarkTracker(FaceAlignmentLandmarks())
    raise UserError(f"unknown face tracker {name!r}; choose one of: {', '.join(TRACKERS)}")
