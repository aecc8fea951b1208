"""Where the anchor points (training/anchors.py: mid upper and lower inner lip, mid upper eyelids) land in
the ArcFace 112 x 112 alignment the identity networks expect: the median over faces of a dataset's landmark
caches (scripts/face_masks.py), printed as training/identity_loss.py's ANCHOR_TEMPLATE.

Usage: python scripts/anchor_template.py DATA  (e.g. data/mixed)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.anchors import anchor_points  # noqa: E402
from training.face_identity import key_points, similarity_matrix  # noqa: E402
from training.face_masks import LANDMARK_FILE, load_landmarks  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="dataset folder whose train/ clips hold landmark caches")
    args = parser.parse_args()
    placed = []
    for cache in sorted(Path(args.data).glob(f"train/*/{LANDMARK_FILE}")):
        marks, _ = load_landmarks(cache)
        for frame in marks[::8]:
            if not np.isnan(frame).any():
                matrix = similarity_matrix(key_points(frame))
                placed.append(anchor_points(frame) @ matrix[:, :2].T + matrix[:, 2])
    template = np.median(placed, axis=0)
    print(f"{len(placed)} frames; ANCHOR_TEMPLATE = {np.round(template, 2).tolist()}")


if __name__ == "__main__":
    main()
