"""Recording sinks: a video file or a folder of PNG frames, through the offline FrameWriter.

A recording keeps the session's time: the frames a live input dropped (or this recording, when busy) are
filled with the last frame (a folder copies its file), so 5 minutes of a session play for 5 minutes at the
input's rate, not faster. It encodes cheaply, at a lower priority than inference (realtime/engine.py): PNGs at
zlib level 1 and x264's ultrafast preset; CPU time per 1920x1080 frame on a 2-core EPYC: PNG 413 -> 123 ms
(files +26%), mp4 92 -> 22 ms (files 3x, ~12 kB a frame of a talking head).
A recording that fails (a full disk, its folder deleted, the encoder gone) raises a one-line MediaError
naming the output and the cause; what was written until then stays on disk."""
from __future__ import annotations

import errno
import shutil
from pathlib import Path

from core.media import FrameWriter, MediaError
from motion.errors import first_line
from realtime.sinks import Packet

FULL_BYTES = 1 << 20  # less free space than this on the output's disk: it is full


class RecordingSink:
    lossless = True
    wants_alpha = False

    def __init__(self, path: str | Path, fps: float):
        self.writer = FrameWriter(path, fps, live=True)  # opened now: a bad path fails before the loop starts
        self.name = "folder" if self.writer.writer is None else "file"
        self.folder = self.writer.path if self.name == "folder" else self.writer.path.parent
        self.fps = fps
        self.start: float | None = None  # the time of the first packet's frame

    def write(self, packet: Packet) -> None:
        """Frame n of the recording shows the session at start + n / fps: the last frame is repeated up to the
        packet's moment, and a packet for a moment already recorded (a camera faster than the rate it announced)
        is left out. A packet without a time is written as it comes."""
        missed = 0
        if packet.t is not None:
            self.start = packet.t if self.start is None else self.start
            missed = round((packet.t - self.start) * self.fps) - self.writer.count  # frames before this moment
            if missed < 0:
                return
        try:
            self.writer.repeat(missed)
            self.writer.write(packet.rendered.image)
        except OSError as err:
            raise self._failed(self._cause(err)) from None

    def close(self) -> None:
        """Finalise the recording; a video whose folder was deleted meanwhile is gone, and that is said."""
        try:
            self.writer.close()
        except OSError as err:
            raise self._failed(self._cause(err)) from None
        if self.writer.count and not self.writer.path.exists():
            raise self._failed("its folder was deleted during the session")

    def _cause(self, err: OSError) -> str:
        """What the user can act on: the folder gone, the disk full, the encoder quit, else the system's word."""
        if not self.folder.is_dir():
            return "its folder was deleted"
        if err.errno == errno.ENOSPC or shutil.disk_usage(self.folder).free < FULL_BYTES:
            return "no space left on the disk"
        if err.errno in (None, errno.EPIPE):  # imageio's message when ffmpeg has quit; ffmpeg said why
            return "the video encoder (ffmpeg) stopped; its message above says why"
        return err.strerror or first_line(err)

    def _failed(self, cause: str) -> MediaError:
        kept = f"; the {self.writer.count} frames written until then are kept" if self.writer.path.exists() else ""
        return MediaError(f"cannot write output {self.writer.path} ({cause}){kept}")
