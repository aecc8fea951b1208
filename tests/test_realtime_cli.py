"""`puppet.py live` and `bench` from the command line: one-line errors with exit code 2, the benchmark's
ratio, and Ctrl-C releasing everything and finalising files."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

import app.bench as bench
import puppet
from app.bench import run_bench
from motion.config import load_config
from realtime.engine import CLOSE_S, JOIN_S
from realtime.options import BenchOptions

ROOT = Path(__file__).resolve().parents[1]


def live(tiny_fomm, avatar, *args) -> list[str]:
    return ["live", "--avatar", str(avatar), "--config", str(tiny_fomm[0]), "--checkpoint", str(tiny_fomm[1]), *args]


def one_line_error(capsys, argv) -> str:
    assert puppet.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ") and "Traceback" not in "\n".join(err)
    return err[-1]


def test_missing_camera(tiny_fomm, astronaut_png, capsys):
    message = one_line_error(capsys, live(tiny_fomm, astronaut_png, "--driving", "webcam:9", "--output", "x.mp4"))
    assert "no camera at webcam:9" in message and "--driving" in message


def test_unreadable_avatar(tiny_fomm, tmp_path, capsys):
    bad = tmp_path / "avatar.png"
    bad.write_text("not a picture")
    message = one_line_error(capsys, live(tiny_fomm, bad, "--driving", "synthetic", "--output", str(tmp_path / "o")))
    assert f"cannot read avatar {bad}" in message
    message = one_line_error(capsys, live(tiny_fomm, tmp_path / "none.png", "--driving", "synthetic",
                                          "--output", str(tmp_path / "o")))
    assert "does not exist" in message


def test_live_stats_never_replaces_an_input(tiny_fomm, astronaut_png, tmp_path, capsys):
    before = astronaut_png.read_bytes()
    message = one_line_error(capsys, live(tiny_fomm, astronaut_png, "--driving", "synthetic", "--output",
                                          str(tmp_path / "o"), "--stats", str(astronaut_png)))
    assert "--stats" in message and "is also an input" in message and astronaut_png.read_bytes() == before


def test_no_virtual_camera_device(tiny_fomm, astronaut_png, capsys):
    message = one_line_error(capsys, live(tiny_fomm, astronaut_png, "--driving", "synthetic", "--output", "vcam"))
    assert "v4l2loopback" in message and "OBS" in message


def test_port_in_use(tiny_fomm, astronaut_png, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = one_line_error(capsys, live(tiny_fomm, astronaut_png, "--driving", "synthetic",
                                              "--output", f"http:{port}"))
    assert f"port {port} on 127.0.0.1 is in use" in message


def test_swap_needs_valid_parts(tiny_fomm, tiny_coseg, astronaut_png, tmp_path, capsys):
    message = one_line_error(capsys, live(tiny_fomm, astronaut_png, "--driving", "synthetic", "--output",
                                          str(tmp_path / "o"), "--parts", "9", "--seg-config", str(tiny_coseg[0]),
                                          "--seg-checkpoint", str(tiny_coseg[1])))
    assert "parts are numbered 1 to 4" in message


def test_live_part_swap_from_the_command_line(tiny_fomm, tiny_coseg, astronaut_png, driving_mp4, tmp_path):
    stats_path = tmp_path / "stats.json"
    assert puppet.main(live(tiny_fomm, astronaut_png, "--driving", str(driving_mp4), "--output", str(tmp_path / "o"),
                            "--parts", "1,2", "--seg-config", str(tiny_coseg[0]), "--seg-checkpoint",
                            str(tiny_coseg[1]), "--stats", str(stats_path))) == 0
    assert len(list((tmp_path / "o").glob("*.png"))) == 6
    stats = json.loads(stats_path.read_text())
    assert stats["frames"] == 6 and "dense_motion" not in stats["latency_ms"]  # the swap path ran


def test_bench_reports_stages_and_the_speedup(tiny_fomm, astronaut_png, tmp_path, capsys):
    result = run_bench(BenchOptions(config=str(tiny_fomm[0]), checkpoint=str(tiny_fomm[1]), frames=4,
                                    avatar=str(astronaut_png), stats=str(tmp_path / "bench.json")))
    out = capsys.readouterr().out
    for stage in ("capture", "face_crop", "keypoints", "dense_motion", "generator", "output", "end_to_end"):
        assert stage in out
    assert "naive loop" in out and "x faster" in out and "paced at 30 FPS" in out
    assert result["pipelined"]["frames"] == result["naive"]["frames"] == 4
    assert "prepare" in result["naive"]["latency_ms"]
    written = json.loads((tmp_path / "bench.json").read_text())
    assert written["speedup"] == result["speedup"] and written["driving"] == "synthetic"
    paced = written["paced"]  # every input frame reached inference or was dropped, at the input's rate
    assert paced["input_fps"] == 30 and paced["frames"] >= 1 and paced["frames"] + paced["dropped"] == 4
    assert paced["latency_ms"]["end_to_end"]["count"] == paced["frames"]


def test_bench_on_a_video_file(tiny_fomm, astronaut_png, driving_mp4, capsys):
    result = run_bench(BenchOptions(config=str(tiny_fomm[0]), checkpoint=str(tiny_fomm[1]), frames=20,
                                    avatar=str(astronaut_png), driving=str(driving_mp4)))
    assert result["pipelined"]["frames"] == result["naive"]["frames"] == 6  # the whole file, shorter than 20
    assert result["paced"]["input_fps"] == 10 and result["paced"]["frames"] + result["paced"]["dropped"] == 6
    assert "paced at 10 FPS" in capsys.readouterr().out


def test_bench_compare_runs_on_the_given_avatar_and_driving_frames(tiny_fomm, tmp_path, capsys):
    """--compare animates --avatar (no face in it: the whole picture) with --driving's first frames + 1: solid
    colours in a lossless frame folder show which frames reached the backends, in order."""
    avatar = np.zeros((40, 60, 3), np.uint8)
    avatar[:, 30:] = 255  # left half black, right half white: no face, resized whole
    imageio.imwrite(tmp_path / "avatar.png", avatar)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    (tmp_path / "drive").mkdir()
    for i, colour in enumerate(colours):
        imageio.imwrite(tmp_path / "drive" / f"{i:03d}.png", np.full((32, 32, 3), colour, np.uint8))
    seen = []
    options = BenchOptions(config=str(tiny_fomm[0]), checkpoint=str(tiny_fomm[1]), frames=2, compare="torch,official",
                           avatar=str(tmp_path / "avatar.png"), driving=str(tmp_path / "drive"),
                           stats=str(tmp_path / "compare.json"))
    original = bench.run_compare

    def spy(*args):
        (avatar_frame, driving), _ = args[-1]  # clip: (the clip, its name)
        seen.append(avatar_frame)
        seen.extend(driving)
        return original(*args)
    result = None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench, "run_compare", spy)
        result = run_bench(options)
    size = load_config(tiny_fomm[0]).size
    assert seen[0].shape == (*size, 3)
    assert seen[0][:, : size[1] // 2 - 1].max() < 0.01 and seen[0][:, size[1] // 2 + 1:].min() > 0.99
    assert [tuple(np.round(frame.mean(axis=(0, 1)) * 255).astype(int)) for frame in seen[1:]] == colours[:3]
    written = json.loads((tmp_path / "compare.json").read_text())
    assert written == result and written["frames"] == 2 and written["input"] == "avatar.png driven by drive"
    assert set(written["backends"]) == {"torch", "official"} and written["backends"]["torch"]["psnr_db"] is None
    assert written["backends"]["official"]["psnr_db"] > 80  # the same maths: only FP32 rounding differs
    assert "2 frames of avatar.png driven by drive" in capsys.readouterr().err


def test_bench_refuses_what_it_would_ignore_or_destroy(tiny_fomm, astronaut_png, capsys):
    model = ["bench", "--config", str(tiny_fomm[0]), "--checkpoint", str(tiny_fomm[1]), "--frames", "2"]
    before = astronaut_png.read_bytes()
    message = one_line_error(capsys, [*model, "--avatar", str(astronaut_png), "--stats", str(astronaut_png)])
    assert "--stats" in message and "is also an input" in message and astronaut_png.read_bytes() == before
    bundled = ROOT / "checkpoints" / "avatar.png"  # the avatar used when none is given
    before = bundled.read_bytes()
    message = one_line_error(capsys, [*model, "--compare", "torch", "--stats", str(bundled)])
    assert "is also an input" in message and bundled.read_bytes() == before
    message = one_line_error(capsys, [*model, "--compare", "torch,official", "--backend", "nope", "--fps", "5"])
    assert message == ("error: --fps, --backend do not apply to --compare, which times the model stages of the "
                       "backends it lists; drop them or run bench without --compare")
    assert "torch listed more than once" in one_line_error(capsys, [*model, "--compare", "torch,official,torch"])
    assert "unknown backend ''" in one_line_error(capsys, [*model, "--compare="])
    assert "give the size as HEIGHTxWIDTH" in one_line_error(capsys, [*model, "--compare", "torch",
                                                                      "--driving", "synthetic:abc"])


def test_bench_refuses_a_camera(tiny_fomm, capsys):
    assert "an input it can replay" in one_line_error(capsys, ["bench", "--config", str(tiny_fomm[0]),
                                                               "--checkpoint", str(tiny_fomm[1]), "--driving",
                                                               "webcam:0"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ignore_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("stop, said, before", [(signal.SIGINT, "Ctrl-C", None), (signal.SIGTERM, "SIGTERM", None),
                                                (signal.SIGINT, "Ctrl-C", ignore_ctrl_c)],
                         ids=["ctrl-c", "sigterm", "ctrl-c-ignored-by-the-parent"])
def test_ctrl_c_or_sigterm_releases_everything_and_finalises_files(tiny_fomm, astronaut_png, tmp_path, stop, said,
                                                                   before):
    """SIGTERM (a service manager, kill) ends the loop as Ctrl-C does: files finalised, stats written, one line;
    Ctrl-C does so also when the process was started with SIGINT ignored (which Python would otherwise keep)."""
    port = free_port()
    video, stats_path = tmp_path / "out.mp4", tmp_path / "stats.json"
    process = subprocess.Popen([sys.executable, str(ROOT / "puppet.py"), *live(
        # unpaced: the source waits for the loop, so frame index 10 means 10 frames went through it
        tiny_fomm, astronaut_png, "--driving", "synthetic:128x128", "--crop", "full", "--size", "320x180",
        "--output", str(video),
        "--output", f"http:{port}", "--stats", str(stats_path))], stderr=subprocess.PIPE, text=True, preexec_fn=before)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                state = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/control", timeout=2).read())
                if state["frame"] >= 10:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail("the live loop did not start")
        process.send_signal(stop)
        # a hang guard, not a speed bar: the engine's cleanup may take its threads' JOIN_S and each output's
        # CLOSE_S twice (queue, then finalise) before it gives up (once seen past 30 s in a full suite run)
        _, err = process.communicate(timeout=2 * JOIN_S + 4 * CLOSE_S)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert f"stopped ({said})" in err and "Traceback" not in err
    stats = json.loads(stats_path.read_text())
    assert stats["frames"] >= 10
    frames = imageio.mimread(video)  # a finalised, readable file
    assert len(frames) == stats["sinks"]["file"]["written"] >= 10
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is fine, a listener not
        s.bind(("127.0.0.1", port))  # the server's port was released
        s.listen()


def test_a_broken_live_input_ends_with_one_line_and_the_stats_written(tiny_fomm, astronaut_png, tmp_path, capsys,
                                                                     monkeypatch):
    """A paced folder whose frames stop decoding (on a fake clock, so every frame is read): exit 2 with one
    line, the frames recorded until then kept, and the stats written."""
    import realtime.sources
    from conftest import FakeClock
    monkeypatch.setattr(realtime.sources, "Clock", FakeClock)
    driving = tmp_path / "in"
    driving.mkdir()
    for i in range(14):
        if i < 3:
            imageio.imwrite(driving / f"{i:03d}.png", np.roll(imageio.imread(astronaut_png)[::4, ::4], 3 * i, axis=1))
        else:
            (driving / f"{i:03d}.png").write_bytes(b"")
    out, stats_path = tmp_path / "out", tmp_path / "stats.json"
    message = one_line_error(capsys, live(tiny_fomm, astronaut_png, "--driving", str(driving), "--pace", "--crop",
                                          "full", "--size", "64x64", "--output", str(out), "--stats", str(stats_path)))
    assert message.startswith(f"error: input {driving} stays broken: 10 frames in a row could not be read")
    stats = json.loads(stats_path.read_text())
    assert stats["frames"] == 3 and stats["unreadable_frames"] == 10
    assert len(list(out.glob("*.png"))) == 3


def test_a_full_disk_under_one_output_ends_with_one_line_and_keeps_the_rest(tiny_fomm, astronaut_png, tmp_path,
                                                                          capsys, monkeypatch):
    """The frame folder's disk fills after 3 frames (an injected ENOSPC): exit 2 with one line naming the
    output and the cause; its 3 frames, the other output (a finalised video) and the stats are kept."""
    import errno

    from realtime.sinks.files import FrameWriter
    write = FrameWriter.write

    def full_disk(self, frame):
        if self.writer is None and self.count == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        write(self, frame)

    monkeypatch.setattr(FrameWriter, "write", full_disk)
    frames, video, stats_path = tmp_path / "frames", tmp_path / "out.mp4", tmp_path / "stats.json"
    message = one_line_error(capsys, live(tiny_fomm, astronaut_png, "--driving", "synthetic:64x64", "--crop", "full",
                                          "--size", "64x64", "--max-frames", "30", "--output", str(frames),
                                          "--output", str(video), "--stats", str(stats_path)))
    assert message == (f"error: cannot write output {frames} (no space left on the disk); the 3 frames written "
                       "until then are kept")
    assert sorted(p.name for p in frames.iterdir()) == [f"frame_{i:05d}.png" for i in range(3)]
    stats = json.loads(stats_path.read_text())
    assert stats["sinks"]["folder"]["written"] == 3
    assert len(imageio.mimread(video)) == stats["sinks"]["file"]["written"] >= 3
