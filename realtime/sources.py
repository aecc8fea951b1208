"""Where driving frames come from, behind one small interface: a webcam, a video file or frame folder,
or a synthetic moving face made from the astronaut photo (a camera-free input for demos and benchmarks).

Every source yields RGB uint8 frames from read(stop), returns None when it has no more, and waits only
on `stop`, so the loop can always end it. A live source produces frames whether or not they are read
(the loop keeps the newest); the others wait for the loop, unless paced to their frame rate. Pacing
happens in wait(), apart from read(), so the loop's capture timing measures reading, not waiting.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Protocol

import cv2
import numpy as np
from skimage import data as skdata

from animation.media import open_frames, picture_to_rgb
from motion.errors import UserError

RETRY_S = 1.0


class CameraError(UserError):
    """No camera where the user pointed."""


class Source(Protocol):
    name: str
    fps: float
    live: bool

    def wait(self, stop: threading.Event) -> None: ...

    def read(self, stop: threading.Event) -> np.ndarray | None: ...

    def close(self) -> None: ...


class Pacer:
    """Releases frame i no earlier than i / fps after the first, like a camera would; or at once."""

    def __init__(self, fps: float, paced: bool):
        self.period = 1.0 / fps
        self.paced = paced
        self.start: float | None = None
        self.count = 0

    def wait(self, stop: threading.Event) -> None:
        if not self.paced:
            return
        now = time.perf_counter()
        self.start = now if self.start is None else self.start
        delay = self.start + self.count * self.period - now
        if delay > 0:
            stop.wait(delay)
        self.count += 1


class WebcamSource:
    """cv2.VideoCapture on a device index. A camera that stops delivering (unplugged, taken by another
    program) is reported once and reopened every second until it is back or the loop stops."""

    live = True

    def __init__(self, index: int = 0, capture_factory: Callable[[int], cv2.VideoCapture] = cv2.VideoCapture):
        self.index = index
        self.name = f"webcam:{index}"
        self.factory = capture_factory
        self.capture = self._open()
        if self.capture is None:
            raise CameraError(f"no camera at {self.name}; plug one in, try another index (--driving webcam:1), or "
                              "pass --driving VIDEO|FRAME_DIR|synthetic")
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 30.0)

    def wait(self, stop: threading.Event) -> None:
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

    def read(self, stop: threading.Event) -> np.ndarray | None:
        ok, frame = self.capture.read() if self.capture is not None else (False, None)
        if ok:
            return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        print(f"camera {self.name} stopped sending frames; retrying every {RETRY_S:g} s (Ctrl-C to stop)",
              file=sys.stderr)
        while not stop.wait(RETRY_S):
            if self.capture is not None:
                self.capture.release()
            self.capture = self._open()
            ok, frame = self.capture.read() if self.capture is not None else (False, None)
            if ok:
                print(f"camera {self.name} is back", file=sys.stderr)
                return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        return None

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


class FileSource:
    """A video file or a folder of frames, read as fast as the loop takes them, or paced to its frame
    rate to rehearse a live camera (frames are then dropped when inference is slower)."""

    def __init__(self, path: str, paced: bool = False):
        self.name = path
        self.fps, self.frames = open_frames(path)
        self.live = paced
        self.wait = Pacer(self.fps, paced).wait

    def read(self, stop: threading.Event) -> np.ndarray | None:
        frame = next(self.frames, None)
        return None if frame is None else picture_to_rgb(frame)

    def close(self) -> None:
        self.frames.close()


class SyntheticSource:
    """The astronaut photo nodding, turning and sliding: a face with known, smooth motion.

    Head motion is an affine warp about the face centre (rotation, scale, translation), so Haar finds the
    face and the keypoints move, without any camera.
    """

    FACE = (224.0, 114.0)  # the astronaut's face centre in the 512x512 photo

    def __init__(self, size: tuple[int, int] | None = None, fps: float = 30.0, paced: bool = False,
                 frames: int | None = None):
        self.name = "synthetic"
        self.fps = fps
        self.live = paced
        self.wait = Pacer(fps, paced).wait
        self.photo = skdata.astronaut()
        self.size = size or self.photo.shape[:2]
        self.limit = frames
        self.count = 0

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

    def read(self, stop: threading.Event) -> np.ndarray | None:
        if self.limit is not None and self.count >= self.limit:
            return None
        self.count += 1
        return self.frame(self.count - 1)

    def close(self) -> None:
        """Nothing to release."""


def open_source(spec: str, paced: bool = False) -> Source:
    """webcam[:N], synthetic[:HxW], a video file or a folder of frames."""
    kind, _, arg = spec.partition(":")
    if kind == "webcam":
        if arg and not arg.isdigit():
            raise UserError(f"--driving {spec}: the camera index must be a number, e.g. webcam:0")
        return WebcamSource(int(arg or 0))
    if kind == "synthetic":
        size = None
        if arg:
            try:
                height, width = (int(v) for v in arg.lower().split("x"))
                size = (height, width)
            except ValueError:
                raise UserError(f"--driving {spec}: give the size as HEIGHTxWIDTH, e.g. synthetic:256x256") from None
            if min(size) < 16:
                raise UserError(f"--driving {spec}: the frame must be at least 16x16 pixels, e.g. synthetic:256x256")
        return SyntheticSource(size, paced=paced)
    return FileSource(spec, paced=paced)
