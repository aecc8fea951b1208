"""make-face-data's geometry: the thin-plate spline interpolates its points, keeps the pinned border, and
carries a photo's landmarks by a trajectory's displacement turned into the photo's frame; at a photo's
own size the whole photo moves, frame 0 is the photo and the size is kept."""
from __future__ import annotations

from types import SimpleNamespace

import imageio.v2 as imageio
import numpy as np

import training.landmark_clips as landmark_clips
from core.media import frame_files, load_picture
from training.landmark_clips import (
    border_points,
    folds,
    make_face_data,
    moved_landmarks,
    parted,
    smooth,
    spline_maps,
    tps_apply,
    tps_fit,
    warp_along,
)
from training.options import MakeFaceDataOptions


def test_tps_interpolates_and_reproduces_affine_maps():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (12, 2))
    dst = src + rng.normal(0, 3, (12, 2))
    np.testing.assert_allclose(tps_apply(tps_fit(src, dst, regularisation=0), src), dst, atol=1e-6)
    # an affine map is a TPS with zero bending: every point, not only the fitted ones, follows it
    matrix, offset = np.array([[1.1, 0.2], [-0.1, 0.9]]), np.array([5.0, -3.0])
    spline = tps_fit(src, src @ matrix.T + offset, regularisation=0)
    elsewhere = rng.uniform(0, 100, (20, 2))
    np.testing.assert_allclose(tps_apply(spline, elsewhere), elsewhere @ matrix.T + offset, atol=1e-6)


def test_border_points_cover_the_edges_once():
    points = border_points(10, 10, spacing=4.5)  # corners and edge midpoints of a 10-pixel square
    assert len(points) == 8
    assert {tuple(p) for p in points} >= {(0, 0), (9, 9), (0, 4.5), (4.5, 9)}


def test_border_points_follow_a_rectangle_by_length():
    points = border_points(21, 41, spacing=10)  # 5 points along the long sides, 3 along the short ones
    assert len(points) == 2 * 5 + 2 * 3 - 4
    assert points[:, 0].max() == 40 and points[:, 1].max() == 20
    assert {tuple(p) for p in points} >= {(0, 0), (40, 0), (0, 20), (40, 20), (20, 0), (0, 10), (40, 10)}


def test_moved_landmarks_turn_and_scale_the_displacement_into_the_photo():
    trajectory = np.zeros((2, 3, 2))
    trajectory[0] = [[0, 0], [10, 0], [0, 10]]
    trajectory[1] = trajectory[0] + [1, 0]  # the driver moves right by 1
    photo = np.array([[50, 50], [50, 70], [30, 50]], dtype=float)  # the same face turned 90 degrees, twice as big
    moved = moved_landmarks(photo, trajectory)
    np.testing.assert_allclose(moved[0], photo, atol=1e-4)
    np.testing.assert_allclose(moved[1], photo + [0, 2], atol=1e-4)  # right, turned 90 degrees and doubled: down 2


def test_warp_along_keeps_the_border_and_moves_the_inside():
    image = np.zeros((32, 32, 3), np.uint8)
    image[12:20, 12:20] = 255
    marks = np.array([[12, 12], [19, 12], [12, 19], [19, 19]], dtype=float)
    still, moved = warp_along(image, marks, np.stack([marks, marks + [3, 0]]))
    np.testing.assert_array_equal(still, image)
    ys, xs = np.nonzero(moved[..., 0] > 128)
    assert abs(xs.mean() - (15.5 + 3)) < 0.6 and abs(ys.mean() - 15.5) < 0.6
    assert moved[0].max() == 0 and moved[-1].max() == 0 and moved[:, 0].max() == 0  # the pinned border stays


def test_parted_keeps_lips_from_passing_through_each_other():
    marks = np.random.default_rng(2).uniform(0, 100, (68, 2))
    marks[[48, 54]] = [[40, 80], [80, 80]]  # mouth corners: the face is upright, its down is +y
    marks[[61, 62, 63, 67, 66, 65]] = [[55, 80], [60, 80], [65, 80]] * 2  # closed lips
    marks[[36, 39, 42, 45]] = [[20, 40], [35, 40], [60, 40], [75, 40]]
    marks[[37, 38, 43, 44]] -= [0, 100]  # eyelids wide apart: the eyes play no part here
    upper, lower = [49, 50, 51, 52, 53, 61, 62, 63], [55, 56, 57, 58, 59, 65, 66, 67]
    closing, opening = marks.copy(), marks.copy()
    closing[upper] += [0, 4]  # the driver's upper lip comes down 4 pixels onto a closed mouth
    opening[lower] += [0, 5]
    out = parted(marks, np.stack([marks, closing, opening]))
    np.testing.assert_array_equal(out[0], marks)
    np.testing.assert_allclose(out[1, upper], marks[upper] + [0, 2])  # 2 back up: the lips just meet
    np.testing.assert_allclose(out[1, lower], marks[lower] + [0, 2])
    np.testing.assert_array_equal(out[2], opening)


