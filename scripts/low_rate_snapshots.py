"""Print a training run's --snapshots taken after its learning-rate milestone (the ones `average` ships).
Usage: python scripts/low_rate_snapshots.py RUN_FOLDER"""
import sys
from pathlib import Path

import torch

run = Path(sys.argv[1])
state = torch.load(run / "checkpoint.pth.tar", map_location="cpu", weights_only=True)
milestone = min(next(v for k, v in state.items() if k.startswith("scheduler_"))["milestones"])
print(" ".join(str(p) for p in sorted(run.glob("checkpoint_*.pth.tar"))
               if int(p.stem.split("_")[1].split(".")[0]) > milestone))
