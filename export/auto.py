"""`--backend auto`: the fastest backend that stays accurate on this machine, chosen when it opens.

Which backends are worth trying follows the hardware, not a constant: bf16 pays only with bf16 matrix units
(AMX, AVX-512-BF16: export/cpu.py) or a GPU and is emulated, slower, elsewhere; INT8 graphs pay with VNNI.
Each candidate animates a few frames of the user's avatar moving (core.media.moving_clip; the astronaut
photo when the caller has no avatar) beside FP32 torch, round-robin as the bench does; the fastest whose
worst frame keeps ``min_psnr`` dB against FP32 wins, torch otherwise. A real photo and a trained model make
that check mean something: random-weight models give nearly flat frames, which any backend matches.
Some candidates cost time on a model's first use, each with a message, and are reused afterwards: ONNX
Runtime needs the model's graphs exported (half a minute), which is what wins on CPUs without bf16 units;
torch-bf16-compiled needs TorchInductor's compile (up to a minute on bf16 CPUs). A failed export or a
candidate that cannot run here (no C++ compiler) leaves the other candidates and says so in the line.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from core.media import moving_clip, sample_clip
from export.cache import ensure_export
from export.cpu import CpuCapabilities, detect
from export.errors import BackendUnavailableError
from export.timing import BackendRun, compare, psnr
from motion.config import Config
from motion.errors import UserError, first_line

MIN_PSNR = 35.0
MIN_PSNR_ENV = "PUPPET_AUTO_MIN_PSNR"  # overrides MIN_PSNR (e.g. inf to see the fallback to torch)
FRAMES = 4  # timed frames per backend, after one warm-up frame


@dataclass(frozen=True)
class Trial:
    """One backend's median frame time and worst-frame PSNR against FP32 torch."""
    name: str
    ms: float
    psnr: float


@dataclass(frozen=True)
class AutoChoice:
    """The chosen backend, every trial (FP32 torch first; none when there was nothing to try) and the line
    that was printed."""
    name: str
    puppeteer: Any
    trials: tuple[Trial, ...]
    line: str


def candidates(device: torch.device, cpu: CpuCapabilities, onnxruntime: bool) -> list[str]:
    """The backends worth timing against FP32 torch on this hardware; ``onnxruntime``: it can run here."""
    if device.type == "cuda":
        return ["torch-bf16-all"]
    if cpu.fast_bf16:
        return ["torch-bf16-compiled", "torch-bf16-all", "torch-bf16"] + \
            (["onnxruntime-int8"] if onnxruntime and cpu.vnni else [])
    return ["onnxruntime", "onnxruntime-int8"] if onnxruntime else []


def pick(trials: Sequence[Trial], min_psnr: float) -> Trial:
    """The fastest of FP32 torch (``trials[0]``, the reference) and the candidates that keep ``min_psnr``."""
    return min([trials[0], *(trial for trial in trials[1:] if trial.psnr >= min_psnr)], key=lambda t: t.ms)


def explain(chosen: Trial, trials: Sequence[Trial], min_psnr: float, hardware: str, photo: str) -> str:
    """The reason part of the line: the winner's figures against torch, or why torch stayed; ``photo``:
    what the frames were compared on."""
    reference = trials[0]
    if chosen is not reference:
        return (f"{hardware}; {chosen.psnr:.1f} dB vs FP32 on {photo}, {chosen.ms:.1f} ms vs {reference.ms:.1f} ms "
                "torch")
    failed = [trial for trial in trials[1:] if trial.psnr < min_psnr]
    slower = [trial for trial in trials[1:] if trial.psnr >= min_psnr]
    parts = [hardware]
    if failed:
        parts.append(f"below {min_psnr:g} dB vs FP32 on {photo}: " +
                     ", ".join(f"{t.name} {t.psnr:.1f} dB" for t in failed))
    if slower:
        parts.append("slower: " + ", ".join(f"{t.name} {t.ms:.1f} ms" for t in slower) +
                     f" vs {reference.ms:.1f} ms torch")
    return "; ".join(parts)


def min_psnr_setting() -> float:
    """MIN_PSNR, or $PUPPET_AUTO_MIN_PSNR when set."""
    text = os.environ.get(MIN_PSNR_ENV)
    if text is None:
        return MIN_PSNR
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{MIN_PSNR_ENV}={text!r} is not a number of dB; unset it or use e.g. 35") from None


class Request(Protocol):
    """What the backends are opened with (export.backends.BackendOptions)."""
    config: Config
    checkpoint: str | Path
    device: torch.device
    export_dir: str | Path | None
    avatar: np.ndarray | None


def median_frame_ms(run: BackendRun) -> float:
    """A trial's time: the median of its timed frames."""
    return run.median_ms("frame")


def choose_backend(options: Request, open_named: Callable[[str], Any], capabilities: CpuCapabilities | None = None,
                   min_psnr: float | None = None, frames: int = FRAMES,
                   frame_ms: Callable[[BackendRun], float] = median_frame_ms) -> AutoChoice:
    """Time this machine's candidates against FP32 torch, print one line saying which won and why, and
    return it opened. open_named: backend name -> puppeteer (export.backends.opener); capabilities: the
    CPU's (default: detected); min_psnr: the bar (default: the setting); frame_ms: a run's time (tests
    inject it, so which backend wins never depends on the machine that runs them)."""
    cpu = capabilities or detect()
    bar = min_psnr_setting() if min_psnr is None else min_psnr
    hardware = torch.cuda.get_device_name(options.device) if options.device.type == "cuda" else cpu.label()
    has_ort = options.device.type == "cpu" and importlib.util.find_spec("onnxruntime") is not None
    offered = candidates(options.device, cpu, has_ort)
    needs_export = any(name.startswith("onnxruntime") for name in offered)
    untried = ""
    if needs_export:
        try:  # exports on the model's first use; afterwards only reads the export's metadata
            ensure_export(options.config, options.checkpoint, options.export_dir)
        except UserError:
            raise  # the user's mistake (e.g. a file that is no checkpoint): every backend would refuse it
        except Exception as err:  # any failure of the exporter (a missing onnx, an unexportable op) leaves torch
            untried = f"; onnxruntime untried: the export failed ({first_line(err)})"
    export_failed = bool(untried)
    opened = {"torch": open_named("torch")}
    for name in offered:
        if export_failed and name.startswith("onnxruntime"):
            continue
        try:
            opened[name] = open_named(name)
        except BackendUnavailableError as err:  # e.g. no C++ compiler for torch-bf16-compiled
            untried += f"; {name} untried ({err.reason})"
    if len(opened) == 1:
        line = f"backend auto: torch ({hardware}; nothing faster to try here{untried})"
        print(line, file=sys.stderr)
        return AutoChoice("torch", opened["torch"], (), line)
    if options.avatar is None:
        photo, (avatar, driving) = "the astronaut", sample_clip(options.config.size, frames + 1)
    else:
        photo, avatar = "the avatar", options.avatar
        driving = moving_clip(avatar, options.config.size, frames + 1)
    runs = compare(list(opened), opened.__getitem__, avatar, driving, options.device)
    reference = runs[0].frames
    trials = tuple(Trial(run.name, frame_ms(run), float(min(map(psnr, run.frames, reference))))
                   for run in runs)
    chosen = pick(trials, bar)
    line = f"backend auto: {chosen.name} ({explain(chosen, trials, bar, hardware, photo)}{untried})"
    print(line, file=sys.stderr)
    return AutoChoice(chosen.name, runs[trials.index(chosen)].puppeteer, trials, line)
