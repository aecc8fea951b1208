"""Recording sinks: a video file or a folder of PNG frames, through the offline FrameWriter."""
from __future__ import annotations

from pathlib import Path

from animation.media import FrameWriter
from realtime.sinks import Packet


class RecordingSink:
    lossless = True
    wants_alpha = False

    def __init__(self, path: str | Path, fps: float):
        self.writer = FrameWriter(path, fps)  # opened now, so a bad path fails before the loop starts
        self.name = "folder" if self.writer.writer is None else "file"

    def write(self, packet: Packet) -> None:
        self.writer.write(packet.image)

    def close(self) -> None:
        self.writer.close()
