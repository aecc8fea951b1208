"""Avatar preparation, done once per avatar before the loop starts: find the face, crop it like the
driving frames, and let the model stages cache everything that depends on the avatar alone (keypoints,
encoder features, co-part segments and the foreground matte). The one preparation of every command that
animates a photo: `live`, `bench`, and `animate` / `swap` (which may take the whole picture instead of
its face: whole_picture)."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from core.expression import avatar_points
from core.faces import DEFAULT_MARGIN, Box, avatar_box, crop
from core.media import MediaError, frame_files, load_picture, to_model_frame
from core.paste import Portrait
from core.pipeline import motion_arrays, rest_frame
from core.puppeteer import Puppeteer, SwapAvatar, SwapPuppeteer
from core.tracking.haar import HaarFaceDetector
from core.tracking.landmarks import LandmarkDetector
from motion.geometry import resize_map


@dataclass(frozen=True)
class PartSwapper:
    """A co-part segmentation model and the (h, w) size it runs at."""
    puppeteer: SwapPuppeteer
    size: tuple[int, int]


@dataclass
class Avatar:
    name: str
    image: np.ndarray  # (h, w, 3) float crop at the animation model's size
    fomm: Any  # the backend's prepared avatar (None when no FOMM puppeteer prepared it: `swap`)
    swap: SwapAvatar | None  # co-part segments and features, when a co-part model is loaded
    matte: torch.Tensor | None  # (1, 1, h, w) foreground probability at the animation size
    portrait: Portrait  # model-size frame -> what the outputs show (pasted back, letterboxed)
    landmarks: np.ndarray | None = None  # its 68 facial landmarks on the crop, grid units (core/expression.py)


def read_photo(path: str | Path) -> np.ndarray:
    """The photo at full resolution as RGB uint8 (the face is found before resizing)."""
    image = load_picture(path, "avatar")
    if min(image.shape[:2]) < 8:
        raise MediaError(f"avatar {path} is not a usable picture (shape {image.shape}); pass an RGB photo")
    return image


def avatar_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Each --avatar, a folder standing for all the pictures in it."""
    found: list[Path] = []
    for path in map(Path, paths):
        found.extend(frame_files(path) if path.is_dir() else [path])
    if not found:
        raise MediaError(f"no pictures in {', '.join(map(str, paths))}; pass --avatar with a photo or a folder of them")
    return found


def foreground(segments_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, K+1, h, w) part probabilities -> (1, 1, H, W) probability of not being background."""
    return resize_map(1 - segments_map[:, :1], *size)


@dataclass(frozen=True)
class AvatarPhoto:
    """An avatar photo at full resolution and its face box (None: no face, the whole picture is animated)."""
    path: Path
    photo: np.ndarray
    box: Box | None

    def face(self, size: tuple[int, int]) -> np.ndarray:
        """The face crop at a model's size, as the driving frames are cropped."""
        return to_model_frame(self.photo if self.box is None else crop(self.photo, self.box), size)


def whole_picture(path: str | Path) -> AvatarPhoto:
    """The official demo's avatar: the whole picture, no face searched (read errors name it an image)."""
    return AvatarPhoto(Path(path), load_picture(path), None)


def find_face(path: str | Path, margin: float = DEFAULT_MARGIN, detector: HaarFaceDetector | None = None) -> AvatarPhoto:
    """One avatar photo and its face box (said on stderr when there is none: the whole picture is animated)."""
    photo = read_photo(path)
    box = avatar_box(photo, detector or HaarFaceDetector(), margin)
    if box is None:
        print(f"no face found in avatar {path}; animating the whole picture", file=sys.stderr)
    return AvatarPhoto(Path(path), photo, box)


def find_faces(paths: Sequence[str | Path], margin: float = DEFAULT_MARGIN,
               detector: HaarFaceDetector | None = None) -> list[AvatarPhoto]:
    """Each avatar photo (a folder: every picture in it) and its face box, found before any model opens, so
    `--backend auto` can check its choice on the first avatar's face."""
    detector = detector or HaarFaceDetector()
    return [find_face(path, margin, detector) for path in avatar_paths(paths)]


def face_landmarks(photo: AvatarPhoto, size: tuple[int, int], detector: LandmarkDetector) -> np.ndarray | None:
    """The avatar's 68 landmarks on its model-size crop (grid units), found at the photo's resolution; None
    when the detector finds no face."""
    face = photo.photo if photo.box is None else crop(photo.photo, photo.box)
    points = detector(face)
    if points is None:
        return None
    scale = np.float64([size[1] / face.shape[1], size[0] / face.shape[0]])
    return avatar_points((points + 0.5) * scale - 0.5, size)  # pixel centres through the resize


def prepare_avatars(photos: Sequence[AvatarPhoto], puppeteer: Puppeteer | None, size: tuple[int, int],
                    swapper: PartSwapper | None = None, full_frame: bool = False,
                    out_size: tuple[int, int] | None = None, detail: bool = False,
                    landmarks: LandmarkDetector | None = None) -> list[Avatar]:
    """Each avatar's face crop, cached stages (the puppeteer's, when one is given; the co-part model's, when
    swapper) and output plan (full_frame: the crop pasted back into the photo, with the photo's detail moved
    by the motion when detail, settled on the avatar rendered at rest when the puppeteer is given; out_size:
    letterboxed to that (width, height)); with `landmarks`, its facial landmarks for expression transfer."""
    avatars = []
    for avatar in photos:
        image = avatar.face(size)
        swap = matte = None
        if swapper is not None:
            swap = swapper.puppeteer.prepare(avatar.face(swapper.size))
            matte = foreground(swap.segments.segmentation, size)
        portrait = Portrait(avatar.photo, avatar.box, size, full_frame, out_size, detail)
        fomm = None if puppeteer is None else puppeteer.prepare(image)
        if fomm is not None and portrait.detailed:  # also for an avatar switched to away from the reference pose
            frame, motion = rest_frame(puppeteer, fomm)
            portrait.settle(frame, *motion_arrays(motion), resting=True)
        points = None if landmarks is None else face_landmarks(avatar, size, landmarks)
        if landmarks is not None and points is None:
            print(f"no facial landmarks in avatar {avatar.path}: its mouth and eyes move with the model alone",
                  file=sys.stderr)
        avatars.append(Avatar(avatar.path.stem, image, fomm, swap, matte, portrait, points))
    return avatars
