"""Offline training videos, because no talking-head data can be downloaded here.

Real photos shipped with scikit-image (the astronaut's face, found with OpenCV's Haar cascade, a cat,
a coffee cup, a rocket) are cropped to the face or object and animated over a slowly panning second
photo or texture. The motion is articulated like a talking head: a global pose (rotation about a neck
pivot, translation, scale, a slight yaw by horizontal compression) plus local part motion (mouth
opening, blinks, eyebrow raises) and a faint thin-plate-spline wobble, all smooth in time, so a keypoint
model has real part motion to discover. Every warp is one dense backward flow sampled with cv2.remap.
Clips are written in the official layout, OUT/{train,test}/NAME/frame_00000.png, as lossless PNGs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
import torch
from skimage import data as skdata
from tqdm import tqdm

from core.media import FrameWriter
from core.tracking.haar import load_face_cascade
from motion.errors import UserError
from motion.geometry import coordinate_grid, tps_warp_points

Point = tuple[float, float]
SUBJECT_FILL = 0.9  # half-size of the subject in the frame, in [-1, 1] units: the face fills most of the crop
FACE_MARGIN = 0.5  # extra face-box widths on each side of the Haar box, so hair, chin and neck are in
CYCLES_PER_FRAME = (0.006, 0.03)  # slow enough that neighbouring frames differ by a few pixels at most


@dataclass(frozen=True)
class Subject:
    """A cropped photo to animate, with where its eyes and mouth are in [-1, 1] crop coordinates."""
    name: str
    image: np.ndarray  # (h, w, 3) float32 in [0, 1], square
    eyes: tuple[Point, Point]
    mouth: Point


def detect_face(image: np.ndarray) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the largest frontal face the Haar cascade finds in an RGB uint8 image."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    faces = load_face_cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5)
    if len(faces) == 0:
        raise UserError("the Haar face cascade found no face in the photo; use a frontal face photo")
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    return int(x), int(y), int(w), int(h)


def face_crop_box(face: tuple[int, int, int, int], shape: tuple[int, ...],
                  margin: float = FACE_MARGIN) -> tuple[int, int, int]:
    """(x0, y0, side) of a square around a face box grown by ``margin`` box widths each side, kept in the image."""
    x, y, w, h = face
    side = min(int(round(max(w, h) * (1 + 2 * margin))), shape[0], shape[1])
    x0 = int(np.clip(round(x + w / 2 - side / 2), 0, shape[1] - side))
    y0 = int(np.clip(round(y + h / 2 - side / 2), 0, shape[0] - side))
    return x0, y0, side


def _subject(name: str, photo: np.ndarray, box: tuple[int, int, int], eyes: tuple[Point, Point],
             mouth: Point, size: int) -> Subject:
    """Crop ``box`` out of ``photo`` and express the part positions (photo pixels) in crop coordinates."""
    x0, y0, side = box
    crop = cv2.resize(photo[y0:y0 + side, x0:x0 + side], (size, size), interpolation=cv2.INTER_AREA)

    def local(p: Point) -> Point:
        return 2 * (p[0] - x0) / (side - 1) - 1, 2 * (p[1] - y0) / (side - 1) - 1
    return Subject(name, crop.astype(np.float32) / 255, (local(eyes[0]), local(eyes[1])), local(mouth))


def _astronaut(size: int) -> Subject:
    photo = skdata.astronaut()
    x, y, w, h = face = detect_face(photo)
    # where the eyes and mouth sit inside a Haar frontal-face box
    return _subject("astronaut", photo, face_crop_box(face, photo.shape),
                    ((x + 0.32 * w, y + 0.38 * h), (x + 0.68 * w, y + 0.38 * h)), (x + 0.5 * w, y + 0.8 * h), size)


def load_subjects(size: int) -> list[Subject]:
    """The animated photos, astronaut first; crops are hand-placed where no cascade applies (the cat
    cascade misses Chelsea)."""
    return [
        _astronaut(size),
        _subject("chelsea", skdata.chelsea(), (90, 0, 300), ((170, 115), (315, 135)), (255, 275), size),
        _subject("coffee", skdata.coffee(), (75, 0, 400), ((210, 110), (360, 110)), (230, 270), size),
        _subject("rocket", skdata.rocket(), (170, 120, 300), ((300, 160), (340, 160)), (320, 330), size),
    ]


BACKGROUNDS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": skdata.astronaut, "chelsea": skdata.chelsea, "coffee": skdata.coffee, "rocket": skdata.rocket,
    "hubble": skdata.hubble_deep_field, "ihc": skdata.immunohistochemistry,
    "brick": skdata.brick, "grass": skdata.grass, "gravel": skdata.gravel, "camera": skdata.camera,
}


def load_background(name: str) -> np.ndarray:
    """A background photo or texture as (h, w, 3) float32 in [0, 1]; grey textures become RGB."""
    image = BACKGROUNDS[name]()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return image[..., :3].astype(np.float32) / 255


def smooth_curve(rng: np.random.Generator, frames: int, waves: int = 3,
                 cycles: tuple[float, float] = CYCLES_PER_FRAME) -> np.ndarray:
    """(frames,) values in [-1, 1]: a random sum of slow sinusoids, smooth and never periodic-looking."""
    t = np.arange(frames)[:, None]
    freq = rng.uniform(*cycles, size=waves)
    phase = rng.uniform(0, 2 * np.pi, size=waves)
    weight = rng.uniform(0.3, 1.0, size=waves)
    return (np.sin(2 * np.pi * freq * t + phase) * weight).sum(-1) / weight.sum()


def pulse_curve(rng: np.random.Generator, frames: int, mean_gap: float, width: float) -> np.ndarray:
    """(frames,) values in [0, 1]: Gaussian bumps at random times, how blinks look over time."""
    t = np.arange(frames)
    starts = np.cumsum(rng.exponential(mean_gap, size=int(frames / mean_gap) + 3)) - mean_gap / 2
    return np.exp(-0.5 * ((t[:, None] - starts[None]) / width) ** 2).max(-1)


@dataclass(frozen=True)
class ClipMotion:
    """Per-frame motion parameters of one clip; each field is a (frames,) or (frames, k) curve."""
    angle: np.ndarray  # radians about the neck pivot
    scale: np.ndarray
    shift: np.ndarray  # (frames, 2) in [-1, 1] units
    yaw: np.ndarray  # in [-1, 1]: -1 turned fully left
    mouth: np.ndarray  # in [0, 1]: opening
    blink: np.ndarray  # in [0, 1]: 1 closed
    brow: np.ndarray  # in [0, 1]: raise
    wobble: np.ndarray  # (frames, 9) thin-plate-spline weights
    background_pan: np.ndarray  # (frames, 2) in [-1, 1] units of the free room around the background view


def random_motion(rng: np.random.Generator, frames: int) -> ClipMotion:
    """Smooth random head-like motion; amplitudes are drawn per clip so some clips barely move."""
    def curve(amplitude: float) -> np.ndarray:
        return rng.uniform(0.3, 1.0) * amplitude * smooth_curve(rng, frames)

    def positive(amplitude: float, cycles: tuple[float, float]) -> np.ndarray:
        return rng.uniform(0.4, 1.0) * amplitude * (0.5 + 0.5 * smooth_curve(rng, frames, cycles=cycles))

    return ClipMotion(
        angle=curve(np.radians(14)),
        scale=1 + curve(0.1),
        shift=np.stack([curve(0.12), curve(0.08)], -1),
        yaw=curve(1.0),
        mouth=positive(1.0, (0.02, 0.06)) ** 1.5,  # talking is faster than head motion, and mostly closed
        blink=pulse_curve(rng, frames, mean_gap=rng.uniform(20, 40), width=1.5),
        brow=positive(1.0, (0.01, 0.04)) ** 2,
        wobble=np.stack([curve(0.003) for _ in range(9)], -1),
        background_pan=np.stack([curve(0.2), curve(0.2)], -1),  # a drifting camera, not a sliding backdrop
    )


def pose_theta(angle: float, scale: float, shift: np.ndarray, yaw: float,
               pivot: Point = (0.0, 0.9)) -> np.ndarray:
    """(2, 3) affine from frame coordinates back to subject-crop coordinates.

    Forward, a crop point q lands at p = shift + fill * s * (R D (q - pivot) + pivot), with D a horizontal
    squash for yaw, so the head turns about the neck; the inverse is what backward warping samples.
    """
    cos, sin = np.cos(angle), np.sin(angle)
    inverse = np.diag([1 / (1 - 0.18 * abs(yaw)), 1.0]) @ np.array([[cos, sin], [-sin, cos]])
    inverse = inverse / (SUBJECT_FILL * scale)
    pivot_arr = np.asarray(pivot)
    offset = pivot_arr - inverse @ (np.asarray(shift) + SUBJECT_FILL * scale * pivot_arr)
    return np.concatenate([inverse, offset[:, None]], axis=1)


def _bump(q: np.ndarray, centre: Point, sigma: Point) -> np.ndarray:
    return np.exp(-0.5 * (((q[..., 0] - centre[0]) / sigma[0]) ** 2 + ((q[..., 1] - centre[1]) / sigma[1]) ** 2))


def part_flow(q: np.ndarray, subject: Subject, yaw: float, mouth: float, blink: float, brow: float) -> np.ndarray:
    """Backward displacement (..., 2) of crop coordinates for the local part motion.

    The mouth opens by dropping the jaw, which stretches the lip seam vertically, eyes blink by squashing theirs, brows
    rise by shifting the band above the eyes up, and yaw slides the face centre sideways more than its
    rim, the way a turning head looks.
    """
    x, y = q[..., 0], q[..., 1]
    mx, my = subject.mouth
    below_mouth = 1 / (1 + np.exp(-(y - my) / 0.025))
    chin_fade = np.exp(-0.5 * (np.clip(y - my - 0.25, 0, None) / 0.15) ** 2)
    dy = -0.12 * mouth * below_mouth * chin_fade * np.exp(-0.5 * ((x - mx) / 0.3) ** 2)
    for ex, ey in subject.eyes:
        dy = dy + 1.5 * blink * (y - ey) * _bump(q, (ex, ey), (0.14, 0.07))
        dy = dy + 0.06 * brow * _bump(q, (ex, ey - 0.18), (0.18, 0.08))
    dx = 0.12 * yaw * np.clip(1 - x ** 2, 0, None) * np.clip(1 - 0.5 * y ** 2, 0, None)
    return np.stack([dx, dy], axis=-1)


def _sample(image: np.ndarray, coords: np.ndarray, border: int) -> np.ndarray:
    """Bilinearly sample an (h, w, 3) image at (H, W, 2) [-1, 1] corner-aligned (x, y) coordinates."""
    h, w = image.shape[:2]
    map_x = ((coords[..., 0] + 1) * 0.5 * (w - 1)).astype(np.float32)
    map_y = ((coords[..., 1] + 1) * 0.5 * (h - 1)).astype(np.float32)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=border)


def _background_view(background: np.ndarray, size: int, zoom: float, pan: np.ndarray) -> np.ndarray:
    """(size, size, 2) background coordinates of a square window of ``zoom`` of its short side, panned."""
    h, w = background.shape[:2]
    half = zoom * min(h, w) / np.array([w, h])  # window half-size per axis in [-1, 1] units
    return coordinate_grid(size, size).numpy() * half + pan * (1 - half)


def render_clip(subject: Subject, background: np.ndarray, motion: ClipMotion, size: int,
                rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Yield the clip's (size, size, 3) uint8 frames: the animated subject composited over the background."""
    grid = coordinate_grid(size, size).reshape(1, -1, 2)
    controls = coordinate_grid(3, 3).reshape(-1, 2) * 0.7
    zoom = rng.uniform(0.45, 0.8)
    # Shrink the background so the view samples it about 1:1: minifying by sampling alone aliases
    # textures into pixel noise that no motion model can (or should) reproduce.
    shrink = min(1.0, size / (zoom * min(background.shape[:2])))
    background = cv2.resize(background, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
    radii = rng.uniform(0.8, 0.95), rng.uniform(0.9, 1.0)
    for t in range(len(motion.angle)):
        theta = pose_theta(motion.angle[t], motion.scale[t], motion.shift[t], motion.yaw[t])
        q = tps_warp_points(grid, torch.from_numpy(theta).float()[None], controls,
                            torch.from_numpy(motion.wobble[t]).float()[None])[0].numpy().reshape(size, size, 2)
        warped = q + part_flow(q, subject, motion.yaw[t], motion.mouth[t], motion.blink[t], motion.brow[t])
        front = _sample(subject.image, warped, cv2.BORDER_REPLICATE)
        back = _sample(background, _background_view(background, size, zoom, motion.background_pan[t]),
                       cv2.BORDER_REFLECT)
        radius = np.sqrt((q[..., 0] / radii[0]) ** 2 + (q[..., 1] / radii[1]) ** 2)
        alpha = np.clip((1 - radius) / 0.08, 0, 1)[..., None]
        yield np.round(255 * (alpha * front + (1 - alpha) * back)).astype(np.uint8)


def _check(value: int, least: int, flag: str) -> None:
    if value < least:
        raise UserError(f"{flag} must be at least {least}, got {value}")


def generate_dataset(out: str | Path, videos: int = 48, test_videos: int = 8, frames: int = 64, size: int = 128,
                     seed: int = 0, progress: bool = True) -> Path:
    """Write ``videos`` train and ``test_videos`` test clips under OUT/train and OUT/test; returns OUT.

    Every clip draws its motion from its own seed (seed, split, index), so test motion is held out from
    training; subjects cycle in order, so the first test clip is the astronaut.
    """
    _check(videos, 1, "--videos")
    _check(test_videos, 1, "--test-videos")
    _check(frames, 2, "--frames")
    _check(size, 32, "--size")
    out = Path(out)
    for split in ("train", "test"):
        if (out / split).is_dir() and any((out / split).iterdir()):
            raise UserError(f"{out / split} already holds videos; pass an empty or new --output folder")
    subjects = load_subjects(int(round(size * SUBJECT_FILL * 1.25)))  # a little finer than drawn: no magnifying
    backgrounds = {name: load_background(name) for name in BACKGROUNDS}
    jobs = [(split, index) for split, count in (("train", videos), ("test", test_videos)) for index in range(count)]
    for split, index in tqdm(jobs, desc="make-data", unit="video", disable=not progress):
        rng = np.random.default_rng([seed, int(split == "test"), index])
        subject = subjects[index % len(subjects)]
        background = backgrounds[rng.choice(sorted(set(BACKGROUNDS) - {subject.name}))]
        motion = random_motion(rng, frames)
        with FrameWriter(out / split / f"{subject.name}_{index:03d}", fps=30) as writer:
            for frame in render_clip(subject, background, motion, size, rng):
                writer.write(frame)
    return out


def write_demo_avatar(out: str | Path, size: int = 256) -> Path:
    """The bundled default avatar: the astronaut's face crop. (The bundled driving clip is real video:
    see the README's data table.)"""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    photo = skdata.astronaut()
    x0, y0, side = face_crop_box(detect_face(photo), photo.shape)
    avatar = cv2.resize(photo[y0:y0 + side, x0:x0 + side], (size, size), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(out / "avatar.png"), cv2.cvtColor(avatar, cv2.COLOR_RGB2BGR))
    return out / "avatar.png"
