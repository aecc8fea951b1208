"""Faces in frames, shared by training data preparation and the live loop, so both frame a face alike:
the square face box, the crop with a margin around it (clamped into the frame), OpenCV's Haar detector
and dlib's 68-point landmarks (optional: PyPI dlib-bin with Debian's libdlib-data)."""
from __future__ import annotations

import functools

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from motion.errors import UserError

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


def face_crop(face: Box, margin: float, shape: tuple[int, ...]) -> Box:
    """The square crop around a face box: widened by `margin` box sides each side, then moved (and, if it
    is bigger than the frame, shrunk) so it stays inside the frame, so no crop ever shows padding. The
    live loop crops webcam frames and prepare-data crops training clips with this one function."""
    h, w = shape[:2]
    side = min(face.side * (1 + 2 * margin), float(h), float(w))
    cx = min(max(face.cx, side / 2), w - side / 2)
    cy = min(max(face.cy, side / 2), h - side / 2)
    return Box(cx, cy, side)


def avatar_box(photo: np.ndarray, detector: HaarFaceDetector, margin: float) -> Box | None:
    """Where the avatar's model crop is cut: the largest face with the driving frames' margin, or None
    when there is no face (then the whole picture is animated)."""
    box = detector.detect(photo)
    return None if box is None else face_crop(box, margin, photo.shape)


def union_box(boxes: list[Box]) -> Box:
    """The smallest square, centred on their bounding rectangle, that holds all the boxes."""
    x0 = min(b.cx - b.side / 2 for b in boxes)
    x1 = max(b.cx + b.side / 2 for b in boxes)
    y0 = min(b.cy - b.side / 2 for b in boxes)
    y1 = max(b.cy + b.side / 2 for b in boxes)
    return Box((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0))


LANDMARK_MODEL = "/usr/share/dlib/shape_predictor_68_face_landmarks.dat"  # Debian's libdlib-data
LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)  # the 68-point scheme's eye contours


@functools.lru_cache(maxsize=4)
def load_dlib(model: str = LANDMARK_MODEL) -> tuple[Any, Any, Any]:
    """(the dlib module, its HOG frontal face detector, the 68-point shape predictor), or a one-line
    UserError naming what to install. Loaded once per process (seconds: the predictor is 100 MB); both are
    read-only once built."""
    try:
        import dlib
    except ImportError:
        raise UserError("facial landmarks need dlib: pip install dlib-bin") from None
    if not Path(model).is_file():
        raise UserError(f"dlib's 68-point landmark model {model} is missing; install it: apt-get install libdlib-data")
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(model)


class LandmarkDetector:
    """dlib's HOG face detector and 68-point shape predictor: (68, 2) pixel landmarks of the largest face.

    Faces are searched on a copy upscaled to at least `min_side` pixels, since the HOG detector misses
    faces under ~80 pixels and model frames are 128x128."""

    def __init__(self, model: str = LANDMARK_MODEL, min_side: int = 256):
        self.dlib, self.detector, self.predictor = load_dlib(model)
        self.min_side = min_side

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        """Landmarks of an RGB image (uint8, or float in [0, 1]), or None when no face is found."""
        if image.dtype != np.uint8:
            image = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
        scale = max(1.0, self.min_side / min(image.shape[:2]))
        big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR) if scale > 1 else image
        big = np.ascontiguousarray(big[..., :3])
        faces = self.detector(big, 0)
        if not faces:
            return None
        face = max(faces, key=lambda r: r.area())
        shape = self.predictor(big, face)
        points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        return points / scale


def landmark_box(landmarks: np.ndarray) -> Box:
    """The square face box of 68-point landmarks: their bounding rectangle (jaw, brows and chin), which
    spans about what a Haar box does."""
    low, high = landmarks.min(0), landmarks.max(0)
    return Box(float(low[0] + high[0]) / 2, float(low[1] + high[1]) / 2, float((high - low).max()))


def inter_ocular(landmarks: np.ndarray) -> float:
    """Distance between the eye centres of 68-point landmarks: the face-size unit of landmark metrics."""
    return float(np.linalg.norm(landmarks[LEFT_EYE].mean(0) - landmarks[RIGHT_EYE].mean(0)))
