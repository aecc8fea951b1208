"""Does a tracker's native code hold Python's interpreter lock? Ten tiny numpy operations are timed in this
thread, alone and while another thread runs dlib's shape predictor (or the Haar detector) in a loop: a
tracker that holds the lock stalls them for as long as one of its calls lasts. The figure behind
core/tracking/process.py (docs/benchmarks.md "Landmark tracking cost").

Usage: python scripts/tracker_gil.py [--probes 300]
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.tracking.haar import HaarFaceDetector  # noqa: E402
from core.tracking.landmarks import LANDMARK_MODEL, load_dlib  # noqa: E402


def probe(count: int) -> tuple[float, float]:
    """(median, 95th percentile) ms of ten tiny numpy operations, a millisecond apart."""
    values, times = np.zeros(1000), []
    for _ in range(count):
        start = time.perf_counter()
        for _ in range(10):
            values += 1
        times.append((time.perf_counter() - start) * 1000)
        time.sleep(0.001)
    return float(np.median(times)), float(np.percentile(times, 95))


def beside(work, count: int) -> tuple[float, float]:
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            work()
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        return probe(count)
    finally:
        stop.set()
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=300)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    dlib, _, predictor = load_dlib(LANDMARK_MODEL)
    grey = np.random.default_rng(0).integers(0, 255, (256, 256), dtype=np.uint8)
    window = dlib.rectangle(64, 64, 192, 192)
    haar, frame = HaarFaceDetector(), np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    for label, work in (("alone", None), ("beside dlib's shape predictor", lambda: predictor(grey, window)),
                        ("beside the Haar detector", lambda: haar.detect(frame))):
        median, p95 = probe(args.probes) if work is None else beside(work, args.probes)
        print(f"ten numpy operations {label}: median {median:.2f} ms, p95 {p95:.2f} ms")


if __name__ == "__main__":
    main()
