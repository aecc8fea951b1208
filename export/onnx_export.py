"""ONNX export of a FOMM model, cut at the seams of the real-time loop.

keypoints: one frame -> keypoints (run for the avatar once and for every driving frame);
avatar:    the avatar photo -> generator encoding + image at motion resolution (run once per avatar);
motion + render: the per-frame graph, cut once more where the loop times its stages: normalised
           driving keypoints + the cached avatar -> dense motion (motion); warp of the cached encoding
           by that motion, occlusion, decoder -> frame (render).

The wrappers only call the networks of motion/, so training, the eager loop and the exported graphs
share one definition. Shapes are static (batch 1, the config's frame size).
"""
from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import onnx
import onnx.version_converter
import torch
from torch import nn

from export.metadata import ExportError, config_hash, write_metadata
from export.onnx_rewrite import rewrite_for_cpu
from export.options import DEFAULT_OPSET
from motion.config import Config
from motion.generator import warp_features
from motion.keypoints import Keypoints

EXPORTER_OPSET = 18  # what torch.onnx writes natively; lower opsets are converted afterwards
DERIVED_SUFFIXES = (".engine", ".int8.onnx")  # made from the graphs later: TensorRT engines, INT8 graphs


class KeypointGraph(nn.Module):
    """image -> kp_value[, kp_jacobian]."""

    def __init__(self, kp_detector: nn.Module):
        super().__init__()
        self.kp_detector = kp_detector

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        kp = self.kp_detector(image)
        return (kp.value,) if kp.jacobian is None else (kp.value, kp.jacobian)


class AvatarGraph(nn.Module):
    """image -> (generator encoding, image at dense-motion resolution): all the per-frame graph needs."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.generator.encode(image), self.generator.dense_motion_network.downsample(image)


class MotionGraph(nn.Module):
    """Driving + avatar keypoints and the small avatar image -> deformation, mask[, occlusion], sparse_deformed."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, source_small: torch.Tensor, kp_driving_value: torch.Tensor, kp_source_value: torch.Tensor,
                kp_driving_jacobian: torch.Tensor | None = None,
                kp_source_jacobian: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        motion = self.generator.motion(source_small, Keypoints(kp_driving_value, kp_driving_jacobian),
                                       Keypoints(kp_source_value, kp_source_jacobian))
        return tuple(t for t in (motion.deformation, motion.mask, motion.occlusion, motion.sparse_deformed)
                     if t is not None)


