"""ONNX Runtime sessions for the exported graphs, with thread settings for small shared CPUs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from motion.errors import UserError


class ProviderError(UserError):
    """The asked-for ONNX Runtime execution provider is not in the installed onnxruntime."""


def cpu_threads() -> int:
    """Cores this process may use: intra-op threads beyond them only fight (hyper-threads, other jobs)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def session_options(threads: int | None = None) -> "Any":
    """One intra-op pool of ``threads`` (default: the usable cores), sequential execution (the graphs
    are chains: an inter-op pool would only add threads), full graph optimisation, and no spin-waiting:
    on a 2-core machine shared with other busy processes, spinning workers steal the core the working
    thread needs (measured: 4x slower frames with the small model). PUPPET_ORT_SPIN=1 turns it back
    on for a dedicated machine."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or cpu_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", os.environ.get("PUPPET_ORT_SPIN", "0"))
    return options


def providers_for(device: torch.device) -> list[str]:
    import onnxruntime as ort

    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise ProviderError("the installed onnxruntime has no CUDA execution provider; pip install onnxruntime-gpu "
                            "(instead of onnxruntime), or pass --cpu")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


class OrtRunner:
    """Runs an export folder's graphs by name; torch CPU tensors in and out (numpy views, no copies)."""

    def __init__(self, export_dir: Path, files: dict[str, str], device: torch.device, threads: int | None = None):
        """files: graph name -> .onnx file in export_dir."""
        import onnxruntime as ort

        options = session_options(threads)
        providers = providers_for(device)
        self.sessions = {name: ort.InferenceSession(str(export_dir / file), options, providers=providers)
                         for name, file in files.items()}
        self.inputs = {name: [i.name for i in s.get_inputs()] for name, s in self.sessions.items()}
        self.outputs = {name: [o.name for o in s.get_outputs()] for name, s in self.sessions.items()}

    def run(self, graph: str, inputs: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
        """Feed the graph the inputs it declares (others, e.g. absent Jacobians, are ignored)."""
        feed = {name: np.ascontiguousarray(inputs[name].detach().cpu().float().numpy()) for name in self.inputs[graph]}
        values = self.sessions[graph].run(self.outputs[graph], feed)
        return {name: torch.from_numpy(value) for name, value in zip(self.outputs[graph], values)}
