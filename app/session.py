"""One session builder for `animate`, `live` and `bench`: the model resolved (the user's or the shipped one)
and its config checked, the device, the inference threads (real-time commands), the backend opened (`auto`
checks its choice on the first avatar's face), the avatars prepared once (realtime/avatars.py), the face
tracker named; the per-frame work (Animator) is then built from the session.

A command's options object says what to open. `backend` (export.backends.open_backend's signature) is the
one place another model plugs in: `animate` run from Python takes PyTorch (app/animate.py's torch_model),
the command line opens --backend, and a test may inject a fake."""
from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import torch

from core.config import load_config_for
from core.defaults import resolve_model
from core.pipeline import check_swap_index, pick_device
from core.puppeteer import SwapPuppeteer
from core.tracking import Tracker, make_tracker, resolve_tracker
from core.tracking.landmarks import LandmarkDetector, expression_detector
from export.backends import open_backend
from motion.checkpoint import load_model
from motion.config import Config
from motion.errors import UserError
from realtime.animator import Animator, AnimatorOptions
from realtime.avatars import Avatar, AvatarPhoto, PartSwapper, prepare_avatars
from realtime.controls import Controls
from realtime.engine import inference_threads
from realtime.options import LiveOptions, ShowOptions
from realtime.smoothing import KeypointSmoother
from realtime.stats import Stats

# (name, config, checkpoint, device, export_dir=None, threads=None, avatar=None) -> a puppeteer with
# FommPuppeteer's stages: export.backends.open_backend, or a stand-in for it
BackendOpener = Callable[..., Any]


@dataclass(frozen=True)
class Model:
    """The model a command runs, its config loaded and checked, and the device it runs on."""
    config: Config
    checkpoint: str
    device: torch.device

    @classmethod
    def load(cls, kind: str, config_path: str, checkpoint: str, cpu: bool) -> Model:
        """kind: "fomm" or "coseg" (the config must be one); cpu: --cpu."""
        return cls(load_config_for(kind, config_path), checkpoint, pick_device(cpu))


def find_model(kind: str, options: Any) -> Model:
    """The model for a command's --config/--checkpoint/--cpu (neither path: the shipped model `kind`, one of
    core.defaults.SHIPPED_MODELS)."""
    config_path, checkpoint = resolve_model(kind, options.config, options.checkpoint)
    return Model.load(kind.partition("-")[0], config_path, checkpoint, options.cpu)


@dataclass(frozen=True)
class Session:
    """What a command animates with: its options, model, backend, prepared avatars and how it follows the face."""
    options: Any  # the command's options (AnimateOptions, LiveOptions, BenchOptions)
    model: Model
    puppeteer: Any  # the backend, with FommPuppeteer's stages
    avatars: list[Avatar]
    threads: int | None  # intra-op threads of each real-time inference half; None: left as they were (animate)
    swapper: PartSwapper | None = None  # the co-part model for part swap and the alpha matte (live)
    tracker_name: str | None = None  # the face tracker, resolved; None: no tracking (the centre square)
    landmarks: LandmarkDetector | None = None  # for expression transfer (animate: on the driving frames); None: off

    @property
    def size(self) -> tuple[int, int]:
        """The animation model's (h, w)."""
        return self.model.config.size

    def tracker(self) -> Tracker | None:
        """A new face tracker (each loop follows the face from scratch), or None."""
        return None if self.tracker_name is None else make_tracker(self.tracker_name, own_process=True)

    def animator(self, controls: Controls, stats: Stats, want_alpha: bool = False) -> Animator:
        """The per-frame work of a real-time command, with a new tracker and keypoint smoother."""
        smooth = self.options.smooth if isinstance(self.options, LiveOptions) else True
        # expression transfer runs (and is timed) only where it can: avatar landmarks were looked for
        options = replace(animator_options(self.options, self.size, want_alpha), expression=self.landmarks is not None)
        return Animator(self.puppeteer, self.avatars, controls, stats, options, self.tracker(),
                        KeypointSmoother() if smooth else None, self.swapper)


