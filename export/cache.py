"""Find the ONNX export a backend runs, or make it on first use."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from export.metadata import ExportError, check_fresh, default_export_dir, file_hash, read_metadata
from export.onnx_export import export_onnx
from motion.checkpoint import load_model, read_checkpoint
from motion.config import Config


def export_folder(config: Config, checkpoint: str | Path,
                  export_dir: str | Path | None = None) -> tuple[Path, str]:
    """(folder, checkpoint SHA-256): --export-dir if given, else the cache folder keyed by the hash."""
    if not Path(checkpoint).is_file():
        read_checkpoint(checkpoint)  # raises the loader's own message for a missing file
    sha = file_hash(checkpoint)
    return (Path(export_dir) if export_dir is not None else default_export_dir(config, sha)), sha


def ensure_export(config: Config, checkpoint: str | Path, export_dir: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """(folder, metadata) of a fresh export of this model in its export_folder, exported there (with a
    progress message) when empty."""
    out, sha = export_folder(config, checkpoint, export_dir)
    metadata = read_metadata(out)
    if metadata is None:
        nets = load_model(config, checkpoint)  # a bad checkpoint is the user's one-line error before any message
        print(f"exporting {checkpoint} to {out} (first use of this model; later runs reuse it)", file=sys.stderr)
        metadata = export_onnx(config, nets, checkpoint, sha, out)
    check_fresh(metadata, out, config, sha)
    missing = [g["file"] for g in metadata["graphs"].values() if not (out / g["file"]).is_file()]
    if missing:
        raise ExportError(f"export in {out} lacks {', '.join(missing)}; re-export with `puppet.py export --output {out}` "
                          f"or delete {out}")
    return out, metadata
