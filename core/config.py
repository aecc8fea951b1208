"""A command's config file, checked to describe the kind of model the command runs."""
from __future__ import annotations

from motion.checkpoint import MODEL_NAMES
from motion.config import Config, load_config
from motion.errors import UserError

COMMAND_OF_KIND = {"fomm": "animate", "coseg": "swap"}


def load_config_for(kind: str, path: str) -> Config:
    """The config at path, which must describe a model of this kind ("fomm" or "coseg"); otherwise a
    one-line error naming the command that runs it."""
    config = load_config(path)
    if config.kind != kind:
        raise UserError(f"config {path} describes {MODEL_NAMES[config.kind]}; use `puppet.py "
                        f"{COMMAND_OF_KIND[config.kind]}` with it, or pass a config for {MODEL_NAMES[kind]}")
    return config
