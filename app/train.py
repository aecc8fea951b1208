"""What `puppet.py train` and `eval` do: wire config, data, device and output, print the figures."""
from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

from core.media import check_not_input, check_writable_file
from core.pipeline import pick_device
from core.tracking.landmarks import LandmarkDetector
from motion.checkpoint import load_model, save_checkpoint
from motion.config import load_config
from motion.errors import UserError
from training import distributed
from training.averaging import average_checkpoints
from training.dataset import VideoDataset, measuring_batch_size
from training.evaluate import evaluate
from training.face_identity import SAME_PERSON_THRESHOLD
from training.fetch import photos as fetched_photos
from training.options import EvalOptions, TrainOptions
from training.part_split import part_shares, split_parts, split_plan
from training.trainer import train


def run_train(options: TrainOptions) -> Path:
    """Train as one process, or as one of several under torchrun (one process group for the run)."""
    out, resume = options.output, options.resume
    existing = Path(out) / "checkpoint.pth.tar"
    if existing.exists() and resume is None and not options.overwrite:
        raise UserError(f"{out} already holds a training run ({existing}); continue it with --resume {existing}, "
                        "start over with --overwrite, or choose another --output")
    config = load_config(options.config)
    unused = VideoDataset.unused_keys(config)
    if unused:
        print(f"note: dataset_params {', '.join(unused)} not used: --data names the clips, which are sampled alike "
              "and paired at random", file=sys.stderr)
    with distributed.session(pick_device(options.cpu)) as device:
        if existing.exists() and resume is None and distributed.is_main():
            for old in [existing, *Path(out).glob("checkpoint_*.pth.tar"), *Path(out).glob("sheet_*.png")]:
                old.unlink()  # the old run's snapshots would mix into a later `average`
        dataset = VideoDataset.from_config(config, options.data, "train", seed=options.seed + distributed.rank())
        started = time.time()
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            result = train(config, dataset, options, device)
        if distributed.is_main():
            processes = f" x {distributed.world_size()} processes" if distributed.world_size() > 1 else ""
            print(f"trained {result.steps} steps ({result.epochs_done} epochs) in {time.time() - started:.0f} s on "
                  f"{device}{processes}; checkpoint: {result.checkpoint}", file=sys.stderr)
    return result.checkpoint


def expression_lines(following: dict, still: dict, indent: str) -> list[str]:
    """eval's lines for mouth and eye following, the still source's beside them (its gain must be 0)."""
    return [f"{indent + name + ' corr / gain':<25}{f['correlation']:.3f} / {f['gain']:.3f} (identity baseline "
            f"{still[name]['correlation']:.3f} / {still[name]['gain']:.3f}; {f['frames']} frames, {f['skipped']} "
            "without a face skipped)" for name, f in following.items()]


def identity_lines(report: dict, indent: str) -> list[str]:
    """eval's line for the identity measure, when the report has it."""
    found = report.get("identity")
    return [] if found is None else [
        f"{indent + 'identity cos':<25}{found['similarity']:.6f} to the source face (1 - cos {1 - found['similarity']:.1e}); "
        f"{100 * found['other_person']:.1f} % of {found['frames']} frames below {SAME_PERSON_THRESHOLD:.6f}, "
        "taken for another person"]


