"""Outputs: the virtual camera through an injected fake device and its real missing-device path, the
window's preview and no-display path, recordings that are finalised."""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import urllib.request

import imageio.v2 as imageio
import numpy as np
import pytest

from app.live import default_sink, open_sink
from core.media import FrameWriter, MediaError
from motion.errors import UserError
from realtime.controls import Controls
from realtime.sinks import Packet, Rendered
from realtime.sinks.files import RecordingSink
from realtime.sinks.http import HttpSink
from realtime.sinks.vcam import VirtualCameraError, VirtualCameraSink
from realtime.sinks.window import WindowError, WindowSink, side_by_side


def packet(index: int = 0, value: int = 100, face: bool = True) -> Packet:
    image = np.full((64, 64, 3), value, np.uint8)
    return Packet(index, Rendered(image, np.zeros_like(image), None, face, "astronaut", False), 24.5, 41.0)


class FakeCamera:
    instances: list["FakeCamera"] = []

    def __init__(self, width, height, fps):
        self.size, self.fps, self.frames, self.closed = (width, height), fps, [], False
        self.device = "/dev/video-fake"
        FakeCamera.instances.append(self)

    def send(self, frame):
        assert frame.dtype == np.uint8 and frame.shape == (self.size[1], self.size[0], 3)
        self.frames.append(frame.copy())

    def close(self):
        self.closed = True


def test_virtual_camera_sends_rgb_frames_to_the_device(capsys):
    sink = VirtualCameraSink((64, 48), 30.0, device_factory=FakeCamera)
    camera = FakeCamera.instances[-1]
    assert camera.size == (48, 64) and camera.fps == 30.0 and "/dev/video-fake" in capsys.readouterr().err
    with pytest.raises(AssertionError):
        sink.write(packet())  # 64x64 frames do not fit a 48x64 device
    sink = VirtualCameraSink((64, 64), 30.0, device_factory=FakeCamera)
    for i in range(3):
        sink.write(packet(i, value=10 * i))
    sink.close()
    camera = FakeCamera.instances[-1]
    assert [int(f[0, 0, 0]) for f in camera.frames] == [0, 10, 20] and camera.closed


def test_virtual_camera_in_the_live_loop_gets_the_requested_size(tiny_fomm, astronaut_png, monkeypatch):
    """The whole portrait (the 512x512 astronaut) fitted into a 160x90 camera: a centred 90x90 picture between
    two black bars of 35 columns (hand-computed: scale 90/512, (160 - 90) / 2 = 35)."""
    import realtime.sinks.vcam as vcam
    from app.live import LiveOptions, run_live

    monkeypatch.setattr(vcam, "pyvirtualcam_device", FakeCamera)
    stats = run_live(LiveOptions(avatar=(str(astronaut_png),), config=str(tiny_fomm[0]), checkpoint=str(tiny_fomm[1]),
                                 driving="synthetic:64x64", output=("vcam",), crop="full", max_frames=5,
                                 size=(160, 90)))
    camera = FakeCamera.instances[-1]
    assert stats.frames == 5 and camera.closed and 1 <= len(camera.frames) <= 5 and camera.size == (160, 90)
    for frame in camera.frames:
        assert frame.shape == (90, 160, 3)
        assert frame[:, :35].max() == 0 and frame[:, 125:].max() == 0  # the bars
        assert frame[:, 35:125].mean() > 40  # the portrait


def test_no_virtual_camera_device_is_a_clear_error():
    """The real path: pyvirtualcam is installed, this machine has no v4l2loopback device."""
    with pytest.raises(VirtualCameraError) as err:
        VirtualCameraSink((64, 64), 30.0)
    message = str(err.value)
    assert "no virtual camera device" in message and "v4l2loopback" in message and "OBS" in message
    assert "\n" not in message


def test_missing_pyvirtualcam_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)
    with pytest.raises(VirtualCameraError, match="pyvirtualcam is not installed"):
        VirtualCameraSink((64, 64), 30.0)


