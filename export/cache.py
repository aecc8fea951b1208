"""Find the ONNX export a backend runs, or make it on first use."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from export.metadata import ExportError, check_fresh, default_export_dir, file_hash, read_metadata
from export.onnx_export import export_onnx
from motion.checkpoint import load_model, read_checkpoint
from motion.config import Config


def ensure_export(config: Config, checkpoint: str | Path, export_dir: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """(folder, metadata) of a fresh export of this model: --export-dir if given, else the cache folder
    keyed by the checkpoint's hash; exported there (with a progress message) when empty."""
    if not Path(checkpoint).is_file():
        read_checkpoint(checkpoint)  # raises the loader's own message for a missing file
    sha = file_hash(checkpoint)
    out = Path(export_dir) if export_dir is not None else default_export_dir(config, sha)
    metadata = read_metadata(out)
    if metadata is None:
        print(f"exporting {checkpoint} to {out} (first use of this model; later runs reuse it)", file=sys.stderr)
        metadata = export_onnx(config, load_model(config, checkpoint), checkpoint, sha, out)
    check_fresh(metadata, out, config, sha)
    missing = [g["file"] for g in metadata["graphs"].values() if not (out / g["file"]).is_file()]
    if missing:
        raise ExportError(f"export in {out} lacks {', '.join(missing)}; re-export with `puppet.py export --output {out}` "
                          f"or delete {out}")
    return out, metadata
