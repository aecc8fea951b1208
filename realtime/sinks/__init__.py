"""Outputs behind one small interface: a sink receives finished packets on its own thread (the engine
gives each a bounded queue), so a slow one never holds up inference.

`lossless` sinks are recordings: when the input can wait for the loop (a file that is not paced), the
engine waits for them instead of dropping frames, so a recording of a file has every frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Rendered:
    """One finished frame, as the animator renders it (realtime/animator.py) and every output receives it."""
    image: np.ndarray  # (H, W, 3) uint8 RGB, what the outputs show (pasted back and letterboxed when asked)
    preview: np.ndarray  # (h, w, 3) uint8 RGB: what the model saw (the driving face crop), for side-by-side previews
    alpha: np.ndarray | None  # (H, W) uint8 foreground matte, when asked for and a co-part model is loaded
    face_found: bool  # False while the face is lost and the avatar holds its pose
    avatar: str  # the avatar shown
    swap: bool  # part swap (True) or whole-face animation


@dataclass(frozen=True)
class Packet:
    """A rendered frame and what the engine adds to it on its way to the sinks."""
    index: int
    rendered: Rendered
    fps: float  # recent output frame rate
    latency_ms: float  # capture -> this packet
    no_face_s: float = 0.0  # capture time since a face was last seen (0 while there is one)
    t: float | None = None  # the frame's time in seconds (Frame.t), by which a recording keeps real time


class Sink(Protocol):
    name: str
    lossless: bool
    wants_alpha: bool

    def write(self, packet: Packet) -> None: ...

    def close(self) -> None: ...
