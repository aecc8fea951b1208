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
class Packet:
    index: int
    image: np.ndarray  # (h, w, 3) uint8 RGB, the avatar
    preview: np.ndarray  # (h, w, 3) uint8 RGB, the driving face crop
    alpha: np.ndarray | None  # (h, w) uint8 foreground matte, when a sink wants it and a co-part model is loaded
    face: bool  # False while the face is lost (the avatar holds its pose)
    avatar: str  # the avatar shown
    swap: bool  # part swap (True) or whole-face animation
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
