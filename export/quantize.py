"""INT8 motion and render graphs for ONNX Runtime on CPUs: static quantisation (QDQ, per-channel conv
weights, activation ranges calibrated on the astronaut photo moving), made on first use next to the
FP32 graphs. Keypoints stay FP32 (their soft-argmax positions drive every pixel) and so does the
avatar graph (run once). Measured on the small model before the graph rewrites (docs/benchmarks.md):
1.27-1.40x the FP32 ONNX Runtime graphs at ~41 dB PSNR against FP32; the gain depends on the CPU's VNNI
support. Only convolutions are quantised: the generator's 3-channel prediction, which the export writes as a
transposed convolution (export/onnx_rewrite.py), stays FP32 (the live model's INT8 graphs: 47.5 dB against
FP32 on the bundled avatar)."""
from __future__ import annotations

import logging
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.media import sample_clip
from core.pipeline import FommPipeline
from export.graphs import GraphPuppeteer

INT8_GRAPHS = ("motion", "render")
CALIBRATION_FRAMES = 8


class _Recorder:
    """A runner that keeps every graph's inputs (the calibration data) while the FP32 runner answers."""

    def __init__(self, runner: Any):
        self.runner = runner
        self.feeds: dict[str, list[dict[str, np.ndarray]]] = defaultdict(list)

    def run(self, graph: str, inputs: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
        self.feeds[graph].append({name: inputs[name].numpy() for name in self.runner.inputs[graph]})
        return self.runner.run(graph, inputs)


class _Reader:
    """onnxruntime.quantization's calibration protocol over recorded feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def int8_files(export_dir: Path, metadata: dict[str, Any]) -> dict[str, str]:
    """graph -> INT8 file name for the quantised graphs, quantising them first when missing."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    from export.ort_runner import OrtRunner

    files = {name: f"{name}.int8.onnx" for name in INT8_GRAPHS}
    if all((export_dir / file).is_file() for file in files.values()):
        return files
    print(f"quantising {', '.join(INT8_GRAPHS)} to INT8 in {export_dir} (first use; later runs reuse it)",
          file=sys.stderr)
    fp32 = {name: graph["file"] for name, graph in metadata["graphs"].items()}
    recorder = _Recorder(OrtRunner(export_dir, fp32, torch.device("cpu")))
    avatar_image, driving = sample_clip(tuple(metadata["size"]), CALIBRATION_FRAMES)
    pipeline = FommPipeline(GraphPuppeteer(recorder, torch.device("cpu")), avatar_image)
    for frame in driving:
        pipeline(frame)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs advice about its own pre-processing as warnings
    try:
        for name, file in files.items():
            quantize_static(str(export_dir / fp32[name]), str(export_dir / file), _Reader(recorder.feeds[name]),
                            quant_format=QuantFormat.QDQ, per_channel=True, op_types_to_quantize=["Conv"])
    finally:
        root.setLevel(level)
    return files
