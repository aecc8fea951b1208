"""`personalize`: a minute of the user's own recording -> a model fine-tuned to their face.

prepare-data cuts the clip into fixed-box face chunks and holds its end out; the shipped (or given)
model is evaluated on that held-out end, fine-tuned on the rest within the time budget, evaluated
again, and written as OUT/fomm.yaml + OUT/fomm.pth.tar for `live --config ... --checkpoint ...`.
"""
from __future__ import annotations

import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from core.defaults import resolve_model
from motion.checkpoint import load_model, read_checkpoint, save_checkpoint
from motion.config import Config, load_config
from motion.errors import UserError
from training.dataset import VideoDataset
from training.evaluate import evaluate
from training.options import PersonalizeOptions, TrainOptions
from training.prepare import ChunkRules, input_videos, prepare_data
from training.trainer import train


@dataclass(frozen=True)
class PersonalizeResult:
    config: Path
    checkpoint: Path
    before: dict
    after: dict


WRITTEN = ("data", "run", "fomm.yaml", "fomm.pth.tar")  # all that personalize puts in --output


def _check(options: PersonalizeOptions, out: Path, config_path: str, checkpoint: str) -> Config:
    """The model's config, once the inputs and --output are known usable."""
    video = options.video
    if out.exists() and not out.is_dir():
        raise UserError(f"--output {out} is a file; pass a folder for the personal model")
    if out.exists() and any(out.iterdir()) and not options.overwrite:
        raise UserError(f"{out} already exists; choose another --output or pass --overwrite")
    for given, flag in ((video, "the video"), (config_path, "--config"), (checkpoint, "--checkpoint")):
        if Path(given).resolve().is_relative_to(out.resolve()):
            raise UserError(f"{flag} {given} lies inside --output {out}, which personalize rewrites; choose another --output")
    if options.minutes <= 0:
        raise UserError(f"--minutes must be positive (got {options.minutes})")
    config = load_config(config_path)
    if config.kind != "fomm":
        raise UserError(f"{config_path} configures co-part segmentation; personalize fine-tunes a FOMM model")
    input_videos([video])  # a missing or unreadable input fails before anything is replaced
    return config


def personalize(options: PersonalizeOptions, device, rules: ChunkRules = ChunkRules(),
                max_steps: int | None = None) -> PersonalizeResult:
    """Fine-tune the model (--config and --checkpoint, or the shipped one) on the video for options.minutes
    (or `max_steps`) and report held-out L1 before and after, into --output (default: runs/personal/<video
    name>). With --overwrite, only what an earlier personalize wrote there is replaced."""
    config_path, checkpoint = resolve_model("fomm", options.config, options.checkpoint)
    video = options.video
    out = Path(options.output or f"runs/personal/{Path(video).stem}")
    config = _check(options, out, config_path, checkpoint)
    for name in WRITTEN:
        if (out / name).is_dir():
            shutil.rmtree(out / name)
        else:
            (out / name).unlink(missing_ok=True)
    data = out / "data"
    chunks = prepare_data([video], data, size=config.size[0], rules=rules)
    if not any(c.split == "train" for c in chunks) or not any(c.split == "test" for c in chunks):
        raise UserError(f"{video} gave {len(chunks)} usable chunk(s), too few for a training and a held-out "
                        "part; record longer (a minute or so, your face in view all the time)")
    before = evaluate(config, load_model(config, checkpoint, device), data, device)
    print(f"before: held-out L1 {before['l1']:.4f} (identity baseline {before['identity_l1']:.4f}, "
          f"ratio {before['ratio_to_identity']:.3f})", file=sys.stderr)
    run = TrainOptions(output=str(out / "run"), init=checkpoint, minutes=None if max_steps else options.minutes,
                       sheet_every=0, max_steps=max_steps, epochs=10 ** 6 if max_steps else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the perceptual-loss fallback warning says nothing new here
        result = train(config, VideoDataset.from_config(config, data, "train", seed=run.seed), run, device)
    trained = load_model(config, result.checkpoint, device)
    after = evaluate(config, trained, data, device)
    print(f"after:  held-out L1 {after['l1']:.4f} (identity baseline {after['identity_l1']:.4f}, "
          f"ratio {after['ratio_to_identity']:.3f}); {result.steps} steps", file=sys.stderr)
    final_config, final_checkpoint = out / "fomm.yaml", out / "fomm.pth.tar"
    shutil.copyfile(config_path, final_config)
    save_checkpoint(final_checkpoint, trained, {}, int(read_checkpoint(result.checkpoint).get("epoch", 0)),
                    {"personalized_from": str(checkpoint), "video": str(video)})
    shutil.rmtree(out / "run")
    return PersonalizeResult(final_config, final_checkpoint, before, after)
