"""Facts about a training run folder, for the training scripts.
  python scripts/run_info.py epoch RUN      the epochs its checkpoint.pth.tar has done
  python scripts/run_info.py low-rate RUN   its --snapshots taken after the learning-rate milestone (what
                                            `average` ships)"""
import sys
from pathlib import Path

import torch

what, run = sys.argv[1], Path(sys.argv[2])
state = torch.load(run / "checkpoint.pth.tar", map_location="cpu", weights_only=True)
if what == "epoch":
    print(state["epoch"])
else:
    milestone = min(next(v for k, v in state.items() if k.startswith("scheduler_"))["milestones"])
    print(" ".join(str(p) for p in sorted(run.glob("checkpoint_*.pth.tar"))
                   if int(p.stem.split("_")[1].split(".")[0]) > milestone))
