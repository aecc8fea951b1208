"""Training pairs: layout discovery, shapes and ranges, the official augmentations, helpful errors."""
from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from skimage import data as skdata

from motion.config import load_config
from motion.errors import UserError
from training.dataset import (
    ColorJitter,
    DatasetError,
    Extras,
    VideoDataset,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    load_video,
)
from training.face_masks import LANDMARK_FILE, MASK_FILE, save_landmarks, save_masks

SIZE = (32, 32)
TINY_FOMM = Path(__file__).parent / "configs" / "tiny-fomm.yaml"


def write_frames(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        imageio.imwrite(folder / f"frame_{i:05d}.png", frame)
    return folder


def asymmetric_frame() -> np.ndarray:
    """A photo crop at the dataset size, so resizing is the identity and mirroring is visible."""
    return skdata.astronaut()[30:222:6, 150:342:6]


def dataset(root: Path, augmentation: dict | None = None, num_repeats: int = 1) -> VideoDataset:
    return VideoDataset(root, "train", SIZE, augmentation, num_repeats, seed=0)


def pairs(data: VideoDataset, count: int = 40) -> list[tuple[np.ndarray, np.ndarray]]:
    items = [data[i % len(data)] for i in range(count)]
    return [(item["source"].numpy(), item["driving"].numpy()) for item in items]


@pytest.fixture
def constant_video(tmp_path) -> Path:
    """Every frame the same asymmetric photo: whatever frames are drawn, source and driving match."""
    write_frames(tmp_path / "train" / "still", [asymmetric_frame()] * 4)
    return tmp_path


@pytest.fixture
def counting_video(tmp_path) -> Path:
    """Frame i is flat grey 40 * i, so a frame's value tells which frame it is."""
    write_frames(tmp_path / "train" / "count", [np.full((32, 32, 3), 40 * i, np.uint8) for i in range(6)])
    return tmp_path


def test_items_have_model_shapes_and_ranges(tmp_path):
    rng = np.random.default_rng(0)
    write_frames(tmp_path / "train" / "a", [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(5)])
    imageio.mimsave(tmp_path / "train" / "b.gif", [rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)] * 3)
    (tmp_path / "train" / "notes.txt").write_text("not a video")
    data = dataset(tmp_path, num_repeats=3)
    assert len(data) == 6 and [v.name for v in data.videos] == ["a", "b.gif"]
    names = [data[i]["name"] for i in range(len(data))]
    assert names.count("a") == 3 and names.count("b.gif") == 3
    for index in range(2):
        item = data[index]
        for key in ("source", "driving"):
            assert item[key].shape == (3, *SIZE) and item[key].dtype.is_floating_point
            assert 0 <= item[key].min() and item[key].max() <= 1


def test_source_comes_before_driving_without_time_flip(counting_video):
    for source, driving in pairs(dataset(counting_video)):
        assert source.mean() <= driving.mean()


def test_time_flip_swaps_source_and_driving(counting_video):
    data = dataset(counting_video, {"flip_param": {"time_flip": True}})
    orders = {np.sign(round(float(s.mean() - d.mean()), 3)) for s, d in pairs(data)}
    assert {-1.0, 1.0} <= orders


def test_horizontal_flip_mirrors_both_frames(constant_video):
    frame = VideoDataset(constant_video, size=SIZE)[0]["source"].numpy()
    mirrored = frame[:, :, ::-1]
    assert not np.allclose(frame, mirrored)
    seen = []
    for source, driving in pairs(dataset(constant_video, {"flip_param": {"horizontal_flip": True}})):
        assert np.array_equal(source, driving)
        seen.append("mirrored" if np.allclose(source, mirrored) else "plain" if np.allclose(source, frame) else "?")
    assert set(seen) == {"mirrored", "plain"}


def test_jitter_is_the_same_for_both_frames_and_stays_in_range(constant_video):
    plain = VideoDataset(constant_video, size=SIZE)[0]["source"].numpy()
    jitter = {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.3}
    changed = 0
    for source, driving in pairs(dataset(constant_video, {"jitter_param": jitter}), 12):
        assert np.array_equal(source, driving)
        assert source.min() >= 0 and source.max() <= 1
        changed += not np.allclose(source, plain, atol=1e-3)
    assert changed == 12


def test_official_config_augmentations(constant_video):
    data = VideoDataset.from_config(load_config(TINY_FOMM), constant_video, seed=0)
    assert data.size == (64, 64) and data.num_repeats == 1
    assert data.augment.time_flip and data.augment.horizontal_flip and data.augment.jitter["hue"] == 0.1


