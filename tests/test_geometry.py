"""The pure math against hand-computed values and finite differences."""
import math

import numpy as np
import pytest
import torch

from motion.geometry import (
    blend_motions,
    compose_through_reference,
    coordinate_grid,
    gaussian_heatmaps,
    heatmap_weighted_sum,
    local_affine_motions,
    movement_scale,
    relative_jacobians,
    relative_keypoints,
    resize_flow,
    soft_argmax,
    spatial_softmax,
    tps_jacobian,
    tps_warp_points,
    warp,
)


def test_coordinate_grid_values_and_order():
    grid = coordinate_grid(3, 5)
    assert grid.shape == (3, 5, 2)
    assert torch.allclose(grid[0, :, 0], torch.tensor([-1, -0.5, 0, 0.5, 1]))
    assert torch.allclose(grid[:, 0, 1], torch.tensor([-1.0, 0, 1]))
    assert grid[2, 1].tolist() == [-0.5, 1.0]  # (x, y) of row 2, column 1


def test_soft_argmax_of_point_masses():
    heat = torch.zeros(1, 2, 5, 5)
    heat[0, 0, 1, 3] = 1  # row 1, column 3 -> x = 0.5, y = -0.5
    heat[0, 1, 0, 0] = 0.5
    heat[0, 1, 4, 4] = 0.5  # midway between the corners -> (0, 0)
    assert soft_argmax(heat)[0].tolist() == [[0.5, -0.5], [0.0, 0.0]]


def test_spatial_softmax_normalises_and_temperature_sharpens():
    logits = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]])
    soft = spatial_softmax(logits, 1.0)
    sharp = spatial_softmax(logits, 0.1)
    assert torch.allclose(soft.sum(dim=(-2, -1)), torch.ones(1, 1))
    assert soft[0, 0, 0, 1] == pytest.approx(math.e / (math.e + 3))
    assert sharp[0, 0, 0, 1] == pytest.approx(math.exp(10) / (math.exp(10) + 3))


def test_heatmap_weighted_sum_reads_the_map_under_a_point_mass():
    heat = torch.zeros(1, 1, 4, 4)
    heat[0, 0, 2, 1] = 1
    maps = torch.arange(4 * 16, dtype=torch.float32).view(1, 1, 4, 4, 4)
    assert heatmap_weighted_sum(heat, maps)[0, 0].tolist() == [9.0, 25.0, 41.0, 57.0]


def test_gaussian_heatmap_peak_and_decay():
    heat = gaussian_heatmaps(torch.tensor([[[0.0, 0.0]]]), 5, 5, variance=0.01)
    assert heat[0, 0, 2, 2] == pytest.approx(1.0)
    # one grid step (0.5) away: exp(-0.5 * 0.25 / 0.01)
    assert heat[0, 0, 2, 3] == pytest.approx(math.exp(-12.5))


def test_compose_through_reference():
    jac_s = torch.tensor([[[[2.0, 0.0], [0.0, 1.0]]]])
    jac_d = torch.tensor([[[[1.0, 0.0], [0.0, 4.0]]]])
    assert compose_through_reference(jac_s, jac_d)[0, 0].tolist() == [[2.0, 0.0], [0.0, 0.25]]


def test_local_affine_motions_hand_values():
    kp_s = torch.tensor([[[0.5, 0.0]]])
    kp_d = torch.tensor([[[0.0, 0.5]]])
    jac_s = 2 * torch.eye(2).view(1, 1, 2, 2)
    jac_d = torch.eye(2).view(1, 1, 2, 2)
    motions = local_affine_motions(kp_s, kp_d, jac_s, jac_d, 3, 3)
    assert motions.shape == (1, 2, 3, 3, 2)
    assert torch.equal(motions[0, 0], coordinate_grid(3, 3))  # background: identity
    # pixel z = (x=1, y=-1): 2 * (z - p_d) + p_s = 2 * (1, -1.5) + (0.5, 0) = (2.5, -3)
    assert motions[0, 1, 0, 2].tolist() == [2.5, -3.0]
    # without Jacobians: pure translation z - p_d + p_s
    assert motions.new_tensor([1.5, -1.5]).tolist() == local_affine_motions(kp_s, kp_d, None, None, 3, 3)[0, 1, 0, 2].tolist()


