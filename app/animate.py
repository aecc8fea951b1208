"""What `puppet.py animate` and `swap` do: load (animate: the session of app/session.py), stream frames
through the pipeline, write, report."""
from __future__ import annotations

import sys
from typing import Any, Callable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from app.session import BackendOpener, Model, find_model, open_session
from core.defaults import DEFAULT_AVATAR, DEFAULT_DRIVING
from core.expression import expressive
from core.media import (
    FrameWriter,
    check_not_input,
    check_output,
    check_writable_file,
    contact_sheet,
    read_frames,
    to_uint8,
    write_image,
)
from core.options import AnimateOptions, ClipOptions, SwapOptions
from core.pipeline import FommPipeline, SwapPipeline, check_swap_index, frame_band, rest_frame, with_detail
from core.puppeteer import FommPuppeteer, SwapPuppeteer
from motion.checkpoint import load_model
from motion.config import Config
from realtime.avatars import Avatar, AvatarPhoto, find_face, prepare_avatars, whole_picture


def _remember(frames: Iterator[np.ndarray], store: list[np.ndarray]) -> Iterator[np.ndarray]:
    for frame in frames:
        store.append(frame)
        yield frame


# (model-size frame, the dense motion that made it or None) -> output frame
Presenter = Callable[[np.ndarray, Any], np.ndarray]
# the per-frame step: driving frame -> (model frame, its motion)
Step = Callable[[np.ndarray], tuple[np.ndarray, Any]]
# (the avatar photo, the driving clip's frame rate) -> (the avatar prepared for the model, the per-frame step)
PipelineOpener = Callable[[AvatarPhoto, float], tuple[Avatar, Step]]


def load_avatar(path: str, full_frame: bool) -> AvatarPhoto:
    """--full-frame: the photo and its face, found as `live` finds it; else the whole picture, as the official
    demo takes it."""
    return find_face(path) if full_frame else whole_picture(path)


def presenter(avatar: Avatar, official: bool) -> Presenter:
    """official: frames written as rendered; else through the avatar's portrait (--full-frame: pasted back into
    the photo, with its detail moved by each frame's motion unless --no-detail; --size: letterboxed)."""
    if official:
        return lambda frame, motion: to_uint8(frame)
    portrait = avatar.portrait
    return lambda frame, motion: portrait(frame, True, frame_band(portrait, frame, motion))


def _run(options: ClipOptions, model: Model, open_pipeline: PipelineOpener, full_frame: bool = False,
         official: bool = True) -> int:
    inputs = [options.driving or DEFAULT_DRIVING, options.avatar or DEFAULT_AVATAR]
    check_not_input(options.output, inputs)
    if options.sheet:
        check_not_input(options.sheet, [*inputs, options.output], "--sheet")
        check_writable_file(options.sheet, "--sheet")
    photo = load_avatar(str(options.avatar or DEFAULT_AVATAR), full_frame)
    # the video and the output are checked before the model opens, which can take a while (auto)
    fps, frames = read_frames(options.driving or DEFAULT_DRIVING, model.config.size)
    check_output(options.output)
    avatar, step = open_pipeline(photo, fps)
    present = presenter(avatar, official)
    seen: list[np.ndarray] = []
    results: list[np.ndarray] = []
    if options.sheet:
        frames = _remember(frames, seen)
    with FrameWriter(options.output, fps) as writer:
        for frame, motion in tqdm(map(step, frames), desc="frames", unit="frame", file=sys.stderr, disable=None):
            writer.write(present(frame, motion))
            if options.sheet:
                results.append(frame)
    print(f"wrote {writer.count} frames to {options.output}", file=sys.stderr)
    if options.sheet and results:
        write_image(options.sheet, contact_sheet(avatar.image, seen, results))
        print(f"wrote the contact sheet {options.sheet}", file=sys.stderr)
    return writer.count


def torch_model(name: str, config: Config, checkpoint: str, device: torch.device, export_dir: Any = None,
                threads: int | None = None, avatar: np.ndarray | None = None) -> FommPuppeteer:
    """PyTorch eager on the checkpoint, whatever `name` (--backend) says: run_animate's backend when it is
    called from Python (open_backend's signature)."""
    return FommPuppeteer(load_model(config, checkpoint, device), device)


def run_animate(options: AnimateOptions, backend: BackendOpener = torch_model) -> int:
    """`backend` opens the model (app/session.py): PyTorch unless told otherwise; the command line passes
    export.backends.open_backend, which opens --backend; a test may pass a fake."""
    model = find_model("fomm", options)

    def open_pipeline(photo: AvatarPhoto, fps: float) -> tuple[Avatar, Step]:
        session = open_session(options, model, [photo], backend=backend)
        pipeline = FommPipeline(session.puppeteer, None, options.relative, options.adapt_scale)
        avatar = session.avatars[0]
        pipeline.avatar = avatar.fomm  # prepared once, with the session
        step = pipeline.step
        if session.landmarks is not None and avatar.landmarks is not None:
            step = expressive(step, session.landmarks, avatar.landmarks, fps)
        # at the model's size (no portrait to paste into), the detail goes onto the frames themselves
        if not options.detail or options.full_frame:
            return avatar, step
        return avatar, with_detail(step, avatar.image, rest_frame(session.puppeteer, avatar.fomm))
    return _run(options, model, open_pipeline, options.full_frame, not (options.full_frame or options.size))


def run_swap(options: SwapOptions) -> int:
    model = find_model("coseg", options)
    chosen = model.config.swap_index if options.parts is None else options.parts
    check_swap_index(chosen, model.config.model.num_segments)

    def open_pipeline(photo: AvatarPhoto, fps: float) -> tuple[Avatar, Step]:
        avatar = prepare_avatars([photo], None, model.config.size)[0]
        swapper = SwapPuppeteer(load_model(model.config, model.checkpoint, model.device), model.device)
        pipeline = SwapPipeline(swapper, chosen, avatar.image, options.source_segmentation)
        return avatar, lambda frame: (pipeline(frame), None)
    return _run(options, model, open_pipeline)
