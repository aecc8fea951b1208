"""Backends: one FOMM stage interface (prepare / keypoints / motion / render, as
core.puppeteer.FommPuppeteer), several ways to run it. ``BACKENDS`` maps each name that
`animate`, `live` and `bench` accept to a factory taking BackendOptions; ``open_backend`` is the one call.

torch           PyTorch eager, the reference (FommPuppeteer itself)
torch-fused     eager with the fused warp (Triton kernel on CUDA, its PyTorch formulation elsewhere)
torch-bf16      eager with the decoder in bfloat16 (channels-last; fast on AMX/AVX-512 BF16 CPUs and GPUs)
torch-bf16-all  eager with every network trunk in bfloat16 (keypoints, dense motion, decoder); heads and geometry FP32
torch-bf16-compiled  torch-bf16-all with the bf16 trunks compiled by TorchInductor (needs a C++ compiler)
onnxruntime     the exported graphs in ONNX Runtime (CPU, or CUDA with onnxruntime-gpu), FP32;
                onnxruntime-int8 with INT8 motion and render graphs (export/quantize.py)
tensorrt        TensorRT engines built from the exported graphs, FP32; tensorrt-fp16 likewise in FP16
auto            the fastest candidate for this CPU or GPU that keeps 35 dB vs FP32, timed when opened (export/auto.py)
"""
from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from core.puppeteer import FommAvatar, FommPuppeteer, to_image
from export.errors import BackendUnavailableError
from export.folding import fold_batchnorm
from export.fused_warp import FusedMotion, fused_warp, motion_affines
from export.graphs import GraphPuppeteer
from motion.checkpoint import load_model
from motion.config import Config
from motion.dense_motion import DenseMotion
from motion.errors import UserError, first_line
from motion.generator import warp_features
from motion.keypoints import Keypoints


class UnknownBackendError(UserError):
    """A --backend name that is not in BACKENDS."""


@dataclass(frozen=True)
class BackendOptions:
    """What every backend is built from. export_dir: where the exported graphs live (None: the cache);
    avatar: the user's avatar at the model's size, on which auto checks its choice (None: the astronaut)."""
    config: Config
    checkpoint: str | Path
    device: torch.device
    export_dir: str | Path | None = None
    threads: int | None = None
    avatar: np.ndarray | None = None


class TorchBackend(FommPuppeteer):
    """PyTorch eager on the checkpoint's networks; ``fused`` swaps in the fused warp for render."""

    def __init__(self, options: BackendOptions, fused: bool = False):
        super().__init__(load_model(options.config, options.checkpoint, options.device), options.device)
        self.fused = fused

    @torch.no_grad()
    def motion(self, avatar: FommAvatar, kp_driving: Keypoints) -> DenseMotion | FusedMotion:
        dense = super().motion(avatar, kp_driving)
        if not self.fused:
            return dense
        affines = motion_affines(avatar.kp.value, kp_driving.value, avatar.kp.jacobian, kp_driving.jacobian)
        return FusedMotion(*dense, affines=affines)

    @torch.no_grad()
    def render(self, avatar: FommAvatar, motion: DenseMotion | FusedMotion) -> np.ndarray:
        if not self.fused:
            return super().render(avatar, motion)
        warped = fused_warp(avatar.features, motion.mask, motion.affines, motion.occlusion)
        return to_image(self.generator.decode(warped))


class Bf16TorchBackend(FommPuppeteer):
    """The decoder (~88% of a frame's FLOPs) in bfloat16; keypoints, dense motion and the warp stay FP32,
    since keypoint positions and flows lose whole pixels in bf16. The decoder is a bf16 channels-last
    copy, which oneDNN runs on AMX / AVX-512 BF16 (autocast would re-cast its weights every frame)."""

    def __init__(self, options: BackendOptions):
        super().__init__(load_model(options.config, options.checkpoint, options.device), options.device)
        decoder = fold_batchnorm(copy.deepcopy(self.generator))
        self.decoder = decoder.to(torch.bfloat16, memory_format=torch.channels_last)
        self.decode: Callable[[torch.Tensor], torch.Tensor] = self.decoder.decode

    @torch.no_grad()
    def render(self, avatar: FommAvatar, motion: DenseMotion) -> np.ndarray:
        warped = warp_features(avatar.features, motion.deformation, motion.occlusion)
        return to_image(self.decode(warped.to(torch.bfloat16, memory_format=torch.channels_last)))


class Bf16Trunk(nn.Module):
    """A network trunk, its BatchNorms folded and converted to bf16 channels-last, taking and giving FP32, so
    the module around it keeps its FP32 heads and geometry unchanged."""

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = fold_batchnorm(trunk).to(torch.bfloat16, memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x.to(torch.bfloat16, memory_format=torch.channels_last)).float()


class Bf16AllTorchBackend(Bf16TorchBackend):
    """torch-bf16 plus the keypoint and dense-motion hourglasses in bf16: every per-frame trunk (the avatar's
    encoding, once, stays FP32). What turns activations into positions stays FP32: the 7x7 heads whose logits
    feed the heatmap softmax (its temperature of 0.1 would multiply bf16's rounding tenfold), the Jacobian,
    mask and occlusion heads, the 2x2 inverses, the flows and every grid_sample; the modules' own code runs
    around the bf16 trunks. Shipped model: ~44 dB against FP32, 35.2 dB on the worst of 40 frames, where the
    bf16 keypoint hourglass moves a keypoint by 0.8 px (docs/bench-auto-epyc.txt)."""

    def __init__(self, options: BackendOptions):
        super().__init__(options)
        self.kp_detector.predictor = Bf16Trunk(self.kp_detector.predictor)
        dense = self.generator.dense_motion_network
        dense.hourglass = Bf16Trunk(dense.hourglass)


