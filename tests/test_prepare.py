"""prepare-data: chunk cutting by hand-made box sequences, and the whole command on a fixture clip whose
'face' is a white square a stand-in detector finds from the pixels."""
from __future__ import annotations

import json

import cv2
import imageio.v2 as imageio
import numpy as np
import pytest

from core.faces import Box, face_crop, union_box
from motion.errors import UserError
from training.prepare import ChunkRules, assign_splits, cut_chunks, prepare_data

RULES = ChunkRules(min_frames=3, max_frames=6, drift=0.25, margin=0.0, test_fraction=0.25)


def test_union_box_and_face_crop_by_hand():
    union = union_box([Box(10, 10, 4), Box(14, 10, 4)])  # x 8..16, y 8..12
    assert (union.cx, union.cy, union.side) == (12, 10, 8)
    # widened by 50 % a side (side 20), then pushed inside a 30x40 (h x w) frame from the top-left corner
    assert face_crop(Box(2, 3, 10), 0.5, (30, 40)) == Box(10, 10, 20)
    # bigger than the frame: shrunk to its short side and centred
    assert face_crop(Box(20, 15, 40), 0.3, (30, 40)) == Box(20, 15, 30)


def test_cut_chunks_at_lost_faces_jumps_and_max_length():
    still = Box(50, 50, 20)
    boxes = [still] * 4 + [None] + [still] * 2 + [None] + [still] * 3 + [Box(90, 50, 20)] * 3 + [still] * 8
    # 0-3 (4 frames); 5-6 too short; 8-10, then a jump of 40 px (union 60 > 1.25 * mean side) at 11; 11-13;
    # 14.. jumps back, 8 frames cut at max_frames 6: 14-19 and 20-21 (too short)
    assert cut_chunks(boxes, RULES) == [(0, 4), (8, 11), (11, 14), (14, 20)]


def test_slow_drift_stays_in_one_chunk_until_the_union_outgrows_it():
    boxes = [Box(50 + i, 50, 20) for i in range(6)]  # union side 20 + i after i + 1 frames
    assert cut_chunks(boxes, ChunkRules(min_frames=2, max_frames=10, drift=0.125)) == [(0, 3), (3, 6)]


def test_assign_splits_holds_out_the_end_and_whole_videos():
    ranges = [(0, 30), (30, 60), (70, 100)]
    assert assign_splits(ranges, 100, 0.3, False) == ["train", "train", "test"]
    assert assign_splits(ranges, 100, 0.3, True) == ["test"] * 3


class SquareDetector:
    """Finds the white square drawn into fixture frames: its bounding box, from the pixels."""

    def detect(self, frame: np.ndarray, near: Box | None = None) -> Box | None:
        ys, xs = np.nonzero(frame[..., 0] > 200)
        if len(xs) == 0:
            return None
        return union_box([Box((xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2,
                              float(max(xs.max() - xs.min(), ys.max() - ys.min()) + 1))])


def _frame(x: int | None, y: int = 40) -> np.ndarray:
    rng = np.random.default_rng(x or 0)
    frame = (rng.random((120, 160, 3)) * 120).astype(np.uint8)  # textured, darker than the square
    if x is not None:
        frame[y:y + 20, x:x + 20] = 255
    return frame


@pytest.fixture()
def fixture_clip(tmp_path):
    # 8 frames drifting right 2 px a frame, a jump far right held 16 frames, 2 without a face, 3 more with one
    xs = [30 + 2 * i for i in range(8)] + [110] * 16 + [None, None] + [110] * 3
    path = tmp_path / "talk.mp4"
    imageio.mimsave(path, [_frame(x) for x in xs], fps=10, macro_block_size=1)
    return path, xs


RUN_RULES = ChunkRules(min_frames=4, max_frames=10, drift=0.75, margin=0.5, test_fraction=0.4)


def test_prepare_data_writes_fixed_box_chunks_and_holds_out_the_end(fixture_clip, tmp_path):
    path, xs = fixture_clip
    out = tmp_path / "data"
    chunks = prepare_data([str(path)], out, size=32, rules=RUN_RULES, detector=SquareDetector())
    # cut at the jump (frame 8), at max_frames (18), at the lost face (24); the last 3 frames are too few;
    # 29 frames * (1 - 0.4) = 17.4: the chunk starting at 18 is held out
    assert [(c.start, c.end, c.split) for c in chunks] == [(0, 8, "train"), (8, 18, "train"), (18, 24, "test")]
    # chunk 0: union of the squares x 30..63, y 40..59 -> centre (47, 50), side 34; widened 50 % a side: 68
    assert chunks[0].box == Box(47.0, 50.0, 68.0)
    # every frame of the chunk is cut with that one box (rows 16..83, columns 13..80 of the decoded frame)
    decoded = imageio.mimread(path)
    frames = sorted((out / "train" / "talk_000").glob("*.png"))
    assert len(frames) == 8
    for index, file in enumerate(frames):
        expected = cv2.resize(np.asarray(decoded[index])[16:84, 13:81], (32, 32), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(imageio.imread(file), expected)
    assert len(list((out / "test" / "talk_002").glob("*.png"))) == 6
    manifest = json.loads((out / "chunks.json").read_text())
    assert [c["frames"] for c in manifest["chunks"]] == [8, 10, 6]


def test_prepare_data_whole_video_test_and_no_silent_overwrite(fixture_clip, tmp_path):
    path, _ = fixture_clip
    rules = RUN_RULES
    out = tmp_path / "data"
    chunks = prepare_data([str(path)], out, size=32, rules=rules, test_videos=["talk"], detector=SquareDetector())
    assert {c.split for c in chunks} == {"test"}
    with pytest.raises(UserError, match="--overwrite"):
        prepare_data([str(path)], out, size=32, rules=rules, detector=SquareDetector())
    with pytest.raises(UserError, match="not among the inputs"):
        prepare_data([str(path)], tmp_path / "other", rules=rules, test_videos=["nope"], detector=SquareDetector())


def test_dotted_names_make_clip_folders_and_twins_are_refused(fixture_clip, tmp_path):
    path, _ = fixture_clip
    dotted = tmp_path / "talk.part1.mp4"
    dotted.write_bytes(path.read_bytes())
    chunks = prepare_data([str(dotted)], tmp_path / "d", size=32, rules=RUN_RULES, detector=SquareDetector())
    assert {c.video for c in chunks} == {"talk_part1"} and (tmp_path / "d" / "train" / "talk_part1_000").is_dir()
    other = tmp_path / "b"
    other.mkdir()
    (other / "talk.mp4").write_bytes(path.read_bytes())
    with pytest.raises(UserError, match="several inputs are named talk"):
        prepare_data([str(path), str(other / "talk.mp4")], tmp_path / "e", rules=RUN_RULES, detector=SquareDetector())


def test_prepare_data_command_bad_input_is_one_line(tmp_path, capsys):
    from puppet import main
    assert main(["prepare-data", str(tmp_path / "missing.mp4"), "--output", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as refused:  # out of range: refused while parsing
        main(["prepare-data", str(tmp_path), "--output", str(tmp_path / "d"), "--min-frames", "1"])
    assert refused.value.code == 2 and "--min-frames: 1 is too small" in capsys.readouterr().err
