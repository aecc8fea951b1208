"""Backends timed side by side on a clip: per-stage samples through the one pipeline, and PSNR against
a reference. Used by the backend benchmark (export/bench.py) and by `--backend auto` (export/auto.py); it
opens backends through the function it is given, so it depends on neither."""
from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from core.pipeline import FOMM_STAGES, FommPipeline


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


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of [0, 1] images (inf when identical)."""
    mse = float(np.mean((np.asarray(image, np.float64) - reference) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def compare(names: Sequence[str], open_named: Callable[[str], Any], avatar: np.ndarray,
            driving: Sequence[np.ndarray], device: torch.device) -> list[BackendRun]:
    """Open every backend by name, start each on ``avatar`` and warm it up on the first driving frame (also
    the reference pose), then time the other frames round-robin."""
    runs = [BackendRun(name, open_named(name), device) for name in names]
    for run in runs:
        run.start(avatar)
        run.step(driving[0])  # warm-up and reference pose: allocations, kernel selection, lazy init
        run.times = {s: [] for s in (*FOMM_STAGES, "frame")}
        run.frames.clear()
    for frame in driving[1:]:
        for run in runs:
            run.step(frame)
    return runs
