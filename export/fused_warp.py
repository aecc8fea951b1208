"""The fused warp: the feature warp of the FOMM generator and the co-part reconstruction module as
one step per output pixel, instead of K+1 motion fields, their blend, a resize, a grid_sample and a
mask multiply as separate passes over memory.

Every motion is affine, z -> A_n z + t_n (n = 0 the identity background, then one per keypoint or
part), so the blended flow at a pixel is (sum_n m_n A_n) z + sum_n m_n t_n: the mask-weighted affine
applied once. ``fused_warp`` is a torch custom op: on CUDA it runs the Triton kernel of
export/triton_warp.py when Triton is installed, everywhere else the PyTorch formulation below (the CPU
fallback), which builds only the one blended flow and samples once. Both equal the unfused reference,
``warp_features(features, blend_motions(local_affine_motions(...), masks), occlusion)``.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from motion.generator import warp_features
from motion.geometry import compose_through_reference, coordinate_grid


class FusedMotion(NamedTuple):
    """DenseMotion's fields plus the (b, k+1, 2, 3) affines the fused warp forms the flow from."""
    deformation: torch.Tensor
    mask: torch.Tensor
    occlusion: torch.Tensor | None
    sparse_deformed: torch.Tensor
    affines: torch.Tensor


def motion_affines(kp_source: torch.Tensor, kp_driving: torch.Tensor, jac_source: torch.Tensor | None,
                   jac_driving: torch.Tensor | None) -> torch.Tensor:
    """(b, k+1, 2, 3) [A | t] of the motions of ``local_affine_motions``, identity background first.

    Motion k maps z to J (z - p_D) + p_S with J = J_S J_D^-1 (I without Jacobians): A = J, t = p_S - J p_D.
    """
    b, k = kp_driving.shape[:2]
    if jac_source is not None and jac_driving is not None:
        linear = compose_through_reference(jac_source, jac_driving)
    else:
        linear = torch.eye(2, dtype=kp_driving.dtype, device=kp_driving.device).expand(b, k, 2, 2)
    shift = kp_source - torch.matmul(linear, kp_driving.unsqueeze(-1)).squeeze(-1)
    identity = torch.eye(2, 3, dtype=kp_driving.dtype, device=kp_driving.device).expand(b, 1, 2, 3)
    return torch.cat([identity, torch.cat([linear, shift.unsqueeze(-1)], dim=-1)], dim=1)


def blended_flow(masks: torch.Tensor, affines: torch.Tensor) -> torch.Tensor:
    """(b, h, w, 2) flow from (b, n, h, w) masks and (b, n, 2, 3) affines without per-motion fields."""
    h, w = masks.shape[2:]
    per_pixel = torch.einsum("bnhw,bnij->bhwij", masks, affines.to(masks.dtype))
    grid = coordinate_grid(h, w, masks.dtype, masks.device)
    return (per_pixel[..., :2] @ grid.unsqueeze(-1)).squeeze(-1) + per_pixel[..., 2]


@torch.library.custom_op("puppet::fused_warp", mutates_args=())
def fused_warp(features: torch.Tensor, masks: torch.Tensor, affines: torch.Tensor,
               occlusion: Optional[torch.Tensor]) -> torch.Tensor:
    """Warp (b, c, H, W) features by the mask-blended affine motions and multiply by the occlusion,
    both given at motion resolution (b, n, h, w) / (b, 1, h, w) and resized bilinearly like the reference."""
    flow = blended_flow(masks, affines).to(features.dtype)
    return warp_features(features, flow, occlusion.to(features.dtype) if occlusion is not None else None)


@fused_warp.register_fake
def _(features: torch.Tensor, masks: torch.Tensor, affines: torch.Tensor,
      occlusion: Optional[torch.Tensor]) -> torch.Tensor:
    return features.new_empty(features.shape)


def _register_triton() -> bool:
    """Route CUDA tensors to the Triton kernel; False when Triton is not installed."""
    try:
        from export.triton_warp import triton_fused_warp
    except ImportError:
        return False
    fused_warp.register_kernel("cuda")(triton_fused_warp)
    return True


TRITON_AVAILABLE = _register_triton()
