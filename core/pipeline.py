"""The one per-frame pipeline. Every user of the networks — `animate`, `swap`, `live`, both benchmarks,
INT8 calibration, evaluation and the tests — runs frames through these objects, so relative motion,
recalibration and the stage cut exist once.

FOMM: the avatar is prepared once; the first driving frame (or the first after recalibrate()) is the
reference pose; each frame then pays for keypoints -> normalise -> dense motion -> generator. The stage
functions come from a puppeteer (core.puppeteer.FommPuppeteer or an export backend), so backends plug
in without another loop. Co-part swap: the avatar prepared once, per frame segments -> swap.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any, Callable, Sequence

import numpy as np
import torch

from core.detail import ZERO, Detail
from core.media import to_uint8
from core.paste import Portrait
from core.puppeteer import Puppeteer, SwapAvatar, SwapPuppeteer, normalize_keypoints
from motion.errors import UserError
from motion.keypoints import Keypoints

# stage name -> a context manager around that stage's work (e.g. Stats.time); the default times nothing
StageTimer = Callable[[str], AbstractContextManager]
FOMM_STAGES = ("keypoints", "dense_motion", "generator")
# the motion mode's defaults, for every FommPipeline and the real-time animator's options: motion relative to
# the reference pose, not scaled by the face-size ratio
RELATIVE = True
ADAPT_SCALE = False


def untimed(stage: str) -> AbstractContextManager:
    return nullcontext()


def pick_device(cpu: bool) -> torch.device:
    """The GPU when one is present, unless --cpu asks otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")


