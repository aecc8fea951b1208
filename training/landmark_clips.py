"""`make-face-data`: photos of other people moved along real faces' landmark trajectories.

Two real identities are too few for a model that must animate anyone, and stills have no motion. So the
68 facial landmarks of real training clips (dlib) give the motion, and each photo's face gives the look:
frame t of a new clip is the photo warped by a thin-plate spline that carries the photo's landmarks by
the clip's landmark displacement since its first frame (aligned to the photo's face by a similarity), with
the image border pinned so the background stays still, as behind a real head in a fixed camera box.

With `own_size` the whole photo is moved at its own resolution instead of a 128-pixel face crop: held-out
portraits along held-out trajectories are full-resolution clips whose truth is known, for `eval-live`
(a webcam's face spans 200-400 pixels, the real clips' about 100).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from tqdm import tqdm

from core.faces import DEFAULT_MARGIN, crop, face_crop, landmark_box
from core.media import FrameWriter, frame_files, load_picture
from core.tracking.landmarks import LandmarkDetector
from motion.errors import UserError
from training.dataset import split_videos
from training.fetch import photos as fetched_photos
from training.options import MakeFaceDataOptions

BORDER_SPACING = 20.0  # pixels between pinned border points at most (8 a side on a 128-pixel clip)
SPLINE_SAMPLES = 128  # the spline is evaluated at about this many points across a frame's shorter side
# what closes among the 68 landmarks, mouth and eyes: (corners, upper points, lower points, facing upper-lower pairs)
CLOSING = (((48, 54), (49, 50, 51, 52, 53, 61, 62, 63), (55, 56, 57, 58, 59, 65, 66, 67),
            ((61, 67), (62, 66), (63, 65))),
           ((36, 39), (37, 38), (40, 41), ((37, 41), (38, 40))),
           ((42, 45), (43, 44), (46, 47), ((43, 47), (44, 46))))


def tps_kernel(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """U(r) = r^2 log r^2 between every point and centre, from squared distances by one product (no
    (points, centres, 2) array: a large photo's grid has hundreds of thousands of points)."""
    squared = np.maximum((points ** 2).sum(1)[:, None] + (centres ** 2).sum(1)[None] - 2 * points @ centres.T, 0)
    return squared * np.log(np.maximum(squared, 1e-300))


def tps_fit(src: np.ndarray, dst: np.ndarray, regularisation: float = 1e-3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin-plate spline f with f(src_i) ~= dst_i: (weights (n, 2), affine (3, 2), centres src)."""
    n = len(src)
    ones = np.hstack([np.ones((n, 1)), src])
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = tps_kernel(src, src) + regularisation * np.eye(n)
    system[:n, n:] = ones
    system[n:, :n] = ones.T
    solution = np.linalg.solve(system, np.vstack([dst, np.zeros((3, 2))]))
    return solution[:n], solution[n:], src


def tps_apply(spline: tuple[np.ndarray, np.ndarray, np.ndarray], points: np.ndarray) -> np.ndarray:
    weights, affine, centres = spline
    return tps_kernel(points, centres) @ weights + np.hstack([np.ones((len(points), 1)), points]) @ affine


def border_points(height: int, width: int, spacing: float = BORDER_SPACING) -> np.ndarray:
    """Points at most `spacing` apart along the four edges of a height x width image, each corner once:
    spaced by length, not counted per side, so a large photo's border is held as firmly as a clip's."""
    xs, ys = (np.linspace(0, n - 1, math.ceil((n - 1) / spacing) + 1) for n in (width, height))
    edge = [np.stack([xs, np.zeros_like(xs)], 1), np.stack([xs, np.full_like(xs, height - 1)], 1),
            np.stack([np.zeros_like(ys), ys], 1), np.stack([np.full_like(ys, width - 1), ys], 1)]
    return np.unique(np.concatenate(edge).round(6), axis=0)


def moved_landmarks(photo_marks: np.ndarray, trajectory: np.ndarray) -> np.ndarray:
    """(T, 68, 2): the photo's landmarks plus the trajectory's displacement since its first frame, turned
    and scaled into the photo's face by the similarity that best maps the trajectory's first frame onto it."""
    matrix, _ = cv2.estimateAffinePartial2D(trajectory[0].astype(np.float32), photo_marks.astype(np.float32))
    if matrix is None:
        raise UserError("could not align a landmark trajectory to a photo's face")
    linear = matrix[:, :2]
    return photo_marks[None] + (trajectory - trajectory[:1]) @ linear.T


def parted(photo_marks: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The (T, 68, 2) targets with lips and eyelids that would pass through each other moved apart, half
    each, until they meet (or come no closer than in the photo): a driver who starts with an open mouth
    closes a closed-mouthed photo's lips past each other, and the spline then folds the face over itself."""
    out = targets.copy()
    for (left, right), upper, lower, pairs in CLOSING:
        side = photo_marks[right] - photo_marks[left]
        down = np.array([-side[1], side[0]]) / np.linalg.norm(side)  # the face's own down, across the opening
        tops, bottoms = np.array(pairs).T
        floor = np.minimum(0, (photo_marks[bottoms] - photo_marks[tops]) @ down)
        excess = np.maximum(0, (floor - (targets[:, bottoms] - targets[:, tops]) @ down).max(1))[:, None, None]
        out[:, upper] -= excess / 2 * down
        out[:, lower] += excess / 2 * down
    return out


def upsampler(length: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """(every step-th pixel and the last, the (length, samples) matrix interpolating them linearly to every
    pixel): the two ends are samples, so a map that is exact there (the pinned border) stays exact."""
    samples = np.unique(np.append(np.arange(0, length, step), length - 1)).astype(np.float64)
    return samples, np.stack([np.interp(np.arange(length), samples, column) for column in np.eye(len(samples))], 1)


def spline_step(image: np.ndarray) -> int:
    """Pixels between the spline's samples: every pixel of a 128-pixel clip, every 4th of a 540x720 photo
    (a map within 0.4 pixel of the exact one there, about a tenth of its cost)."""
    return max(1, min(image.shape[:2]) // SPLINE_SAMPLES)


def spline_maps(shape: tuple[int, ...], photo_marks: np.ndarray, targets: np.ndarray, step: int) -> np.ndarray:
    """(T, rows, columns, 2): for each frame, where in the photo each of every `step`-th pixel (and the last
    row and column) of the frame comes from: the photo's landmarks at the frame's targets, its border fixed."""
    height, width = shape[:2]
    pinned = border_points(height, width)
    (rows, _), (cols, _) = upsampler(height, step), upsampler(width, step)
    grid = np.stack(np.meshgrid(cols, rows), -1).reshape(-1, 2)
    return np.stack([tps_apply(tps_fit(np.vstack([target, pinned]), np.vstack([photo_marks, pinned])), grid)
                     .reshape(len(rows), len(cols), 2) for target in targets])


def folds(maps: np.ndarray) -> bool:
    """Whether a map turns the photo over somewhere (its Jacobian is not positive between two samples): a
    head moved into the pinned border, or landmarks crushed together, smear the face into a mirror image."""
    across, down = np.diff(maps, axis=2)[:, :-1], np.diff(maps, axis=1)[:, :, :-1]
    return bool((across[..., 0] * down[..., 1] - across[..., 1] * down[..., 0] <= 0).any())


def remapped(image: np.ndarray, maps: np.ndarray, step: int) -> Iterator[np.ndarray]:
    """The image through each of spline_maps' maps, interpolated bilinearly between the samples: the
    spline is smooth, and evaluating it at every pixel of a large photo costs pixels x points kernels."""
    (_, down), (_, across) = upsampler(image.shape[0], step), upsampler(image.shape[1], step)
    for where in maps:
        map_x, map_y = ((down @ where[..., axis] @ across.T).astype(np.float32) for axis in (0, 1))
        yield cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def warp_along(image: np.ndarray, photo_marks: np.ndarray, targets: np.ndarray, step: int = 1) -> Iterator[np.ndarray]:
    """The image with its landmarks moved to each frame's targets, its border fixed (backward TPS remap),
    the spline evaluated every `step` pixels."""
    return remapped(image, spline_maps(image.shape, photo_marks, targets, step), step)


def smooth(trajectory: np.ndarray, width: int = 3) -> np.ndarray:
    """Moving average over time (landmark detections jitter by a pixel or so from frame to frame)."""
    kernel = np.ones(width) / width
    padded = np.concatenate([trajectory[:1].repeat(width // 2, 0), trajectory, trajectory[-1:].repeat(width // 2, 0)])
    return np.apply_along_axis(lambda s: np.convolve(s, kernel, mode="valid"), 0, padded)


@dataclass(frozen=True)
class Face:
    name: str
    image: np.ndarray  # (height, width, 3) uint8
    landmarks: np.ndarray  # (68, 2) in its pixels


def photo_faces(paths: list[Path], size: int | None, landmarks: LandmarkDetector, min_side: int = 60) -> list[Face]:
    """Every face of at least `min_side` pixels in the photos (group photos give several), cropped with the
    live loop's margin around its landmarks and resized, with its landmarks found again on the crop; with
    no size, the whole photo at its own resolution with the landmarks found on it."""
    faces = []
    for path in paths:
        photo = load_picture(path, "photo")
        rects = landmarks.detector(photo, 1)
        for number, rect in enumerate(rects):
            if min(rect.width(), rect.height()) < min_side:
                continue
            marks = np.array([[p.x, p.y] for p in landmarks.predictor(photo, rect).parts()], dtype=np.float64)
            if size is None:
                image, found = photo, marks
            else:
                box = face_crop(landmark_box(marks), DEFAULT_MARGIN, photo.shape)
                image = cv2.resize(crop(photo, box), (size, size), interpolation=cv2.INTER_AREA)
                found = landmarks(image)
            if found is not None:
                faces.append(Face(f"{path.stem.replace('.', '_')}-{number}", image, found))
    return faces


def clip_trajectories(data: str | Path, size: int, landmarks: LandmarkDetector, frames: int,
                      split: str = "train") -> dict[str, np.ndarray]:
    """Clip name -> (frames, 68, 2) landmark track, for the `split` clips long enough and with a face in
    every frame."""
    tracks = {}
    for video in tqdm(split_videos(data, split), desc="trajectories", unit="clip", file=sys.stderr, disable=None):
        files = frame_files(video)[:frames] if video.is_dir() else []
        if len(files) < frames:
            continue
        marks = [landmarks(cv2.resize(load_picture(f, "frame"), (size, size))) for f in files]
        if all(m is not None for m in marks):
            tracks[video.name] = smooth(np.stack(marks))
    if not tracks:
        raise UserError(f"no {split} clip of {data} has a face in its first {frames} frames; run prepare-data first")
    return tracks


def make_face_data(options: MakeFaceDataOptions) -> int:
    """Write per_face clips of every photo face (the photos given, or the fetch-data ones of `split`), moved
    along the `split` clips' trajectories, as frame folders FACE_TRAJECTORY in OUTPUT/split (official
    layout), or with own_size the whole photos at their own resolution in OUTPUT (full-resolution material
    for eval-live, whose truth is known); returns the clip count."""
    size, frames, split = options.size, options.frames, options.split
    photos = [Path(p) for p in options.photos] if options.photos else fetched_photos(options.sources, split)
    out = Path(options.output)
    folder = out if options.own_size else out / split
    if folder.exists():
        raise UserError(f"{folder} already exists; choose another --output")
    detector = LandmarkDetector()
    faces = photo_faces(photos, None if options.own_size else size, detector)
    if not faces:
        raise UserError("no face of at least 60 pixels in the photos; pass portrait or group photos")
    if len({face.name for face in faces}) < len(faces):
        raise UserError("two photos have the same file name; rename one (clips are named after the photo)")
    tracks = list(clip_trajectories(options.trajectories, size, detector, frames, split).items())
    rng = np.random.default_rng(options.seed)
    count = folded = 0
    for face in tqdm(faces, desc="faces", unit="face", file=sys.stderr, disable=None):
        step, made = spline_step(face.image), 0
        for track in rng.permutation(len(tracks)):
            name, trajectory = tracks[track]
            maps = spline_maps(face.image.shape, face.landmarks,
                               parted(face.landmarks, moved_landmarks(face.landmarks, trajectory)), step)
            if folds(maps):
                folded += 1
                continue
            with FrameWriter(folder / f"{face.name}_{name}", fps=25) as writer:
                for frame in remapped(face.image, maps, step):
                    writer.write(frame)
            made += 1
            if made == options.per_face:
                break
        count += made
    print(f"{len(faces)} faces, {len(tracks)} trajectories: {count} clips in {folder} ({folded} left out: their "
          "warp folded the face)", file=sys.stderr)
    return count
