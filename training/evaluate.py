"""Held-out evaluation, the papers' reconstruction protocol: the first frame of each test video is
the source and every frame is reconstructed from it with the driving frame's own keypoints. The
identity baseline (the source frame itself as the prediction) says how much motion there was.

Keypoint stability: keypoints of a frame warped by a known random TPS, mapped back through it, should
land where the frame's own keypoints are; the mean distance is reported in pixels.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from animation.puppeteer import to_tensor
from motion.config import Config, TransformParams
from training.dataset import load_video, split_videos
from training.losses import RandomTps


def _detector(config: Config, nets: dict[str, nn.Module]) -> nn.Module:
    return nets["kp_detector"] if config.kind == "fomm" else nets["segmentation_module"]


def _anchors(config: Config, nets: dict[str, nn.Module], images: torch.Tensor) -> torch.Tensor:
    found = _detector(config, nets)(images)
    return found.value if config.kind == "fomm" else found.shift


@torch.no_grad()
def reconstruct(config: Config, nets: dict[str, nn.Module], frames: list[np.ndarray],
                device: torch.device) -> list[np.ndarray]:
    """Every frame rebuilt from the first one (absolute motion: the driving frame's own anchors)."""
    source = to_tensor(frames[0], device)
    detector = _detector(config, nets)
    found_source = detector(source)
    out = []
    if config.kind == "fomm":
        generator = nets["generator"]
        features, small = generator.encode(source), generator.dense_motion_network.downsample(source)
        for frame in frames:
            prediction = generator.animate(features, small, detector(to_tensor(frame, device)), found_source).prediction
            out.append(prediction[0].permute(1, 2, 0).cpu().numpy())
    else:
        reconstruction = nets["reconstruction_module"]
        features = reconstruction.encode(source)
        for frame in frames:
            warped = reconstruction.warp_source(features, detector(to_tensor(frame, device)), found_source)
            out.append(reconstruction.decode(warped)[0].permute(1, 2, 0).cpu().numpy())
    return out


@torch.no_grad()
def keypoint_shift(config: Config, nets: dict[str, nn.Module], frames: list[np.ndarray], device: torch.device,
                   params: TransformParams, seed: int = 0) -> float:
    """Mean distance in pixels between a frame's anchors and those found on its TPS-warped copy, mapped back."""
    batch = torch.cat([to_tensor(f, device) for f in frames])
    transform = RandomTps.sample(batch.shape[0], params, device, torch.Generator().manual_seed(seed))
    own = _anchors(config, nets, batch)
    back = transform.warp_points(_anchors(config, nets, transform.warp_image(batch)))
    half_size = torch.tensor([(batch.shape[3] - 1) / 2, (batch.shape[2] - 1) / 2], device=device)
    return float(((own - back) * half_size).norm(dim=-1).mean())


def evaluate(config: Config, nets: dict[str, nn.Module], data: str | Path, device: torch.device,
             stability_frames: int = 8) -> dict:
    """Mean L1 (intensities in [0, 1]) over all test frames, next to the identity baseline."""
    errors, identity, shifts, count = [], [], [], 0
    params = config.train.transform_params if config.train else TransformParams()
    videos = split_videos(data, "test")
    for index, video in enumerate(tqdm(videos, desc="eval", unit="video", file=sys.stderr, disable=None)):
        frames = list(load_video(video, config.size))
        predictions = reconstruct(config, nets, frames, device)
        errors += [float(np.abs(p - f).mean()) for p, f in zip(predictions, frames)]
        identity += [float(np.abs(frames[0] - f).mean()) for f in frames]
        picks = frames[:: max(1, len(frames) // stability_frames)][:stability_frames]
        shifts.append(keypoint_shift(config, nets, picks, device, params, seed=index))
        count += len(frames)
    l1, base = float(np.mean(errors)), float(np.mean(identity))
    return {"videos": len(videos), "frames": count, "l1": l1, "identity_l1": base,
            "ratio_to_identity": l1 / base if base else float("nan"),
            "keypoint_shift_px": float(np.mean(shifts))}
