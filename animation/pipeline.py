"""The offline loops over a driving clip: animate a photo with FOMM, or swap parts with co-part
segmentation. The avatar is prepared once; each frame pays only for its own stages."""
from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from animation.puppeteer import FommPuppeteer, SwapPuppeteer, normalize_keypoints
from motion.errors import UserError


def pick_device(cpu: bool) -> torch.device:
    """The GPU when one is present, unless --cpu asks otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")


def animate_frames(nets: dict[str, nn.Module] | FommPuppeteer, source: np.ndarray, frames: Iterable[np.ndarray],
                   device: torch.device, relative: bool = True, adapt_scale: bool = False) -> Iterator[np.ndarray]:
    """Yield the avatar (float (h, w, 3) in [0, 1]) following each driving frame; the first driving
    frame is the reference pose of relative motion. ``nets`` may also be a ready puppeteer with
    FommPuppeteer's stages, e.g. an export backend (export.backends.open_backend)."""
    puppeteer = FommPuppeteer(nets, device) if isinstance(nets, dict) else nets
    avatar = puppeteer.prepare(source)
    kp_initial = None
    for frame in frames:
        kp_driving = puppeteer.keypoints(frame)
        kp_initial = kp_driving if kp_initial is None else kp_initial
        kp_norm = normalize_keypoints(avatar.kp, kp_driving, kp_initial, relative, adapt_scale)
        yield puppeteer.render(avatar, puppeteer.motion(avatar, kp_norm))


def check_swap_index(swap_index: Sequence[int], num_segments: int, flag: str = "--swap-index") -> None:
    bad = [i for i in swap_index if not 0 <= i <= num_segments]
    if bad or not swap_index:
        raise UserError(f"{flag} {','.join(map(str, swap_index))} is invalid: parts are numbered 1 to "
                        f"{num_segments} (0 is the background); pass e.g. {flag} 1,2,3")


def swap_frames(nets: dict[str, nn.Module], source: np.ndarray, frames: Iterable[np.ndarray],
                device: torch.device, swap_index: Sequence[int],
                use_source_segmentation: bool = False) -> Iterator[np.ndarray]:
    """Yield each driving frame with the chosen parts replaced by the source's, moved into its pose."""
    puppeteer = SwapPuppeteer(nets, device)
    avatar = puppeteer.prepare(source)
    for frame in frames:
        target, seg_target = puppeteer.segments(frame)
        yield puppeteer.swap(avatar, target, seg_target, swap_index, use_source_segmentation)
