"""The model stages the real-time loop and the benchmark drive, and the registry of implementations.

Any object with FommPuppeteer's four stages works: prepare(avatar image) once, then per frame
keypoints(frame) -> motion(avatar, keypoints) -> render(avatar, motion). Other runtimes (ONNX Runtime,
TensorRT) register a factory in BACKENDS and become a --backend choice of `live` and `bench`.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np
import torch

from animation.puppeteer import FommPuppeteer
from motion.checkpoint import load_model
from motion.config import Config
from motion.keypoints import Keypoints
from motion.networks import build_networks


class Puppeteer(Protocol):
    """The stage interface; the prepared avatar must carry its keypoints as `.kp`."""

    def prepare(self, image: np.ndarray) -> Any: ...

    def keypoints(self, frame: np.ndarray) -> Keypoints: ...

    def motion(self, avatar: Any, kp_driving: Keypoints) -> Any: ...

    def render(self, avatar: Any, motion: Any) -> np.ndarray: ...


def torch_backend(config: Config, checkpoint: str | None, device: torch.device) -> FommPuppeteer:
    """PyTorch eager; without a checkpoint the weights are random (speed does not depend on them)."""
    if checkpoint is None:
        nets = {name: net.to(device).eval() for name, net in build_networks(config).items()}
    else:
        nets = load_model(config, checkpoint, device)
    return FommPuppeteer(nets, device)


BackendFactory = Callable[[Config, "str | None", torch.device], Puppeteer]

BACKENDS: dict[str, BackendFactory] = {
    "torch": torch_backend,
}
