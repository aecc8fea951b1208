"""An OpenCV window with the driving crop beside the avatar and an FPS/latency overlay; keys drive the
controls (r recalibrate, n next avatar, s toggle swap, q or Esc quit), and closing it ends the session.

Every highgui call happens on the sink's own thread, where the window was created (Qt requires it)."""
from __future__ import annotations

import os
import sys

import cv2
import numpy as np

from motion.errors import UserError
from realtime.controls import Controls
from realtime.sinks import Packet

KEYS = {ord("r"): "recalibrate", ord("n"): "next_avatar", ord("s"): "toggle_swap", ord("q"): "quit", 27: "quit"}
MAX_WIDTH = 1600  # a 1280x720 frame beside its driving crop still fits a laptop screen
MIN_HEIGHT = 256


class WindowError(UserError):
    """No screen to open a window on."""


def has_display() -> bool:
    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def side_by_side(packet: Packet) -> np.ndarray:
    """RGB preview: driving crop | avatar (the crop scaled to the avatar frame's height), enlarged to a
    readable size or shrunk to fit a screen, with FPS, latency and key help."""
    rendered = packet.rendered
    height = rendered.image.shape[0]
    preview = rendered.preview
    if preview.shape[0] != height:
        preview = cv2.resize(preview, (preview.shape[1] * height // preview.shape[0], height),
                             interpolation=cv2.INTER_LINEAR)
    pair = np.concatenate([preview, rendered.image], axis=1)
    factor = max(1, -(-MIN_HEIGHT // pair.shape[0]))
    if factor > 1:
        pair = cv2.resize(pair, (pair.shape[1] * factor, pair.shape[0] * factor), interpolation=cv2.INTER_NEAREST)
    elif pair.shape[1] > MAX_WIDTH:
        pair = cv2.resize(pair, (MAX_WIDTH, pair.shape[0] * MAX_WIDTH // pair.shape[1]), interpolation=cv2.INTER_AREA)
    pair = np.ascontiguousarray(pair)
    status = (f"{packet.fps:4.1f} FPS  {packet.latency_ms:3.0f} ms  {rendered.avatar}" + ("  swap" if rendered.swap else "")
              + ("" if rendered.face_found else f"  no face for {packet.no_face_s:.0f} s: holding"))
    _text(pair, status, (8, 22), 0.6)
    _text(pair, "r recalibrate  n next avatar  s swap  q quit", (8, pair.shape[0] - 10), 0.45)
    return pair


class WindowSink:
    name = "window"
    lossless = False
    wants_alpha = False

    def __init__(self, controls: Controls, title: str = "puppet"):
        if not has_display():
            raise WindowError("no display for --output window (DISPLAY is not set); use --output vcam, "
                              "http:PORT, FILE.mp4 or a frame folder")
        self.controls, self.title = controls, title
        self.opened = False

    def write(self, packet: Packet) -> None:
        if not self.opened:
            cv2.namedWindow(self.title, cv2.WINDOW_AUTOSIZE)
            self.opened = True
        cv2.imshow(self.title, cv2.cvtColor(side_by_side(packet), cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1) & 0xFF
        if key in KEYS:
            self.controls.apply(KEYS[key])
        if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.controls.quit.set()  # the user closed the window

    def close(self) -> None:
        if self.opened:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