def test_preview_puts_the_crop_beside_the_avatar_with_an_overlay():
    pair = side_by_side(packet(value=200, face=False))
    assert pair.shape == (256, 512, 3)  # enlarged 4x from 64x128
    assert pair[128, 100].tolist() == [0, 0, 0] and pair[128, 400].tolist() == [200, 200, 200]
    assert (pair[:30, :256] > 0).any()  # FPS / latency text over the black crop


def test_window_without_a_display_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(WindowError, match="no display for --output window"):
        WindowSink(Controls(["a"]))


def test_default_output_falls_back_from_the_virtual_camera_to_a_window(monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(WindowError, match="no output available: no virtual camera .* and no display"):
        default_sink((64, 64), 30.0, Controls(["a"]))
    err = capsys.readouterr().err
    assert "v4l2loopback" in err and "showing a window instead" in err


def test_recordings_are_finalised(tmp_path):
    sink = open_sink(str(tmp_path / "out.mp4"), (64, 64), 10.0, Controls(["a"]))
    assert isinstance(sink, RecordingSink) and sink.lossless and sink.name == "file"
    for i in range(4):
        sink.write(packet(i, value=50 * i))
    sink.close()
    frames = imageio.mimread(tmp_path / "out.mp4")
    assert len(frames) == 4 and abs(int(frames[3][10, 10, 0]) - 150) < 8
    folder = open_sink(str(tmp_path / "frames"), (64, 64), 10.0, Controls(["a"]))
    folder.write(packet())
    folder.close()
    assert folder.name == "folder" and len(list((tmp_path / "frames").glob("*.png"))) == 1


def test_a_new_folder_with_a_dot_in_its_name_is_a_frame_folder(tmp_path):
    """`--output runs/size0.25`: a suffix without letters is no video type, so the missing path is a folder
    (as an extension-less name is); a real unknown type is still refused."""
    folder = open_sink(str(tmp_path / "runs" / "size0.25"), (64, 64), 10.0, Controls(["a"]))
    folder.write(packet())
    folder.close()
    assert folder.name == "folder" and [p.name for p in (tmp_path / "runs" / "size0.25").iterdir()] == ["frame_00000.png"]
    with pytest.raises(UserError, match="unknown video type '.xyz'"):
        open_sink(str(tmp_path / "runs" / "out.xyz"), (64, 64), 10.0, Controls(["a"]))


def test_the_http_status_says_how_long_the_face_has_been_missing():
    """A page or script polling /control can tell a held pose (no face for 4.5 s) from a frozen loop."""
    sink = HttpSink(0, Controls(["a"]))
    try:
        sink.write(dataclasses.replace(packet(7, face=False), no_face_s=4.5))
        with urllib.request.urlopen(sink.url + "control", timeout=5) as response:
            state = json.loads(response.read())
        assert state["frame"] == 7 and state["face"] is False and state["no_face_s"] == 4.5
    finally:
        sink.close()


@pytest.mark.parametrize("deleted_after", [0, 5], ids=["before-the-first-frame", "mid-run"])
def test_a_video_whose_folder_is_deleted_is_a_one_line_error(tmp_path, deleted_after):
    """ffmpeg either cannot create the file or writes on into one that is gone: either way the user is told
    which output failed and why, never a BrokenPipeError traceback or a silent exit 0."""
    folder = tmp_path / "rec"
    sink = open_sink(str(folder / "out.mp4"), (64, 64), 10.0, Controls(["a"]))
    with pytest.raises(MediaError, match=r"^cannot write output .*out\.mp4 \(its folder was deleted"):
        for i in range(40):
            if i == deleted_after:
                shutil.rmtree(folder)
            sink.write(packet(i, value=5 * i))
        sink.close()


def test_a_recording_cut_short_plays_up_to_its_last_fragment(tmp_path):
    """A full disk stops ffmpeg before it can write an mp4's index at the end: live recordings are written in
    half-second fragments, so the part on disk plays (here: cut to 60%, as a full disk would)."""
    video = tmp_path / "out.mp4"
    sink = open_sink(str(video), (64, 64), 10.0, Controls(["a"]))
    rng = np.random.default_rng(0)
    for i in range(40):
        image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        sink.write(Packet(i, Rendered(image, image, None, True, "a", False), 10.0, 1.0))
    sink.close()
    data = video.read_bytes()
    video.write_bytes(data[:len(data) * 6 // 10])
    assert 15 <= len(imageio.mimread(video)) < 40


def at(t: float, value: int) -> Packet:
    """A packet of the frame captured at t seconds, filled with `value`."""
    return dataclasses.replace(packet(value=value), t=t)


def test_a_recording_fills_the_frames_it_never_got_with_the_last_one(tmp_path):
    """A 20 s session at 10 fps of which the recording got 60 frames (the rest dropped by a paced input or a busy
    recording), at a camera's jittery times: the folder has one frame per 1/10 s of the session, each the last
    frame delivered by then, so it plays for 20 s, not 6."""
    rng = np.random.default_rng(1)
    kept = sorted({0, 199, *rng.choice(200, 58, replace=False).tolist()})
    sink = RecordingSink(tmp_path / "frames", 10.0)
    for k in kept:
        sink.write(at(k / 10 + rng.uniform(-0.02, 0.02), value=k))
    sink.close()
    written = [int(imageio.imread(path)[0, 0, 0]) for path in sorted((tmp_path / "frames").glob("*.png"))]
    assert written == [max(k for k in kept if k <= i) for i in range(200)]


def test_a_camera_faster_than_it_announced_is_recorded_in_real_time(tmp_path):
    """A camera that said 10 fps and delivers 25: frames are left out so that 10 s still play 10 s, each frame
    of the recording showing the moment it stands for, to half a frame."""
    sink = RecordingSink(tmp_path / "frames", 10.0)
    for k in range(250):
        sink.write(at(k / 25, value=k))
    sink.close()
    written = [int(imageio.imread(path)[0, 0, 0]) for path in sorted((tmp_path / "frames").glob("*.png"))]
    assert abs(len(written) - 10 * 10) <= 1  # the session's 10 s at 10 fps
    assert all(abs(k / 25 - n / 10) <= 0.05 + 1e-9 for n, k in enumerate(written))


def test_a_paced_sessions_video_lasts_as_long_as_the_session(tmp_path):
    """The issue's case: 3 of 4 frames of a 30 fps session reach the recording (304 s recorded as 228 s). The mp4
    must play within 2% of the session: frames = duration x fps."""
    fps, times = 30.0, [k / 30 for k in range(900) if k % 4 != 3 or k == 899]
    sink = RecordingSink(tmp_path / "out.mp4", fps)
    for k, t in enumerate(times):
        sink.write(at(t, value=k % 200))
    sink.close()
    session = times[-1] - times[0] + 1 / fps
    frames = imageio.get_reader(tmp_path / "out.mp4").count_frames()
    assert frames / fps == pytest.approx(session, rel=0.02) and len(times) / fps < 0.8 * session


def test_a_live_frame_folder_is_written_at_the_fastest_png_level(tmp_path):
    """Encoding a 1920x1080 PNG at zlib's default level took a core for over a second: a live recording writes
    zlib's fastest level (the compressed stream's header says which), losslessly; offline folders keep the default."""
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    sink = RecordingSink(tmp_path / "live", 10.0)
    blank = packet()
    sink.write(dataclasses.replace(blank, rendered=dataclasses.replace(blank.rendered, image=image)))
    sink.close()
    with FrameWriter(tmp_path / "offline", 10.0) as offline:
        offline.write(image)
    for folder, header in (("live", b"\x78\x01"), ("offline", b"\x78\x9c")):  # FLEVEL 0: fastest, 2: default
        data = (tmp_path / folder / "frame_00000.png").read_bytes()
        assert data[data.index(b"IDAT") + 4:][:2] == header
        assert np.array_equal(imageio.imread(tmp_path / folder / "frame_00000.png"), image)
