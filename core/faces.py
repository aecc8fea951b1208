"""Faces in frames, shared by training data preparation and the live loop, so both frame a face alike:
the square face box, the crop with a margin around it (clamped into the frame), and the geometry of
68-point landmarks. The detectors that find faces and landmarks are core/tracking/'s."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import cv2
import numpy as np

# Haar boxes hug brows-to-chin; the official crop enlarges a looser detector box by 10% a side, so a
# 30% margin a side gives a similar head-and-hair framing.
DEFAULT_MARGIN = 0.3
LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)  # the 68-point scheme's eye contours


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


class FaceDetector(Protocol):
    """What avatar_box needs of a detector (core.tracking.haar.HaarFaceDetector)."""

    def detect(self, frame: np.ndarray, near: Box | None = None) -> Box | None: ...


def avatar_box(photo: np.ndarray, detector: FaceDetector, margin: float) -> Box | None:
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


def landmark_box(landmarks: np.ndarray) -> Box:
    """The square face box of 68-point landmarks: their bounding rectangle (jaw, brows and chin), which
    spans about what a Haar box does."""
    low, high = landmarks.min(0), landmarks.max(0)
    return Box(float(low[0] + high[0]) / 2, float(low[1] + high[1]) / 2, float((high - low).max()))


def inter_ocular(landmarks: np.ndarray) -> float:
    """Distance between the eye centres of 68-point landmarks: the face-size unit of landmark metrics."""
    return float(np.linalg.norm(landmarks[LEFT_EYE].mean(0) - landmarks[RIGHT_EYE].mean(0)))


def opening(landmarks: np.ndarray, pairs: Sequence[tuple[int, int]]) -> float:
    """The mean gap between facing 68-point landmarks (inner lips, eyelids) in inter-ocular distances: how open
    a mouth or eye is, for the expression stage and its metric alike."""
    upper, lower = (list(side) for side in zip(*pairs))
    return float(np.linalg.norm(landmarks[upper] - landmarks[lower], axis=-1).mean() / inter_ocular(landmarks))
