"""Finding and following a face: one Tracker interface and its trackers.

Which tracker (`--tracker`, make_tracker):
- "dlib" (landmarks.py: dlib's 68 points): follows tilted and turned heads, which the frontal Haar detector
  loses; a full detection runs only while there is no face, then only the shape predictor near the last
  landmarks. Offline, with dlib-bin and Debian's libdlib-data.
- "mediapipe" (landmarks.py: MediaPipe's face mesh in video mode): when mediapipe is installed.
- "face-alignment" (landmarks.py: FAN, what avatarify uses): when the package and its weights are installed.
- "haar" (haar.py: OpenCV's frontal Haar boxes, held through short misses): needs nothing beyond OpenCV;
  the fallback, for upright faces.
- "auto": MediaPipe if installed, else dlib if its model is there, else Haar (resolve_tracker).

The detectors live here once: haar.HaarFaceDetector (photo crops, prepare-data, the Haar tracker) and
landmarks.load_dlib / LandmarkDetector (dlib's 68 points of photos for make-face-data and the metrics). The
crop geometry around a face box is core/faces.py's.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from core.faces import Box
from core.tracking.factory import TRACKERS, local_tracker
from core.tracking.landmarks import LANDMARK_MODEL, LANDMARKS_68
from core.tracking.process import ProcessTracker

__all__ = ["LANDMARKS_68", "TRACKERS", "Tracker", "concurrent", "make_tracker", "resolve_tracker", "tracker_kind"]


@runtime_checkable
class Tracker(Protocol):
    """Follows one face across frames (HaarTracker, LandmarkTracker).

    update() returns the smoothed face box in an RGB uint8 frame captured at time t (seconds), or None while
    there is no face (at once on a blank frame); reset() forgets the face, so the next update searches the
    whole frame. `steady`: has the box held still for a few frames (calibration waits for it)? `landmarks`
    and `roll` describe the last frame ((N, 2) frame pixels, degrees), None without a face and for trackers
    without landmarks (Haar). `detections` counts the searches of the whole frame, `losses` the times a
    followed face was dropped. close() frees what the tracker holds (ProcessTracker: its child process)."""

    detections: int
    losses: int

    def update(self, frame: np.ndarray, t: float) -> Box | None: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...

    @property
    def steady(self) -> bool: ...

    @property
    def landmarks(self) -> np.ndarray | None: ...

    @property
    def roll(self) -> float | None: ...


def resolve_tracker(name: str) -> str:
    """The tracker `name` stands for: "auto" is MediaPipe when it is installed, else dlib when its landmark
    model is, else the Haar box tracker. Says nothing: the caller reports the choice."""
    if name != "auto":
        return name
    if importlib.util.find_spec("mediapipe") is not None:
        return "mediapipe"
    if importlib.util.find_spec("dlib") is not None and Path(LANDMARK_MODEL).is_file():
        return "dlib"
    return "haar"


def concurrent(tracker: Tracker | None) -> bool:
    """Does the tracker work beside its caller (submit() a frame, collect() its box later; ProcessTracker)?"""
    return callable(getattr(tracker, "submit", None)) and callable(getattr(tracker, "collect", None))


def tracker_kind(tracker: Tracker) -> str:
    """The tracker's class for the stats; for one in a child process, the child's."""
    return tracker.kind if isinstance(tracker, ProcessTracker) else type(tracker).__name__


def make_tracker(name: str = "auto", own_process: bool = False) -> Tracker:
    """A face tracker by name: one of TRACKERS. own_process (the live loop's threads): dlib, which holds
    Python's interpreter lock while it fits landmarks, runs in a child process (process.ProcessTracker)."""
    name = resolve_tracker(name)
    return ProcessTracker(name) if own_process and name == "dlib" else local_tracker(name)
