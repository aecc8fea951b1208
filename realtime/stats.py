"""Per-stage latency, FPS and drop counts of a run: what the loop prints on exit and writes as JSON.

Samples live in fixed-size windows, so an hours-long session keeps constant memory and its
percentiles describe the recent past rather than the start-up.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

STAGES = ("capture", "face_crop", "keypoints", "dense_motion", "generator", "detail", "paste_back", "output")
# the order of the table: every frame's stages, and those that run only with some trackers or expression
ORDER = (*STAGES[:3], "tracker_wait", STAGES[3], "expression", STAGES[4], "expression_warp", *STAGES[5:])
WINDOW = 10_000


def percentiles(samples_s: "deque[float] | list[float]") -> dict[str, float]:
    """p50/p95/p99 and mean in milliseconds of samples given in seconds."""
    values = np.asarray(samples_s, dtype=np.float64) * 1000.0
    if values.size == 0:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "mean": 0.0, "count": 0}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3),
            "mean": round(float(values.mean()), 3), "count": int(values.size)}


class Stats:
    """Thread-safe recorder: stage timings from any thread, frame and drop counters, extra figures."""

    def __init__(self, window: int = WINDOW):
        self._window = window
        self._samples: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.frames = 0
        self.dropped = 0
        self.extra: dict[str, object] = {}
        self._first: float | None = None
        self._last: float | None = None

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._samples.setdefault(stage, deque(maxlen=self._window)).append(seconds)

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)

    def frame_done(self, latency_s: float) -> None:
        """One output frame delivered to the sinks, latency_s after its capture."""
        now = time.perf_counter()
        with self._lock:
            self.frames += 1
            self._first = now if self._first is None else self._first
            self._last = now
        self.add("end_to_end", latency_s)

    @property
    def fps(self) -> float:
        """Frames per second between the first and the last delivered frame."""
        with self._lock:
            if self.frames < 2 or self._first is None or self._last is None or self._last <= self._first:
                return 0.0
            return (self.frames - 1) / (self._last - self._first)

    def summary(self) -> dict:
        with self._lock:
            stages = {name: percentiles(samples) for name, samples in self._samples.items()}
        ordered = {"end_to_end": stages.pop("end_to_end", percentiles([]))}
        ordered.update({name: stages.pop(name) for name in ORDER if name in stages})
        ordered.update(sorted(stages.items()))
        return {"frames": self.frames, "fps": round(self.fps, 3), "dropped": self.dropped,
                "latency_ms": ordered, **self.extra}

    def table(self, title: str = "") -> str:
        summary = self.summary()
        lines = [title] if title else []
        lines.append(f"{'stage':<16}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}")
        for name, figures in summary["latency_ms"].items():
            lines.append(f"{name:<16}{figures['p50']:>10.2f}{figures['p95']:>10.2f}{figures['p99']:>10.2f}")
        lines.append(f"frames {summary['frames']}, {summary['fps']:.1f} FPS, dropped {summary['dropped']}")
        return "\n".join(lines)

    def write_json(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.summary(), indent=2) + "\n")
