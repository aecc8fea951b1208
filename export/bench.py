"""Backends side by side: per-stage and end-to-end times, FPS, speed-up over PyTorch eager and over the
official per-frame path, and PSNR of each backend's frames against FP32 eager on a real photo.

Backends are timed round-robin, one frame each in turn, so a load change on a shared machine hits them
all alike; figures are medians over the frames. ``python -m export.bench --help`` for the options.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from core.defaults import resolve_model
from core.media import sample_clip
from core.options import OneLineParser, add_options, from_args
from core.pipeline import FOMM_STAGES
from core.puppeteer import FommAvatar, FommPuppeteer, to_image
from export.backends import open_backend
from export.options import BackendBenchOptions
from export.timing import BackendRun, compare, psnr
from motion.checkpoint import load_model, save_checkpoint
from motion.config import Config, load_config
from motion.errors import UserError
from motion.keypoints import Keypoints
from motion.networks import build_networks


class OfficialLoop(FommPuppeteer):
    """The official demo's per-frame work on the stage interface, for comparison: render runs the whole
    generator, which encodes the avatar and computes the dense motion again every frame."""

    def motion(self, avatar: FommAvatar, kp_driving: Keypoints) -> Keypoints:
        return kp_driving

    @torch.no_grad()
    def render(self, avatar: FommAvatar, motion: Keypoints) -> np.ndarray:
        return to_image(self.generator(avatar.image, motion, avatar.kp).prediction)


def named_backends(config: Config, checkpoint: str | Path, device: torch.device, export_dir: str | Path | None = None,
           threads: int | None = None) -> Callable[[str], Any]:
    """name -> puppeteer: a backend by its registry name, or "official" for the official per-frame path."""
    def open_named(name: str) -> Any:
        if name == "official":
            return OfficialLoop(load_model(config, checkpoint, device), device)
        return open_backend(name, config, checkpoint, device, export_dir, threads)
    return open_named


Clip = tuple[np.ndarray, Sequence[np.ndarray]]  # (avatar, driving frames) at the model's size


def compare_backends(names: Sequence[str], config: Config, checkpoint: str | Path, device: torch.device,
                     frames: int, export_dir: str | Path | None = None, threads: int | None = None,
                     clip: Clip | None = None) -> list[BackendRun]:
    """The backends (and "official") timed side by side on ``clip``'s first frames + 1 (the first warms up);
    no clip: the astronaut photo moving."""
    avatar, driving = clip or sample_clip(config.size, frames + 1)
    return compare(names, named_backends(config, checkpoint, device, export_dir, threads), avatar,
                   driving[:frames + 1], device)


def worst_psnr(run: BackendRun, reference: BackendRun) -> float:
    """The lowest PSNR of run's frames against the reference's frames of the same input."""
    return min(psnr(a, b) for a, b in zip(run.frames, reference.frames))


def summary(runs: Sequence[BackendRun]) -> dict[str, dict[str, float | None]]:
    """Per backend: median ms per stage and frame, and the worst-frame PSNR against the first run (None
    for the first), as the table shows them (`bench --compare --stats`)."""
    return {run.name: {**{f"{stage}_ms": round(run.median_ms(stage), 2) for stage in (*FOMM_STAGES, "frame")},
                       "psnr_db": None if run is runs[0] else round(worst_psnr(run, runs[0]), 2)} for run in runs}


def format_table(runs: Sequence[BackendRun]) -> str:
    """One row per backend: median ms per stage and frame, FPS, speed-up over the first run (and over the
    "official" run when there is one), and the worst-frame PSNR against the first run's frames."""
    base = runs[0]
    official = next((run for run in runs if run.name == "official" and run is not base), None)
    head = f"{'backend':<18}" + "".join(f"{s + ' ms':>16}" for s in FOMM_STAGES) + \
        f"{'frame ms':>11}{'FPS':>8}{'vs ' + base.name:>14}" + (f"{'vs official':>13}" if official else "") + \
        f"{'PSNR dB':>9}"
    lines = [head]
    for run in runs:
        frame_ms = run.median_ms("frame")
        quality = worst_psnr(run, base)
        lines.append(f"{run.name:<18}" + "".join(f"{run.median_ms(s):>16.1f}" for s in FOMM_STAGES) +
                     f"{frame_ms:>11.1f}{1000 / frame_ms:>8.1f}{base.median_ms('frame') / frame_ms:>13.2f}x" +
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
    threads = torch.get_num_threads()
    return torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {threads} thread{'' if threads == 1 else 's'}"


def run_compare(config: str | Path | None, checkpoint: str | Path | None, names: Sequence[str], frames: int,
                device: torch.device, export_dir: str | Path | None = None, threads: int | None = None,
                clip: tuple[Clip, str] | None = None) -> list[BackendRun]:
    """Time the backends side by side and print the table (`puppet.py bench --compare`); no config and
    checkpoint: the shipped model; clip: (the clip, its name in the table's heading), as compare_backends
    (no clip: the astronaut photo moving)."""
    twice = sorted({name for name in names if list(names).count(name) > 1})
    if twice:
        raise UserError(f"{', '.join(twice)} listed more than once; name each backend once")
    config, checkpoint = resolve_model("fomm", config, checkpoint)
    loaded = load_config(config)
    clip, clip_name = clip or (None, "the astronaut photo moving")
    runs = compare_backends(names, loaded, checkpoint, device, frames, export_dir, threads, clip)
    timed = len(runs[0].times["frame"])
    print(f"{loaded.path} at {loaded.size[0]}x{loaded.size[1]}, {timed} frames of {clip_name}, "
          f"{device_name(device)}", file=sys.stderr)
    print(format_table(runs))
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m export.bench", description=__doc__)
    add_options(parser, BackendBenchOptions)
    options = from_args(BackendBenchOptions, parser.parse_args(argv))
    device = torch.device("cuda" if torch.cuda.is_available() and not options.cpu else "cpu")
    if options.threads:
        torch.set_num_threads(options.threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = options.checkpoint or random_checkpoint(load_config(options.config), Path(tmp))
            run_compare(options.config, checkpoint, options.backends.split(","), options.frames, device,
                        options.export_dir, options.threads)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