def test_blend_motions_selects_with_one_hot_masks():
    motions = torch.stack([torch.zeros(2, 2, 2), torch.ones(2, 2, 2)]).unsqueeze(0)
    masks = torch.tensor([[[[1.0, 0.0], [0.25, 0.0]], [[0.0, 1.0], [0.75, 1.0]]]])
    flow = blend_motions(motions, masks)
    assert flow[0, :, :, 0].tolist() == [[0.0, 1.0], [0.75, 1.0]]


def test_relative_motion_hand_values():
    kp_src = torch.tensor([[[0.1, 0.2]]])
    kp_drv = torch.tensor([[[0.5, 0.5]]])
    kp_init = torch.tensor([[[0.3, 0.6]]])
    assert torch.allclose(relative_keypoints(kp_src, kp_drv, kp_init), torch.tensor([[[0.3, 0.1]]]))
    assert torch.allclose(relative_keypoints(kp_src, kp_drv, kp_init, scale=2), torch.tensor([[[0.5, 0.0]]]), atol=1e-6)
    j_src = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    j_init = torch.tensor([[[[2.0, 0.0], [0.0, 2.0]]]])
    j_drv = torch.tensor([[[[4.0, 0.0], [0.0, 2.0]]]])
    # J_drv J_init^-1 = diag(2, 1); times J_src
    assert relative_jacobians(j_src, j_drv, j_init)[0, 0].tolist() == [[2.0, 4.0], [3.0, 4.0]]
    assert torch.allclose(relative_jacobians(j_src, j_init, j_init), j_src)


def test_movement_scale_is_sqrt_of_hull_area_ratio():
    square = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.5, 0.5]]])
    assert movement_scale(square * 2, square) == pytest.approx(2.0)
    assert movement_scale(square, square * 3) == pytest.approx(1 / 3)


def test_tps_with_zero_parameters_is_identity():
    points = torch.rand(2, 7, 2) * 2 - 1
    theta = torch.eye(2, 3).repeat(2, 1, 1)
    controls = coordinate_grid(3, 3).view(-1, 2)
    assert torch.allclose(tps_warp_points(points, theta, controls, torch.zeros(2, 9)), points)
    assert torch.allclose(tps_jacobian(points, theta, controls, torch.zeros(2, 9)), torch.eye(2).expand(2, 7, 2, 2))


def test_tps_jacobian_matches_finite_differences():
    gen = torch.Generator().manual_seed(0)
    points = (torch.rand(1, 6, 2, generator=gen, dtype=torch.float64) * 2 - 1)
    theta = torch.eye(2, 3, dtype=torch.float64).unsqueeze(0) + 0.1 * torch.randn(1, 2, 3, generator=gen, dtype=torch.float64)
    controls = coordinate_grid(3, 3, torch.float64).view(-1, 2)
    params = 0.3 * torch.randn(1, 9, generator=gen, dtype=torch.float64)
    analytic = tps_jacobian(points, theta, controls, params)
    eps = 1e-6
    for axis in range(2):
        step = torch.zeros_like(points)
        step[..., axis] = eps
        numeric = (tps_warp_points(points + step, theta, controls, params)
                   - tps_warp_points(points - step, theta, controls, params)) / (2 * eps)
        assert torch.allclose(analytic[..., :, axis], numeric, atol=1e-6)


def test_warp_by_identity_flow_at_align_corners_false_samples_pixel_centres_of_corners_grid():
    image = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    # A flow pointing every pixel at the centre of pixel (row 1, col 2) copies that value everywhere.
    centre = torch.tensor([(2 + 0.5) / 4 * 2 - 1, (1 + 0.5) / 4 * 2 - 1])
    flow = centre.view(1, 1, 1, 2).expand(1, 4, 4, 2)
    assert torch.allclose(warp(image, flow), torch.full((1, 1, 4, 4), 6.0))


def test_resize_flow_is_bilinear_and_noop_at_same_size():
    flow = torch.rand(1, 4, 4, 2)
    assert resize_flow(flow, 4, 4) is flow
    constant = torch.full((1, 2, 2, 2), 0.3)
    assert torch.allclose(resize_flow(constant, 8, 8), torch.full((1, 8, 8, 2), 0.3))


def test_hull_area_ignores_interior_points():
    from motion.geometry import hull_area
    pts = np.array([[0, 0], [2, 0], [2, 1], [0, 1], [1, 0.5]], dtype=float)
    assert hull_area(pts) == pytest.approx(2.0)
