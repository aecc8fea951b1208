"""Finding and following the face: OpenCV's bundled Haar cascade, a box tracker that smooths the box,
holds it through short misses and re-detects when the face is lost, and the square crop with a margin
that frames a face the way the training videos were cropped."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from motion.errors import UserError
from realtime.smoothing import OneEuroFilter

CASCADE = "haarcascade_frontalface_default.xml"
# Haar boxes hug brows-to-chin; the official crop enlarges a looser detector box by 10% a side, so a
# 30% margin a side gives a similar head-and-hair framing.
DEFAULT_MARGIN = 0.3
BLANK_STD = 4.0  # grey levels: a frame flatter than this has no face
DETECT_SIDE = 320  # detection runs on a copy this wide: a face fills plenty of pixels, and it is fast


@dataclass(frozen=True)
class Box:
    """A square face box: centre and side in frame pixels."""
    cx: float
    cy: float
    side: float

    def expanded(self, margin: float) -> "Box":
        return Box(self.cx, self.cy, self.side * (1 + 2 * margin))


def centre_box(shape: tuple[int, ...]) -> Box:
    """The largest centred square: the crop used when faces are not tracked."""
    h, w = shape[:2]
    return Box(w / 2, h / 2, float(min(h, w)))


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


def crop(frame: np.ndarray, box: Box) -> np.ndarray:
    """The square `box` cut from the frame, edge pixels replicated where it leaves the frame."""
    h, w = frame.shape[:2]
    side = max(1, round(box.side))
    x0, y0 = round(box.cx - side / 2), round(box.cy - side / 2)
    x1, y1 = x0 + side, y0 + side
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    return frame[y0:y1, x0:x1]


def resize_uint8(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 at the model's (height, width), area-averaged (fast enough for every frame)."""
    if image.shape[:2] == tuple(size):
        return image
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
