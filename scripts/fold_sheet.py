"""The fold guard of expression transfer, looked at: a held-out clip whose first frame (the avatar) smiles with
its teeth showing and whose later frames close the mouth, rebuilt as `eval` rebuilds it (self-reenactment) by
the live model with the expression stage unguarded and guarded (core/expression.py: lips that would fold the
frame move only as far as they do not).

    python scripts/fold_sheet.py --output docs/expression-fold.png

Columns: driver | network alone | + expression, unguarded | + expression (shipped) | avatar; rows: --frames.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import expression  # noqa: E402
from core.defaults import resolve_model  # noqa: E402
from core.media import to_uint8, write_image  # noqa: E402
from core.tracking.landmarks import LandmarkDetector  # noqa: E402
from motion.checkpoint import load_model  # noqa: E402
from motion.config import load_config  # noqa: E402
from scripts.expression_sheet import cell  # noqa: E402
from training.dataset import load_video  # noqa: E402
from training.evaluate import reconstruct  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", default="data/real/test/franck_038", help="held-out clip (a prepare-data folder)")
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 104, 106], help="the rows: frame numbers")
    parser.add_argument("--output", default="docs/expression-fold.png")
    args = parser.parse_args()
    config_path, checkpoint = resolve_model("fomm-live", None, None)
    config = load_config(config_path)
    nets = load_model(config, checkpoint)
    clip = list(load_video(Path(args.clip), config.size))
    detector = LandmarkDetector()
    marks = [detector(frame) for frame in clip]
    plain = reconstruct(config, nets, clip, "cpu")
    guarded = reconstruct(config, nets, clip, "cpu", marks)
    shipped, expression.MIN_DETERMINANT = expression.MIN_DETERMINANT, -np.inf  # no map counts as folded
    try:
        loose = reconstruct(config, nets, clip, "cpu", marks)
    finally:
        expression.MIN_DETERMINANT = shipped
    rows = [np.hstack([cell(x[i]) for x in (clip, plain, loose, guarded)] + [cell(clip[0])]) for i in args.frames]
    write_image(args.output, to_uint8(np.vstack(rows)))
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
