"""TensorRT engines built from the exported ONNX graphs with the TensorRT Python API, cached on disk
next to them (one per graph, precision, TensorRT version and GPU model, as engines are not portable).

TensorRT is optional: without it every entry point raises TensorRTMissingError naming the package.
The ONNX graphs use only operators TensorRT parses (GridSample since 8.5; no matrix inverse, see
export/onnx_export.py).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import torch

from export.metadata import ExportError
from motion.errors import UserError

try:
    import tensorrt as trt
except ImportError:
    trt = None


class TensorRTMissingError(UserError):
    """TensorRT (or the NVIDIA GPU it needs) is not available."""


def require_tensorrt(device: torch.device | None = None) -> None:
    if trt is None:
        raise TensorRTMissingError("TensorRT is not installed: pip install tensorrt (needs an NVIDIA GPU and CUDA 12), "
                                   "or use --backend onnxruntime or torch")
    if device is not None and device.type != "cuda":
        raise TensorRTMissingError("TensorRT runs only on an NVIDIA GPU and none is in use (no GPU, or --cpu); "
                                   "use --backend onnxruntime or torch")


def engine_path(export_dir: Path, graph: str, fp16: bool) -> Path:
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name()).strip("-")
    return export_dir / f"{graph}.{'fp16' if fp16 else 'fp32'}.trt{trt.__version__}.{gpu}.engine"


def build_engine(onnx_path: Path, out: Path, fp16: bool) -> None:
    """Parse the ONNX file and serialise an engine for this GPU to ``out`` (minutes for big graphs)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    explicit_batch = 0 if int(trt.__version__.split(".")[0]) >= 10 else \
        1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(explicit_batch)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 4 << 30)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(out)


def build_engines(export_dir: Path, metadata: dict[str, Any], fp16: bool) -> dict[str, Path]:
    """Every graph's engine, built when not cached yet."""
    require_tensorrt(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    paths = {}
    for name, graph in metadata["graphs"].items():
        paths[name] = engine_path(export_dir, name, fp16)
        if not paths[name].is_file():
            print(f"building TensorRT {'FP16' if fp16 else 'FP32'} engine {paths[name]}", file=sys.stderr)
            build_engine(export_dir / graph["file"], paths[name], fp16)
    return paths


class TensorRTRunner:
    """Runs the engines on the current CUDA stream; torch CUDA tensors in and out, no host copies."""

    def __init__(self, export_dir: Path, metadata: dict[str, Any], device: torch.device, fp16: bool):
        require_tensorrt(device)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.device = device
        self.engines = {name: runtime.deserialize_cuda_engine(path.read_bytes())
                        for name, path in build_engines(export_dir, metadata, fp16).items()}
        self.contexts = {name: engine.create_execution_context() for name, engine in self.engines.items()}

    def run(self, graph: str, inputs: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
        engine, context = self.engines[graph], self.contexts[graph]
        fed, outputs = [], {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                tensor = inputs[name].to(self.device, torch.float32).contiguous()
                fed.append(tensor)  # alive until the launch is queued
                context.set_tensor_address(name, tensor.data_ptr())
            else:
                outputs[name] = torch.empty(tuple(engine.get_tensor_shape(name)), device=self.device)
                context.set_tensor_address(name, outputs[name].data_ptr())
        if not context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise RuntimeError(f"TensorRT failed to run the {graph} engine")
        return outputs
