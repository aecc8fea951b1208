"""The offline clip generator: layout, determinism, real and smooth articulated motion, the face crop."""
from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from skimage import data as skdata

from puppet import main
from training.synthetic import (
    ClipMotion,
    Subject,
    detect_face,
    face_crop_box,
    generate_dataset,
    load_background,
    load_subjects,
    random_motion,
    render_clip,
)


def read_clip(folder: Path) -> np.ndarray:
    return np.stack([imageio.imread(f) for f in sorted(folder.glob("*.png"))]).astype(np.float32) / 255


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("syn") / "data", videos=3, test_videos=2, frames=10,
                            size=48, seed=7, progress=False)


@pytest.fixture(scope="module")
def astronaut() -> Subject:
    return load_subjects(64)[0]


def still_motion(frames: int, **changes: np.ndarray) -> ClipMotion:
    """A motionless clip except for the given curves."""
    zeros = np.zeros(frames)
    values = dict(angle=zeros, scale=zeros + 1, shift=np.zeros((frames, 2)), yaw=zeros, mouth=zeros, blink=zeros,
                  brow=zeros, wobble=np.zeros((frames, 9)), background_pan=np.zeros((frames, 2)))
    return ClipMotion(**{**values, **changes})


def test_layout_and_frame_counts(small_set):
    train = sorted(p.name for p in (small_set / "train").iterdir())
    test = sorted(p.name for p in (small_set / "test").iterdir())
    assert train == ["astronaut_000", "chelsea_001", "coffee_002"]
    assert test == ["astronaut_000", "chelsea_001"]
    clip = small_set / "test" / "astronaut_000"
    assert [f.name for f in sorted(clip.iterdir())] == [f"frame_{i:05d}.png" for i in range(10)]
    frame = imageio.imread(clip / "frame_00000.png")
    assert frame.shape == (48, 48, 3) and frame.dtype == np.uint8


def test_same_seed_same_videos_other_seed_differs(small_set, tmp_path):
    again = generate_dataset(tmp_path / "again", videos=3, test_videos=2, frames=10, size=48, seed=7, progress=False)
    for clip in ["train/chelsea_001", "test/astronaut_000"]:
        assert np.array_equal(read_clip(small_set / clip), read_clip(again / clip))
    other = generate_dataset(tmp_path / "other", videos=1, test_videos=1, frames=10, size=48, seed=8, progress=False)
    assert not np.array_equal(read_clip(small_set / "train/astronaut_000"), read_clip(other / "train/astronaut_000"))


def test_test_motion_is_held_out(small_set):
    """Same subject, different motion seed: the train and test astronaut clips differ."""
    train, test = read_clip(small_set / "train/astronaut_000"), read_clip(small_set / "test/astronaut_000")
    assert np.abs(train - test).mean() > 0.02


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frames_move_smoothly(astronaut, seed):
    rng = np.random.default_rng(seed)
    clip = np.stack(list(render_clip(astronaut, load_background("brick"), random_motion(rng, 40), 64, rng))) / 255.0
    steps = np.abs(np.diff(clip, axis=0)).mean(axis=(1, 2, 3))
    far = np.abs(clip[20:] - clip[:-20]).mean(axis=(1, 2, 3))
    assert steps.min() > 1e-3  # every frame moves
    assert steps.max() < 0.1 and steps.mean() < 0.6 * far.mean()  # in small steps that add up


def test_motion_curves_are_smooth():
    motion = random_motion(np.random.default_rng(3), 200)
    assert np.abs(np.diff(motion.angle)).max() < np.radians(3)
    assert np.abs(np.diff(motion.shift, axis=0)).max() < 0.03
    assert np.abs(motion.yaw).max() <= 1 and 0 <= motion.mouth.min() and motion.mouth.max() <= 1
    assert np.abs(np.diff(motion.mouth)).max() < 0.4
    assert motion.blink.max() > 0.9  # 200 frames hold at least one full blink


def test_haar_crop_finds_the_astronaut_face():
    photo = skdata.astronaut()
    x, y, w, h = detect_face(photo)
    assert 150 < x + w / 2 < 300 and 60 < y + h / 2 < 200 and 60 < w < 160  # her face, not the flag or the suit
    x0, y0, side = face_crop_box((x, y, w, h), photo.shape)
    assert x0 <= x and y0 <= y and x + w <= x0 + side and y + h <= y0 + side
    assert x0 >= 0 and y0 >= 0 and x0 + side <= photo.shape[1] and y0 + side <= photo.shape[0]


def test_parts_move_locally(astronaut):
    """Opening the mouth changes the lower face only; a blink changes the eye band only."""
    background = load_background("brick")
    ramp = np.array([0.0, 1.0])
    rng = np.random.default_rng(0)
    mouth = np.stack(list(render_clip(astronaut, background, still_motion(2, mouth=ramp), 64, rng))) / 255.0
    change = np.abs(mouth[1] - mouth[0]).mean(axis=(1, 2))
    assert change[:24].max() < 1e-3 < change[36:52].max()
    eyes = np.stack(list(render_clip(astronaut, background, still_motion(2, blink=ramp), 64, rng))) / 255.0
    change = np.abs(eyes[1] - eyes[0]).mean(axis=(1, 2))
    eye_row = int(round((astronaut.eyes[0][1] * 0.9 + 1) / 2 * 63))
    assert change[eye_row - 3:eye_row + 4].max() > 0.01 and change[48:].max() < 1e-3


def test_make_data_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["make-data", "--output", str(out), "--videos", "1", "--test-videos", "1", "--frames", "3",
                 "--size", "32"]) == 0
    assert len(list((out / "test" / "astronaut_000").glob("*.png"))) == 3
    assert main(["make-data", "--output", str(out)]) == 2
    assert "already holds videos" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # out of range: refused while parsing
        main(["make-data", "--output", str(tmp_path / "x"), "--frames", "1"])
    assert refused.value.code == 2 and "--frames: 1 is too small" in capsys.readouterr().err
