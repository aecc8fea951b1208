"""Which parts of a co-part model hold the face and hair: the shipped config's default swap_index.

For every frame of the held-out real clips, the face region is the convex hull of dlib's 68 landmarks
grown upwards by half the face's height (hair and forehead); a part belongs to the face when more than
`--inside` (65 %) of its mass, summed over all frames, falls in that region, and it holds at least 0.5 % of all
the parts' mass (the background, part 0, aside). Usage: python scripts/face_parts.py CONFIG CHECKPOINT --data data/real
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.puppeteer import to_tensor  # noqa: E402
from core.tracking.landmarks import LandmarkDetector  # noqa: E402
from motion.checkpoint import load_model  # noqa: E402
from motion.config import load_config  # noqa: E402
from training.dataset import load_video, split_videos  # noqa: E402


def face_region(landmarks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) bool: the landmarks' hull, plus the same hull lifted by half the face height (hair)."""
    height = landmarks[:, 1].max() - landmarks[:, 1].min()
    lifted = landmarks - [0, height / 2]
    mask = np.zeros(size, np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.vstack([landmarks, lifted]).astype(np.int32)), 1)
    return mask.astype(bool)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--data", required=True)
    parser.add_argument("--inside", type=float, default=0.65)
    parser.add_argument("--step", type=int, default=8, help="every N-th frame")
    args = parser.parse_args()
    config = load_config(args.config)
    segmentation = load_model(config, args.checkpoint)["segmentation_module"]
    landmarks = LandmarkDetector()
    inside = total = 0
    with torch.no_grad():
        for video in split_videos(args.data, "test"):
            for frame in load_video(video, config.size)[:: args.step]:
                points = landmarks(frame)
                if points is None:
                    continue
                parts = torch.nn.functional.interpolate(segmentation(to_tensor(frame, "cpu")).segmentation,
                                                        size=frame.shape[:2], mode="bilinear")[0, 1:].numpy()
                region = face_region(points, frame.shape[:2])
                inside = inside + (parts * region).sum((1, 2))
                total = total + parts.sum((1, 2))
    if isinstance(total, int):
        raise SystemExit("no test frame had facial landmarks")
    share = total / total.sum()
    chosen = [k + 1 for k in range(len(share)) if share[k] >= 0.005 and inside[k] / total[k] > args.inside]
    for k in range(len(share)):
        print(f"part {k + 1:2d}: {100 * share[k]:5.1f} % of the parts' mass, {100 * inside[k] / total[k]:5.1f} % of it "
              "in the face region")
    print("swap_index:", chosen)


if __name__ == "__main__":
    main()
