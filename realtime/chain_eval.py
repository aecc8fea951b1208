"""Full-resolution evaluation through `live`'s own chain: a clip at its own resolution, its first frame as
the avatar, tracked, cropped, moved relatively and pasted back as `live` does, so the right answer is the
clip itself. Reported over the face region (where the paste-back can change anything): L1 and PSNR next to
the identity baseline (showing the first frame still), and the detail ratio (mean |Laplacian| of the
result over the truth's: 1 is as sharp as the camera, an enlarged model crop is well below).
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from core.defaults import resolve_model
from core.faces import DEFAULT_MARGIN, avatar_box
from core.media import check_writable_file, open_frames, write_image
from core.pipeline import pick_device
from core.puppeteer import Puppeteer
from core.tracking import make_tracker, resolve_tracker
from core.tracking.haar import HaarFaceDetector
from core.tracking.landmarks import LandmarkDetector, expression_detector
from export.backends import open_backend
from motion.config import load_config
from motion.errors import UserError
from realtime.animator import Animator, AnimatorOptions
from realtime.avatars import AvatarPhoto, prepare_avatars
from realtime.controls import Controls
from realtime.engine import inference_threads
from realtime.options import ChainEvalOptions
from realtime.smoothing import KeypointSmoother
from realtime.stats import Stats


@dataclass(frozen=True)
class RegionScores:
    """A sequence of frames against the truth over one region."""
    l1: float  # mean absolute error, 0..1 units
    psnr: float  # dB over the region's pixels, all frames pooled
    detail: float  # mean |Laplacian| of the frames / the truth's


def laplacian_energy(image: np.ndarray) -> float:
    """Mean |Laplacian| of a picture's grey levels: how much fine detail it holds."""
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean())


def region_scores(frames: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                  region: tuple[slice, slice]) -> RegionScores:
    """Score uint8 frames against uint8 truths over ``region`` (rows, columns)."""
    errors = [np.abs(f[region].astype(np.float64) - t[region]) / 255 for f, t in zip(frames, truths)]
    mse = float(np.mean([np.mean(e ** 2) for e in errors]))
    detail = sum(laplacian_energy(f[region]) for f in frames) / max(sum(laplacian_energy(t[region]) for t in truths),
                                                                    1e-9)
    return RegionScores(float(np.mean([e.mean() for e in errors])),
                        math.inf if mse == 0 else 10 * math.log10(1 / mse), detail)


def face_region(photo: np.ndarray, margin: float = DEFAULT_MARGIN) -> tuple[slice, slice] | None:
    """The first frame's face crop (as the avatar is cropped), clipped to the frame; None: no face."""
    box = avatar_box(photo, HaarFaceDetector(), margin)
    if box is None:
        return None
    h, w = photo.shape[:2]
    half = box.side / 2
    return (slice(max(0, round(box.cy - half)), min(h, round(box.cy + half))),
            slice(max(0, round(box.cx - half)), min(w, round(box.cx + half))))


def through_live(frames: Sequence[np.ndarray], puppeteer: Puppeteer, size: tuple[int, int], variant: Variant,
                 tracker: str = "auto", fps: float = 25.0, landmarks: LandmarkDetector | None = None) -> list[np.ndarray]:
    """The clip's frames (RGB uint8, own resolution) as `live` shows them with frames[0] as the avatar,
    at the clip's own size: tracking, crop, smoothing, relative motion (following the head's position or
    not), expression transfer (with `landmarks` for the avatar's) or not, paste-back (with detail or not)."""
    photo = frames[0]
    photos = [AvatarPhoto(Path("first-frame"), photo, avatar_box(photo, HaarFaceDetector(), DEFAULT_MARGIN))]
    out_size = (photo.shape[1], photo.shape[0])
    avatars = prepare_avatars(photos, puppeteer, size, full_frame=True, out_size=out_size, detail=variant.detail,
                              landmarks=landmarks if variant.expression else None)
    options = AnimatorOptions(size, out_size=out_size, follow_head=variant.follow_head,
                              expression=variant.expression and landmarks is not None)
    animator = Animator(puppeteer, avatars, Controls(["first-frame"]), Stats(), options, make_tracker(tracker),
                        smoother=KeypointSmoother())
    try:
        return [animator.finish(animator.start(frame, i / fps)).image for i, frame in enumerate(frames)]
    finally:
        animator.close()


class Variant(NamedTuple):
    """What a variant of live's chain does; the identity baseline shows frame 0."""
    detail: bool  # detail transfer
    follow_head: bool  # the head's position followed
    expression: bool  # expression transfer


VARIANTS = {"enlarged": Variant(False, False, False), "detail": Variant(True, False, False),
            "detail+head": Variant(True, True, False), "+expression": Variant(True, True, True)}


