"""Where the landmark tracker's constants and costs come from (core/tracking/landmarks.py).

calibrate: on the even frames of a clip (default the bundled checkpoints/webcam.mp4, a real person), the
ratios of the Haar box (core.tracking.haar.HaarFaceDetector, what the crop is defined on) to the inter-ocular
and eyes-to-mouth distances of dlib's landmarks, where its centre lies between the eyes and the mouth,
and the same for dlib's detector rectangle; then how far the calibrated box is from the Haar box.
cost: median wall and CPU milliseconds per frame over the clip (frames scaled by --scale) of a full dlib detection,
of dlib tracking (LandmarkTracker.update once the face is found), and of the Haar tracker's searches.
Usage: python scripts/landmark_tracking.py [calibrate|cost] [--video V] [--scale S] [--passes N]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import imageio.v2 as imageio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.tracking.haar import HaarFaceDetector  # noqa: E402
from core.tracking.landmarks import DlibLandmarks, LandmarkTracker, shape_68  # noqa: E402


def calibrate(frames: list[np.ndarray]) -> None:
    haar, dlib_faces = HaarFaceDetector(), DlibLandmarks()
    rows = []
    for frame in frames[::2]:
        box = haar.detect(frame)
        faces = dlib_faces.detector(frame, 0)
        if box is None or not faces:
            continue
        rect = faces[0]
        shape = shape_68([[p.x, p.y] for p in dlib_faces.predictor(frame, rect).parts()])
        down = shape.mouth - shape.eyes
        eye_mouth, eyes = float(np.linalg.norm(down)), float(np.linalg.norm(shape.right_eye - shape.left_eye))
        rect_centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
        ours = shape.box()
        rows.append((box.side / eyes, box.side / eye_mouth,
                     float((np.array([box.cx, box.cy]) - shape.eyes) @ down) / eye_mouth ** 2,
                     rect.width() / shape.side, float((rect_centre - shape.eyes) @ down) / eye_mouth ** 2,
                     ours.side / box.side - 1, float(np.hypot(ours.cx - box.cx, ours.cy - box.cy))))
    table = np.array(rows)
    names = ["SIDE_PER_EYES", "SIDE_PER_EYE_MOUTH", "CENTRE_DOWN", "WINDOW_SIDE", "WINDOW_DOWN",
             "calibrated side vs Haar (relative)", "calibrated centre vs Haar (px)"]
    print(f"{len(rows)} frames with both a Haar box and a dlib face")
    for name, column in zip(names, table.T):
        print(f"{name:36s} mean {column.mean():+.3f}  std {column.std():.3f}  max |.| {np.abs(column).max():.3f}")


def per_frame_ms(frames: list[np.ndarray], step, passes: int) -> str:
    """Median wall and CPU (process, all threads) milliseconds of one step: on a shared machine the CPU
    time is the cost, the wall time also counts waiting for a core."""
    wall, cpu = [], []
    for _ in range(passes):
        for i, frame in enumerate(frames):
            start, start_cpu = time.perf_counter(), time.process_time()
            step(frame, i)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return f"wall {1000 * np.median(wall):6.2f}  cpu {1000 * np.median(cpu):6.2f}"


def cost(frames: list[np.ndarray], passes: int) -> None:
    provider, haar = DlibLandmarks(), HaarFaceDetector()
    tracker = LandmarkTracker(provider)
    tracker.update(frames[0], 0.0)
    found = haar.detect(frames[0])
    steps = {"dlib full detection (HOG + landmarks)": lambda f, i: provider.landmarks(f, None),
             "dlib tracking (LandmarkTracker.update)": lambda f, i: tracker.update(f, i / 25),
             "Haar full-frame search": lambda f, i: haar.detect(f),
             "Haar search near the last box": lambda f, i: haar.detect(f, found)}
    print(f"frames {frames[0].shape[1]}x{frames[0].shape[0]}, median ms per frame over {len(frames)} frames x {passes}")
    for name, step in steps.items():
        print(f"{name:39s}{per_frame_ms(frames, step, passes)}")
    print(f"the tracker ran {tracker.detections} detection(s) and lost the face {tracker.losses} time(s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["calibrate", "cost"])
    parser.add_argument("--video", default="checkpoints/webcam.mp4")
    parser.add_argument("--scale", type=float, default=1.0, help="resize frames by this factor (cost only)")
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    frames = [np.ascontiguousarray(f[..., :3]) for f in imageio.mimread(args.video, memtest=False)]
    if args.what == "calibrate":
        calibrate(frames)
        return
    if args.scale != 1.0:
        frames = [cv2.resize(f, None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_LINEAR) for f in frames]
    cost(frames, args.passes)


if __name__ == "__main__":
    main()
