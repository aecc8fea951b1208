"""make-face-data's geometry: the thin-plate spline interpolates its points, keeps the pinned border, and
carries a photo's landmarks by a trajectory's displacement turned into the photo's frame."""
from __future__ import annotations

import numpy as np

from training.landmark_clips import border_points, moved_landmarks, smooth, tps_apply, tps_fit, warp_along


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
    points = border_points(10, per_side=3)  # corners and edge midpoints of a 10-pixel square
    assert len(points) == 8
    assert {tuple(p) for p in points} >= {(0, 0), (9, 9), (0, 4.5), (4.5, 9)}


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


def test_smooth_averages_over_time_and_keeps_the_length():
    track = np.array([0.0, 0.0, 3.0, 0.0, 0.0])[:, None, None]
    np.testing.assert_allclose(smooth(track)[:, 0, 0], [0, 1, 1, 1, 0])
