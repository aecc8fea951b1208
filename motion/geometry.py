"""Pure tensor math shared by the networks, the training losses and the real-time loop.

Coordinates are normalised to [-1, 1] with the last dimension ordered (x, y), the convention of
``torch.nn.functional.grid_sample``. The official code's grid puts pixel j of a width-w map at
``2 * j / (w - 1) - 1`` (corner to corner), but samples with ``align_corners=False``, whose pixel centres
sit at ``(2 * j + 1) / w - 1``: the two differ by up to half a pixel. We keep that pairing, as the
official numbers depend on it (tests/test_motion_modes.py pins it with a naive sampler).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import ConvexHull


def coordinate_grid(height: int, width: int, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """(height, width, 2) grid of (x, y) in [-1, 1], corners included."""
    xs = torch.arange(width, dtype=dtype, device=device)
    ys = torch.arange(height, dtype=dtype, device=device)
    xs = 2 * (xs / (width - 1)) - 1
    ys = 2 * (ys / (height - 1)) - 1
    return torch.stack([xs.view(1, -1).expand(height, width), ys.view(-1, 1).expand(height, width)], dim=-1)


def spatial_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Softmax over the two trailing spatial dimensions: one probability map per channel."""
    shape = logits.shape
    flat = F.softmax(logits.reshape(*shape[:-2], -1) / temperature, dim=-1)
    return flat.view(shape)


def soft_argmax(heatmap: torch.Tensor) -> torch.Tensor:
    """Expected (x, y) position under each (..., h, w) probability map -> (..., 2)."""
    grid = coordinate_grid(heatmap.shape[-2], heatmap.shape[-1], heatmap.dtype, heatmap.device)
    return (heatmap.unsqueeze(-1) * grid).sum(dim=(-3, -2))


def heatmap_weighted_sum(heatmap: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Average of per-pixel (b, k, c, h, w) predictions under (b, k, h, w) heatmaps -> (b, k, c).

    This is how a keypoint's Jacobian (or a part's affine) is read off a dense map: the first-order
    term is pooled where the keypoint is, so it moves with the anchor.
    """
    b, k = heatmap.shape[:2]
    return (heatmap.unsqueeze(2) * maps).reshape(b, k, maps.shape[2], -1).sum(dim=-1)


def gaussian_heatmaps(points: torch.Tensor, height: int, width: int, variance: float) -> torch.Tensor:
    """Isotropic unnormalised Gaussians exp(-|z - p|^2 / (2 var)) around (b, k, 2) points -> (b, k, h, w)."""
    grid = coordinate_grid(height, width, points.dtype, points.device)
    diff = grid.view(1, 1, height, width, 2) - points.view(*points.shape[:2], 1, 1, 2)
    return torch.exp(-0.5 * (diff ** 2).sum(-1) / variance)


def compose_through_reference(jac_source: torch.Tensor, jac_driving: torch.Tensor) -> torch.Tensor:
    """J_S J_D^-1: the linear part of driving -> reference -> source motion near a keypoint."""
    return torch.matmul(jac_source, torch.inverse(jac_driving))


def local_affine_motions(kp_source: torch.Tensor, kp_driving: torch.Tensor,
                         jac_source: torch.Tensor | None, jac_driving: torch.Tensor | None,
                         height: int, width: int) -> torch.Tensor:
    """Backward flows, one per keypoint plus the identity background first -> (b, k + 1, h, w, 2).

    Near keypoint k a driving pixel z comes from p_S + J_S J_D^-1 (z - p_D) in the source, the
    first-order Taylor expansion of the motion through the abstract reference frame.
    """
    b, k = kp_driving.shape[:2]
    identity = coordinate_grid(height, width, kp_driving.dtype, kp_driving.device).view(1, 1, height, width, 2)
    offsets = identity - kp_driving.view(b, k, 1, 1, 2)
    if jac_source is not None and jac_driving is not None:
        linear = compose_through_reference(jac_source, jac_driving)
        offsets = torch.einsum("bkij,bkhwj->bkhwi", linear, offsets)
    motions = offsets + kp_source.view(b, k, 1, 1, 2)
    return torch.cat([identity.expand(b, 1, height, width, 2), motions], dim=1)


def blend_motions(motions: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Dense flow as the mask-weighted sum of (b, n, h, w, 2) motions under (b, n, h, w) masks."""
    return (motions * masks.unsqueeze(-1)).sum(dim=1)