class RenderGraph(nn.Module):
    """Cached avatar encoding + deformation[, occlusion] -> the frame."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, features: torch.Tensor, deformation: torch.Tensor,
                occlusion: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator.decode(warp_features(features, deformation, occlusion))


def _inverse_2x2(matrix: torch.Tensor) -> torch.Tensor:
    """Closed-form inverse of (..., 2, 2) matrices: ONNX has no matrix inverse, Jacobians are 2x2."""
    a, b, c, d = matrix[..., 0, 0], matrix[..., 0, 1], matrix[..., 1, 0], matrix[..., 1, 1]
    rows = torch.stack([torch.stack([d, -b], dim=-1), torch.stack([-c, a], dim=-1)], dim=-2)
    return rows / (a * d - b * c)[..., None, None]


def graph_specs(nets: dict[str, nn.Module], size: tuple[int, int]) -> dict[str, tuple[nn.Module, dict, list[str]]]:
    """name -> (wrapper, {input name: example tensor}, output names), examples from one eager pass."""
    kp_detector, generator = nets["kp_detector"], nets["generator"]
    image = torch.rand(1, 3, *size)
    with torch.no_grad():
        kp = kp_detector(image)
        features = generator.encode(image)
        small = generator.dense_motion_network.downsample(image)
        motion = generator.motion(small, kp, kp)
    jac = kp.jacobian is not None
    occ = motion.occlusion is not None
    kp_out = ["kp_value"] + (["kp_jacobian"] if jac else [])
    # distinct tensors: the exporter merges inputs given the same tensor object
    motion_in = {"source_small": small, "kp_driving_value": kp.value.clone(), "kp_source_value": kp.value}
    if jac:
        motion_in.update(kp_driving_jacobian=kp.jacobian.clone(), kp_source_jacobian=kp.jacobian)
    render_in = {"features": features, "deformation": motion.deformation}
    if occ:
        render_in["occlusion"] = motion.occlusion
    return {
        "keypoints": (KeypointGraph(kp_detector), {"image": image}, kp_out),
        "avatar": (AvatarGraph(generator), {"image": image}, ["features", "source_small"]),
        "motion": (MotionGraph(generator), motion_in,
                   ["deformation", "mask"] + (["occlusion"] if occ else []) + ["sparse_deformed"]),
        "render": (RenderGraph(generator), render_in, ["prediction"]),
    }


def _simplify(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """onnxslim's constant folding and fusions when it is installed; the graph unchanged otherwise."""
    try:
        import onnxslim
    except ImportError:
        return model, "none (pip install onnxslim)"
    with contextlib.redirect_stdout(io.StringIO()):
        return onnxslim.slim(model), f"onnxslim {onnxslim.__version__}"


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter logs its opset conversion and skipped torchvision ops as warnings: noise for users."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def export_graph(wrapper: nn.Module, inputs: dict[str, torch.Tensor], outputs: list[str], path: Path,
                 opset: int = DEFAULT_OPSET) -> str:
    """Export one wrapper to a checked, simplified ONNX file; returns the simplifier used."""
    args = tuple(inputs.values())
    table = torch.export.default_decompositions()
    table[torch.ops.aten.inverse.default] = _inverse_2x2
    with contextlib.redirect_stdout(io.StringIO()), _quiet_exporter():
        program = torch.export.export(wrapper.eval(), args).run_decompositions(table)
        onnx_program = torch.onnx.export(program, args, input_names=list(inputs), output_names=outputs,
                                         opset_version=max(opset, EXPORTER_OPSET), dynamo=True,
                                         external_data=False, verbose=False)
    model, simplifier = _simplify(onnx_program.model_proto)
    if opset < EXPORTER_OPSET:
        model = onnx.version_converter.convert_version(model, opset)
    if _opset(model) != opset:
        raise ExportError(f"the {path.stem} graph could not be written in opset {opset} (got {_opset(model)}); "
                          f"pass --opset {EXPORTER_OPSET}")
    onnx.save(rewrite_for_cpu(model), path)
    onnx.checker.check_model(str(path), full_check=True)
    return simplifier


def export_onnx(config: Config, nets: dict[str, nn.Module], checkpoint: str | Path, checkpoint_sha256: str,
                out_dir: str | Path, opset: int = DEFAULT_OPSET,
                progress: Callable[[str], Any] = lambda text: print(text, file=sys.stderr)) -> dict[str, Any]:
    """Write keypoints/avatar/motion/render .onnx and export.json to out_dir; returns the metadata."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for suffix in DERIVED_SUFFIXES:
        for derived in out_dir.glob("*" + suffix):
            derived.unlink()  # made from the previous export's graphs: stale now
    graphs = {}
    simplifier = ""
    for name, (wrapper, inputs, outputs) in graph_specs(nets, config.size).items():
        progress(f"exporting {name} graph to {out_dir / (name + '.onnx')}")
        simplifier = export_graph(wrapper, inputs, outputs, out_dir / f"{name}.onnx", opset)
        graphs[name] = {"file": f"{name}.onnx", "inputs": {k: list(v.shape) for k, v in inputs.items()},
                        "outputs": outputs}
    metadata = {"kind": config.kind, "config": str(config.path), "config_hash": config_hash(config),
                "checkpoint": str(checkpoint), "checkpoint_sha256": checkpoint_sha256, "opset": opset,
                "size": list(config.size), "torch": torch.__version__, "simplifier": simplifier, "graphs": graphs}
    write_metadata(out_dir, metadata)
    return metadata
