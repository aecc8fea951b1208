"""Per graph, ONNX Runtime time of a model's export with and without the CPU rewrites of
export/onnx_rewrite.py (FP32 and INT8, one thread, round-robin, median of N runs), and the largest output
difference between the two: the figures of docs/benchmarks.md "Graph rewrites".

Usage: python scripts/bench_rewrite.py NAME [--model fomm-face-fast] [--runs 200] -> docs/bench-rewrite-NAME.txt
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.defaults import CHECKPOINTS  # noqa: E402
from export.metadata import file_hash  # noqa: E402
from export.onnx_export import export_onnx  # noqa: E402
from export.quantize import int8_files  # noqa: E402
from motion.checkpoint import load_model  # noqa: E402
from motion.config import load_config  # noqa: E402

GRAPHS = ("keypoints", "motion", "render", "motion.int8", "render.int8")


def export(model: str, out: Path, rewrite: bool) -> None:
    config, checkpoint = load_config(CHECKPOINTS / f"{model}.yaml"), CHECKPOINTS / f"{model}.pth.tar"
    keep = contextlib.nullcontext() if rewrite else mock.patch("export.onnx_export.rewrite_for_cpu", lambda model: model)
    with keep:
        metadata = export_onnx(config, load_model(config, checkpoint), checkpoint, file_hash(checkpoint), out)
    int8_files(out, metadata)


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def feeds(graph: ort.InferenceSession, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Inputs in the ranges the loop gives: images in [0, 1], keypoints and deformations in [-1, 1]."""
    return {i.name: rng.uniform(0 if "image" in i.name or "source" in i.name or "features" in i.name else -1, 1,
                                [d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
            for i in graph.get_inputs()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="names the machine in the output file, e.g. epyc")
    parser.add_argument("--model", default="fomm-face-fast", help="a shipped model (checkpoints/NAME.yaml)")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    lines = [f"# {args.model}: ONNX Runtime {ort.__version__}, 1 thread, median ms of {args.runs} round-robin runs",
             "graph          plain ms  rewritten ms  ratio  max |difference|"]
    with tempfile.TemporaryDirectory() as tmp:
        plain, rewritten = Path(tmp) / "plain", Path(tmp) / "rewritten"
        export(args.model, plain, rewrite=False)
        export(args.model, rewritten, rewrite=True)
        for graph in GRAPHS:
            pair = [session(folder / f"{graph}.onnx") for folder in (plain, rewritten)]
            feed = feeds(pair[0], rng)
            outputs = [s.run(None, feed) for s in pair]
            difference = max(float(np.abs(a - b).max()) for a, b in zip(*outputs))
            times: list[list[float]] = [[], []]
            for _ in range(args.runs):
                for which, s in enumerate(pair):
                    start = time.perf_counter()
                    s.run(None, feed)
                    times[which].append((time.perf_counter() - start) * 1000)
            a, b = (statistics.median(t) for t in times)
            lines.append(f"{graph:14s} {a:8.2f}  {b:12.2f}  {a / b:5.2f}  {difference:.1e}")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    (ROOT / "docs" / f"bench-rewrite-{args.name}.txt").write_text(text)


if __name__ == "__main__":
    main()