def resize_flow(flow: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinearly resample a (b, h, w, 2) flow to another resolution (values are already normalised)."""
    if flow.shape[1:3] == (height, width):
        return flow
    flow = F.interpolate(flow.permute(0, 3, 1, 2), size=(height, width), mode="bilinear", align_corners=False)
    return flow.permute(0, 2, 3, 1)


def resize_map(values: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinearly resample a (b, c, h, w) map (occlusion, visibility, blend mask) to (height, width)."""
    if values.shape[2:] == (height, width):
        return values
    return F.interpolate(values, size=(height, width), mode="bilinear", align_corners=False)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp (b, c, h, w) features by a (b, h', w', 2) flow, resized to the features first."""
    flow = resize_flow(flow, image.shape[2], image.shape[3])
    return F.grid_sample(image, flow, mode="bilinear", padding_mode="zeros", align_corners=False)


def hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of (n, 2) points; what adapt-scale compares between two faces."""
    return float(ConvexHull(points).volume)


def movement_scale(kp_source: torch.Tensor, kp_driving_initial: torch.Tensor) -> float:
    """sqrt(hull area of the source keypoints / hull area of the initial driving keypoints), batch item 0.

    Rescales the driver's displacements to the avatar's face size, as the official ``adapt_scale``.
    """
    source_area = hull_area(kp_source[0].detach().cpu().double().numpy())
    driving_area = hull_area(kp_driving_initial[0].detach().cpu().double().numpy())
    return float(np.sqrt(source_area) / np.sqrt(driving_area))


def relative_keypoints(kp_source: torch.Tensor, kp_driving: torch.Tensor, kp_driving_initial: torch.Tensor,
                       scale: float = 1.0) -> torch.Tensor:
    """kp_src + scale * (kp_drv - kp_drv_initial): the avatar moves as much as the driver did."""
    return (kp_driving - kp_driving_initial) * scale + kp_source


def relative_jacobians(jac_source: torch.Tensor, jac_driving: torch.Tensor,
                       jac_driving_initial: torch.Tensor) -> torch.Tensor:
    """J_drv J_drv_initial^-1 J_src: the driver's change in local shape applied to the avatar's."""
    return torch.matmul(torch.matmul(jac_driving, torch.inverse(jac_driving_initial)), jac_source)


def tps_warp_points(points: torch.Tensor, theta: torch.Tensor, control_points: torch.Tensor | None = None,
                    control_params: torch.Tensor | None = None) -> torch.Tensor:
    """Apply per-sample thin-plate-spline transforms to (b, n, 2) points.

    theta (b, 2, 3) is the affine part; control_points (m, 2) and control_params (b, m) the radial part
    sum_i w_i U(|z - c_i|) with U(r) = r^2 log r, added equally to x and y as in the papers' random
    deformations. The result is smooth, invertible for small parameters and identity when all are zero
    and theta is [I | 0].
    """
    out = torch.einsum("bij,bnj->bni", theta[:, :, :2], points) + theta[:, :, 2].unsqueeze(1)
    if control_points is not None and control_params is not None:
        diff = points.unsqueeze(2) - control_points.view(1, 1, -1, 2)
        sq_dist = (diff ** 2).sum(-1)
        basis = 0.5 * sq_dist * torch.log(sq_dist + 1e-12)  # r^2 log r, written with r^2 to stay smooth at 0
        out = out + (basis * control_params.unsqueeze(1)).sum(-1, keepdim=True)
    return out


def tps_jacobian(points: torch.Tensor, theta: torch.Tensor, control_points: torch.Tensor | None = None,
                 control_params: torch.Tensor | None = None) -> torch.Tensor:
    """Analytic (b, n, 2, 2) derivative d tps_warp_points / d points (rows: output x, y)."""
    b, n = points.shape[:2]
    jac = theta[:, :, :2].unsqueeze(1).expand(b, n, 2, 2)
    if control_points is not None and control_params is not None:
        diff = points.unsqueeze(2) - control_points.view(1, 1, -1, 2)
        sq_dist = (diff ** 2).sum(-1, keepdim=True)
        # d/dz [0.5 r^2 log r^2] = z_diff * (log r^2 + 1)
        grad = diff * (torch.log(sq_dist + 1e-12) + 1)
        grad_sum = (grad * control_params.view(b, 1, -1, 1)).sum(2)  # (b, n, 2), same for both outputs
        jac = jac + grad_sum.unsqueeze(2).expand(b, n, 2, 2)
    return jac