class CompiledBf16Backend(Bf16AllTorchBackend):
    """torch-bf16-all with its three bf16 trunks compiled by TorchInductor with freezing: weights become
    constants, so convolutions get oneDNN's prepacked AMX kernels with their ReLU and residual adds fused,
    and the elementwise work between them becomes generated C++ (~15% less per frame on vox-256, 2 cores,
    docs/bench-auto-xeon.txt). Compiling needs a C++ compiler and takes ~20-40 s on a model's first use
    (torch caches the result for later runs); it is done here, on blank frames, so no real frame waits."""

    def __init__(self, options: BackendOptions):
        super().__init__(options)
        print("torch-bf16-compiled: compiling the bf16 networks for this CPU (first use of a model: up to a "
              "minute; later runs reuse torch's cache)", file=sys.stderr)
        blank = np.zeros((*options.config.size, 3), np.float32)
        try:  # compiling happens on the first call; freezing must be on then (compile's options= ignores it)
            from torch._inductor import config as inductor

            # isolated: each backend's trunks keep their own compiled code (weights are frozen into it), not
            # one shared per function that several backends in a process would overflow into eager
            compiled = partial(torch.compile, dynamic=False, isolate_recompiles=True)
            self.kp_detector.predictor.trunk = compiled(self.kp_detector.predictor.trunk)
            dense = self.generator.dense_motion_network
            dense.hourglass.trunk = compiled(dense.hourglass.trunk)
            self.decode = compiled(self.decoder.decode)
            with inductor.patch(freezing=True):
                avatar = self.prepare(blank)
                self.render(avatar, self.motion(avatar, self.keypoints(blank)))
        except Exception as err:  # no compiler, an unsupported op or Python: the eager bf16 backends still run
            raise BackendUnavailableError("torch-bf16-compiled", f"compiling failed: {first_line(err)}",
                                          "torch-bf16-all") from None


def onnxruntime_backend(options: BackendOptions, int8: bool = False) -> GraphPuppeteer:
    """ONNX Runtime keeps tensors on the host; with a GPU device it runs on the CUDA provider."""
    from export.cache import ensure_export
    from export.ort_runner import OrtRunner

    export_dir, metadata = ensure_export(options.config, options.checkpoint, options.export_dir)
    files = {name: graph["file"] for name, graph in metadata["graphs"].items()}
    if int8:
        from export.quantize import int8_files
        files.update(int8_files(export_dir, metadata))
    return GraphPuppeteer(OrtRunner(export_dir, files, options.device, options.threads), torch.device("cpu"))


def tensorrt_backend(options: BackendOptions, fp16: bool = False) -> GraphPuppeteer:
    from export.cache import ensure_export
    from export.tensorrt import TensorRTRunner, require_tensorrt

    require_tensorrt(options.device)
    export_dir, metadata = ensure_export(options.config, options.checkpoint, options.export_dir)
    return GraphPuppeteer(TensorRTRunner(export_dir, metadata, options.device, fp16), options.device)


def opener(options: BackendOptions) -> Callable[[str], Any]:
    """name -> that backend opened with these options (the candidates export.auto tries)."""
    return lambda name: BACKENDS[name](options)


def auto_backend(options: BackendOptions) -> Any:
    """The backend export.auto picks for this machine, after its one line saying which and why."""
    from export.auto import choose_backend

    return choose_backend(options, opener(options)).puppeteer


BACKENDS: dict[str, Callable[[BackendOptions], Any]] = {
    "torch": TorchBackend,
    "torch-fused": partial(TorchBackend, fused=True),
    "torch-bf16": Bf16TorchBackend,
    "torch-bf16-all": Bf16AllTorchBackend,
    "torch-bf16-compiled": CompiledBf16Backend,
    "onnxruntime": onnxruntime_backend,
    "onnxruntime-int8": partial(onnxruntime_backend, int8=True),
    "tensorrt": tensorrt_backend,
    "tensorrt-fp16": partial(tensorrt_backend, fp16=True),
    "auto": auto_backend,
}


def open_backend(name: str, config: Config, checkpoint: str | Path, device: torch.device,
                 export_dir: str | Path | None = None, threads: int | None = None,
                 avatar: np.ndarray | None = None) -> Any:
    """A puppeteer with the FommPuppeteer stage interface running on backend ``name``; ``avatar`` (the
    model-size face the user animates) is what auto checks its choice on."""
    if name not in BACKENDS:
        raise UnknownBackendError(f"unknown backend '{name}'; choose one of {', '.join(BACKENDS)}")
    if config.kind != "fomm":
        raise UserError(f"backends run First Order Motion Models; {config.path} is a co-part segmentation "
                        "config, which runs on PyTorch (puppet.py swap)")
    return BACKENDS[name](BackendOptions(config, checkpoint, device, export_dir, threads, avatar))