def animator_options(options: ShowOptions, size: tuple[int, int], want_alpha: bool = False) -> AnimatorOptions:
    """The per-frame choices of a real-time command: live's, or for bench (which times live's default chain) the
    defaults of those it has no option for."""
    if isinstance(options, LiveOptions):
        return AnimatorOptions(size, options.margin, options.relative, options.adapt_scale, not options.stabilize,
                               want_alpha, options.parts, options.size, options.expression)
    return AnimatorOptions(size, follow_head=not options.stabilize, want_alpha=want_alpha, out_size=options.size,
                           expression=options.expression)


def open_session(options: Any, model: Model, photos: Sequence[AvatarPhoto], swapper: PartSwapper | None = None,
                 backend: BackendOpener = open_backend) -> Session:
    """Threads (real-time commands), the backend --backend names (opened by `backend`), the avatars prepared
    for it (and for the co-part model, when swapper), the face tracker (live says which)."""
    threads = inference_threads(options.threads) if isinstance(options, ShowOptions) else None
    size = model.config.size
    puppeteer = backend(options.backend, model.config, model.checkpoint, model.device, options.export_dir,
                        threads=threads, avatar=photos[0].face(size))
    tracker = _tracker_name(options)
    landmarks = expression_landmarks(options, tracker)
    avatars = prepare_avatars(photos, puppeteer, size, swapper, full_frame=options.full_frame, out_size=options.size,
                              detail=options.detail, landmarks=landmarks)
    return Session(options, model, puppeteer, avatars, threads, swapper, tracker, landmarks)


def expression_landmarks(options: Any, tracker: str | None) -> LandmarkDetector | None:
    """The landmark detector expression transfer needs (--expression, the default), or None with a one-line note
    when it cannot run: no dlib, or a real-time command whose tracker gives no 68 landmarks."""
    if not options.expression:
        return None
    return expression_detector(tracker, "expression transfer off", tracked=isinstance(options, ShowOptions))


def _tracker_name(options: Any) -> str | None:
    """The tracker a real-time command follows the face with (live says which); None: animate, live --crop full."""
    if not isinstance(options, ShowOptions) or getattr(options, "crop", "face") != "face":
        return None
    name = resolve_tracker(options.tracker)
    if isinstance(options, LiveOptions):
        print(f"face tracker: {name}", file=sys.stderr)
    return name


def _coseg_model(options: LiveOptions, needed: bool) -> tuple[str, str] | None:
    """The co-part model for --parts and the alpha matte: the user's, else the shipped one if present."""
    if options.seg_config is not None or options.seg_checkpoint is not None:
        if options.seg_config is None or options.seg_checkpoint is None:
            raise UserError("pass --seg-config and --seg-checkpoint together (or neither, for the shipped model)")
        return options.seg_config, options.seg_checkpoint
    try:
        return resolve_model("coseg", None, None)
    except UserError:
        if needed:
            raise UserError("--parts needs a co-part segmentation model and the shipped one is missing; pass "
                            "--seg-config and --seg-checkpoint") from None
        return None


def open_swapper(options: LiveOptions, want_alpha: bool, device: torch.device) -> PartSwapper | None:
    """live's co-part model, when --parts or an output that wants the alpha matte needs one (without one, PNG
    frames are opaque, as said on stderr)."""
    coseg = _coseg_model(options, needed=bool(options.parts)) if options.parts or want_alpha else None
    if coseg is None:
        if want_alpha:
            print("no co-part segmentation model: PNG frames are opaque (pass --seg-config/--seg-checkpoint "
                  "for a transparent background)", file=sys.stderr)
        return None
    seg_config = load_config_for("coseg", coseg[0])
    if options.parts:
        check_swap_index(options.parts, seg_config.model.num_segments)
    return PartSwapper(SwapPuppeteer(load_model(seg_config, coseg[1], device), device), seg_config.size)