def test_folds_tells_landmarks_passing_through_each_other():
    marks = np.array([[15.0, 20], [35, 20], [25, 25], [25, 35], [15, 40], [35, 40]])  # a lip above a lip
    nudged, crossed = marks.copy(), marks.copy()
    nudged[[2, 3]] += [[0, 3], [0, -3]]  # the lips close a little
    crossed[[2, 3]] = marks[[3, 2]]  # the upper lip goes below the lower one
    assert not folds(spline_maps((60, 50), marks, np.stack([marks, nudged]), step=2))
    assert folds(spline_maps((60, 50), marks, np.stack([marks, crossed]), step=2))
    mirrored = np.stack(np.meshgrid(np.arange(5.0)[::-1], np.arange(4.0)), -1)[None]
    assert folds(mirrored)


def test_smooth_averages_over_time_and_keeps_the_length():
    track = np.array([0.0, 0.0, 3.0, 0.0, 0.0])[:, None, None]
    np.testing.assert_allclose(smooth(track)[:, 0, 0], [0, 1, 1, 1, 0])


def portrait(height: int = 150, width: int = 110) -> tuple[np.ndarray, np.ndarray]:
    """A non-square photo (a smooth ramp, a bright square at the face centre (55, 70)) and 68 landmarks
    spread over its face."""
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack([xs * 2, ys, np.full_like(xs, 60)], -1).astype(np.uint8)
    image[66:75, 51:60] = 255
    marks = np.random.default_rng(1).uniform([30, 40], [80, 100], (68, 2))
    return image, marks


def test_zero_displacement_gives_the_photo_back_at_its_size():
    image, marks = portrait()
    trajectory = np.repeat(marks[None] * 0.7 + 5, 3, 0)  # another face's size and place, standing still
    for frame in warp_along(image, marks, moved_landmarks(marks, trajectory), step=4):
        np.testing.assert_array_equal(frame, image)


def test_a_translated_trajectory_moves_the_face_centre_by_the_similarity_and_keeps_the_border():
    image, marks = portrait()
    trajectory = np.stack([marks / 2, marks / 2 + [3, -2]])  # a face half the photo's size moves by (3, -2)
    _, moved = warp_along(image, marks, moved_landmarks(marks, trajectory), step=4)
    ys, xs = np.nonzero(moved[..., 2] == 255)  # the bright square (blue 255 nowhere else)
    assert abs(xs.mean() - (55 + 6)) < 0.5 and abs(ys.mean() - (70 - 4)) < 0.5  # (3, -2) scaled by 2
    edges = [np.s_[0], np.s_[-1], np.s_[:, 0], np.s_[:, -1]]
    assert max(np.abs(moved[e].astype(int) - image[e]).max() for e in edges) <= 1
    assert moved.shape == image.shape


class FakeLandmarks:
    """dlib's detector and predictor on one known face of the photo; trajectory frames' grey level t
    moves their face right by t pixels."""

    def __init__(self, marks: np.ndarray):
        self.marks = marks
        self.detector = lambda photo, upsample: [SimpleNamespace(width=lambda: 70, height=lambda: 80)]
        points = [SimpleNamespace(x=x, y=y) for x, y in marks]
        self.predictor = lambda photo, rect: SimpleNamespace(parts=lambda: points)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.marks / 2 + [float(image.mean()), 0]


def test_own_size_clips_are_whole_photos_named_after_photo_and_trajectory(tmp_path, monkeypatch):
    image, marks = portrait()
    marks = marks.round()
    imageio.imwrite(tmp_path / "anna.png", image)
    clip = tmp_path / "real" / "test" / "talk"  # a held-out clip of 4 frames; no training clip to take
    clip.mkdir(parents=True)
    (tmp_path / "real" / "train").mkdir()
    for t in range(4):
        imageio.imwrite(clip / f"frame_{t:05d}.png", np.full((16, 16, 3), t, np.uint8))
    monkeypatch.setattr(landmark_clips, "LandmarkDetector", lambda: FakeLandmarks(marks))
    options = MakeFaceDataOptions(photos=(str(tmp_path / "anna.png"),), trajectories=str(tmp_path / "real"),
                                  output=str(tmp_path / "full"), frames=4, per_face=1, split="test", own_size=True)
    count = make_face_data(options)
    files = frame_files(tmp_path / "full" / "anna-0_talk")
    assert count == 1 and len(files) == 4
    frames = [load_picture(f) for f in files]
    np.testing.assert_array_equal(frames[0], image)
    assert all(f.shape == image.shape for f in frames) and not np.array_equal(frames[-1], image)
