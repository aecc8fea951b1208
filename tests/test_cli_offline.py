"""`puppet.py animate` and `swap` end to end, and every bad input's one-line message."""
import shutil
import subprocess
import sys

import imageio.v2 as imageio
import numpy as np
import pytest

from conftest import CONFIGS, ROOT, make_checkpoint, naive_relative_animation, shifted_clip
from core.media import MediaError, read_frames, read_image, to_uint8
from motion.checkpoint import load_model
from motion.config import load_config
from puppet import main


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_animate_to_frame_folder_matches_uncached_forward(tiny_fomm, astronaut_png, driving_mp4, tmp_path, capsys):
    config_path, ckpt = tiny_fomm
    out = tmp_path / "frames"
    code, err = run_cli(capsys, "animate", "--config", config_path, "--checkpoint", ckpt, "--avatar", astronaut_png,
                        "--driving", driving_mp4, "--output", out, "--relative", "--cpu", "--backend", "torch",
                        "--no-detail")
    assert code == 0, err
    files = sorted(out.glob("frame_*.png"))
    assert [f.name for f in files] == [f"frame_{i:05d}.png" for i in range(6)]
    written = np.stack([imageio.imread(f) for f in files])
    assert written.shape == (6, 64, 64, 3) and written.dtype == np.uint8
    # The same numbers from the paper's formulas straight through the networks (no cache, no stage split).
    config = load_config(config_path)
    expected = naive_relative_animation(load_model(config, ckpt), read_image(astronaut_png, config.size),
                                        list(read_frames(driving_mp4, config.size)[1]))
    for i, frame in enumerate(expected):
        assert np.abs(to_uint8(frame).astype(int) - written[i]).max() <= 1


def test_animate_by_default_shows_the_avatar_itself_at_rest(tiny_fomm, astronaut_png, driving_mp4, tmp_path, capsys):
    """The default adds the photo's detail and the model's error at rest (core/detail.py): the first frame of
    relative motion is the avatar at rest, so it comes out as the photo itself, not as the model draws it (a model
    without an occlusion map, which would fade the correction where it marks the photo unseen)."""
    config = tmp_path / "no-occlusion.yaml"
    config.write_text(tiny_fomm[0].read_text().replace("estimate_occlusion_map: True", "estimate_occlusion_map: False"))
    checkpoint = make_checkpoint(config, tmp_path / "no-occlusion.pth.tar")
    photo = to_uint8(read_image(astronaut_png, load_config(config).size)).astype(int)
    first = {}
    for name, extra in (("default", []), ("plain", ["--no-detail"])):
        code, err = run_cli(capsys, "animate", "--config", config, "--checkpoint", checkpoint, "--avatar",
                            astronaut_png, "--driving", driving_mp4, "--output", tmp_path / name, "--cpu",
                            "--no-expression", *extra)  # (the stage may move the first frame's lips: see test_detail)
        assert code == 0, err
        first[name] = imageio.imread(tmp_path / name / "frame_00000.png").astype(int)
    # rounding only, but where the band's bytes saturate (the untrained model's blur measures sigma 3: the photo's
    # sharpest edges exceed the band's 127 levels)
    assert np.mean(np.abs(first["default"] - photo) <= 2) > 0.99
    assert np.abs(first["plain"] - photo).mean() > 10  # what the untrained model draws


def test_animate_video_outputs_and_moving_driver(tiny_fomm, astronaut_png, driving_mp4, tmp_path, capsys):
    config_path, ckpt = tiny_fomm
    for name in ("out.mp4", "out.gif"):
        code, err = run_cli(capsys, "animate", "--config", config_path, "--checkpoint", ckpt, "--avatar",
                            astronaut_png, "--driving", driving_mp4, "--output", tmp_path / name, "--adapt-scale",
                            "--relative")
        assert code == 0, err
        frames = [f for f in imageio.get_reader(tmp_path / name)]  # list() trips on nframes=inf
        assert len(frames) == 6 and np.asarray(frames[0]).shape[:2] == (64, 64)


