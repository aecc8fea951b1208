"""What `puppet.py animate` and `swap` do: load, stream frames through the pipeline, write, report."""
from __future__ import annotations

import sys
from typing import Any, Callable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from core.defaults import DEFAULT_AVATAR, DEFAULT_DRIVING, resolve_model
from core.faces import DEFAULT_MARGIN, HaarFaceDetector, avatar_box, crop
from core.media import (FrameWriter, check_not_input, check_output, check_writable_file, contact_sheet,
                             load_picture, read_frames, read_image, to_model_frame, to_uint8, write_image)
from core.config import load_config_for
from core.options import AnimateOptions, ClipOptions, SwapOptions
from core.paste import Portrait
from core.pipeline import FommPipeline, SwapPipeline, check_swap_index, frame_band, pick_device
from core.puppeteer import FommPuppeteer, SwapPuppeteer
from motion.checkpoint import load_model
from motion.config import Config

def _remember(frames: Iterator[np.ndarray], store: list[np.ndarray]) -> Iterator[np.ndarray]:
    for frame in frames:
        store.append(frame)
        yield frame


# (config, checkpoint, device, avatar image) -> a puppeteer with FommPuppeteer's stages (an export backend
# plugs in here; auto checks its choice on the avatar)
ModelOpener = Callable[[Config, str, torch.device, np.ndarray], Any]
# (config, checkpoint, device, avatar image) -> the per-frame step: driving frame -> (model frame, its motion)
PipelineOpener = Callable[[Config, str, torch.device, np.ndarray], Callable[[np.ndarray], tuple[np.ndarray, Any]]]
# (model-size frame, the dense motion that made it or None) -> output frame
Presenter = Callable[[np.ndarray, Any], np.ndarray]
# (avatar path, config) -> (the avatar at the model's size, its presenter)
AvatarLoader = Callable[[str, Config], tuple[np.ndarray, Presenter]]


def official_avatar(path: str, config: Config) -> tuple[np.ndarray, Presenter]:
    """The official demo's preparation: the whole photo resized to the model; frames written as rendered."""
    return read_image(path, config.size), lambda frame, motion: to_uint8(frame)


def presenter(portrait: Portrait) -> Presenter:
    """Frames through a portrait, with the photo's detail moved by each frame's motion when it has detail."""
    return lambda frame, motion: portrait(frame, True, frame_band(portrait, frame, motion))


def portrait_avatar(full_frame: bool, size: tuple[int, int] | None, detail: bool) -> AvatarLoader:
    """The avatar for --full-frame (its face crop, pasted back into the photo, with its detail unless
    --no-detail) and/or --size (letterboxed)."""
    def load(path: str, config: Config) -> tuple[np.ndarray, Presenter]:
        if not full_frame:
            avatar, _ = official_avatar(path, config)
            return avatar, presenter(Portrait(avatar, None, config.size, False, size))
        photo = load_picture(path, "avatar")
        box = avatar_box(photo, HaarFaceDetector(), DEFAULT_MARGIN)
        if box is None:
            print(f"no face found in avatar {path}; animating the whole picture", file=sys.stderr)
        return to_model_frame(photo if box is None else crop(photo, box), config.size), \
            presenter(Portrait(photo, box, config.size, True, size, detail))
    return load


def _run(options: ClipOptions, config: Config, checkpoint: str, open_pipeline: PipelineOpener,
         load_avatar: AvatarLoader = official_avatar) -> int:
    inputs = [options.driving or DEFAULT_DRIVING, options.avatar or DEFAULT_AVATAR]
    check_not_input(options.output, inputs)
    if options.sheet:
        check_not_input(options.sheet, [*inputs, options.output], "--sheet")
        check_writable_file(options.sheet, "--sheet")
    device = pick_device(options.cpu)
    avatar, present = load_avatar(str(options.avatar or DEFAULT_AVATAR), config)
    # the video and the output are checked before the model opens, which can take a while (auto)
    fps, frames = read_frames(options.driving or DEFAULT_DRIVING, config.size)
    check_output(options.output)
    pipeline = open_pipeline(config, checkpoint, device, avatar)
    seen: list[np.ndarray] = []
    results: list[np.ndarray] = []
    if options.sheet:
        frames = _remember(frames, seen)
    with FrameWriter(options.output, fps) as writer:
        for frame, motion in tqdm(map(pipeline, frames), desc="frames", unit="frame", file=sys.stderr, disable=None):
            writer.write(present(frame, motion))
            if options.sheet:
                results.append(frame)
    print(f"wrote {writer.count} frames to {options.output}", file=sys.stderr)
    if options.sheet and results:
        write_image(options.sheet, contact_sheet(avatar, seen, results))
        print(f"wrote the contact sheet {options.sheet}", file=sys.stderr)
    return writer.count


def torch_model(config: Config, checkpoint: str, device: torch.device, avatar: np.ndarray) -> FommPuppeteer:
    return FommPuppeteer(load_model(config, checkpoint, device), device)


def run_animate(options: AnimateOptions, open_model: ModelOpener = torch_model) -> int:
    """`open_model` picks the backend (export/backends.py plugs in here, from the command line's layer)."""
    config, checkpoint = resolve_model("fomm", options.config, options.checkpoint)

    def open_pipeline(loaded: Config, path: str, device: torch.device, avatar: np.ndarray) -> Callable:
        return FommPipeline(open_model(loaded, path, device, avatar), avatar, options.relative, options.adapt_scale).step
    loader = portrait_avatar(options.full_frame, options.size, options.detail) if options.full_frame or options.size \
        else official_avatar
    return _run(options, load_config_for("fomm", config), checkpoint, open_pipeline, loader)


def run_swap(options: SwapOptions) -> int:
    config, checkpoint = resolve_model("coseg", options.config, options.checkpoint)
    loaded = load_config_for("coseg", config)
    chosen = loaded.swap_index if options.parts is None else options.parts
    check_swap_index(chosen, loaded.model.num_segments)

    def open_pipeline(loaded: Config, path: str, device: torch.device, avatar: np.ndarray) -> Callable:
        swapper = SwapPuppeteer(load_model(loaded, path, device), device)
        pipeline = SwapPipeline(swapper, chosen, avatar, options.source_segmentation)
        return lambda frame: (pipeline(frame), None)
    return _run(options, loaded, checkpoint, open_pipeline)
