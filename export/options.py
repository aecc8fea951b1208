"""`export` options: defaults and help in one dataclass (animation/options.py builds the command line)."""
from __future__ import annotations

from dataclasses import dataclass

from animation.options import option

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
