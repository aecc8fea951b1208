"""Per-frame GFLOPs of FOMM models as the real-time loop runs them (driving keypoints, dense motion, decoder;
the avatar prepared once), counted by torch's FlopCounterMode (convolutions and matrix products).
Usage: python scripts/frame_flops.py NAME... (checkpoints/NAME.yaml + NAME.pth.tar)"""
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.pipeline import FommPipeline  # noqa: E402
from core.puppeteer import FommPuppeteer  # noqa: E402
from motion.checkpoint import load_model  # noqa: E402
from motion.config import load_config  # noqa: E402

print("model              per-frame GFLOPs   avatar prepare GFLOPs (once)")
for name in sys.argv[1:]:
    config = load_config(f"checkpoints/{name}.yaml")
    puppeteer = FommPuppeteer(load_model(config, f"checkpoints/{name}.pth.tar"), torch.device("cpu"))
    frame = np.random.default_rng(0).random((*config.size, 3), dtype=np.float32)
    with FlopCounterMode(display=False) as prepare:
        pipeline = FommPipeline(puppeteer, frame)
    pipeline(frame)  # the reference pose
    with FlopCounterMode(display=False) as per_frame:
        pipeline(frame)
    print(f"{name:<18} {per_frame.get_total_flops() / 1e9:>16.2f}   {prepare.get_total_flops() / 1e9:>10.2f}")
