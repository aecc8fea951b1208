"""Shared fixtures: configs, randomly initialised checkpoints in the official layouts, media files."""
from __future__ import annotations

import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from skimage import data as skdata

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from motion.checkpoint import save_checkpoint  # noqa: E402
from motion.config import load_config  # noqa: E402
from motion.networks import build_networks  # noqa: E402

CONFIGS = ROOT / "configs"
TEST_CONFIGS = ROOT / "tests" / "configs"


def make_checkpoint(config_path: Path, out: Path, seed: int = 0) -> Path:
    """A random-init checkpoint in the official layout, optimizer entries and epoch included.

    BatchNorm running statistics are randomised too, so eval-mode arithmetic is really exercised.
    """
    config = load_config(config_path)
    torch.manual_seed(seed)
    nets = build_networks(config, with_discriminator=config.kind == "fomm")
    for net in nets.values():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    optimizers = {name: torch.optim.Adam(net.parameters()) for name, net in nets.items()}
    save_checkpoint(out, nets, optimizers, epoch=3)
    return out


@pytest.fixture(scope="session")
def tiny_fomm(tmp_path_factory) -> tuple[Path, Path]:
    """(config, checkpoint) of the tiny FOMM."""
    cfg = TEST_CONFIGS / "tiny-fomm.yaml"
    return cfg, make_checkpoint(cfg, tmp_path_factory.mktemp("ckpt") / "tiny-fomm.pth.tar")


@pytest.fixture(scope="session")
def tiny_coseg(tmp_path_factory) -> tuple[Path, Path]:
    cfg = TEST_CONFIGS / "tiny-coseg.yaml"
    return cfg, make_checkpoint(cfg, tmp_path_factory.mktemp("ckpt") / "tiny-coseg.pth.tar")


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> Path:
    """A tiny synthetic dataset (2 training clips and 1 test clip of 8 frames, 64x64) for training tests; copy it
    before writing into it."""
    from training.synthetic import generate_dataset
    return generate_dataset(tmp_path_factory.mktemp("data") / "synthetic", videos=2, test_videos=1, frames=8,
                            size=64, seed=3, progress=False)


@pytest.fixture(scope="session")
def astronaut_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("media") / "astronaut.png"
    imageio.imwrite(path, skdata.astronaut())
    return path


def shifted_clip(image: np.ndarray, frames: int = 6, step: int = 6) -> list[np.ndarray]:
    """A short clip of the image sliding sideways: real content with known motion."""
    return [np.roll(image, step * i, axis=1) for i in range(frames)]


@pytest.fixture(scope="session")
def driving_mp4(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("media") / "driving.mp4"
    imageio.mimsave(path, shifted_clip(skdata.astronaut()[::2, ::2]), fps=10)
    return path


@torch.no_grad()
def naive_relative_animation(nets: dict, source: np.ndarray, frames: list[np.ndarray]) -> list[np.ndarray]:
    """FOMM relative motion written from the paper, with no helper of the code under test: the whole
    generator per frame (nothing cached), kp = kp_src + (kp_drv - kp_drv_first) and
    J = J_drv @ inv(J_drv_first) @ J_src, each 2x2 product spelled out per keypoint."""
    def tensor(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]

    detector, generator = nets["kp_detector"], nets["generator"]
    source_t = tensor(source)
    kp_src = detector(source_t)
    first = None
    out = []
    for frame in frames:
        kp = detector(tensor(frame))
        first = kp if first is None else first
        value = kp_src.value + (kp.value - first.value)
        jacobian = kp.jacobian.clone()
        for k in range(jacobian.shape[1]):
            (a, b), (c, d) = first.jacobian[0, k].tolist()
            inverse = torch.tensor([[d, -b], [-c, a]]) / (a * d - b * c)
            jacobian[0, k] = kp.jacobian[0, k] @ inverse @ kp_src.jacobian[0, k]
        driving = type(kp)(value, jacobian)
        out.append(generator(source_t, driving, kp_src).prediction[0].permute(1, 2, 0).numpy())
    return out


class FakeClock:
    """Time that moves only when told to (sleep(), or a test's fake work): paced runs become deterministic."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float, stop) -> None:
        self.t += seconds