def test_contact_sheet(tiny_fomm, astronaut_png, driving_mp4, tmp_path, capsys):
    config_path, ckpt = tiny_fomm
    code, err = run_cli(capsys, "animate", "--config", config_path, "--checkpoint", ckpt, "--avatar", astronaut_png,
                        "--driving", driving_mp4, "--output", tmp_path / "o.mp4", "--sheet", tmp_path / "s.png")
    assert code == 0, err
    sheet = imageio.imread(tmp_path / "s.png")
    assert sheet.shape == (2 * 64, 7 * 64, 3)  # source + 6 driving frames over blank + 6 results
    assert np.array_equal(sheet[:64, :64], to_uint8(read_image(astronaut_png, (64, 64))))


def test_animate_full_vox256_on_astronaut(astronaut_png, tmp_path, capsys):
    """The official-size model end to end on a real photo and a short clip of it moving."""
    ckpt = make_checkpoint(CONFIGS / "vox-256.yaml", tmp_path / "vox.pth.tar")
    clip_dir = tmp_path / "clip"
    clip_dir.mkdir()
    for i, frame in enumerate(shifted_clip(imageio.imread(astronaut_png), frames=3, step=12)):
        imageio.imwrite(clip_dir / f"{i:03d}.png", frame)
    code, err = run_cli(capsys, "animate", "--config", CONFIGS / "vox-256.yaml", "--checkpoint", ckpt, "--avatar",
                        astronaut_png, "--driving", clip_dir, "--output", tmp_path / "out", "--relative")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"frame_{i:05d}.png" for i in range(3)]
    assert imageio.imread(tmp_path / "out" / "frame_00002.png").shape == (256, 256, 3)


@pytest.mark.parametrize("source_segmentation", [False, True])
def test_swap_end_to_end(tiny_coseg, astronaut_png, driving_mp4, tmp_path, capsys, source_segmentation):
    config_path, ckpt = tiny_coseg
    args = ["swap", "--config", config_path, "--checkpoint", ckpt, "--avatar", astronaut_png, "--driving",
            driving_mp4, "--output", tmp_path / "swap", "--parts", "1,2"]
    code, err = run_cli(capsys, *args, *(["--source-segmentation"] if source_segmentation else []))
    assert code == 0, err
    assert len(list((tmp_path / "swap").glob("frame_*.png"))) == 6


def test_images_of_any_channels_are_converted(tmp_path):
    grey = (np.arange(40 * 30) % 255).astype(np.uint8).reshape(40, 30)
    rgba = np.dstack([np.full((40, 30, 3), 200, np.uint8), np.zeros((40, 30), np.uint8)])
    imageio.imwrite(tmp_path / "grey.png", grey)
    imageio.imwrite(tmp_path / "rgba.png", rgba)
    g = read_image(tmp_path / "grey.png", (64, 64))
    assert g.shape == (64, 64, 3) and np.allclose(g[..., 0], g[..., 2])
    a = read_image(tmp_path / "rgba.png", (64, 64))
    assert a.shape == (64, 64, 3) and np.allclose(a, 200 / 255, atol=1e-6)  # alpha dropped, as the demo does


@pytest.fixture()
def bad_inputs(tmp_path, tiny_fomm, tiny_coseg, astronaut_png, driving_mp4):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    junk_video = tmp_path / "junk.mp4"
    junk_video.write_bytes(b"\x00" * 100)
    empty = tmp_path / "empty"
    empty.mkdir()
    junk_ckpt = tmp_path / "junk.pth.tar"
    junk_ckpt.write_text("nope")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    return dict(text=text, junk_video=junk_video, empty=empty, junk_ckpt=junk_ckpt, blocker=blocker,
                fomm=tiny_fomm, coseg=tiny_coseg, png=astronaut_png, mp4=driving_mp4, tmp=tmp_path)