def parse_clip(spec: str) -> tuple[str, int, int | None]:
    """PATH or PATH:FIRST-LAST (frame numbers, LAST excluded) -> (path, first, last or None)."""
    path, _, span = spec.rpartition(":") if re.fullmatch(r".*:\d+-\d+", spec) else (spec, "", "")
    if not span:
        return spec, 0, None
    first, last = map(int, span.split("-"))
    if last <= first + 1:
        raise UserError(f"--clips {spec}: the span must hold at least 2 frames (FIRST-LAST, LAST excluded)")
    return path, first, last


def clip_frames(spec: str, limit: int) -> tuple[float, list[np.ndarray]]:
    """(fps, at most ``limit`` RGB uint8 frames at the clip's own resolution) of a --clips entry."""
    path, first, last = parse_clip(spec)
    fps, frames = open_frames(path)
    end = first + limit if last is None else min(last, first + limit)
    picked = list(itertools.islice(frames, first, end))
    if len(picked) < 2:
        raise UserError(f"--clips {spec}: fewer than 2 frames there; check the path and the span")
    return fps, picked


def evaluate_clip(frames: Sequence[np.ndarray], fps: float, puppeteer: Puppeteer, size: tuple[int, int],
                  tracker: str) -> tuple[dict[str, dict[str, float]], dict[str, list[np.ndarray]]]:
    """Every variant's face-region scores on one clip (frames after the first), with the identity baseline,
    and every variant's frames."""
    region = face_region(frames[0])
    if region is None:
        raise UserError("no face in the clip's first frame (the avatar); pick a clip that starts on a face")
    truths = frames[1:]
    landmarks = expression_landmarks(tracker)
    shown = {name: through_live(frames, puppeteer, size, variant, tracker, fps, landmarks)
             for name, variant in VARIANTS.items() if landmarks is not None or not variant.expression}
    scores = {"identity": region_scores([frames[0]] * len(truths), truths, region)}
    scores.update({name: region_scores(out[1:], truths, region) for name, out in shown.items()})
    return {name: dataclasses.asdict(score) for name, score in scores.items()}, shown


def expression_landmarks(tracker: str) -> LandmarkDetector | None:
    """dlib's detector for the +expression variant, or None (that variant left out, said on stderr) when the
    tracker gives no 68 landmarks or dlib is missing."""
    return expression_detector(resolve_tracker(tracker), "eval-live: no +expression row")


def crop_sheet(frames: Sequence[np.ndarray], shown: dict[str, list[np.ndarray]], rows: int = 4) -> np.ndarray:
    """Rows of truth | each variant, cut around the first frame's face (a margin of half its side) at the
    clip's own resolution, at ``rows`` frames spread over the clip."""
    region = face_region(frames[0], margin=0.5) or (slice(None), slice(None))
    picks = np.linspace(1, len(frames) - 1, rows).round().astype(int)
    return np.concatenate([np.concatenate([frames[i][region], *(out[i][region] for out in shown.values())], axis=1)
                           for i in picks], axis=0)


def run_chain_eval(options: ChainEvalOptions) -> dict:
    """`eval-live`: every clip through live's chain, a table on stdout, the figures in --json, the first
    clip's crops in --sheet (truth | enlarged | detail | detail+head | +expression)."""
    config, checkpoint = resolve_model("fomm-live", options.config, options.checkpoint)
    loaded = load_config(config)
    for path, flag in ((options.json, "--json"), (options.sheet, "--sheet")):
        if path:
            check_writable_file(path, flag)
    clips = [(spec, *clip_frames(spec, options.frames)) for spec in options.clips]
    inference_threads()  # as live sets them: two threads per op on a busy 2-core machine are ~100x slower
    puppeteer = open_backend("torch", loaded, checkpoint, pick_device(options.cpu))
    results = {}
    for number, (spec, fps, frames) in enumerate(tqdm(clips, desc="clips", unit="clip", file=sys.stderr,
                                                      disable=None)):
        scores, shown = evaluate_clip(frames, fps, puppeteer, loaded.size, options.tracker)
        results[spec] = {"frames": len(frames), "size": list(frames[0].shape[1::-1]), **scores}
        if options.sheet and number == 0:
            write_image(options.sheet, crop_sheet(frames, shown))
    names = ["identity", *(name for name in VARIANTS if all(name in r for r in results.values()))]
    mean = {name: {key: float(np.mean([r[name][key] for r in results.values()])) for key in ("l1", "psnr", "detail")}
            for name in names}
    print(f"{config}: face region through live's chain, {len(clips)} clip(s) at their own resolution")
    print(f"{'shown':<12} {'L1':>7} {'/ identity':>10} {'PSNR dB':>8} {'detail':>7}")
    for name in names:
        figures = mean[name]
        print(f"{name:<12} {figures['l1']:7.4f} {figures['l1'] / mean['identity']['l1']:10.2f} "
              f"{figures['psnr']:8.2f} {figures['detail']:7.2f}")
    report = {"config": config, "checkpoint": checkpoint, "clips": results, "mean": mean}
    if options.json:
        Path(options.json).write_text(json.dumps(report, indent=2) + "\n")
    return report
