"""motion/geometry.py against naive per-pixel loops written from the papers' formulas and from the sampling
conventions the module docstring states (mutation testing, issue 12). Nothing here calls one geometry
function to check another; shapes are non-square and batches hold different items, so a swapped axis or a
dropped batch index shows."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from motion.geometry import (
    blend_motions,
    coordinate_grid,
    gaussian_heatmaps,
    heatmap_weighted_sum,
    local_affine_motions,
    movement_scale,
    relative_jacobians,
    relative_keypoints,
    resize_flow,
    resize_map,
    soft_argmax,
    spatial_softmax,
    tps_jacobian,
    tps_warp_points,
    warp,
)

# grid_sample without an explicit align_corners warns (and relies on a default that changed in torch 1.3): an error here
pytestmark = pytest.mark.filterwarnings("error:Default grid_sample")
# no data: only shape, dtype and device propagate, so a tensor made on the wrong device fails
META = torch.device("meta")


def rng_tensor(seed: int, *shape, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    g = np.random.default_rng(seed)
    return torch.from_numpy(g.uniform(low, high, size=shape))  # float64


def grid_x(j: int, w: int) -> float:
    """The official corner-to-corner grid: pixel j of w at -1 + 2 j / (w - 1)."""
    return -1 + 2 * j / (w - 1)


def naive_bilinear_sample(image: np.ndarray, x: float, y: float) -> np.ndarray:
    """grid_sample(align_corners=False, zeros padding) of a (c, h, w) image at normalised (x, y): pixel p's
    centre sits at (2 p + 1) / size - 1, so the continuous index is ((x + 1) size - 1) / 2."""
    c, h, w = image.shape
    px, py = ((x + 1) * w - 1) / 2, ((y + 1) * h - 1) / 2
    x0, y0 = math.floor(px), math.floor(py)
    out = np.zeros(c)
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * image[:, yy, xx]
    return out


def naive_resize(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of (c, h, w) with align_corners=False, as torch does it: source coordinate
    (i + 0.5) * in / out - 0.5, clamped at 0, neighbours clamped to the last pixel."""
    c, h, w = values.shape
    out = np.zeros((c, height, width))
    for i in range(height):
        sy = max((i + 0.5) * h / height - 0.5, 0.0)
        y0 = int(math.floor(sy))
        y1, ly = min(y0 + 1, h - 1), sy - y0
        for j in range(width):
            sx = max((j + 0.5) * w / width - 0.5, 0.0)
            x0 = int(math.floor(sx))
            x1, lx = min(x0 + 1, w - 1), sx - x0
            out[:, i, j] = ((1 - ly) * ((1 - lx) * values[:, y0, x0] + lx * values[:, y0, x1])
                            + ly * ((1 - lx) * values[:, y1, x0] + lx * values[:, y1, x1]))
    return out


def test_coordinate_grid_keeps_dtype_and_device_and_is_exact_in_float64():
    grid = coordinate_grid(4, 7, torch.float64)
    assert grid.dtype == torch.float64
    for i in range(4):
        for j in range(7):
            assert grid[i, j].tolist() == [grid_x(j, 7), grid_x(i, 4)]
    assert coordinate_grid(3, 5, device=META).device == META


def test_spatial_softmax_is_per_channel_with_temperature():
    logits = rng_tensor(0, 2, 3, 4, 5)
    out = spatial_softmax(logits, 0.3)
    for b in range(2):
        for k in range(3):
            e = np.exp(logits[b, k].numpy() / 0.3)
            np.testing.assert_allclose(out[b, k].numpy(), e / e.sum(), rtol=1e-12)