def test_colour_adjustments():
    red = np.zeros((2, 2, 3), np.float32)
    red[..., 0] = 1
    assert np.allclose(adjust_hue(red, 1 / 3), [0, 1, 0], atol=1e-5)  # 120 degrees: red becomes green
    grey = adjust_saturation(red, 0.0)
    assert np.allclose(grey, 0.299, atol=1e-6)
    image = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    assert np.allclose(adjust_contrast(image, 0.0), (image @ [0.299, 0.587, 0.114]).mean(), atol=1e-5)
    draws = [ColorJitter.sample({"brightness": 0.1, "hue": 0.1}, np.random.default_rng(i)) for i in range(50)]
    assert all(0.9 <= d.brightness <= 1.1 and -0.1 <= d.hue <= 0.1 and d.contrast == 1 for d in draws)
    assert len({d.order for d in draws}) > 1


def test_same_seed_same_pairs(tmp_path):
    rng = np.random.default_rng(1)
    write_frames(tmp_path / "train" / "v", [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(8)])
    augmentation = {"flip_param": {"horizontal_flip": True, "time_flip": True}, "jitter_param": {"hue": 0.1}}
    first, second = pairs(dataset(tmp_path, augmentation), 6), pairs(dataset(tmp_path, augmentation), 6)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(first, second))


def test_load_video_reads_every_frame(counting_video):
    video = load_video(counting_video / "train" / "count", (16, 16))
    assert video.shape == (6, 16, 16, 3) and video.dtype == np.float32
    assert np.allclose(video[:, 0, 0, 0], np.arange(6) * 40 / 255, atol=1e-6)


def test_missing_or_empty_data_folder_says_how_to_fix(tmp_path):
    with pytest.raises(DatasetError) as missing:
        VideoDataset(tmp_path / "nowhere")
    assert isinstance(missing.value, UserError)
    assert str(tmp_path / "nowhere" / "train") in str(missing.value) and "puppet.py make-data" in str(missing.value)
    (tmp_path / "data" / "test" / "empty").mkdir(parents=True)
    with pytest.raises(DatasetError, match="has no videos.*make-data"):
        VideoDataset(tmp_path / "data", "test")


def test_blue_screen_frames_carry_a_matte_that_follows_the_flips(tmp_path):
    """A red square on blue screen drifting right: each item's matte is the square where the returned
    (possibly mirrored or time-flipped) driving frame has it, and non-screen clips are marked unkeyed."""
    clip = tmp_path / "train" / "screen"
    clip.mkdir(parents=True)
    for index in range(6):
        frame = np.zeros((32, 32, 3), np.uint8)
        frame[..., 2] = 230
        frame[8:20, 2 + index * 2:14 + index * 2] = [200, 60, 40]
        imageio.imwrite(clip / f"frame_{index:05d}.png", frame)
    plain = tmp_path / "train" / "plain"
    plain.mkdir()
    for index in range(6):
        imageio.imwrite(plain / f"frame_{index:05d}.png", np.full((32, 32, 3), 120, np.uint8))
    augment = {"flip_param": {"horizontal_flip": True, "time_flip": True},
               "jitter_param": {"brightness": 0.3, "hue": 0.3}}  # enough to move the screen out of the key
    dataset = VideoDataset(tmp_path, "train", (32, 32), augment, num_repeats=20, seed=0, extras=Extras(mattes=True))
    seen = set()
    for index in range(len(dataset)):
        item = dataset[index]
        if item["name"] == "plain":
            assert not item["has_matte"]
            continue
        assert item["has_matte"]
        matte = item["matte"][0].numpy() > 0.5
        rows, columns = np.nonzero(matte)
        # exactly the 12x12 square, at one of the six positions or their mirror images
        assert matte.sum() == 144 and (rows.min(), rows.max()) == (8, 19)
        left = int(columns.min())
        assert left in {2 + 2 * i for i in range(6)} | {32 - 14 - 2 * i for i in range(6)}
        # and where the returned (flipped, recoloured) driving frame has its square: flat inside, unlike the screen
        driving = item["driving"].permute(1, 2, 0).numpy()
        square, screen = driving[8:20, left:left + 12], driving[24:30].reshape(-1, 3).mean(0)
        assert square.std((0, 1)).max() < 0.02 and np.abs(square.mean((0, 1)) - screen).max() > 0.1
        seen.add(left)
    assert len(seen) > 3 and any(left > 12 for left in seen)  # several places, mirrored ones among them


def test_matte_loss_is_the_cross_entropy_of_the_foreground():
    from motion.segmentation import Segments
    from training.trainer import matte_loss
    segmentation = torch.zeros(1, 3, 4, 4)
    segmentation[:, 0] = 0.25  # background
    segmentation[:, 1:] = 0.375
    matte = torch.ones(1, 1, 8, 8)
    loss = matte_loss(Segments(segmentation, torch.zeros(1, 2, 2), None), matte)
    assert float(loss) == pytest.approx(-np.log(0.75), rel=1e-5)


