"""Which keypoints of a trained FOMM to tie to the lips and upper eyelids (training/anchors.py): the
one-to-one assignment nearest those landmarks over a sample of training pairs, so that the anchor loss moves
the chosen keypoints the least. Prints train_params.anchor_keypoints; --write sets it in a config.

Usage: python scripts/anchor_keypoints.py CONFIG CHECKPOINT DATA [--pairs 256] [--write CONFIG]
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from motion.checkpoint import load_model  # noqa: E402
from motion.config import load_config  # noqa: E402
from training.anchors import ANCHORS, nearest_keypoints  # noqa: E402
from training.dataset import Extras, VideoDataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("data", help="dataset folder whose train/ clips have landmarks (scripts/face_masks.py)")
    parser.add_argument("--pairs", type=int, default=256, help="training pairs sampled (2 frames each)")
    parser.add_argument("--write", help="a config whose train_params.anchor_keypoints line to set")
    args = parser.parse_args()
    config = load_config(args.config)
    detector = load_model(config, args.checkpoint)["kp_detector"].eval()
    data = VideoDataset(args.data, "train", config.size, None, 1, seed=0, extras=Extras(anchors=True))
    rng = np.random.default_rng(0)
    keypoints, anchors = [], []
    with torch.no_grad():
        for index in rng.integers(0, len(data), args.pairs):
            item = data[int(index)]
            frames = torch.stack([item["source"], item["driving"]])
            keypoints.append(detector(frames).value.numpy())
            anchors.append(item["anchors"].numpy())
    chosen = nearest_keypoints(np.concatenate(keypoints), np.concatenate(anchors))
    print(f"anchor_keypoints: [{', '.join(map(str, chosen))}]  # {', '.join(ANCHORS)}")
    if args.write:
        path = Path(args.write)
        text, count = re.subn(r"anchor_keypoints: \[[^\]]*\]", f"anchor_keypoints: [{', '.join(map(str, chosen))}]",
                              path.read_text())
        if count != 1:
            sys.exit(f"error: {path} has no single train_params.anchor_keypoints line to set")
        path.write_text(text)


if __name__ == "__main__":
    main()
