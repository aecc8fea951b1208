"""`export` options: defaults and help in one dataclass (core/options.py builds the command line)."""
from __future__ import annotations

from dataclasses import dataclass

from core.options import EXPORT_DIR_HELP, at_least, option

DEFAULT_OPSET = 17  # GridSample arrived in 16; TensorRT 8.6 parses up to 17


@dataclass(frozen=True)
class ExportOptions:
    config: str | None = option(None, "FOMM YAML config (official format)", required=True)
    checkpoint: str | None = option(None, "checkpoint .pth.tar (official layout)", required=True)
    format: str = option("onnx", "onnx: keypoints/avatar/motion/render .onnx; tensorrt: those plus engines for this "
                         "GPU", choices=("onnx", "tensorrt"))
    output: str | None = option(None, "folder for the graphs and export.json", required=True, aliases=("--out",))
    fp16: bool = option(False, "build FP16 TensorRT engines (--format tensorrt)")
    opset: int = option(DEFAULT_OPSET, f"ONNX opset, {DEFAULT_OPSET} or later", type=int)


DEFAULT_BACKENDS = "torch,official,torch-bf16,onnxruntime"


@dataclass(frozen=True)
class BackendBenchOptions:
    """`python -m export.bench`: any FOMM config, random weights when no checkpoint is given."""
    config: str | None = option(None, "FOMM YAML config (official format)", required=True)
    checkpoint: str | None = option(None, "weights (omit for random init: timings only, PSNR meaningless)")
    backends: str = option(DEFAULT_BACKENDS, "comma-separated registry names, the first is the baseline; "
                           "'official' is the official per-frame path")
    frames: int = option(20, "timed frames per backend", type=at_least(1))
    threads: int | None = option(None, "torch and ONNX Runtime threads (default: usable cores)", type=at_least(1))
    export_dir: str | None = option(None, EXPORT_DIR_HELP)
    cpu: bool = option(False, "run on the CPU even when a GPU is present")
