"""Driving sources: files and folders, the synthetic face, the webcam's missing-camera and
disappearing-camera paths (a fake capture stands in for the device)."""
from __future__ import annotations

import threading
import time

import imageio.v2 as imageio
import numpy as np
import pytest

import realtime.sources as sources
from conftest import FakeClock
from core.media import picture_to_rgb
from motion.errors import UserError
from realtime.sources import CameraError, FileSource, SyntheticSource, WebcamSource, open_source


def read_all(source) -> list[np.ndarray]:
    """Every frame, asked for at once (as a loop waiting on its slot does)."""
    stop, asked = threading.Event(), threading.Event()
    asked.set()
    frames = []
    while True:
        source.wait(stop, asked)
        frame = source.read(stop)
        if frame is None:
            return frames
        frames.append(frame.image)


def test_video_file_frames_are_rgb_uint8(driving_mp4):
    source = open_source(str(driving_mp4))
    assert isinstance(source, FileSource) and not source.live and source.fps == pytest.approx(10)
    frames = read_all(source)
    source.close()
    assert len(frames) == 6 and frames[0].shape == (256, 256, 3) and frames[0].dtype == np.uint8


def test_frame_folder_and_grey_frames(tmp_path):
    for i in range(3):
        imageio.imwrite(tmp_path / f"{i}.png", np.full((20, 30), 40 * i, np.uint8))
    frames = read_all(open_source(str(tmp_path)))
    assert [f.shape for f in frames] == [(20, 30, 3)] * 3 and frames[2][0, 0, 1] == 80


def test_missing_input_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        open_source(str(tmp_path / "nope.mp4"))
    with pytest.raises(UserError, match="HEIGHTxWIDTH"):
        open_source("synthetic:big")
    with pytest.raises(UserError, match="must be a number"):
        open_source("webcam:front")


def test_paced_source_is_live_and_keeps_its_rate(driving_mp4):
    source = FileSource(str(driving_mp4), paced=True)
    assert source.live
    start = time.perf_counter()
    assert len(read_all(source)) == 6
    assert time.perf_counter() - start >= 0.45  # 6 frames at 10 FPS: the last is due at 0.5 s


def test_a_paced_replay_read_late_gets_the_frame_due_then(driving_mp4):
    """6 frames at 10 FPS on a fake clock: a late read passes over the frames due before (undecoded), an
    early one waits for the next frame; each is stamped with the moment it was due."""
    clock = FakeClock()
    source = FileSource(str(driving_mp4), paced=True, clock=clock)
    assert source.live
    stop, asked = threading.Event(), threading.Event()
    asked.set()
    got = []
    for late in (0.0, 0.25, 0.01, 1.0, 0.0):
        clock.t += late
        source.wait(stop, asked)
        frame = source.read(stop)
        got.append(None if frame is None else frame.index)
        if frame is not None:
            assert frame.captured_at == pytest.approx(frame.index / 10) == pytest.approx(frame.t)
            assert frame.captured_at <= clock.now() + 1e-9
    # at 0.26 s frame 3 was not due yet: the read waited for it; at 1.3 s the input had ended at frame 5
    assert got == [0, 2, 3, 5, None]
    source.close()


def test_fps_replays_a_file_at_another_rate(driving_mp4):
    """The 10 FPS clip replayed as a 25 FPS camera (--fps 25): frame i is due at i / 25 s after the first
    request, so 0.1 s later frame 2 is the newest, where the file's own rate would give frame 1."""
    clock = FakeClock()
    source = FileSource(str(driving_mp4), paced=True, clock=clock, fps=25)
    stop, asked = threading.Event(), threading.Event()
    asked.set()
    source.wait(stop, asked)
    assert source.read(stop).index == 0  # the schedule starts at the first request
    clock.t = 0.1
    source.wait(stop, asked)
    frame = source.read(stop)
    assert frame.index == 2 and frame.captured_at == pytest.approx(0.08) and frame.t == pytest.approx(0.08)
    source.close()
    for spec, fps, expected in ((str(driving_mp4), 25, 25), (str(driving_mp4), None, 10), ("synthetic", 12.5, 12.5),
                                ("synthetic", None, 30)):
        opened = open_source(spec, fps=fps)
        assert opened.fps == expected
        opened.close()


