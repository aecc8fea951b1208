"""Where driving frames come from, behind one small interface: a webcam, a video file or frame folder,
or a synthetic moving face made from the astronaut photo (a camera-free input for demos and benchmarks).

Every source yields Frames from read(stop), returns None when it has no more, and waits only on `stop` and
the loop's request, so the loop can always end it. A camera delivers frames whether or not they are read
(the loop keeps the newest). A file or the synthetic face waits for the loop, or, paced, replays its frame
rate like a camera: frame i arrives at start + i / fps, and is pulled then, undecoded, as a camera driver
keeps only its newest frame; when the loop asks it gets the newest frame that has arrived, decoded, and the
ones before it are dropped. Waiting happens in wait(), apart from read(), so the loop's capture timing
measures reading, not waiting. Time comes from a Clock so that tests can pace with a fake one,
deterministically.
"""
from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from skimage import data as skdata

from core.media import FOLDER_FPS, frame_folder, load_picture, open_frames, picture_to_rgb
from motion.errors import UserError

RETRY_S = 1.0


class CameraError(UserError):
    """No camera where the user pointed."""


@dataclass(frozen=True)
class Frame:
    index: int  # position in the input: a gap before it is frames the loop never saw
    image: np.ndarray  # RGB uint8
    captured_at: float  # Clock.now() when it arrived: read from the camera, or due in a paced replay
    t: float  # the frame's time in seconds: the capture time for a camera, index / fps for a file


class Clock:
    """Real time; latency is measured on the clock that stamped the frame."""

    def now(self) -> float:
        return time.perf_counter()

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        stop.wait(seconds)


class Source(Protocol):
    name: str
    fps: float
    live: bool  # frames come at their own rate: one the loop does not take in time is dropped
    clock: Clock

    def wait(self, stop: threading.Event, asked: threading.Event) -> None:
        """Until a frame can be read; `asked` is set while the loop waits for one."""

    def read(self, stop: threading.Event) -> Frame | None: ...

    def close(self) -> None: ...


class Pacer:
    """Frame i of a paced replay arrives at start + i / fps; the schedule starts at the loop's first request."""

    def __init__(self, fps: float, clock: Clock):
        self.fps, self.clock = fps, clock
        self.start: float | None = None

    def due(self, index: int) -> float:
        assert self.start is not None, "the schedule starts at the first request"
        return self.start + index / self.fps

    def due_in(self, index: int) -> float | None:
        """Seconds until frame `index` arrives; None before the start."""
        return None if self.start is None else self.due(index) - self.clock.now()

    def newest(self) -> int:
        """The newest frame that has arrived (-1 before the start); the epsilon absorbs rounding."""
        return -1 if self.start is None else int((self.clock.now() - self.start) * self.fps + 1e-9)

    def request(self, index: int, stop: threading.Event) -> int:
        """The frame the loop gets when it asks now for frame `index` or a later one: the newest, or, when
        not even `index` has arrived, `index` once it does (a camera's next frame)."""
        if self.start is None:
            self.start = self.clock.now()
        delay = self.due(index) - self.clock.now()
        if delay > 0:
            self.clock.sleep(delay, stop)
            return index
        return max(index, self.newest())


class Replay:
    """A file or the synthetic face: read as fast as the loop takes frames (nothing dropped), or paced."""

    def __init__(self, name: str, fps: float, raw: Iterator[Any], decode: Callable[[Any], np.ndarray],
                 paced: bool, frames: int | None, clock: Clock | None):
        self.name, self.fps, self.live = name, fps, paced
        self.clock = clock or Clock()
        self.pacer = Pacer(fps, self.clock) if paced else None
        self.raw, self.decode = itertools.islice(raw, frames), decode
        self.pulled = 0  # raw frames taken from the input
        self.ended = False  # the input has no more
        self.held: tuple[int, Any] | None = None  # the newest of them, not delivered yet
        self.delivered = 0  # the index after the last frame delivered
        self.target = 0  # the frame read() delivers

    def wait(self, stop: threading.Event, asked: threading.Event) -> None:
        """Paced: until the loop asks, pull each frame as it arrives, so the one it asks for is ready and
        those it will never get cost no decoding; then pick the newest."""
        if self.pacer is None:
            self.target = self.delivered
            return
        while not asked.wait(self._next_arrival()):
            self._pull(self.pacer.newest())
        self.target = self.pacer.request(self.delivered, stop)

    def _next_arrival(self) -> float | None:
        """Seconds until the next frame arrives; None when none will before the loop asks."""
        due_in = None if self.pacer is None or self.ended else self.pacer.due_in(self.pulled)
        return None if due_in is None else max(due_in, 0.0)

    def _pull(self, target: int) -> None:
        """Take raw frames up to `target`, holding only the newest: those before it are dropped undecoded."""
        while self.pulled <= target and not self.ended:
            raw = next(self.raw, None)
            self.ended = raw is None
            if raw is not None:
                self.held, self.pulled = (self.pulled, raw), self.pulled + 1

    def read(self, stop: threading.Event) -> Frame | None:
        """The frame wait() picked, or the last one if the input ended before it."""
        self._pull(self.target)
        if self.held is None:
            return None
        (index, raw), self.held = self.held, None
        self.delivered = index + 1
        at = self.clock.now() if self.pacer is None else self.pacer.due(index)
        return Frame(index, self.decode(raw), at, index / self.fps)


