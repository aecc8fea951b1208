"""Backends side by side: per-stage and end-to-end times, FPS, speed-up over PyTorch eager and over the
official per-frame path, and PSNR of each backend's frames against FP32 eager on a real photo.

Backends are timed round-robin, one frame each in turn, so a load change on a shared machine hits them
all alike; figures are medians over the frames. ``python -m export.bench --help`` for the options.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from animation.defaults import resolve_model
from animation.media import sample_clip
from animation.pipeline import FOMM_STAGES, FommPipeline
from animation.puppeteer import FommAvatar, FommPuppeteer, to_image
from export.backends import open_backend
from motion.checkpoint import load_model, save_checkpoint
from motion.config import Config, load_config
from motion.keypoints import Keypoints
from motion.networks import build_networks

DEFAULT_COMPARE = "torch,official,torch-bf16,onnxruntime"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class BackendRun:
    """One backend's pipeline, per-stage samples (seconds) and frames."""
    name: str
    puppeteer: Any
    device: torch.device
    pipeline: FommPipeline | None = None
    times: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in (*FOMM_STAGES, "frame")})
    frames: list[np.ndarray] = field(default_factory=list)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """The pipeline's stage timer, synchronised on a GPU so a stage's time is its own."""
        start = time.perf_counter()
        yield
        _sync(self.device)
        self.times[stage].append(time.perf_counter() - start)

    def start(self, avatar: np.ndarray) -> None:
        self.pipeline = FommPipeline(self.puppeteer, avatar, timer=self.timed)

    def step(self, frame: np.ndarray) -> None:
        with self.timed("frame"):
            self.frames.append(self.pipeline(frame))

    def median_ms(self, stage: str) -> float:
        return 1000 * statistics.median(self.times[stage])


class OfficialLoop(FommPuppeteer):
    """The official demo's per-frame work on the stage interface, for comparison: render runs the whole
    generator, which encodes the avatar and computes the dense motion again every frame."""

    def motion(self, avatar: FommAvatar, kp_driving: Keypoints) -> Keypoints:
        return kp_driving

    @torch.no_grad()
    def render(self, avatar: FommAvatar, motion: Keypoints) -> np.ndarray:
        return to_image(self.generator(avatar.image, motion, avatar.kp).prediction)


def open_run(name: str, config: Config, checkpoint: str | Path, device: torch.device,
             export_dir: str | Path | None, threads: int | None) -> BackendRun:
    """A backend by its registry name, or "official" for the official per-frame path."""
    if name == "official":
        return BackendRun(name, OfficialLoop(load_model(config, checkpoint, device), device), device)
    return BackendRun(name, open_backend(name, config, checkpoint, device, export_dir, threads), device)


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of [0, 1] images (inf when identical)."""
    mse = float(np.mean((np.asarray(image, np.float64) - reference) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def compare(names: Sequence[str], config: Config, checkpoint: str | Path, device: torch.device, frames: int = 20,
            export_dir: str | Path | None = None, threads: int | None = None) -> list[BackendRun]:
    """Prepare every backend, warm each up on one frame, then time ``frames`` frames round-robin."""
    avatar, driving = sample_clip(config.size, frames + 1)
    runs = [open_run(name, config, checkpoint, device, export_dir, threads) for name in names]
    for run in runs:
        run.start(avatar)
        run.step(driving[0])  # warm-up and reference pose: allocations, kernel selection, lazy init
        run.times = {s: [] for s in (*FOMM_STAGES, "frame")}
        run.frames.clear()
    for frame in driving[1:]:
        for run in runs:
            run.step(frame)
    return runs


def format_table(runs: Sequence[BackendRun]) -> str:
    """One row per backend: median ms per stage and frame, FPS, speed-up over the first run (and over the
    "official" run when there is one), and the worst-frame PSNR against the first run's frames."""
    base = runs[0]
    official = next((run for run in runs if run.name == "official"), None)
    head = f"{'backend':<18}" + "".join(f"{s + ' ms':>16}" for s in FOMM_STAGES) + \
        f"{'frame ms':>11}{'FPS':>8}{'vs ' + base.name:>11}" + (f"{'vs official':>13}" if official else "") + \
        f"{'PSNR dB':>9}"
    lines = [head]
    for run in runs:
        frame_ms = run.median_ms("frame")
        quality = min(psnr(a, b) for a, b in zip(run.frames, base.frames))
        lines.append(f"{run.name:<18}" + "".join(f"{run.median_ms(s):>16.1f}" for s in FOMM_STAGES) +
                     f"{frame_ms:>11.1f}{1000 / frame_ms:>8.1f}{base.median_ms('frame') / frame_ms:>10.2f}x" +
                     (f"{official.median_ms('frame') / frame_ms:>12.2f}x" if official else "") +
                     (f"{'ref':>9}" if run is base else f"{quality:>9.1f}"))
    return "\n".join(lines)


def random_checkpoint(config: Config, folder: Path) -> Path:
    """A random-init checkpoint of the config's architecture, for timing models we have no weights for."""
    torch.manual_seed(0)
    path = folder / "random.pth.tar"
    save_checkpoint(path, build_networks(config), {}, epoch=0)
    return path


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"


def run_compare(config: str | Path | None, checkpoint: str | Path | None, names: Sequence[str], frames: int,
                device: torch.device, export_dir: str | Path | None = None,
                threads: int | None = None) -> list[BackendRun]:
    """Time the backends side by side and print the table (`puppet.py bench --compare`); no config and
    checkpoint: the shipped model."""
    config, checkpoint = resolve_model("fomm", config, checkpoint)
    loaded = load_config(config)
    runs = compare(names, loaded, checkpoint, device, frames, export_dir, threads)
    print(f"{loaded.path} at {loaded.size[0]}x{loaded.size[1]}, {frames} frames, {device_name(device)}",
          file=sys.stderr)
    print(format_table(runs))
    return runs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m export.bench", description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--checkpoint", help="weights (omit for random init: timings only, PSNR meaningless)")
    parser.add_argument("--backends", default=DEFAULT_COMPARE,
                        help="comma-separated registry names, the first is the baseline; 'official' is the "
                        f"official per-frame path (default: {DEFAULT_COMPARE})")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--threads", type=int, help="torch and ONNX Runtime threads (default: usable cores)")
    parser.add_argument("--export-dir", help="exported graphs (default: the cache)")
    parser.add_argument("--cpu", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or random_checkpoint(load_config(args.config), Path(tmp))
        run_compare(args.config, checkpoint, args.backends.split(","), args.frames, device, args.export_dir,
                    args.threads)


if __name__ == "__main__":
    main()
