"""dlib's 68 landmarks of training frames, and mouth and eye masks made from them, for the anchor and
expression losses.

The mouth and eyes are a few percent of a face clip's pixels and all of its expression, so a loss over
the whole frame barely sees them; the expression loss (training/losses.py) weighs the reconstruction up
inside these masks. dlib takes tens of milliseconds a frame, so the masks are computed once per clip and
cached in the clip's frame folder as MASK_FILE (one bit a pixel), where every link to the clip finds them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from core.faces import inter_ocular
from core.media import frame_files, read_image
from core.tracking.landmarks import LandmarkDetector

MASK_FILE = "face_masks.npz"
LANDMARK_FILE = "face_landmarks.npz"  # the landmarks themselves, for the anchor loss (training/anchors.py)
# the regions an expression moves: outer and inner lips, each eye's contour
REGIONS = (slice(48, 68), slice(36, 42), slice(42, 48))
GROW = 0.1  # dilation in inter-ocular distances: lids and lip edges move a little beyond the landmarks


def landmark_mask(landmarks: np.ndarray | None, shape: tuple[int, int], grow: float = GROW) -> np.ndarray:
    """(h, w) bool: the convex hulls of the mouth and both eyes, dilated by `grow` inter-ocular
    distances; all False without landmarks (a frame without a face has no expression to weigh)."""
    mask = np.zeros(shape, np.uint8)
    if landmarks is None:
        return mask.astype(bool)
    for region in REGIONS:
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(landmarks[region]).astype(np.int32)), 1)
    radius = max(1, round(grow * inter_ocular(landmarks)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask, kernel).astype(bool)


def save_masks(path: Path, masks: np.ndarray) -> None:
    np.savez_compressed(path, bits=np.packbits(masks, axis=-1), shape=np.array(masks.shape))


def load_masks(path: Path) -> np.ndarray:
    """(T, h, w) bool, as save_masks wrote them."""
    with np.load(path) as data:
        shape = tuple(int(n) for n in data["shape"])
        return np.unpackbits(data["bits"], axis=-1, count=shape[-1]).astype(bool).reshape(shape)


def save_landmarks(path: Path, marks: list[np.ndarray | None], size: tuple[int, int]) -> None:
    """(T, 68, 2) float32 pixel landmarks of a clip's frames read at `size` (h, w), NaN where no face was found."""
    np.savez_compressed(path, size=np.array(size), landmarks=np.stack([np.full((68, 2), np.nan, np.float32) if m is None
                                                                     else m.astype(np.float32) for m in marks]))


def load_landmarks(path: Path) -> tuple[np.ndarray, tuple[int, int] | None]:
    """(landmarks, the (h, w) frame size they are in pixels of; None in a file that does not say), as
    save_landmarks wrote them."""
    with np.load(path) as data:
        return data["landmarks"], tuple(int(n) for n in data["size"]) if "size" in data else None


def write_clip_masks(root: str | Path, size: tuple[int, int], split: str = "train",
                     detector: LandmarkDetector | None = None) -> tuple[int, int]:
    """Landmarks (LANDMARK_FILE) and masks (MASK_FILE) of every frame folder of ROOT/split that lacks either,
    on its frames at the model's `size` as training reads them (links to one clip are done once). Returns
    (clips written, frames without a face)."""
    detector = detector or LandmarkDetector()
    written, faceless = 0, 0
    folders = {video.resolve() for video in (Path(root) / split).iterdir() if video.is_dir() and frame_files(video)}
    for folder in sorted(folders):
        if (folder / MASK_FILE).exists() and (folder / LANDMARK_FILE).exists():
            continue
        frames = [read_image(path, size) for path in frame_files(folder)]
        marks = [detector(frame) for frame in frames]
        faceless += sum(m is None for m in marks)
        save_landmarks(folder / LANDMARK_FILE, marks, size)
        save_masks(folder / MASK_FILE, np.stack([landmark_mask(m, frame.shape[:2]) for m, frame in zip(marks, frames)]))
        written += 1
        print(f"{folder.name}: {len(frames)} frames, {sum(m is None for m in marks)} without a face", file=sys.stderr)
    return written, faceless