def test_spatial_softmax_and_soft_argmax_work_on_the_two_trailing_dimensions_of_any_rank():
    logits = rng_tensor(22, 2, 3, 5)  # (channels, h, w): no batch dimension
    heat = spatial_softmax(logits, 1.0)
    for k in range(2):
        e = np.exp(logits[k].numpy())
        np.testing.assert_allclose(heat[k].numpy(), e / e.sum(), rtol=1e-12)
    position = soft_argmax(heat)
    assert position.shape == (2, 2)
    for k in range(2):
        x = sum(heat[k, i, j].item() * grid_x(j, 5) for i in range(3) for j in range(5))
        y = sum(heat[k, i, j].item() * grid_x(i, 3) for i in range(3) for j in range(5))
        assert position[k].tolist() == pytest.approx([x, y], rel=1e-12, abs=1e-15)


def test_soft_argmax_is_the_expected_grid_position_in_the_input_dtype():
    heat = torch.softmax(rng_tensor(1, 2, 3, 4 * 6).mul(3), -1).view(2, 3, 4, 6)
    out = soft_argmax(heat)
    assert out.dtype == torch.float64 and out.shape == (2, 3, 2)
    for b in range(2):
        for k in range(3):
            x = sum(heat[b, k, i, j].item() * grid_x(j, 6) for i in range(4) for j in range(6))
            y = sum(heat[b, k, i, j].item() * grid_x(i, 4) for i in range(4) for j in range(6))
            assert out[b, k].tolist() == pytest.approx([x, y], rel=1e-12, abs=1e-15)
    assert soft_argmax(torch.empty(1, 2, 3, 4, device=META)).device == META


def test_heatmap_weighted_sum_by_loops():
    heat = rng_tensor(2, 2, 3, 4, 5, low=0, high=1)
    maps = rng_tensor(3, 2, 3, 4, 4, 5)
    out = heatmap_weighted_sum(heat, maps)
    assert out.shape == (2, 3, 4)
    for b in range(2):
        for k in range(3):
            for c in range(4):
                want = sum(heat[b, k, i, j].item() * maps[b, k, c, i, j].item() for i in range(4) for j in range(5))
                assert out[b, k, c].item() == pytest.approx(want, rel=1e-12)


def test_gaussian_heatmaps_by_loops_off_centre():
    points = rng_tensor(4, 2, 3, 2)
    out = gaussian_heatmaps(points, 5, 7, variance=0.07)
    assert out.dtype == torch.float64 and out.shape == (2, 3, 5, 7)
    for b in range(2):
        for k in range(3):
            px, py = points[b, k].tolist()
            for i in range(5):
                for j in range(7):
                    want = math.exp(-((grid_x(j, 7) - px) ** 2 + (grid_x(i, 5) - py) ** 2) / (2 * 0.07))
                    assert out[b, k, i, j].item() == pytest.approx(want, rel=1e-12, abs=1e-300)
    assert gaussian_heatmaps(torch.empty(1, 2, 2, device=META), 3, 4, 0.01).device == META


def test_local_affine_motions_by_loops():
    b, k, h, w = 2, 3, 4, 5
    kp_s, kp_d = rng_tensor(5, b, k, 2), rng_tensor(6, b, k, 2)
    jac_s = torch.eye(2, dtype=torch.float64) + 0.4 * rng_tensor(7, b, k, 2, 2)
    jac_d = torch.eye(2, dtype=torch.float64) + 0.4 * rng_tensor(8, b, k, 2, 2)
    out = local_affine_motions(kp_s, kp_d, jac_s, jac_d, h, w)
    plain = local_affine_motions(kp_s, kp_d, None, None, h, w)
    assert out.shape == plain.shape == (b, k + 1, h, w, 2)
    for bi in range(b):
        for i in range(h):
            for j in range(w):
                z = np.array([grid_x(j, w), grid_x(i, h)])
                assert out[bi, 0, i, j].tolist() == pytest.approx(z.tolist(), abs=1e-15)  # background: identity
                for ki in range(k):
                    # p_S + J_S J_D^-1 (z - p_D), through the reference frame
                    a = jac_s[bi, ki].numpy() @ np.linalg.inv(jac_d[bi, ki].numpy())
                    want = kp_s[bi, ki].numpy() + a @ (z - kp_d[bi, ki].numpy())
                    np.testing.assert_allclose(out[bi, ki + 1, i, j].numpy(), want, rtol=1e-10, atol=1e-12)
                    want = kp_s[bi, ki].numpy() + z - kp_d[bi, ki].numpy()
                    np.testing.assert_allclose(plain[bi, ki + 1, i, j].numpy(), want, rtol=1e-12, atol=1e-14)


