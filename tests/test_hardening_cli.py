"""Bad or odd input as a careless user gives it, each case a real `puppet.py` process: exit code 2, one
error line that names the problem, no traceback, the user's files unchanged; and the odd inputs that
must give the right result instead (CMYK and float pictures, frame folders with a sub-folder, truncated
videos)."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, TEST_CONFIGS, make_checkpoint
from core.media import read_frames, read_image


def puppet(*args, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "puppet.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def digest(path: Path) -> str:
    if path.is_dir():
        return hashlib.sha256(b"".join(digest(p).encode() for p in sorted(path.iterdir()))).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_refused(proc: subprocess.CompletedProcess, pattern: str) -> None:
    import re
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, proc.stderr
    assert re.search(pattern, errors[0]), errors[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_fomm, tiny_coseg, astronaut_png, driving_mp4):
    root = tmp_path_factory.mktemp("world")
    frames = root / "frames"
    frames.mkdir()
    for index, frame in enumerate(imageio.mimread(driving_mp4)):
        imageio.imwrite(frames / f"frame_{index:05d}.png", frame)
    corrupt = root / "corrupt"
    corrupt.mkdir()
    for index in range(3):
        imageio.imwrite(corrupt / f"frame_{index:05d}.png", np.zeros((64, 64, 3), np.uint8))
    (corrupt / "frame_00003.png").write_bytes(b"\x89PNG not really")
    nested = root / "nested"
    nested.mkdir()
    for index in range(3):
        imageio.imwrite(nested / f"frame_{index:05d}.png", np.full((64, 64, 3), 40 * index, np.uint8))
    (nested / "frame_00001b.png").mkdir()  # a folder named like a frame
    nan = root / "nan.pth.tar"
    make_checkpoint(TEST_CONFIGS / "tiny-fomm.yaml", nan)
    data = torch.load(nan, weights_only=True)
    data["generator"]["final.weight"][0, 0, 0, 0] = float("nan")
    torch.save(data, nan)
    from training.synthetic import generate_dataset
    data = generate_dataset(root / "data", videos=2, test_videos=1, frames=8, size=64, seed=3, progress=False)
    junk = root / "junk.pth"
    junk.write_text("not weights")
    return dict(root=root, frames=frames, corrupt=corrupt, nested=nested, nan=nan, fomm=tiny_fomm,
                coseg=tiny_coseg, png=astronaut_png, mp4=driving_mp4, data=data, junk=junk)


def fomm_args(world, **override):
    args = dict(config=world["fomm"][0], checkpoint=world["fomm"][1], avatar=world["png"], driving=world["mp4"],
                output=world["root"] / "out.mp4")
    args.update(override)
    return [x for key, value in args.items() for x in (f"--{key}", value)]


CASES = {
    "animate: corrupt frame in a folder": (lambda w: ["animate", *fomm_args(w, driving=w["corrupt"])],
                                           "cannot read frame .*frame_00003.png"),
    "swap: corrupt frame in a folder": (lambda w: ["swap", "--config", w["coseg"][0], "--checkpoint", w["coseg"][1],
                                                   "--avatar", w["png"], "--driving", w["corrupt"], "--parts", "1,2", "--output",
                                                   w["root"] / "swap.mp4"], "cannot read frame"),
    "live: corrupt frame in a folder": (lambda w: ["live", "--config", w["fomm"][0], "--checkpoint", w["fomm"][1],
                                                   "--avatar", w["png"], "--driving", w["corrupt"], "--output",
                                                   w["root"] / "live.mp4", "--crop", "full"], "cannot read frame"),
    "live: synthetic:0x0": (lambda w: ["live", "--driving", "synthetic:0x0", "--output", w["root"] / "l.mp4"],
                            "at least 16x16"),
    "animate: output in /proc": (lambda w: ["animate", *fomm_args(w, output="/proc/x.mp4")], "cannot write output"),
    "animate: sheet in /proc": (lambda w: ["animate", *fomm_args(w), "--sheet", "/proc/x.png"], "cannot write --sheet"),
    "animate: sheet type": (lambda w: ["animate", *fomm_args(w), "--sheet", "x.xyz"], "not a .png or .jpg"),
    "animate: output is the driving video": (lambda w: ["animate", *fomm_args(w, output=w["mp4"])], "is also an input"),
    "animate: output is the driving folder": (lambda w: ["animate", *fomm_args(w, driving=w["frames"],
                                                                               output=w["frames"])], "is also an input"),
    "live: output is the input": (lambda w: ["live", "--driving", w["mp4"], "--output", w["mp4"]], "is also an input"),
    "live: stats in /proc": (lambda w: ["live", "--driving", w["mp4"], "--output", w["root"] / "l.mp4", "--stats",
                                        "/proc/s.json"], "cannot write --stats"),
    "live: max-frames 0": (lambda w: ["live", "--max-frames", "0"], "too small"),
    "live: max-frames -1": (lambda w: ["live", "--max-frames", "-1"], "too small"),
    "live: margin -5": (lambda w: ["live", "--margin", "-5"], "too small"),
    "train: epochs -3": (lambda w: ["train", "--config", w["fomm"][0], "--data", w["root"], "--epochs", "-3"],
                         "too small"),
    "train: workers -2": (lambda w: ["train", "--config", w["fomm"][0], "--data", w["root"], "--workers", "-2"],
                          "too small"),
    "train: --vgg not weights": (lambda w: ["train", "--config", w["fomm"][0], "--data", w["data"], "--output",
                                            w["root"] / "vgg-run", "--max-steps", "1", "--vgg", w["junk"]],
                                 "cannot read VGG-19 weights"),
    "export: out in /proc": (lambda w: ["export", "--config", w["fomm"][0], "--checkpoint", w["fomm"][1], "--output",
                                        "/proc/graphs"], "cannot write --output"),
    "average: batches 0": (lambda w: ["average", w["fomm"][1], "--config", w["fomm"][0], "--data", w["root"],
                                      "--output", w["root"] / "a.pth.tar", "--batches", "0"], "too small"),
    "average: out is an input": (lambda w: ["average", w["fomm"][1], "--config", w["fomm"][0], "--data", w["root"],
                                            "--output", w["fomm"][1]], "is also an input"),
    "eval: json in /proc": (lambda w: ["eval", "--config", w["fomm"][0], "--checkpoint", w["fomm"][1], "--data",
                                       w["root"], "--json", "/proc/e.json"], "cannot write --json"),
    "export: out is a file": (lambda w: ["export", "--config", w["fomm"][0], "--checkpoint", w["fomm"][1], "--output",
                                         w["png"]], "is a file"),
    "swap: FOMM checkpoint for a co-part config": (lambda w: ["swap", "--config", w["coseg"][0], "--checkpoint",
                                                              w["fomm"][1], "--avatar", w["png"], "--driving", w["mp4"],
                                                              "--parts", "1", "--output", w["root"] / "s.mp4"],
                                                   "part heads would be random"),
    "animate: NaN weights": (lambda w: ["animate", *fomm_args(w, checkpoint=w["nan"])], "NaN or infinite"),
    "yaml: num_kp ten": (lambda w: ["animate", *fomm_args(w, config=w["root"] / "ten.yaml")], "num_kp"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_touches_nothing(case, world):
    make_args, pattern = CASES[case]
    bad_yaml = world["root"] / "ten.yaml"
    bad_yaml.write_text((TEST_CONFIGS / "tiny-fomm.yaml").read_text().replace("num_kp: 5", "num_kp: ten"))
    watched = [world["mp4"], world["png"], world["frames"], world["fomm"][1]]
    before = [digest(p) for p in watched]
    assert_refused(puppet(*make_args(world)), pattern)
    assert [digest(p) for p in watched] == before
    assert not (world["root"] / "out.mp4").exists() and not (world["root"] / "swap.mp4").exists()


def test_a_users_existing_output_survives_a_bad_input(world, tmp_path):
    """A bad first frame stops the run before anything is written: yesterday's result.mp4 stays as it was."""
    old = tmp_path / "result.mp4"
    old.write_bytes(world["mp4"].read_bytes())
    corrupt_first = tmp_path / "bad"
    corrupt_first.mkdir()
    (corrupt_first / "frame_00000.png").write_bytes(b"not a png")
    assert_refused(puppet("animate", *fomm_args(world, driving=corrupt_first, output=old)), "cannot read frame")
    assert old.read_bytes() == world["mp4"].read_bytes()


