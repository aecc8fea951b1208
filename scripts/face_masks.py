"""Landmarks and mouth and eye masks of every training frame, for the anchor and expression losses.

Computed once with dlib and cached in each clip's frame folder (training/face_masks.py); clips that have
them are skipped. Usage: python scripts/face_masks.py DATA [--size 128]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.face_masks import write_clip_masks  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="dataset folder with train/ (frame folders, official layout)")
    parser.add_argument("--size", type=int, default=128, help="the model's frame size (dataset_params.frame_shape)")
    args = parser.parse_args()
    written, faceless = write_clip_masks(args.data, (args.size, args.size))
    print(f"landmarks and masks written for {written} clips; {faceless} frames without a face (empty masks)")


if __name__ == "__main__":
    main()
