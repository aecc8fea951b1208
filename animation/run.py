"""What `puppet.py animate` and `swap` do: load, stream frames through the loop, write, report."""
from __future__ import annotations

import sys
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from animation.defaults import DEFAULT_AVATAR, DEFAULT_DRIVING, resolve_model
from animation.media import (FrameWriter, check_not_input, check_writable_file, contact_sheet, read_frames, read_image,
                             to_uint8, write_image)
from animation.pipeline import animate_frames, check_swap_index, pick_device, swap_frames
from motion.checkpoint import MODEL_NAMES, load_model
from motion.config import Config, load_config
from motion.errors import UserError

COMMAND_OF_KIND = {"fomm": "animate", "coseg": "swap"}


def load_config_for(kind: str, path: str) -> Config:
    config = load_config(path)
    if config.kind != kind:
        raise UserError(f"config {path} describes {MODEL_NAMES[config.kind]}; use `puppet.py "
                        f"{COMMAND_OF_KIND[config.kind]}` with it, or pass a config for {MODEL_NAMES[kind]}")
    return config


def _remember(frames: Iterator[np.ndarray], store: list[np.ndarray]) -> Iterator[np.ndarray]:
    for frame in frames:
        store.append(frame)
        yield frame


# (config, checkpoint, device) -> the networks, or a puppeteer with FommPuppeteer's stages (a backend)
ModelOpener = Callable[[Config, str, torch.device], Any]


def _run(config: Config, checkpoint: str, source: str | None, driving: str | None, output: str, cpu: bool,
         loop: Callable[..., Iterator[np.ndarray]], sheet: str | None = None, open_model: ModelOpener = load_model,
         **options) -> int:
    inputs = [driving or DEFAULT_DRIVING, source or DEFAULT_AVATAR]
    check_not_input(output, inputs)
    if sheet:
        check_not_input(sheet, [*inputs, output], "--sheet")
        check_writable_file(sheet, "--sheet")
    device = pick_device(cpu)
    nets = open_model(config, checkpoint, device)  # before the video is opened: a bad checkpoint leaks nothing
    source_image = read_image(source or DEFAULT_AVATAR, config.size)
    fps, frames = read_frames(driving or DEFAULT_DRIVING, config.size)
    seen: list[np.ndarray] = []
    results: list[np.ndarray] = []
    if sheet:
        frames = _remember(frames, seen)
    with FrameWriter(output, fps) as writer:
        for frame in tqdm(loop(nets, source_image, frames, device, **options), desc="frames", unit="frame",
                          file=sys.stderr, disable=None):
            writer.write(to_uint8(frame))
            if sheet:
                results.append(frame)
    print(f"wrote {writer.count} frames to {output}", file=sys.stderr)
    if sheet and results:
        write_image(sheet, contact_sheet(source_image, seen, results))
        print(f"wrote the contact sheet {sheet}", file=sys.stderr)
    return writer.count


def run_animate(config: str | None, checkpoint: str | None, source: str | None, driving: str | None, output: str,
                relative: bool = False, adapt_scale: bool = False, cpu: bool = False, sheet: str | None = None,
                open_model: ModelOpener = load_model) -> int:
    """`open_model` picks the backend (export/backends.py plugs in here, from the command line's layer)."""
    config, checkpoint = resolve_model("fomm", config, checkpoint)
    return _run(load_config_for("fomm", config), checkpoint, source, driving, output, cpu, animate_frames,
                sheet=sheet, open_model=open_model, relative=relative, adapt_scale=adapt_scale)


def run_swap(config: str | None, checkpoint: str | None, source: str | None, driving: str | None, output: str,
             swap_index: Sequence[int] | None, use_source_segmentation: bool = False, cpu: bool = False,
             sheet: str | None = None) -> int:
    config, checkpoint = resolve_model("coseg", config, checkpoint)
    loaded = load_config_for("coseg", config)
    swap_index = loaded.swap_index if swap_index is None else swap_index
    check_swap_index(swap_index, loaded.model.num_segments)
    return _run(loaded, checkpoint, source, driving, output, cpu, swap_frames, sheet=sheet,
                swap_index=swap_index, use_source_segmentation=use_source_segmentation)
