"""The work done for one driving frame: crop the face, estimate its keypoints, smooth them, move the
avatar relative to the calibration pose (or swap the chosen parts), each stage timed.

The avatar's own keypoints, encoder features and segments were prepared once (realtime/avatars.py), so a
frame pays only for the driving keypoints, the dense motion and the decoder. The work is cut in two halves,
start() (tracking, keypoints, motion) and finish() (generator, paste-back), which the engine runs on two
threads so that two frames are in flight. The expression map is planned on a third thread while the generator
runs (both need only the dense motion; the generator's runtime leaves Python's lock free), so it adds little to
a frame's latency.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import torch

from core.expression import ExpressionDriver, ExpressionWarp, express, plan_warp
from core.faces import DEFAULT_MARGIN, Box, centre_box, crop, face_crop, resize_uint8
from core.paste import Portrait
from core.pipeline import ADAPT_SCALE, RELATIVE, FommPipeline, SwapPipeline, frame_band, motion_arrays
from core.puppeteer import Puppeteer
from core.tracking import Tracker, concurrent, tracker_kind
from motion.geometry import resize_map, warp
from realtime.avatars import Avatar, PartSwapper, foreground
from realtime.controls import Controls
from realtime.framing import reframe, reframe_of
from realtime.sinks import Rendered
from realtime.smoothing import JitterMeter, KeypointSmoother, PoseReturn
from realtime.stats import Stats

MAX_WAIT = 60  # frames (2 s at 30 fps): a face that never holds still is calibrated on all the same


@dataclass(frozen=True)
class AnimatorOptions:
    """The choices of the per-frame work (one frame record, Rendered, comes out: realtime/sinks)."""
    size: tuple[int, int]  # (h, w): the animation model's
    margin: float = DEFAULT_MARGIN  # crop margin around a tracked face's box, per side
    relative: bool = RELATIVE  # motion since calibration (else absolute)
    adapt_scale: bool = ADAPT_SCALE  # relative motion scaled by the face-size ratio
    follow_head: bool = True  # the crop's motion since calibration moves the avatar (realtime/framing.py)
    want_alpha: bool = False  # a foreground matte for each frame (when a co-part model is loaded)
    swap_parts: Sequence[int] = ()  # the co-part parts a part swap takes from the avatar
    out_size: tuple[int, int] | None = None  # (width, height) every output frame is letterboxed to
    expression: bool = True  # the driver's mouth and eyes moved onto the avatar (tracker's and avatar's landmarks)


@dataclass
class Prepared:
    """What Animator.start hands Animator.finish for one frame."""
    frame: np.ndarray  # the driving frame (a held pose's preview is cut from it)
    avatar: Avatar  # the avatar the motion is for (a switch between the halves must not mix two)
    face_crop: np.ndarray | None = None  # the face cut from the frame; None: no face, hold the pose
    preview: np.ndarray | None = None  # the crop at the model's size
    motion: Any = None  # the FOMM dense motion; None with a face: part swap
    expression: np.ndarray | None = None  # the driver's expression (ExpressionDriver.expression); None: none


JUMP = 0.1  # a face box whose centre or side moved by more than this share of its side since the last frame


def jumped(before: Box, after: Box, share: float = JUMP) -> bool:
    """Did the face box move further than a followed face moves in a frame (a detection found it afresh)?"""
    return (max(abs(after.cx - before.cx), abs(after.cy - before.cy), abs(after.side - before.side))
            > share * before.side)


def as_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0


class Animator:
    """Per-frame stages with their state: calibration pose, smoothing filters, held pose."""

    def __init__(self, puppeteer: Puppeteer, avatars: list[Avatar], controls: Controls, stats: Stats,
                 options: AnimatorOptions, tracker: Tracker | None = None,
                 smoother: KeypointSmoother | None = None, swapper: PartSwapper | None = None):
        self.avatars, self.controls, self.stats, self.options = avatars, controls, stats, options
        size = options.size
        self.size, self.tracker, self.margin, self.smoother = size, tracker, options.margin, smoother
        self.pipeline = FommPipeline(puppeteer, relative=options.relative, adapt_scale=options.adapt_scale,
                                     timer=stats.time)
        self.swapping = None if swapper is None else SwapPipeline(swapper.puppeteer, options.swap_parts, timer=stats.time)
        self.swap_size = None if swapper is None else swapper.size
        self.want_alpha = options.want_alpha
        # a swapped frame is the user's face with the avatar's parts: letterboxed, never pasted into a photo
        self.swap_portrait = Portrait(np.zeros((*size, 3), np.uint8), None, size, False, options.out_size)
        self.returning = PoseReturn()
        self.expression = ExpressionDriver() if options.expression else None
        self.planner = ThreadPoolExecutor(1, "expression") if options.expression else None
        self.jitter_raw, self.jitter_smoothed = JitterMeter(), JitterMeter()
        self.last: Rendered | None = None
        self.box: Box | None = None  # the last frame's face box (the centre box without a tracker)
        self.losses = 0  # times a followed face was lost
        self.following = False
        self.follow_head = options.follow_head  # the crop's motion since calibration moves the avatar
        self.calibration: Box | None = None  # the face crop at calibration
        self.calibrating = True  # the next frame with a face becomes the reference pose (and the next, until
        # its box holds still)
        self.waited = 0  # frames the reference pose has followed the face so far, waiting for it to hold still

    @property
    def avatar(self) -> Avatar:
        return self.avatars[self.controls.avatar]

    def start(self, frame: np.ndarray, t: float) -> Prepared:
        """The first half of one RGB uint8 driving frame captured at time t (seconds): track and crop the
        face, keypoints, smoothing, relative motion and the dense motion. It owns the driver's state
        (reference pose, filters), so frames enter in order.

        A tracker that works beside its caller (core.tracking.concurrent: dlib in its own process) reads a
        followed face's frame while its keypoints are found in the crop of the last frame's box, when the head's
        place comes from the crop (follow_head: the keypoints are moved from the crop they were found in, so a
        box a pixel or two behind changes nothing); this frame's box then says whether there is a face, and
        whether it holds still, before the motion is made, and a box that jumped (found afresh) is cut again."""
        ahead = concurrent(self.tracker) and self.follow_head and self.following and self.box is not None
        with self.stats.time("face_crop"):
            if ahead:
                self.tracker.submit(frame, t)
            else:
                self.box = self.tracker.update(frame, t) if self.tracker is not None else centre_box(frame.shape)
            cut, cropped = self._cut(frame)
        swap = self.controls.swap and self.swapping is not None
        preview, kp = self._keypoints(cropped, swap)
        if ahead:
            used = self.box
            with self.stats.time("tracker_wait"):
                self.box = self.tracker.collect()
            if self.box is not None and jumped(used, self.box):  # found afresh elsewhere: cut this frame's face
                cut, cropped = self._cut(frame)
                preview, kp = self._keypoints(cropped, swap)
        avatar = self.avatar
        if cropped is None or self.box is None:
            self._lose()
            return Prepared(frame, avatar)
        self.following = True
        if swap:
            return Prepared(frame, avatar, cropped, preview)
        self.jitter_raw.add(kp.value)
        if self.smoother is not None:
            kp = self.smoother(kp, t)
        self.jitter_smoothed.add(kp.value)
        if self.controls.take_recalibration():
            self.calibrating, self.waited = True, 0
        if self.calibrating:  # the reference pose follows a tracked face until its box holds still (or a while)
            self.pipeline.recalibrate()
            if self.expression is not None:
                self.expression.recalibrate()
            self.waited += 1
            self.calibrating = self.tracker is not None and not self.tracker.steady and self.waited < MAX_WAIT
            self.calibration = cut
        if self.follow_head and self.calibration is not None and self.tracker is not None:  # as a fixed crop sees it
            kp = reframe(kp, reframe_of(self.calibration, cut))
        self.pipeline.avatar = avatar.fomm
        motion = self.pipeline.motion(self.returning(self.pipeline.drive(kp)))
        expression = None
        if self.expression is not None and self.tracker is not None:
            expression = self.expression.expression(self.tracker.landmarks, t, avatar.landmarks)
        return Prepared(frame, avatar, cropped, preview, motion, expression)

    def _cut(self, frame: np.ndarray) -> tuple[Box | None, np.ndarray | None]:
        """The crop box around the current face box and the face cut from the frame (None, None: no face)."""
        if self.box is None:
            return None, None
        cut = face_crop(self.box, self.margin, frame.shape) if self.tracker else self.box
        return cut, crop(frame, cut)

    def _keypoints(self, cropped: np.ndarray | None, swap: bool) -> tuple[np.ndarray | None, Any]:
        """The face crop at the model's size and its keypoints (none in part-swap mode); (None, None): no face."""
        if cropped is None:
            return None, None
        preview = resize_uint8(cropped, self.size)
        return preview, None if swap else self.pipeline.keypoints(as_float(preview))

    def finish(self, prepared: Prepared) -> Rendered:
        """The second half: the generator (or the part swap) and the paste-back, for the avatar the first
        half moved; it may run on another thread while start() works on the next frame."""
        if prepared.face_crop is None:
            return self._hold(prepared)
        rendered = self._swap(prepared) if prepared.motion is None else self._animate(prepared)
        self.last = rendered
        return rendered

    def _lose(self) -> None:
        """No face in this frame: count a loss and let the next face ease back in from the held pose."""
        self.losses += self.following
        self.following = False
        self.returning.lost()
        self.jitter_raw.gap()
        self.jitter_smoothed.gap()
        if self.smoother is not None:
            self.smoother.reset()

    def _hold(self, prepared: Prepared) -> Rendered:
        """No face: keep showing the last pose (or the avatar at rest, before any or after a switch)."""
        frame, avatar = prepared.frame, prepared.avatar
        preview = resize_uint8(crop(frame, centre_box(frame.shape)), self.size)
        if self.last is None or self.last.avatar != avatar.name:
            image, alpha = self._show(avatar.image, self._still_alpha(avatar), avatar.portrait, None, rendered=False)
            return Rendered(image, preview, alpha, False, avatar.name, False)
        return replace(self.last, preview=preview, face_found=False)

    def _still_alpha(self, avatar: Avatar) -> np.ndarray | None:
        matte = avatar.matte
        return matte[0, 0].cpu().numpy() if self.want_alpha and matte is not None else None

    def _animate(self, prepared: Prepared) -> Rendered:
        avatar, motion = prepared.avatar, prepared.motion
        planned = self._plan(motion, avatar, prepared.expression)
        image = self.pipeline.generate(motion, avatar.fomm)
        if planned is not None:
            warp_map = planned.result()
            with self.stats.time("expression_warp"):
                image, motion = express(image, motion, warp_map)
        alpha = None
        if self.want_alpha and avatar.matte is not None:
            with self.stats.time("matte"):
                alpha = warp(avatar.matte, torch.as_tensor(motion.deformation))[0, 0].cpu().numpy()
        shown, matte = self._show(image, alpha, avatar.portrait, motion)
        return Rendered(shown, prepared.preview, matte, True, avatar.name, False)

    def _plan(self, motion: Any, avatar: Avatar, offsets: np.ndarray | None) -> Future[ExpressionWarp] | None:
        """The expression map, planned on the planner's thread (None: no expression for this frame)."""
        if offsets is None or self.planner is None:
            return None
        deformation = motion_arrays(motion)[0]

        def plan() -> ExpressionWarp:
            with self.stats.time("expression"):
                return plan_warp(deformation, avatar.landmarks, offsets)
        return self.planner.submit(plan)

    def _swap(self, prepared: Prepared) -> Rendered:
        """Co-part swap: the user's frame with the chosen parts of the avatar moved into its pose."""
        assert self.swapping is not None and self.swap_size is not None and prepared.face_crop is not None
        avatar = prepared.avatar
        self.swapping.avatar = avatar.swap
        image, segmentation = self.swapping.step(as_float(resize_uint8(prepared.face_crop, self.swap_size)))
        if image.shape[:2] != tuple(self.size):
            image = resize_map(torch.from_numpy(image).permute(2, 0, 1)[None], *self.size)[0].permute(1, 2, 0).numpy()
        alpha = foreground(segmentation, self.size)[0, 0].cpu().numpy() if self.want_alpha else None
        shown, matte = self._show(image, alpha, self.swap_portrait, None)
        return Rendered(shown, prepared.preview, matte, True, avatar.name, True)

    def _show(self, image: np.ndarray, alpha: np.ndarray | None, portrait: Portrait, motion: Any,
              rendered: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """A model-size frame and matte -> what the outputs show, through the avatar's portrait, with the
        photo's detail moved by the frame's dense motion (None: the avatar at rest) when it transfers detail."""
        with self.stats.time("detail"):
            band = frame_band(portrait, image, motion, rendered)
        with self.stats.time("paste_back"):
            return portrait(image, rendered, band), None if alpha is None else portrait.matte(alpha)

    def close(self) -> None:
        """Free the tracker (its child process, if it has one) and the planner's thread."""
        try:
            if self.tracker is not None:
                self.tracker.close()
        finally:
            if self.planner is not None:
                self.planner.shutdown()

    def tracking(self) -> dict[str, object]:
        """Face tracking figures for the stats: the tracker, faces lost (the animator's count of followed faces
        lost, the one losses figure), full detections run (None without a tracker)."""
        tracker = self.tracker
        return {"tracker": tracker_kind(tracker) if tracker is not None else "none", "losses": self.losses,
                "detections": tracker.detections if tracker is not None else None}

    def jitter(self) -> dict[str, float]:
        """Keypoint jitter before and after smoothing (mean |second difference| x1000)."""
        return {"raw": self.jitter_raw.value, "smoothed": self.jitter_smoothed.value}
