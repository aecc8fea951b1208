"""The GPU benchmark, one prepared run of a few minutes on one H100/H200:

1. the fused warp against the unfused path (K+1 motion fields, blend, resize, grid_sample, occlusion
   multiply) and its PyTorch formulation, at vox-256 sizes: parity and time (CUDA events, median);
2. vox-256 end to end (random init: timings only) on every backend this machine has, side by side
   with PyTorch eager and the official per-frame path (export.bench).

    python3 -m export.bench_gpu [--frames 50] [--json results.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import torch

from export.bench import compare_backends, format_table, random_checkpoint
from export.fused_warp import TRITON_AVAILABLE, blended_flow, fused_warp, motion_affines
from export.tensorrt import trt
from motion.config import load_config
from motion.generator import warp_features
from motion.geometry import blend_motions, local_affine_motions

ROOT = Path(__file__).resolve().parents[1]


def cuda_ms(fn: Callable[[], object], warmup: int = 10, iters: int = 100) -> float:
    """Median milliseconds of fn on the GPU, each call timed with CUDA events."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def warp_case(batch: int, channels: int, feature_size: int, motion_size: int, num_kp: int, dtype: torch.dtype) -> dict:
    """Time and check the three warps on one shape; keypoints and masks random, Jacobians near I."""
    g = torch.Generator(device="cuda").manual_seed(0)
    features = torch.randn(batch, channels, feature_size, feature_size, device="cuda", generator=g).to(dtype)
    masks = torch.softmax(torch.randn(batch, num_kp + 1, motion_size, motion_size, device="cuda", generator=g), 1)
    kp_s, kp_d = (torch.rand(batch, num_kp, 2, device="cuda", generator=g) * 2 - 1 for _ in range(2))
    jac_s, jac_d = (torch.eye(2, device="cuda") + 0.2 * torch.randn(batch, num_kp, 2, 2, device="cuda", generator=g)
                    for _ in range(2))
    occlusion = torch.rand(batch, 1, motion_size, motion_size, device="cuda", generator=g)

    def unfused() -> torch.Tensor:
        motions = local_affine_motions(kp_s, kp_d, jac_s, jac_d, motion_size, motion_size)
        return warp_features(features, blend_motions(motions, masks).to(dtype), occlusion.to(dtype))

    def pytorch_fused() -> torch.Tensor:
        affines = motion_affines(kp_s, kp_d, jac_s, jac_d)
        return warp_features(features, blended_flow(masks, affines).to(dtype), occlusion.to(dtype))

    def triton_fused() -> torch.Tensor:
        return fused_warp(features, masks, motion_affines(kp_s, kp_d, jac_s, jac_d), occlusion)

    reference = unfused().float()
    row = {"shape": f"b{batch} c{channels} {feature_size}^2 <- {motion_size}^2 k{num_kp}",
           "dtype": str(dtype).replace("torch.", ""), "unfused_ms": cuda_ms(unfused),
           "pytorch_fused_ms": cuda_ms(pytorch_fused)}
    if TRITON_AVAILABLE:
        row["triton_ms"] = cuda_ms(triton_fused)
        row["triton_max_abs_err"] = (triton_fused().float() - reference).abs().max().item()
    return row


def print_warp_table(rows: Sequence[dict]) -> None:
    print(f"{'fused warp shape':<30}{'dtype':>9}{'unfused ms':>12}{'pt-fused ms':>13}{'triton ms':>11}"
          f"{'speed-up':>10}{'max err':>10}")
    for r in rows:
        triton = r.get("triton_ms")
        print(f"{r['shape']:<30}{r['dtype']:>9}{r['unfused_ms']:>12.4f}{r['pytorch_fused_ms']:>13.4f}"
              + (f"{triton:>11.4f}{r['unfused_ms'] / triton:>9.2f}x{r['triton_max_abs_err']:>10.1e}" if triton
                 else f"{'n/a':>11}{'':>10}{'':>10}"))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m export.bench_gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=50, help="frames timed per backend end to end")
    parser.add_argument("--json", help="also write every figure to this file")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU: this benchmark is for a GPU machine (CPU figures: python -m export.bench)")
    torch.backends.cudnn.benchmark = True
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, Triton "
          f"{'yes' if TRITON_AVAILABLE else 'not installed'}, TensorRT {trt.__version__ if trt else 'not installed'}")

    rows = [warp_case(b, 256, 64, 64, 10, dtype) for b in (1, 8) for dtype in (torch.float32, torch.float16)]
    rows.append(warp_case(1, 256, 128, 64, 10, torch.float32))  # flow and occlusion resized on the fly
    print_warp_table(rows)

    config = load_config(ROOT / "configs" / "vox-256.yaml")
    names = ["torch", "official", "torch-fused", "torch-bf16"] + (["tensorrt", "tensorrt-fp16"] if trt else [])
    with tempfile.TemporaryDirectory() as tmp:
        runs = compare_backends(names, config, random_checkpoint(config, Path(tmp)), torch.device("cuda"), args.frames,
                       export_dir=Path(tmp) / "export")
    print(f"vox-256, random init, {args.frames} frames, {torch.cuda.get_device_name()}")
    print(format_table(runs))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "device": torch.cuda.get_device_name(), "warp": rows,
            "end_to_end_ms": {r.name: {s: r.median_ms(s) for s in r.times} for r in runs}}, indent=2))


if __name__ == "__main__":
    main()
