"""The fused warp against the unfused reference (blend K+1 motion fields, resize, grid_sample, mask)."""
from __future__ import annotations

import pytest
import torch

from export.fused_warp import TRITON_AVAILABLE, blended_flow, fused_warp, motion_affines
from motion.generator import warp_features
from motion.geometry import blend_motions, local_affine_motions


def _case(feature_size: int, motion_size: int, jacobians: bool, occlusion: bool, device: str = "cpu",
          batch: int = 2, num_kp: int = 5, channels: int = 7):
    g = torch.Generator().manual_seed(feature_size * 100 + motion_size)
    features = torch.randn(batch, channels, feature_size, feature_size, generator=g)
    masks = torch.softmax(torch.randn(batch, num_kp + 1, motion_size, motion_size, generator=g), dim=1)
    kp_source = torch.rand(batch, num_kp, 2, generator=g) * 2 - 1
    kp_driving = torch.rand(batch, num_kp, 2, generator=g) * 2 - 1
    jac_source = torch.eye(2) + 0.3 * torch.randn(batch, num_kp, 2, 2, generator=g) if jacobians else None
    jac_driving = torch.eye(2) + 0.3 * torch.randn(batch, num_kp, 2, 2, generator=g) if jacobians else None
    occ = torch.rand(batch, 1, motion_size, motion_size, generator=g) if occlusion else None
    motions = local_affine_motions(kp_source, kp_driving, jac_source, jac_driving, motion_size, motion_size)
    reference = warp_features(features, blend_motions(motions, masks), occ)
    affines = motion_affines(kp_source, kp_driving, jac_source, jac_driving)
    moved = [t.to(device) if t is not None else None for t in (features, masks, affines, occ)]
    return moved, reference, motions


CASES = [(16, 16, True, True), (16, 32, True, True), (32, 16, False, False), (13, 7, True, True), (8, 8, False, True)]


@pytest.mark.parametrize("feature_size,motion_size,jacobians,occlusion", CASES)
def test_cpu_fused_warp_equals_the_unfused_path(feature_size, motion_size, jacobians, occlusion):
    (features, masks, affines, occ), reference, _ = _case(feature_size, motion_size, jacobians, occlusion)
    out = fused_warp(features, masks, affines, occ)
    assert out.shape == reference.shape
    assert (out - reference).abs().max().item() <= 2e-5


def test_affines_reproduce_every_local_motion():
    (_, masks, affines, _), _, motions = _case(9, 9, jacobians=True, occlusion=False)
    for n in range(motions.shape[1]):
        one_hot = torch.zeros_like(masks)
        one_hot[:, n] = 1
        assert torch.allclose(blended_flow(one_hot, affines), motions[:, n], atol=1e-5)


def test_fused_warp_is_a_torch_custom_op():
    assert torch.ops.puppet.fused_warp.default is not None


@pytest.mark.skipif(not torch.cuda.is_available() or not TRITON_AVAILABLE,
                    reason="the Triton kernel needs a CUDA GPU and Triton; CPU fallback tested above")
@pytest.mark.parametrize("feature_size,motion_size,jacobians,occlusion", CASES)
@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 2e-5), (torch.float16, 2e-2)])
def test_triton_kernel_equals_the_unfused_path(feature_size, motion_size, jacobians, occlusion, dtype, tolerance):
    (features, masks, affines, occ), reference, _ = _case(feature_size, motion_size, jacobians, occlusion, "cuda")
    out = fused_warp(features.to(dtype), masks, affines, occ)
    assert out.dtype == dtype
    assert (out.float().cpu() - reference).abs().max().item() <= tolerance