def test_sheet_that_is_an_input_is_refused(world):
    before = digest(world["png"])
    assert_refused(puppet("animate", *fomm_args(world), "--sheet", world["png"]), "--sheet .* is also an input")
    assert digest(world["png"]) == before


def test_train_refuses_to_replace_a_run_unless_asked(world, tmp_path):
    from training.synthetic import generate_dataset
    data = generate_dataset(tmp_path / "d", videos=2, test_videos=1, frames=8, size=64, seed=3, progress=False)
    run = tmp_path / "run"
    base = ["train", "--config", world["fomm"][0], "--data", data, "--output", run, "--max-steps", "1", "--sheet-every", "0"]
    assert puppet(*base).returncode == 0
    trained = digest(run / "checkpoint.pth.tar")
    assert_refused(puppet(*base), "already holds a training run.*--resume.*--overwrite")
    assert digest(run / "checkpoint.pth.tar") == trained
    assert puppet(*base, "--overwrite").returncode == 0


def test_cmyk_and_float_pictures_read_as_their_colours(tmp_path):
    rng = np.random.default_rng(0)
    rgb = np.kron((rng.random((8, 8, 3)) * 255).astype(np.uint8), np.ones((8, 8, 1), np.uint8))  # flat 8x8 tiles
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    read = read_image(tmp_path / "cmyk.jpg", (64, 64))
    assert np.abs(read * 255 - rgb).mean() < 6  # not a colour negative (that would be ~100 off)
    floats = rgb.astype(np.float32)  # values 0-255 in a float TIFF
    imageio.imwrite(tmp_path / "float.tif", floats)
    np.testing.assert_allclose(read_image(tmp_path / "float.tif", (64, 64)) * 255, rgb, atol=1)
    imageio.imwrite(tmp_path / "unit.tif", floats / 255)  # values 0-1
    np.testing.assert_allclose(read_image(tmp_path / "unit.tif", (64, 64)) * 255, rgb, atol=1)


def test_sub_folder_named_like_a_frame_is_not_a_frame(world):
    _, frames = read_frames(world["nested"], (64, 64))
    assert [round(float(f.mean()) * 255) for f in frames] == [0, 40, 80]


def test_truncated_video_says_how_many_frames_it_read(tmp_path, world):
    rng = np.random.default_rng(1)
    whole = tmp_path / "whole.mp4"
    imageio.mimsave(whole, [(rng.random((64, 64, 3)) * 255).astype(np.uint8) for _ in range(30)], fps=10,
                    macro_block_size=1, ffmpeg_params=["-movflags", "+faststart"])
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    proc = puppet("animate", *fomm_args(world, driving=cut, output=tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    written = len(list((tmp_path / "o").glob("*.png")))
    assert 0 < written < 30
    assert f"read {written} of the 30 frames" in proc.stderr


def test_first_line_of_an_exception():
    from motion.errors import first_line
    assert first_line(RuntimeError("  no compiler\nstack detail  ")) == "no compiler"
    assert first_line(KeyError()) == "KeyError" and first_line(RuntimeError(""), "no device") == "no device"
