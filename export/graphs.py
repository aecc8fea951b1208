"""The FOMM stages over exported graphs (keypoints, avatar, motion, render): one stage class for every
graph runner (ONNX Runtime, TensorRT, the INT8 calibration recorder)."""
from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from core.puppeteer import FommAvatar, to_image, to_tensor
from motion.dense_motion import DenseMotion
from motion.keypoints import Keypoints


class GraphRunner(Protocol):
    def run(self, graph: str, inputs: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor]: ...


class GraphPuppeteer:
    """The FOMM stages over the exported graphs; the runner (ONNX Runtime, TensorRT) executes them."""

    def __init__(self, runner: GraphRunner, device: torch.device):
        self.runner = runner
        self.device = device

    def _keypoints(self, image: torch.Tensor) -> Keypoints:
        out = self.runner.run("keypoints", {"image": image})
        return Keypoints(out["kp_value"], out.get("kp_jacobian"))

    def prepare(self, image: np.ndarray) -> FommAvatar:
        source = to_tensor(image, self.device)
        out = self.runner.run("avatar", {"image": source})
        return FommAvatar(source, self._keypoints(source), out["features"], out["source_small"])

    def keypoints(self, frame: np.ndarray) -> Keypoints:
        return self._keypoints(to_tensor(frame, self.device))

    def motion(self, avatar: FommAvatar, kp_driving: Keypoints) -> DenseMotion:
        out = self.runner.run("motion", {
            "source_small": avatar.small, "kp_driving_value": kp_driving.value, "kp_source_value": avatar.kp.value,
            "kp_driving_jacobian": kp_driving.jacobian, "kp_source_jacobian": avatar.kp.jacobian})
        return DenseMotion(out["deformation"], out["mask"], out.get("occlusion"), out["sparse_deformed"])

    def render(self, avatar: FommAvatar, motion: DenseMotion) -> np.ndarray:
        out = self.runner.run("render", {"features": avatar.features, "deformation": motion.deformation,
                                         "occlusion": motion.occlusion})
        return to_image(out["prediction"])