def motion_arrays(motion: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A FOMM dense motion (any backend's: it carries ``deformation`` (1, h, w, 2) and ``occlusion``
    (1, 1, h, w) or None) as (h, w, 2) and (h, w) arrays for the paste-back's detail transfer; None: none."""
    if motion is None:
        return None, None
    occlusion = None if motion.occlusion is None else motion.occlusion[0, 0].float().cpu().numpy()
    return motion.deformation[0].float().cpu().numpy(), occlusion


def frame_band(portrait: Portrait, frame: np.ndarray, motion: Any, rendered: bool = True) -> Detail | None:
    """The portrait's detail (its band and the generator's error at rest) for a model-size frame and the dense
    motion that made it (None: at rest), or None when the portrait transfers no detail; the motion leaves the
    device only when it is needed."""
    if not portrait.detailed:
        return None
    return portrait.band(frame, rendered, *motion_arrays(motion), getattr(motion, "kept", None))  # kept: Moved's


# an offline per-frame step: driving frame -> (rendered frame, the dense motion that made it)
FrameStep = Callable[[np.ndarray], tuple[np.ndarray, Any]]


def rest_frame(puppeteer: Puppeteer, avatar: Any) -> tuple[np.ndarray, Any]:
    """The avatar rendered at rest by the network alone (its own keypoints as the driver's) and that motion: where
    detail transfer measures the generator's error at rest (core.paste.Portrait.settle)."""
    motion = puppeteer.motion(avatar, avatar.kp)
    return puppeteer.render(avatar, motion), motion


def with_detail(step: FrameStep, photo: np.ndarray, rest: tuple[np.ndarray, Any] | None = None) -> FrameStep:
    """The step's frames with the photo's (float (h, w, 3) at the model's size) own detail moved by each frame's
    motion, at the model's size: what live's full-frame paste-back adds (core.detail: the detail the generator's
    blur took away and its error at rest), for frames that are not pasted back
    (animate at the model's size, eval). Measured by the paste-back's own Portrait (the whole photo as its crop) on
    `rest`, the avatar rendered at rest and its motion (rest_frame), or, without it, only the blur, on the first
    frame with a motion."""
    portrait = Portrait(to_uint8(photo), None, photo.shape[:2], full_frame=True, size=None, detail=True)
    if rest is not None:
        portrait.settle(rest[0], *motion_arrays(rest[1]), resting=True)

    def run(frame: np.ndarray) -> tuple[np.ndarray, Any]:
        image, motion = step(frame)
        if motion is None:
            return image, motion
        band, rest = frame_band(portrait, image, motion)  # a whole-photo crop has no seam: no colour correction
        levels = band.astype(np.float32) - ZERO + (0 if rest is None else rest)
        return np.clip(image + levels / 255, 0, 1).astype(np.float32), motion
    return run


class FommPipeline:
    """An avatar following a driver. ``avatar`` may be replaced between frames (live avatar switching):
    the reference pose belongs to the driver, so it survives the switch."""

    def __init__(self, puppeteer: Puppeteer, avatar_image: np.ndarray | None = None, relative: bool = RELATIVE,
                 adapt_scale: bool = ADAPT_SCALE, timer: StageTimer = untimed):
        self.puppeteer, self.relative, self.adapt_scale, self.timer = puppeteer, relative, adapt_scale, timer
        self.avatar: Any = None if avatar_image is None else puppeteer.prepare(avatar_image)
        self.reference: Keypoints | None = None

    def set_avatar(self, image: np.ndarray) -> Any:
        """Prepare (keypoints, encoding: once) and show this avatar."""
        self.avatar = self.puppeteer.prepare(image)
        return self.avatar

    def recalibrate(self) -> None:
        """The next driving frame becomes the reference pose (the avatar's own pose under relative motion)."""
        self.reference = None

    def keypoints(self, frame: np.ndarray) -> Keypoints:
        with self.timer("keypoints"):
            return self.puppeteer.keypoints(frame)

    def drive(self, kp_driving: Keypoints) -> Keypoints:
        """The driver's keypoints as motion for the avatar (relative to the reference pose, or absolute)."""
        if self.reference is None:
            self.reference = kp_driving
        return normalize_keypoints(self.avatar.kp, kp_driving, self.reference, self.relative, self.adapt_scale)

    def motion(self, kp_avatar: Keypoints) -> Any:
        """The dense motion for keypoints from drive(), for the avatar shown."""
        with self.timer("dense_motion"):
            return self.puppeteer.motion(self.avatar, kp_avatar)

    def generate(self, motion: Any, avatar: Any = None) -> np.ndarray:
        """The avatar's frame for a motion(); a separate step so the real-time loop can run it on another
        thread while the next frame's keypoints and motion are computed."""
        with self.timer("generator"):
            return self.puppeteer.render(self.avatar if avatar is None else avatar, motion)

    def render(self, kp_avatar: Keypoints) -> tuple[np.ndarray, Any]:
        """(the avatar's frame, the dense motion that made it) for keypoints from drive()."""
        motion = self.motion(kp_avatar)
        return self.generate(motion), motion

    def step(self, frame: np.ndarray) -> tuple[np.ndarray, Any]:
        """One float (h, w, 3) driving frame in [0, 1] at the model's size -> (the avatar's frame, the
        dense motion that made it)."""
        return self.render(self.drive(self.keypoints(frame)))

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return self.step(frame)[0]


def check_swap_index(swap_index: Sequence[int], num_segments: int) -> None:
    """--parts names existing parts (1..K; 0 is the background)."""
    bad = [i for i in swap_index if not 0 <= i <= num_segments]
    if bad or not swap_index:
        raise UserError(f"--parts {','.join(map(str, swap_index))} is invalid: parts are numbered 1 to "
                        f"{num_segments} (0 is the background); pass e.g. --parts 1,2,3")


class SwapPipeline:
    """Chosen parts of an avatar moved into each driving frame (co-part segmentation)."""

    def __init__(self, swapper: SwapPuppeteer, parts: Sequence[int], avatar_image: np.ndarray | None = None,
                 source_segmentation: bool = False, timer: StageTimer = untimed):
        self.swapper, self.parts, self.source_segmentation, self.timer = swapper, list(parts), source_segmentation, timer
        self.avatar: SwapAvatar | None = None if avatar_image is None else swapper.prepare(avatar_image)

    def step(self, frame: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """(the frame with the avatar's parts, the frame's part probabilities (1, K+1, h, w))."""
        with self.timer("keypoints"):
            target, segments = self.swapper.segments(frame)
        with self.timer("generator"):
            image = self.swapper.swap(self.avatar, target, segments, self.parts, self.source_segmentation)
        return image, segments.segmentation

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return self.step(frame)[0]