@pytest.mark.timeout(30)
def test_a_paced_replay_keeps_up_while_the_loop_is_busy(driving_mp4):
    """Until the loop asks, the replay pulls each frame as it arrives, as a camera driver does, so the frame
    the loop asks for is ready to hand over; nothing is handed over before the loop asks."""
    clock = FakeClock()
    source = FileSource(str(driving_mp4), paced=True, clock=clock)
    stop, asked = threading.Event(), threading.Event()
    asked.set()
    source.wait(stop, asked)
    assert source.read(stop).index == 0
    asked.clear()  # the loop is busy with frame 0
    waiting = threading.Thread(target=source.wait, args=(stop, asked), daemon=True)
    waiting.start()
    clock.t = 0.35  # frames 1 to 3 have arrived
    deadline = time.monotonic() + 10
    while source.pulled < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert source.pulled == 4 and source.held[0] == 3 and waiting.is_alive()
    asked.set()
    waiting.join(10)
    assert not waiting.is_alive()
    frame = source.read(stop)
    assert frame.index == 3 and frame.captured_at == pytest.approx(0.3) and source.pulled == 4
    source.close()


def test_synthetic_source_moves_and_ends():
    source = open_source("synthetic:48x64")
    assert isinstance(source, SyntheticSource)
    a, b = source.frame(0), source.frame(10)
    assert a.shape == (48, 64, 3) and not np.array_equal(a, b)
    assert len(read_all(SyntheticSource((16, 16), frames=4))) == 4


def test_picture_to_rgb_handles_float_16_bit_and_alpha():
    assert picture_to_rgb(np.ones((2, 2, 4), np.float32))[0, 0].tolist() == [255, 255, 255]
    assert picture_to_rgb(np.full((2, 2), 65535, np.uint16))[0, 0].tolist() == [255, 255, 255]


def test_no_camera_is_a_clear_error():
    """The real device path: this machine has no camera."""
    with pytest.raises(CameraError, match=r"no camera at webcam:7; plug one in"):
        open_source("webcam:7")


class FakeCapture:
    """Serves frames; after `good` of them it fails once, like an unplugged camera, and then refuses to
    open `outage` times before it is back."""

    def __init__(self, index, script):
        self.script = script

    def isOpened(self):
        if self.script["lost"] and self.script["outage"] > 0:
            self.script["outage"] -= 1
            return False
        return True

    def set(self, prop, value):
        return True

    def get(self, prop):
        return 25.0

    def read(self):
        s = self.script
        if s["served"] == s["good"] and not s["lost"]:
            s["lost"] = True
            return False, None
        s["served"] += 1
        return True, np.full((8, 8, 3), s["served"], np.uint8)

    def release(self):
        pass


def test_disappearing_camera_is_reported_and_retried(monkeypatch, capsys):
    monkeypatch.setattr(sources, "RETRY_S", 0.01)
    script = {"good": 2, "outage": 3, "served": 0, "lost": False}
    camera = WebcamSource(0, capture_factory=lambda i: FakeCapture(i, script))
    assert camera.fps == 25 and camera.live
    stop = threading.Event()
    values = [int(camera.read(stop).image[0, 0, 0]) for _ in range(4)]
    assert values == [1, 2, 3, 4]
    err = capsys.readouterr().err
    assert "camera webcam:0 stopped sending frames; retrying" in err and "camera webcam:0 is back" in err


def test_a_stop_ends_the_retry_loop(monkeypatch):
    monkeypatch.setattr(sources, "RETRY_S", 0.01)
    script = {"good": 1, "outage": 10 ** 9, "served": 0, "lost": False}
    camera = WebcamSource(0, capture_factory=lambda i: FakeCapture(i, script))
    stop = threading.Event()
    camera.read(stop)
    threading.Timer(0.05, stop.set).start()
    assert camera.read(stop) is None
    camera.close()
