"""What `puppet.py export` does: ONNX graphs + export.json, then TensorRT engines when asked."""
from __future__ import annotations

import sys
from pathlib import Path

from core.media import check_writable_file
from export.metadata import file_hash
from export.onnx_export import export_onnx
from export.options import DEFAULT_OPSET, ExportOptions
from motion.checkpoint import load_model
from motion.config import load_config
from motion.errors import UserError


def run_export(options: ExportOptions) -> Path:
    """Export (always afresh: this is how a stale export is replaced) and return the folder."""
    config, checkpoint, fmt, out = options.config, options.checkpoint, options.format, options.output
    fp16, opset = options.fp16, options.opset
    loaded = load_config(config)
    if loaded.kind != "fomm":
        raise UserError(f"{config} is a co-part segmentation config; export supports First Order Motion Models "
                        "(pass a FOMM config such as configs/vox-256.yaml)")
    if fp16 and fmt != "tensorrt":
        raise UserError("--fp16 applies to TensorRT engines; add --format tensorrt (ONNX graphs stay FP32)")
    if opset < DEFAULT_OPSET:
        raise UserError(f"--opset {opset} is too old: the graphs need opset {DEFAULT_OPSET} or later")
    if fmt == "tensorrt":
        from export.tensorrt import require_tensorrt
        require_tensorrt()  # fail before the export, not after
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--output {folder} is a file; pass a folder for the graphs")
    check_writable_file(folder / "export.json", "--output")
    metadata = export_onnx(loaded, load_model(loaded, checkpoint), checkpoint, file_hash(checkpoint), folder, opset)
    if fmt == "tensorrt":
        from export.tensorrt import build_engines
        build_engines(folder, metadata, fp16)
    print(f"exported {', '.join(metadata['graphs'])} to {folder} (opset {opset})", file=sys.stderr)
    return folder
