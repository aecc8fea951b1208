"""Landmark-anchored keypoints (training/anchors.py) on hand-made points with known answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from training.anchors import anchor_loss, anchor_points, flip_anchors, nearest_keypoints, to_keypoint_space


def landmarks() -> np.ndarray:
    marks = np.zeros((68, 2), np.float32)
    marks[62], marks[66] = (60, 90), (60, 100)  # inner lip middles
    marks[37], marks[38] = (30, 40), (40, 42)  # image-left upper lid
    marks[43], marks[44] = (80, 44), (90, 40)  # image-right upper lid
    return marks


def test_anchor_points_average_their_landmarks():
    np.testing.assert_allclose(anchor_points(landmarks()), [[60, 90], [60, 100], [35, 41], [85, 42]])
    assert np.isnan(anchor_points(None)).all() and anchor_points(None).shape == (4, 2)


def test_a_horizontal_flip_mirrors_x_and_swaps_the_eyes():
    flipped = flip_anchors(anchor_points(landmarks()), width=128)
    np.testing.assert_allclose(flipped, [[67, 90], [67, 100], [127 - 85, 42], [127 - 35, 41]])
    # the image-left lid of the flipped frame is again left of the image-right one, and flipping twice is nothing
    assert flipped[2, 0] < flipped[3, 0]
    np.testing.assert_allclose(flip_anchors(flipped, 128), anchor_points(landmarks()))


def test_pixel_centres_map_corner_to_corner_onto_minus_one_to_one():
    points = np.float32([[0, 0], [127, 63], [63.5, 31.5]])
    np.testing.assert_allclose(to_keypoint_space(points, (64, 128)), [[-1, -1], [1, 1], [0, 0]], atol=1e-6)


def test_anchor_loss_is_the_mean_l1_over_known_anchors_and_moves_only_chosen_keypoints():
    keypoints = torch.zeros(2, 5, 2, requires_grad=True)
    anchors = torch.tensor([[[0.1, 0.2], [0.0, -0.3]],
                            [[float("nan"), float("nan")], [0.5, 0.0]]])
    loss = anchor_loss(keypoints, anchors, (3, 1))
    # known: (0.1 + 0.2), (0.0 + 0.3), (0.5 + 0.0) -> mean 0.3667
    assert loss.item() == pytest.approx((0.3 + 0.3 + 0.5) / 3)
    loss.backward()
    moved = keypoints.grad.abs().sum(-1)
    assert set(torch.nonzero(moved[0]).flatten().tolist()) == {1, 3} and moved[:, [0, 2, 4]].sum() == 0
    assert moved[1, 3] == 0  # sample 1's first anchor is unknown


def test_anchor_loss_without_any_face_is_zero():
    keypoints = torch.randn(1, 4, 2, requires_grad=True)
    loss = anchor_loss(keypoints, torch.full((1, 2, 2), float("nan")), (0, 1))
    assert loss.item() == 0
    loss.backward()


def test_nearest_keypoints_is_the_best_one_to_one_assignment_not_the_greedy_one():
    # keypoint 0 is nearest to both anchors (0.1 and 0.2 away); greedy, anchor 0 takes it and anchor 1 is left
    # with keypoint 1 (0.6): 0.7 in all; the best gives anchor 0 keypoint 1 (0.3) and anchor 1 keypoint 0 (0.2)
    anchors = np.float32([[[0.0, 0.0], [0.3, 0.0]]])
    keypoints = np.float32([[[0.1, 0.0], [-0.3, 0.0], [0.3, 1.0]]])
    assert nearest_keypoints(keypoints, anchors) == (1, 0)
    # unknown anchors (NaN) of a frame do not count
    anchors2 = np.concatenate([anchors, np.full((1, 2, 2), np.nan, np.float32)])
    keypoints2 = np.concatenate([keypoints, np.zeros((1, 3, 2), np.float32)])
    assert nearest_keypoints(keypoints2, anchors2) == (1, 0)
