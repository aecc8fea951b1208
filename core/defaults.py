"""The checkpoints and avatar we ship, used when the user names none."""
from __future__ import annotations

import site
import sys
from pathlib import Path

from motion.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def shipped_folder(name: str) -> Path:
    """A folder we ship (checkpoints, configs): next to the code in a checkout or an editable install, else
    where a `pip install .` put it (pyproject.toml's data-files: DATA/share/puppet/NAME, DATA the install
    scheme's data folder: the environment's prefix, or ~/.local for --user)."""
    places = [ROOT, Path(sys.prefix) / "share" / "puppet", Path(site.getuserbase()) / "share" / "puppet"]
    return next((place / name for place in places if (place / name).is_dir()), ROOT / name)


CHECKPOINTS = shipped_folder("checkpoints")
# kind -> checkpoints/NAME.{yaml,pth.tar}; live and bench default to the FOMM with a third of fomm-face's work
SHIPPED_MODELS = {"fomm": "fomm-face", "fomm-live": "fomm-face-fast", "coseg": "coseg-face"}
DEFAULT_AVATAR = CHECKPOINTS / "avatar.png"
DEFAULT_DRIVING = CHECKPOINTS / "driving.mp4"


def resolve_model(kind: str, config: str | None, checkpoint: str | None) -> tuple[str, str]:
    """(config, checkpoint) paths: the user's, or the shipped pair checkpoints/NAME.yaml + NAME.pth.tar."""
    if (config is None) != (checkpoint is None):
        raise UserError("pass --config and --checkpoint together (or neither, to use the shipped model)")
    if config is not None and checkpoint is not None:
        return config, checkpoint
    name = SHIPPED_MODELS[kind]
    cfg, ckpt = CHECKPOINTS / f"{name}.yaml", CHECKPOINTS / f"{name}.pth.tar"
    if not cfg.is_file() or not ckpt.is_file():
        raise UserError(f"the shipped model {ckpt} is missing; pass --config and --checkpoint, or restore it "
                        "from the repository (see README: training)")
    return str(cfg), str(ckpt)
