"""Triton kernel of the fused warp (see export/fused_warp.py for the maths and the reference).

One program takes a tile of BLOCK_P output pixels x BLOCK_C channels. For each pixel it forms the flow
from the K+1 masks and affines (at motion resolution, bilinearly resized the way F.interpolate with
align_corners=False does when the feature map has another size), reads the occlusion the same way,
then gathers the four bilinear taps of grid_sample (align_corners=False, zero padding) for its channels
and writes occlusion * sample. Nothing but the output touches global memory. Importing this module
raises ImportError without Triton, which export/fused_warp.py takes as "use the PyTorch path".
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl


@triton.jit
def _flow_at(mask_ptr, affine_ptr, b, y, x, valid, N, h, w):
    """Blended flow (fx, fy) at integer motion-map positions (y, x): sum_n m_n (A_n z + t_n)."""
    zx = 2.0 * x.to(tl.float32) / (w - 1) - 1.0
    zy = 2.0 * y.to(tl.float32) / (h - 1) - 1.0
    fx = tl.zeros_like(zx)
    fy = tl.zeros_like(zy)
    for n in range(N):
        m = tl.load(mask_ptr + ((b * N + n) * h + y) * w + x, mask=valid, other=0.0).to(tl.float32)
        a = affine_ptr + (b * N + n) * 6
        fx += m * (tl.load(a + 0) * zx + tl.load(a + 1) * zy + tl.load(a + 2))
        fy += m * (tl.load(a + 3) * zx + tl.load(a + 4) * zy + tl.load(a + 5))
    return fx, fy


@triton.jit
def _tap(feat_ptr, plane, c_ok, ty, tx, W, weight, ok):
    """weight * features[channels, ty, tx] as a (BLOCK_C, BLOCK_P) tile, zero outside the map."""
    tap = tl.load(feat_ptr + plane + (ty * W + tx)[None, :], mask=c_ok & ok[None, :], other=0.0)
    return tap.to(tl.float32) * weight[None, :]


@triton.jit
def _fused_warp_kernel(feat_ptr, mask_ptr, affine_ptr, occ_ptr, out_ptr, C, H, W, N, h, w, scale_y, scale_x,
                       HAS_OCC: tl.constexpr, SAME_SIZE: tl.constexpr,
                       BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    b = tl.program_id(2)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    valid = p < H * W
    i = p // W
    j = p % W
    if SAME_SIZE:
        fx, fy = _flow_at(mask_ptr, affine_ptr, b, i, j, valid, N, h, w)
        if HAS_OCC:
            occ = tl.load(occ_ptr + (b * h + i) * w + j, mask=valid, other=0.0).to(tl.float32)
    else:
        # F.interpolate(bilinear, align_corners=False): src = (dst + 0.5) * in/out - 0.5, clamped at 0
        sy = tl.maximum((i.to(tl.float32) + 0.5) * scale_y - 0.5, 0.0)
        sx = tl.maximum((j.to(tl.float32) + 0.5) * scale_x - 0.5, 0.0)
        y0 = sy.to(tl.int32)
        x0 = sx.to(tl.int32)
        y1 = tl.minimum(y0 + 1, h - 1)
        x1 = tl.minimum(x0 + 1, w - 1)
        ly = sy - y0.to(tl.float32)
        lx = sx - x0.to(tl.float32)
        ax, ay = _flow_at(mask_ptr, affine_ptr, b, y0, x0, valid, N, h, w)
        bx, by = _flow_at(mask_ptr, affine_ptr, b, y0, x1, valid, N, h, w)
        cx, cy = _flow_at(mask_ptr, affine_ptr, b, y1, x0, valid, N, h, w)
        dx, dy = _flow_at(mask_ptr, affine_ptr, b, y1, x1, valid, N, h, w)
        fx = (1 - ly) * ((1 - lx) * ax + lx * bx) + ly * ((1 - lx) * cx + lx * dx)
        fy = (1 - ly) * ((1 - lx) * ay + lx * by) + ly * ((1 - lx) * cy + lx * dy)
        if HAS_OCC:
            o = occ_ptr + b * h * w
            occ = ((1 - ly) * ((1 - lx) * tl.load(o + y0 * w + x0, mask=valid, other=0.0).to(tl.float32)
                               + lx * tl.load(o + y0 * w + x1, mask=valid, other=0.0).to(tl.float32))
                   + ly * ((1 - lx) * tl.load(o + y1 * w + x0, mask=valid, other=0.0).to(tl.float32)
                           + lx * tl.load(o + y1 * w + x1, mask=valid, other=0.0).to(tl.float32)))

    # grid_sample(bilinear, zeros, align_corners=False): pixel = ((coord + 1) * size - 1) / 2
    ix = ((fx + 1.0) * W - 1.0) * 0.5
    iy = ((fy + 1.0) * H - 1.0) * 0.5
    fx0 = tl.floor(ix)
    fy0 = tl.floor(iy)
    wx1 = ix - fx0
    wy1 = iy - fy0
    tx0 = fx0.to(tl.int32)
    ty0 = fy0.to(tl.int32)
    tx1 = tx0 + 1
    ty1 = ty0 + 1
    in_x0 = (tx0 >= 0) & (tx0 < W)
    in_x1 = (tx1 >= 0) & (tx1 < W)
    in_y0 = (ty0 >= 0) & (ty0 < H)
    in_y1 = (ty1 >= 0) & (ty1 < H)
    w00 = (1 - wx1) * (1 - wy1)
    w01 = wx1 * (1 - wy1)
    w10 = (1 - wx1) * wy1
    w11 = wx1 * wy1
    if HAS_OCC:
        w00 *= occ
        w01 *= occ
        w10 *= occ
        w11 *= occ

    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = (c < C)[:, None]
    plane = (b * C + c)[:, None] * (H * W)
    acc = _tap(feat_ptr, plane, c_ok, ty0, tx0, W, w00, in_y0 & in_x0 & valid)
    acc += _tap(feat_ptr, plane, c_ok, ty0, tx1, W, w01, in_y0 & in_x1 & valid)
    acc += _tap(feat_ptr, plane, c_ok, ty1, tx0, W, w10, in_y1 & in_x0 & valid)
    acc += _tap(feat_ptr, plane, c_ok, ty1, tx1, W, w11, in_y1 & in_x1 & valid)
    tl.store(out_ptr + plane + p[None, :], acc.to(out_ptr.dtype.element_ty), mask=c_ok & valid[None, :])


BLOCK_P = 64  # pixels per program: coalesced along the feature map's rows
BLOCK_C = 32  # channels per program: 8 programs per pixel block at vox-256's 256 channels


def triton_fused_warp(features: torch.Tensor, masks: torch.Tensor, affines: torch.Tensor,
                      occlusion: Optional[torch.Tensor]) -> torch.Tensor:
    """CUDA implementation of export.fused_warp.fused_warp (the same signature, as the custom op needs)."""
    features = features.contiguous()
    masks = masks.contiguous()
    affines = affines.contiguous().float()
    b, c, H, W = features.shape
    n, h, w = masks.shape[1:]
    out = torch.empty_like(features)
    occ = occlusion.contiguous() if occlusion is not None else masks  # any pointer; unused without HAS_OCC
    grid = (triton.cdiv(H * W, BLOCK_P), triton.cdiv(c, BLOCK_C), b)
    _fused_warp_kernel[grid](features, masks, affines, occ, out, c, H, W, n, h, w, h / H, w / W,
                             HAS_OCC=occlusion is not None, SAME_SIZE=(h, w) == (H, W),
                             BLOCK_P=BLOCK_P, BLOCK_C=BLOCK_C)
    return out