CASES = {
    "missing image": (lambda b: dict(avatar=b["tmp"] / "none.png"), "image .*none.png does not exist"),
    "unreadable image": (lambda b: dict(avatar=b["text"]), "cannot read image .*notes.png"),
    "missing video": (lambda b: dict(driving=b["tmp"] / "none.mp4"), "driving video .*none.mp4 does not exist"),
    "unreadable video": (lambda b: dict(driving=b["junk_video"]), "cannot read video .*junk.mp4"),
    "text as video": (lambda b: dict(driving=b["text"]), r"cannot read video .*notes.png \(no decoder for this file\)"),
    "empty frame folder": (lambda b: dict(driving=b["empty"]), "frame folder .*empty has no images"),
    "not a torch file": (lambda b: dict(checkpoint=b["junk_ckpt"]), "junk.pth.tar is not a .*PyTorch checkpoint"),
    "wrong checkpoint": (lambda b: dict(checkpoint=b["coseg"][1]), "co-part segmentation model checkpoint"),
    "keys do not fit": (lambda b: dict(config=CONFIGS / "vox-256.yaml"),
                        "does not fit the config for 'kp_detector'.*shape mismatch"),
    "missing config": (lambda b: dict(config=b["tmp"] / "none.yaml"), "config file .*none.yaml does not exist"),
    "unwritable output": (lambda b: dict(output=b["blocker"] / "out"), "cannot write output"),
    "unknown output type": (lambda b: dict(output=b["tmp"] / "out.xyz"), "unknown video type '.xyz'"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_inputs_give_one_line_and_exit_2(case, bad_inputs, capsys):
    override, pattern = CASES[case]
    b = bad_inputs
    args = dict(config=b["fomm"][0], checkpoint=b["fomm"][1], avatar=b["png"], driving=b["mp4"],
                output=b["tmp"] / "ok")
    args.update(override(b))
    code, err = run_cli(capsys, "animate", *[x for k, v in args.items() for x in (f"--{k}", v)])
    assert code == 2
    # besides `--backend auto`'s line saying which backend it opened, one line: the error
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("backend auto: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    import re
    assert re.search(pattern, lines[0]), lines[0]
    assert not (b["tmp"] / "ok").exists()  # a failed run leaves no trace of its output (checked before the model)


def test_a_video_gone_before_it_is_read_is_a_one_line_error(driving_mp4, tmp_path):
    """The video is checked, closed, and reopened when read (auto may take a minute in between)."""
    video = tmp_path / "d.mp4"
    shutil.copy(driving_mp4, video)
    fps, frames = read_frames(video, (64, 64))
    video.unlink()
    with pytest.raises(MediaError, match="cannot read video .*d.mp4 any more"):
        next(frames)


def test_swap_index_and_model_kind_errors(tiny_fomm, tiny_coseg, astronaut_png, driving_mp4, tmp_path, capsys):
    base = ["--avatar", astronaut_png, "--driving", driving_mp4, "--output", tmp_path / "o"]
    code, err = run_cli(capsys, "swap", "--config", tiny_coseg[0], "--checkpoint", tiny_coseg[1], *base,
                        "--parts", "1,9")
    assert code == 2 and "parts are numbered 1 to 4" in err
    # without --parts the config's part_swap_params.swap_index is used (here a wrong one)
    config = tmp_path / "parts.yaml"
    config.write_text(open(tiny_coseg[0]).read() + "part_swap_params: {swap_index: [2, 7]}\n")
    code, err = run_cli(capsys, "swap", "--config", config, "--checkpoint", tiny_coseg[1], *base)
    assert code == 2 and "--parts 2,7 is invalid" in err
    code, err = run_cli(capsys, "swap", "--config", tiny_fomm[0], "--checkpoint", tiny_fomm[1], *base)
    assert code == 2 and "use `puppet.py animate`" in err


def test_no_traceback_from_the_real_command(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "puppet.py"), "animate", "--config", str(CONFIGS / "vox-256.yaml"),
                           "--checkpoint", str(tmp_path / "missing.pth.tar"), "--avatar", str(tmp_path / "a.png"),
                           "--driving", str(tmp_path / "d.mp4"), "--output", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")
