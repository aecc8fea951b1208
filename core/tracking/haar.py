"""OpenCV's Haar frontal-face detector, and the Haar box tracker built on it.

HaarFaceDetector is the one Haar detector: prepare-data, the avatar crop, animate, bench and eval frame a
face with it, and HaarTracker follows a face in the live loop with it, so live crops frame a face as the
training clips do (the crop geometry itself is core/faces.py's). HaarTracker smooths the box, holds it
through short misses and re-detects when the face is lost."""
from __future__ import annotations

import cv2
import numpy as np

from core.faces import Box, centre_box
from core.tracking.steady import BOX_FILTER, SteadyBox, blank
from motion.errors import UserError

CASCADE = "haarcascade_frontalface_default.xml"
DETECT_SIDE = 320  # detection runs on a copy this wide: a face fills plenty of pixels, and it is fast


def load_face_cascade() -> "cv2.CascadeClassifier":
    """OpenCV's bundled frontal-face cascade; minimal OpenCV builds (some GPU images) lack the detector."""
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise UserError(f"this OpenCV build ({cv2.__version__}) has no Haar face detector; "
                        "install the full package: pip install opencv-python")
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
    if cascade.empty():
        raise UserError(f"OpenCV's {CASCADE} is missing from {cv2.data.haarcascades}; "
                        "reinstall it: pip install --force-reinstall opencv-python")
    return cascade


class HaarFaceDetector:
    """Largest (or nearest to a hint) frontal face in an RGB frame, or None."""

    def __init__(self) -> None:
        self.cascade = load_face_cascade()

    def detect(self, frame: np.ndarray, near: Box | None = None) -> Box | None:
        """The face near `near` (a search a few times cheaper than the whole frame's: a miss there is
        usually a turned head, which a full search would miss too), else the largest anywhere."""
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
        if near is not None:
            return self._search(grey, near.expanded(0.75), near.side * 0.6, near.side * 1.6, near)
        return self._search(grey, centre_box(grey.shape).expanded(1.0), min(grey.shape) / 10, None, None)

    def _search(self, grey: np.ndarray, region: Box, min_face: float, max_face: float | None,
                near: Box | None) -> Box | None:
        h, w = grey.shape
        x0, y0 = max(0, round(region.cx - region.side / 2)), max(0, round(region.cy - region.side / 2))
        x1, y1 = min(w, round(region.cx + region.side / 2)), min(h, round(region.cy + region.side / 2))
        patch = grey[y0:y1, x0:x1]
        scale = min(1.0, DETECT_SIDE / max(patch.shape), 80.0 / max(min_face, 1.0))
        if scale < 1.0:
            patch = cv2.resize(patch, (max(1, round(patch.shape[1] * scale)), max(1, round(patch.shape[0] * scale))),
                               interpolation=cv2.INTER_AREA)
        if min(patch.shape) < 24:
            return None
        low = max(20, round(min_face * scale))
        high = (round(max_face * scale),) * 2 if max_face else (0, 0)
        faces = self.cascade.detectMultiScale(cv2.equalizeHist(patch), scaleFactor=1.15, minNeighbors=5,
                                              minSize=(low, low), maxSize=high)
        if len(faces) == 0:
            return None
        boxes = [Box(float(x0 + (x + fw / 2) / scale), float(y0 + (y + fh / 2) / scale), float(max(fw, fh) / scale))
                 for x, y, fw, fh in faces]
        if near is None:
            return max(boxes, key=lambda b: b.side)
        return min(boxes, key=lambda b: (b.cx - near.cx) ** 2 + (b.cy - near.cy) ** 2)


class HaarTracker:
    """Follows one face across frames with Haar boxes (a Tracker, see core/tracking/__init__.py).

    The box is smoothed with a One Euro filter (BOX_FILTER, relative to the frame size) so the crop does not
    shake, held for `patience` frames when detection misses (a turned head, motion blur), and dropped after
    that: update() then returns None until a face is detected again. A blank frame (covered lens, black
    frame) drops it at once: there is nothing there to estimate keypoints from. `steady` says whether
    the box has held still for a few frames (see SteadyBox); `detections` counts the searches of the
    whole frame (without a box to search near), as the landmark tracker counts its full detections;
    `losses` the times a box was dropped. Haar boxes come without landmarks or roll: both are None.
    """

    landmarks: np.ndarray | None = None
    roll: float | None = None

    def __init__(self, detector: HaarFaceDetector | None = None, patience: int = 5):
        self.detector = detector or HaarFaceDetector()
        self.patience = patience
        self.filter = BOX_FILTER.make()
        self.box: Box | None = None
        self.misses = 0
        self.stillness = SteadyBox()
        self.detections = 0
        self.losses = 0

    @property
    def steady(self) -> bool:
        """Has the box held still for a few frames (see SteadyBox)?"""
        return self.stillness.steady

    def close(self) -> None:
        """Nothing to free (the Tracker interface)."""

    def reset(self) -> None:
        """Forget the face: the next update searches the whole frame."""
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
        empty = blank(frame)
        self.detections += not empty and self.box is None
        found = None if empty else self.detector.detect(frame, self.box)
        if found is None:
            self.misses += 1
            if self.box is not None and (empty or self.misses > self.patience):
                self.losses += 1
                self.box = None
                self.filter.reset()
            return None
        self.misses = 0
        norm = float(max(frame.shape[:2]))
        smoothed = self.filter(np.array([found.cx, found.cy, found.side]) / norm, t) * norm
        self.box = Box(*map(float, smoothed))
        return self.box
