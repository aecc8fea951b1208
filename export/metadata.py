"""What an export folder was made from, so a backend never runs graphs of another model.

``export.json`` records the config (a hash of the parsed model parameters and frame size, so comments
and training settings do not matter), the checkpoint's SHA-256, the opset and every graph's inputs and
outputs. The default folder is a cache keyed by both hashes, so it cannot go stale; a folder the user
names can, and is then refused with the fix in the message.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from motion.config import Config
from motion.errors import UserError

METADATA_FILE = "export.json"
FORMAT_VERSION = 2  # 2: graphs rewritten for ONNX Runtime's CPU kernels (export/onnx_rewrite.py)


class ExportError(UserError):
    """An export folder that cannot be used; the message says how to re-export."""


class StaleExportError(ExportError):
    """The export was made from another config or checkpoint than the one asked for."""


def config_hash(config: Config) -> str:
    """SHA-256 of the model parameters and frame shape: what the graphs depend on."""
    text = json.dumps({"model": dataclasses.asdict(config.model), "frame_shape": list(config.frame_shape)},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def file_hash(path: str | Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def cache_root() -> Path:
    """$PUPPET_CACHE, else $XDG_CACHE_HOME/puppet, else ~/.cache/puppet."""
    if os.environ.get("PUPPET_CACHE"):
        return Path(os.environ["PUPPET_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "puppet"


def default_export_dir(config: Config, checkpoint_sha256: str) -> Path:
    """The cache folder of this model's export in this format (an older format's folder is left alone)."""
    return cache_root() / "exports" / f"{checkpoint_sha256[:16]}-{config_hash(config)[:8]}-v{FORMAT_VERSION}"


def write_metadata(out_dir: Path, values: dict[str, Any]) -> None:
    tmp = out_dir / (METADATA_FILE + ".tmp")
    tmp.write_text(json.dumps({"format_version": FORMAT_VERSION, **values}, indent=2) + "\n")
    tmp.replace(out_dir / METADATA_FILE)


def read_metadata(out_dir: Path) -> dict[str, Any] | None:
    """The folder's metadata, or None when nothing was exported there yet."""
    path = out_dir / METADATA_FILE
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ExportError(f"export metadata {path} is unreadable ({err}); delete {out_dir} and export again") from None
    if values.get("format_version") != FORMAT_VERSION:
        raise StaleExportError(f"export in {out_dir} has format {values.get('format_version')}, this version "
                               f"reads {FORMAT_VERSION}; re-export it (puppet.py export) or delete {out_dir}")
    return values


def check_fresh(metadata: dict[str, Any], out_dir: Path, config: Config, checkpoint_sha256: str) -> None:
    """Refuse an export made from another model than ``config`` + the checkpoint of this hash."""
    what = []
    if metadata.get("config_hash") != config_hash(config):
        what.append(f"config (exported from {metadata.get('config')}, now {config.path})")
    if metadata.get("checkpoint_sha256") != checkpoint_sha256:
        what.append(f"checkpoint (exported from {metadata.get('checkpoint')} sha256 "
                    f"{str(metadata.get('checkpoint_sha256'))[:12]}, now sha256 {checkpoint_sha256[:12]})")
    if what:
        raise StaleExportError(f"stale export in {out_dir}: the {' and the '.join(what)} changed; re-export with "
                               f"`puppet.py export --output {out_dir}` or delete {out_dir}")