def test_local_affine_motions_stay_on_the_keypoints_device():
    kp, jac = torch.empty(1, 2, 2, device=META), torch.empty(1, 2, 2, 2, device=META)
    assert local_affine_motions(kp, kp, jac, jac, 3, 4).device == META
    assert local_affine_motions(kp, kp, None, None, 3, 4).device == META


def test_local_affine_motions_with_only_one_side_jacobians_is_a_translation():
    kp_s, kp_d = rng_tensor(9, 1, 2, 2), rng_tensor(10, 1, 2, 2)
    jac = 2 * torch.eye(2, dtype=torch.float64).expand(1, 2, 2, 2)
    plain = kp_s.view(1, 2, 1, 1, 2) + coordinate_grid(3, 4, torch.float64) - kp_d.view(1, 2, 1, 1, 2)
    for jac_s, jac_d in ((jac, None), (None, jac)):
        out = local_affine_motions(kp_s, kp_d, jac_s, jac_d, 3, 4)
        torch.testing.assert_close(out[:, 1:], plain, rtol=1e-12, atol=1e-14)


def test_blend_motions_by_loops():
    motions = rng_tensor(11, 2, 3, 4, 5, 2)
    masks = torch.softmax(rng_tensor(12, 2, 3, 4, 5), 1)
    out = blend_motions(motions, masks)
    assert out.shape == (2, 4, 5, 2)
    for b in range(2):
        for i in range(4):
            for j in range(5):
                want = sum(masks[b, n, i, j].item() * motions[b, n, i, j].numpy() for n in range(3))
                np.testing.assert_allclose(out[b, i, j].numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("size", [(7, 5), (3, 2)])
def test_resize_map_and_flow_are_bilinear_with_half_pixel_centres(size):
    values = rng_tensor(13, 2, 3, 4, 6)
    got = resize_map(values, *size)
    flow = resize_flow(values[:, :2].permute(0, 2, 3, 1), *size)  # (b, h, w, 2)
    for b in range(2):
        want = naive_resize(values[b].numpy(), *size)
        np.testing.assert_allclose(got[b].numpy(), want, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(flow[b].permute(2, 0, 1).numpy(), want[:2], rtol=1e-12, atol=1e-14)


def test_resize_map_at_the_same_size_returns_the_input():
    values = torch.rand(1, 2, 3, 4)
    assert resize_map(values, 3, 4) is values


@pytest.mark.parametrize("flow_size", [(3, 5), (6, 4)])
def test_warp_samples_bilinearly_with_zero_padding_after_resizing_the_flow(flow_size):
    image = rng_tensor(14, 2, 2, 3, 5)
    flow = rng_tensor(15, 2, *flow_size, 2, low=-1.3, high=1.3)  # some samples fall outside: zeros
    out = warp(image, flow)
    assert out.shape == (2, 2, 3, 5)
    for b in range(2):
        dense = naive_resize(flow[b].permute(2, 0, 1).numpy(), 3, 5) if flow_size != (3, 5) \
            else flow[b].permute(2, 0, 1).numpy()
        for i in range(3):
            for j in range(5):
                want = naive_bilinear_sample(image[b].numpy(), dense[0, i, j], dense[1, i, j])
                np.testing.assert_allclose(out[b, :, i, j].numpy(), want, rtol=1e-10, atol=1e-12)


def test_movement_scale_reads_batch_item_zero():
    square = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    source = torch.stack([square * 3, square])  # hull areas 9 and 1
    driving = torch.stack([square, square * 5])  # 1 and 25
    assert movement_scale(source, driving) == pytest.approx(3.0, rel=1e-12)  # sqrt(9 / 1): item 0 only


def test_relative_motion_default_scale_is_one_and_jacobians_compose_in_order():
    src, drv, init = rng_tensor(16, 2, 3, 2), rng_tensor(17, 2, 3, 2), rng_tensor(18, 2, 3, 2)
    torch.testing.assert_close(relative_keypoints(src, drv, init), src + drv - init, rtol=1e-12, atol=1e-14)
    j_src, j_drv, j_init = (torch.eye(2, dtype=torch.float64) + 0.5 * rng_tensor(s, 2, 3, 2, 2) for s in (19, 20, 21))
    out = relative_jacobians(j_src, j_drv, j_init)
    for b in range(2):
        for k in range(3):
            want = j_drv[b, k].numpy() @ np.linalg.inv(j_init[b, k].numpy()) @ j_src[b, k].numpy()
            np.testing.assert_allclose(out[b, k].numpy(), want, rtol=1e-10)


def naive_tps(z: np.ndarray, theta: np.ndarray, controls: np.ndarray | None, params: np.ndarray | None) -> np.ndarray:
    """A z + t + sum_i w_i U(|z - c_i|) (added to x and y alike), U(r) = r^2 log r and U(0) = 0."""
    out = theta[:, :2] @ z + theta[:, 2]
    if controls is not None and params is not None:
        for c, w_i in zip(controls, params):
            r = np.linalg.norm(z - c)
            out = out + (w_i * r ** 2 * math.log(r) if r > 0 else 0.0)
    return out


def test_tps_warp_points_by_hand_with_translation_and_a_point_on_a_control_point():
    theta = torch.tensor([[[1.2, 0.1, 0.3], [-0.2, 0.9, -0.4]]], dtype=torch.float64)
    controls = torch.tensor([[0.0, 0.0], [0.5, -0.5], [-0.6, 0.2]], dtype=torch.float64)
    params = torch.tensor([[0.3, -0.7, 0.2]], dtype=torch.float64)
    points = torch.tensor([[[0.0, 0.0], [0.25, 0.75], [-0.9, -0.1]]], dtype=torch.float64)  # the first sits on c_0
    out = tps_warp_points(points, theta, controls, params)
    assert torch.isfinite(out).all()
    for n in range(3):
        want = naive_tps(points[0, n].numpy(), theta[0].numpy(), controls.numpy(), params[0].numpy())
        np.testing.assert_allclose(out[0, n].numpy(), want, rtol=1e-10, atol=1e-12)
    # without parameters for the radial part (either of the two missing) only the affine part acts
    for c, p in ((controls, None), (None, params)):
        affine = tps_warp_points(points, theta, c, p)
        for n in range(3):
            np.testing.assert_allclose(affine[0, n].numpy(), naive_tps(points[0, n].numpy(), theta[0].numpy(), None,
                                                                       None), rtol=1e-12)
        jac = tps_jacobian(points, theta, c, p)
        torch.testing.assert_close(jac, theta[:, :, :2].unsqueeze(1).expand(1, 3, 2, 2))


def test_tps_jacobian_is_finite_on_a_control_point_and_matches_central_differences():
    theta = torch.tensor([[[0.8, 0.3, 0.1], [0.2, 1.1, 0.0]]], dtype=torch.float64)
    controls = torch.tensor([[0.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    params = torch.tensor([[0.4, -0.3]], dtype=torch.float64)
    points = torch.tensor([[[0.0, 0.0], [0.3, -0.6]]], dtype=torch.float64)
    jac = tps_jacobian(points, theta, controls, params)
    assert torch.isfinite(jac).all()
    # on c_0 the radial term of c_0 has zero gradient: only the affine part and the term of c_1 remain
    eps = 1e-6
    for n in range(2):
        z = points[0, n].numpy()
        for axis in range(2):
            step = np.zeros(2)
            step[axis] = eps
            numeric = (naive_tps(z + step, theta[0].numpy(), controls.numpy(), params[0].numpy())
                       - naive_tps(z - step, theta[0].numpy(), controls.numpy(), params[0].numpy())) / (2 * eps)
            np.testing.assert_allclose(jac[0, n, :, axis].numpy(), numeric, atol=1e-6)