def test_dataset_keys_the_loader_does_not_read_are_named():
    """The official vox-256.yaml's root_dir, id_sampling and pairs_list are not used; train says so."""
    from conftest import CONFIGS, TEST_CONFIGS
    from motion.config import load_config
    assert VideoDataset.unused_keys(load_config(CONFIGS / "vox-256.yaml")) == ["id_sampling", "pairs_list", "root_dir"]
    assert VideoDataset.unused_keys(load_config(TEST_CONFIGS / "tiny-fomm.yaml")) == []


def test_masks_follow_their_frames_through_the_flips(counting_video):
    """Frame i's mask covers the first i rows, so an item's mask tells which frame (and which side) it
    belongs to: it must be the driving frame's, also after a time flip swapped the frames, and mirrored with it."""
    folder = counting_video / "train" / "count"
    masks = np.zeros((6, 32, 32), bool)
    masks[:, :, :4] = True  # the left edge: a mirrored mask has it on the right
    for i in range(6):
        masks[i, :i] = True
    save_masks(folder / MASK_FILE, masks)
    flips = {"flip_param": {"time_flip": True, "horizontal_flip": True}}
    data = VideoDataset(counting_video, "train", SIZE, flips, 1, seed=0, extras=Extras(masks=True))
    mirrorings, swaps = set(), set()
    for _ in range(40):
        item = data[0]
        source, frame = (round(float(item[key][0, 0, 0]) * 255 / 40) for key in ("source", "driving"))
        mask = item["mask"][0].numpy().astype(bool)
        mirrored = bool(mask[-1, -1])
        np.testing.assert_array_equal(mask, masks[frame][:, ::-1] if mirrored else masks[frame])
        mirrorings.add(mirrored)
        swaps.add(source > frame)
    assert mirrorings == swaps == {False, True}
    assert "mask" not in dataset(counting_video)[0]


def test_anchors_follow_their_frames_through_the_flips(counting_video):
    """Frame i's lips sit at x = 10 + i, its image-left lid at x = 3 and right lid at x = 25 (rows 1 and 2):
    an item's anchors must be those of its own frames, in the keypoints' [-1, 1] frame, mirrored with them
    (x -> 31 - x) and with the eyes swapped, so the image-left lid stays the left one; a frame without a
    face has NaN anchors."""
    folder = counting_video / "train" / "count"
    marks = np.zeros((6, 68, 2), np.float32)
    for i in range(6):
        marks[i, [62, 66]] = [[10 + i, 20], [10 + i, 24]]
        marks[i, [37, 38]] = [[3, 1], [3, 1]]
        marks[i, [43, 44]] = [[25, 2], [25, 2]]
    marks[5] = np.nan
    save_landmarks(folder / LANDMARK_FILE, list(marks), SIZE)
    flips = {"flip_param": {"time_flip": True, "horizontal_flip": True}}
    data = VideoDataset(counting_video, "train", SIZE, flips, 1, seed=0, extras=Extras(anchors=True))
    seen = set()
    for _ in range(60):
        item = data[0]
        frames = [round(float(item[key][0, 0, 0]) * 255 / 40) for key in ("source", "driving")]
        anchors = item["anchors"].numpy()
        for got, frame in zip(anchors, frames):
            if frame == 5:
                assert np.isnan(got).all()
                continue
            mirrored = got[2, 0] > -0.7  # the image-left lid: x = 3 -> -0.81, mirrored from the right lid x = 6 -> -0.61
            lips, left, right = (10 + frame, 3, 25) if not mirrored else (31 - 10 - frame, 31 - 25, 31 - 3)
            rows = (1, 2) if not mirrored else (2, 1)
            expected = np.float32([[lips, 20], [lips, 24], [left, rows[0]], [right, rows[1]]]) / 31 * 2 - 1
            np.testing.assert_allclose(got, expected, atol=1e-5)
            seen.add(mirrored)
    assert seen == {False, True}


def test_landmarks_of_another_frame_size_are_refused(counting_video):
    save_landmarks(counting_video / "train" / "count" / LANDMARK_FILE, [np.zeros((68, 2))] * 6, (64, 64))
    data = VideoDataset(counting_video, "train", SIZE, None, 1, seed=0, extras=Extras(anchors=True))
    with pytest.raises(DatasetError, match="64x64 frames, the config's are 32x32"):
        data[0]


def test_expression_weight_needs_masks(counting_video):
    with pytest.raises(DatasetError, match="scripts/face_masks.py"):
        VideoDataset(counting_video, "train", SIZE, None, 1, seed=0, extras=Extras(masks=True))