def run_eval(options: EvalOptions) -> dict:
    """`puppet.py eval`."""
    json_path = options.json
    if json_path:
        check_writable_file(json_path, "--json")
    config = load_config(options.config)
    device = pick_device(options.cpu)
    detector = LandmarkDetector() if options.landmarks or options.photos else None
    photo_paths = fetched_photos(options.photos, "test") if options.photos else []
    report = evaluate(config, load_model(config, options.checkpoint, device), options.data, device, landmarks=detector,
                      photos=photo_paths, identity_model=options.identity_model, expression=options.expression,
                      detail=options.detail)
    stage = "with the expression stage" if report["expression_stage"] else "the network alone"
    stage += " and the photo's detail" if report["detail"] else ""
    lines = [f"{report['videos']} test videos, {report['frames']} frames ({stage})",
             f"  L1 reconstruction      {report['l1']:.4f}",
             f"  L1 identity baseline   {report['identity_l1']:.4f}",
             f"  ratio                  {report['ratio_to_identity']:.3f} (lower is better)",
             f"  keypoint shift (px)    {report['keypoint_shift_px']:.2f} under random TPS warps"]
    if "akd" in report:
        regions = ", ".join(f"{name} {share:.4f}" for name, share in report["ratio_by_region"].items())
        lines += [f"  ratio by region        {regions}",
                  f"  AKD (px)               {report['akd']:.2f} (identity baseline {report['identity_akd']:.2f})",
                  f"  MKR                    {100 * report['mkr']:.1f} % (driving frames {100 * report['driving_mkr']:.1f} %)"]
        lines += expression_lines(report["expression"], report["identity_expression"], "  ")
        lines += identity_lines(report, "  ")
    if "matte_iou" in report:
        lines.append(f"  matte IoU              {report['matte_iou']:.3f} on {report['matte_frames']} blue-screen frames")
    cross = report.get("cross_identity")
    if cross:
        lines += [f"  cross-identity ({cross['photos']} of {cross['photos_given']} photos with a face)",
                  f"    motion correlation   {cross['motion_correlation']:.3f} (a still photo: 0)",
                  f"    MKR                  {100 * cross['mkr']:.1f} %"]
        lines += expression_lines(cross["expression"], cross["identity_expression"], "    ")
        lines += identity_lines(cross, "    ")
    print("\n".join(lines))
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2))
    return report


def run_average(config_path: str, checkpoints: list[str], data: str, out: str, *, batches: int, cpu: bool) -> Path:
    """`puppet.py average`; the options' defaults are AverageOptions'."""
    check_not_input(out, list(checkpoints), "--output")
    check_writable_file(out, "--output")
    config = load_config(config_path)
    device = pick_device(cpu)
    nets, epoch = average_checkpoints(config, checkpoints, VideoDataset.from_config(config, data, "train", seed=0),
                                      batches, device)
    save_checkpoint(out, nets, {}, epoch, {"averaged_checkpoints": len(checkpoints)})
    print(f"averaged {len(checkpoints)} checkpoints, BatchNorm statistics from {batches} training batches: {out}",
          file=sys.stderr)
    return Path(out)


def run_split_parts(config_path: str, checkpoint: str, data: str, out: str, *, min_share: float, noise: float,
                    batches: int, cpu: bool) -> Path:
    """`puppet.py split-parts`; the options' defaults are SplitPartsOptions'."""
    config = load_config(config_path)
    if config.kind != "coseg":
        raise UserError(f"{config_path} configures a First Order Motion Model; split-parts needs a co-part "
                        "segmentation config (num_segments in common_params)")
    device = pick_device(cpu)
    nets = load_model(config, checkpoint, device)
    segmentation = nets["segmentation_module"]
    shares = part_shares(segmentation, VideoDataset.from_config(config, data, "train", seed=0), batches,
                         measuring_batch_size(config), device)
    plan = split_plan(shares, min_share)
    split_parts(segmentation, plan, noise)
    save_checkpoint(out, nets, {}, 0, {"split_parts": plan})
    used = ", ".join(f"{k + 1}: {100 * s:.1f} %" for k, s in enumerate(shares.tolist()) if s >= min_share)
    print(f"parts in use (share of the image): {used}", file=sys.stderr)
    print(f"split {len(plan)} empty parts off the heaviest ones (part <- donor, numbered as --parts): "
          + (", ".join(f"{p + 1} <- {d + 1}" for d, p in plan) or "none") + f"; {out}", file=sys.stderr)
    return Path(out)