class WebcamSource:
    """cv2.VideoCapture on a device index. A camera that stops delivering (unplugged, taken by another
    program) is reported once and reopened every second until it is back or the loop stops."""

    live = True

    def __init__(self, index: int = 0, capture_factory: Callable[[int], cv2.VideoCapture] = cv2.VideoCapture,
                 clock: Clock | None = None):
        self.index = index
        self.name = f"webcam:{index}"
        self.factory = capture_factory
        self.clock = clock or Clock()
        self.count = 0
        self.capture = self._open()
        if self.capture is None:
            raise CameraError(f"no camera at {self.name}; plug one in, try another index (--driving webcam:1), or "
                              "pass --driving VIDEO|FRAME_DIR|synthetic")
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 30.0)

    def wait(self, stop: threading.Event, asked: threading.Event) -> None:
        """The driver paces a camera: read() blocks until its next frame."""

    def _open(self) -> cv2.VideoCapture | None:
        """The capture, or None; OpenCV's own multi-line warnings are hushed: our message says it all."""
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        try:
            capture = self.factory(self.index)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not capture.isOpened():
            capture.release()
            return None
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver's queue adds latency; we want the newest frame
        return capture

    def _grab(self) -> np.ndarray | None:
        ok, frame = self.capture.read() if self.capture is not None else (False, None)
        return frame if ok else None

    def read(self, stop: threading.Event) -> Frame | None:
        bgr = self._grab()
        if bgr is None:
            print(f"camera {self.name} stopped sending frames; retrying every {RETRY_S:g} s (Ctrl-C to stop)",
                  file=sys.stderr)
            while bgr is None:
                if stop.wait(RETRY_S):
                    return None
                if self.capture is not None:
                    self.capture.release()
                self.capture = self._open()
                bgr = self._grab()
            print(f"camera {self.name} is back", file=sys.stderr)
        at = self.clock.now()
        self.count += 1
        return Frame(self.count - 1, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), at, at)

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


class FileSource(Replay):
    """A video file or a folder of frames, read as fast as the loop takes them, or paced to its frame
    rate to rehearse a live camera. A folder's frames are read from disk when delivered, so a corrupt or
    vanished one fails that read alone and the next read goes on with the frame after it."""

    def __init__(self, path: str, paced: bool = False, frames: int | None = None, clock: Clock | None = None,
                 fps: float | None = None):
        """fps: the rate to replay at instead of the file's own (e.g. a 25 fps clip as a 30 fps camera)."""
        self.video: Iterator[np.ndarray] | None = None
        if Path(path).is_dir():
            own_fps, raw, decode = FOLDER_FPS, iter(frame_folder(Path(path))), partial(load_picture, what="frame")
        else:
            own_fps, self.video = open_frames(path)
            raw, decode = self.video, picture_to_rgb
        super().__init__(path, fps or own_fps, raw, decode, paced, frames, clock)

    def close(self) -> None:
        if self.video is not None:
            self.video.close()


class SyntheticSource(Replay):
    """The astronaut photo nodding, turning and sliding: a face with known, smooth motion.

    Head motion is an affine warp about the face centre (rotation, scale, translation), so Haar finds the
    face and the keypoints move, without any camera. A frame is drawn only when read, so pacing skips
    the ones passed over for free.
    """

    FACE = (224.0, 114.0)  # the astronaut's face centre in the 512x512 photo
    FPS = 30.0

    def __init__(self, size: tuple[int, int] | None = None, fps: float = FPS, paced: bool = False,
                 frames: int | None = None, clock: Clock | None = None):
        self.photo = skdata.astronaut()
        self.size = size or self.photo.shape[:2]
        super().__init__("synthetic", fps, itertools.count(), self.frame, paced, frames, clock)

    def frame(self, index: int) -> np.ndarray:
        t = index / self.fps
        angle = 10 * np.sin(2 * np.pi * 0.4 * t)
        scale = 1 + 0.06 * np.sin(2 * np.pi * 0.25 * t)
        matrix = cv2.getRotationMatrix2D(self.FACE, angle, scale)
        matrix[0, 2] += 25 * np.sin(2 * np.pi * 0.3 * t)
        matrix[1, 2] += 12 * np.sin(2 * np.pi * 0.5 * t)
        moved = cv2.warpAffine(self.photo, matrix, self.photo.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
        if moved.shape[:2] != tuple(self.size):
            moved = cv2.resize(moved, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
        return moved

    def close(self) -> None:
        """Nothing to release."""


def synthetic_size(spec: str) -> tuple[int, int] | None:
    """The (height, width) of a synthetic[:HxW] input; None: the default size."""
    arg = spec.partition(":")[2]
    if not arg:
        return None
    try:
        height, width = (int(v) for v in arg.lower().split("x"))
    except ValueError:
        raise UserError(f"--driving {spec}: give the size as HEIGHTxWIDTH, e.g. synthetic:256x256") from None
    if min(height, width) < 16:
        raise UserError(f"--driving {spec}: the frame must be at least 16x16 pixels, e.g. synthetic:256x256")
    return height, width


def open_source(spec: str, paced: bool = False, frames: int | None = None, fps: float | None = None) -> Source:
    """webcam[:N], synthetic[:HxW], a video file or a folder of frames; a file or the synthetic face ends
    after `frames` frames when given, and is replayed at `fps` when given (a camera keeps its own rate)."""
    kind, _, arg = spec.partition(":")
    if kind == "webcam":
        if arg and not arg.isdigit():
            raise UserError(f"--driving {spec}: the camera index must be a number, e.g. webcam:0")
        return WebcamSource(int(arg or 0))
    if kind == "synthetic":
        return SyntheticSource(synthetic_size(spec), fps or SyntheticSource.FPS, paced=paced, frames=frames)
    return FileSource(spec, paced=paced, frames=frames, fps=fps)
