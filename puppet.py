#!/usr/bin/env python
"""Command line of the face-puppeteering tool. Each subcommand is a thin call into the packages."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from motion.errors import UserError


def _parts(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of part numbers, e.g. 1,2,3")


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML config (official format)")
    parser.add_argument("--checkpoint", required=True, help="checkpoint .pth.tar (official layout)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is present")


def _media_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="the avatar photo")
    parser.add_argument("--driving", required=True, help="driving video (mp4, avi, gif) or folder of frames")
    parser.add_argument("--output", required=True, help="output video (.mp4, .gif, .avi) or folder for PNG frames")


def cmd_animate(args: argparse.Namespace) -> None:
    from animation.run import run_animate
    run_animate(args.config, args.checkpoint, args.source, args.driving, args.output,
                relative=args.relative, adapt_scale=args.adapt_scale, cpu=args.cpu)


def cmd_swap(args: argparse.Namespace) -> None:
    from animation.run import run_swap
    run_swap(args.config, args.checkpoint, args.source, args.driving, args.output, args.swap_index,
             use_source_segmentation=args.source_segmentation, cpu=args.cpu)


def cmd_make_data(args: argparse.Namespace) -> None:
    from training.synthetic import generate_dataset
    out = generate_dataset(args.out, videos=args.videos, test_videos=args.test_videos, frames=args.frames,
                           size=args.size, seed=args.seed)
    print(f"wrote {args.videos} train and {args.test_videos} test videos to {out}/train and {out}/test")


def cmd_train(args: argparse.Namespace) -> None:
    from training.run import run_train
    run_train(args.config, args.data, args.out, resume=args.resume, epochs=args.epochs, cpu=args.cpu,
              vgg=args.vgg, sheet_every=args.sheet_every, max_steps=args.max_steps, seed=args.seed)


def cmd_eval(args: argparse.Namespace) -> None:
    from training.run import run_eval
    run_eval(args.config, args.checkpoint, args.data, cpu=args.cpu, json_path=args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="puppet.py", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    animate = sub.add_parser("animate", help="animate a photo with a driving video (First Order Motion Model)")
    _model_args(animate)
    _media_args(animate)
    animate.add_argument("--relative", action="store_true", help="relative motion (what puppeteering needs)")
    animate.add_argument("--adapt-scale", action="store_true", help="scale motion by the face-size ratio")
    animate.set_defaults(func=cmd_animate)

    swap = sub.add_parser("swap", help="swap parts of a photo into a driving video (co-part segmentation)")
    _model_args(swap)
    _media_args(swap)
    swap.add_argument("--swap-index", type=_parts, default=[1, 2, 5],
                      help="parts to take from the source, comma separated (0 is the background)")
    swap.add_argument("--source-segmentation", action="store_true",
                      help="choose the parts on the source's segmentation instead of the driving frame's")
    swap.set_defaults(func=cmd_swap)

    make_data = sub.add_parser("make-data", help="generate offline training videos from photos that scikit-image ships")
    make_data.add_argument("--out", required=True, help="dataset folder; videos go to OUT/train and OUT/test")
    make_data.add_argument("--videos", type=int, default=48, help="training videos")
    make_data.add_argument("--test-videos", type=int, default=8,
                           help="held-out test videos (the first is the astronaut)")
    make_data.add_argument("--frames", type=int, default=64, help="frames per video")
    make_data.add_argument("--size", type=int, default=128, help="frame width and height in pixels")
    make_data.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same videos")
    make_data.set_defaults(func=cmd_make_data)

    train = sub.add_parser("train", help="train a model (FOMM or co-part segmentation) from its config")
    train.add_argument("--config", required=True, help="YAML config with train_params (official format)")
    train.add_argument("--data", required=True, help="dataset folder with train/ and test/ (videos or frame folders)")
    train.add_argument("--out", default="runs/train", help="folder for checkpoint.pth.tar and sample sheets")
    train.add_argument("--resume", help="checkpoint to continue from (optimizer, schedule and RNG included)")
    train.add_argument("--epochs", type=int, help="train until this many epochs are done (default: the config's)")
    train.add_argument("--vgg", help="torchvision VGG-19 weights for the perceptual loss (never downloaded)")
    train.add_argument("--sheet-every", type=int, default=200, help="write a sample sheet every N steps (0: never)")
    train.add_argument("--max-steps", type=int, help="stop after this many steps (for quick runs)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    train.set_defaults(func=cmd_train)

    evaluation = sub.add_parser("eval", help="mean L1 reconstruction on held-out videos vs the identity baseline")
    evaluation.add_argument("--config", required=True)
    evaluation.add_argument("--checkpoint", required=True)
    evaluation.add_argument("--data", required=True, help="dataset folder; its test/ videos are evaluated")
    evaluation.add_argument("--json", help="also write the figures to this JSON file")
    evaluation.add_argument("--cpu", action="store_true")
    evaluation.set_defaults(func=cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; files written so far were closed", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
