"""`make-face-data`: photos of other people moved along real faces' landmark trajectories.

Two real identities are too few for a model that must animate anyone, and stills have no motion. So the
68 facial landmarks of real training clips (dlib) give the motion, and each photo's face gives the look:
frame t of a new clip is the photo warped by a thin-plate spline that carries the photo's landmarks by
the clip's landmark displacement since its first frame (aligned to the photo's face by a similarity), with
the image border pinned so the background stays still, as behind a real head in a fixed camera box.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from animation.faces import DEFAULT_MARGIN, LandmarkDetector, crop, face_crop, landmark_box
from animation.media import FrameWriter, frame_files, load_picture
from motion.errors import UserError
from training.dataset import split_videos

BORDER_POINTS = 8  # pinned points per image side


def tps_fit(src: np.ndarray, dst: np.ndarray, regularisation: float = 1e-3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin-plate spline f with f(src_i) ~= dst_i: (weights (n, 2), affine (3, 2), centres src)."""
    n = len(src)
    dist = np.linalg.norm(src[:, None] - src[None], axis=-1)
    kernel = np.where(dist > 0, dist ** 2 * np.log(np.maximum(dist, 1e-12) ** 2), 0.0)
    ones = np.hstack([np.ones((n, 1)), src])
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = kernel + regularisation * np.eye(n)
    system[:n, n:] = ones
    system[n:, :n] = ones.T
    solution = np.linalg.solve(system, np.vstack([dst, np.zeros((3, 2))]))
    return solution[:n], solution[n:], src


def tps_apply(spline: tuple[np.ndarray, np.ndarray, np.ndarray], points: np.ndarray) -> np.ndarray:
    weights, affine, centres = spline
    dist = np.linalg.norm(points[:, None] - centres[None], axis=-1)
    kernel = np.where(dist > 0, dist ** 2 * np.log(np.maximum(dist, 1e-12) ** 2), 0.0)
    return kernel @ weights + np.hstack([np.ones((len(points), 1)), points]) @ affine


def border_points(size: int, per_side: int = BORDER_POINTS) -> np.ndarray:
    t = np.linspace(0, size - 1, per_side)
    edge = [np.stack([t, np.zeros_like(t)], 1), np.stack([t, np.full_like(t, size - 1)], 1),
            np.stack([np.zeros_like(t), t], 1), np.stack([np.full_like(t, size - 1), t], 1)]
    return np.unique(np.concatenate(edge).round(6), axis=0)


def moved_landmarks(photo_marks: np.ndarray, trajectory: np.ndarray) -> np.ndarray:
    """(T, 68, 2): the photo's landmarks plus the trajectory's displacement since its first frame, turned
    and scaled into the photo's face by the similarity that best maps the trajectory's first frame onto it."""
    matrix, _ = cv2.estimateAffinePartial2D(trajectory[0].astype(np.float32), photo_marks.astype(np.float32))
    if matrix is None:
        raise UserError("could not align a landmark trajectory to a photo's face")
    linear = matrix[:, :2]
    return photo_marks[None] + (trajectory - trajectory[:1]) @ linear.T


def warp_along(image: np.ndarray, photo_marks: np.ndarray, targets: np.ndarray) -> list[np.ndarray]:
    """The image with its landmarks moved to each frame's targets, its border fixed (backward TPS remap)."""
    size = image.shape[0]
    pinned = border_points(size)
    ys, xs = np.mgrid[0:size, 0:size]
    grid = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    frames = []
    for target in targets:
        spline = tps_fit(np.vstack([target, pinned]), np.vstack([photo_marks, pinned]))
        where = tps_apply(spline, grid).reshape(size, size, 2).astype(np.float32)
        frames.append(cv2.remap(image, where[..., 0], where[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return frames


def smooth(trajectory: np.ndarray, width: int = 3) -> np.ndarray:
    """Moving average over time (landmark detections jitter by a pixel or so from frame to frame)."""
    kernel = np.ones(width) / width
    padded = np.concatenate([trajectory[:1].repeat(width // 2, 0), trajectory, trajectory[-1:].repeat(width // 2, 0)])
    return np.apply_along_axis(lambda s: np.convolve(s, kernel, mode="valid"), 0, padded)


@dataclass(frozen=True)
class Face:
    name: str
    image: np.ndarray  # (size, size, 3) uint8
    landmarks: np.ndarray  # (68, 2) in its pixels


def photo_faces(paths: list[Path], size: int, landmarks: LandmarkDetector, min_side: int = 60) -> list[Face]:
    """Every face of at least `min_side` pixels in the photos (group photos give several), cropped with the
    live loop's margin around its landmarks and resized, with its landmarks found again on the crop."""
    faces = []
    for path in paths:
        photo = load_picture(path, "photo")
        rects = landmarks.detector(photo, 1)
        for number, rect in enumerate(rects):
            if min(rect.width(), rect.height()) < min_side:
                continue
            marks = np.array([[p.x, p.y] for p in landmarks.predictor(photo, rect).parts()], dtype=np.float64)
            box = face_crop(landmark_box(marks), DEFAULT_MARGIN, photo.shape)
            image = cv2.resize(crop(photo, box), (size, size), interpolation=cv2.INTER_AREA)
            found = landmarks(image)
            if found is not None:
                faces.append(Face(f"{path.stem.replace('.', '_')}-{number}", image, found))
    return faces


def clip_trajectories(data: str | Path, size: int, landmarks: LandmarkDetector, frames: int) -> list[np.ndarray]:
    """(frames, 68, 2) landmark tracks of the training clips long enough and with a face in every frame."""
    tracks = []
    for video in tqdm(split_videos(data, "train"), desc="trajectories", unit="clip", file=sys.stderr, disable=None):
        files = frame_files(video)[:frames] if video.is_dir() else []
        if len(files) < frames:
            continue
        marks = [landmarks(cv2.resize(load_picture(f, "frame"), (size, size))) for f in files]
        if all(m is not None for m in marks):
            tracks.append(smooth(np.stack(marks)))
    if not tracks:
        raise UserError(f"no training clip of {data} has a face in its first {frames} frames; run prepare-data first")
    return tracks


def make_face_data(photos: list[Path], trajectories: str | Path, out: str | Path, size: int = 128,
                   frames: int = 64, per_face: int = 2, seed: int = 0) -> int:
    """Write per_face clips of every photo face into OUT/train (official layout); returns the clip count."""
    out = Path(out)
    if (out / "train").exists():
        raise UserError(f"{out}/train already exists; choose another --output")
    detector = LandmarkDetector()
    faces = photo_faces(photos, size, detector)
    if not faces:
        raise UserError("no face of at least 60 pixels in the photos; pass portrait or group photos")
    tracks = clip_trajectories(trajectories, size, detector, frames)
    rng = np.random.default_rng(seed)
    count = 0
    for face in tqdm(faces, desc="faces", unit="face", file=sys.stderr, disable=None):
        for track in rng.choice(len(tracks), size=min(per_face, len(tracks)), replace=False):
            targets = moved_landmarks(face.landmarks, tracks[track])
            with FrameWriter(out / "train" / f"{face.name}_{count:03d}", fps=25) as writer:
                for frame in warp_along(face.image, face.landmarks, targets):
                    writer.write(frame)
            count += 1
    print(f"{len(faces)} faces, {len(tracks)} trajectories: {count} clips in {out}/train", file=sys.stderr)
    return count
