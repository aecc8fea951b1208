"""Held-out evaluation, the papers' reconstruction protocol: the first frame of each test video is
the source and every frame is reconstructed from it with the driving frame's own keypoints. The
identity baseline (the source frame itself as the prediction) says how much motion there was.

Keypoint stability: keypoints of a frame warped by a known random TPS, mapped back through it, should
land where the frame's own keypoints are; the mean distance is reported in pixels.

With facial landmarks (dlib) also the FOMM paper's AKD and MKR on the reconstructions, and cross-identity
animation: photos of people not in training, driven in relative mode by the held-out clips, scored by
how well their landmark motion follows the driver's, and in both settings how well the mouth and eyes
follow, next to the still source's (training/face_metrics.py). Co-part models report
the IoU of their foreground matte with a chroma key on held-out blue-screen clips.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from core.faces import DEFAULT_MARGIN, crop, face_crop, landmark_box
from core.media import load_picture, to_model_frame
from core.pipeline import FommPipeline
from core.puppeteer import FommPuppeteer, to_tensor
from core.tracking.haar import HaarFaceDetector
from core.tracking.landmarks import LandmarkDetector
from motion.config import Config, TransformParams
from training.dataset import load_video, split_videos
from training.face_metrics import SCREEN_SHARE, akd, chroma_key, expression_following, iou, missing_rate, motion_correlation
from training.losses import RandomTps

CROSS_FRAMES = 128  # at most this many driving frames of a held-out clip in cross-identity animation


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


@torch.no_grad()
def foreground_masks(nets: dict[str, nn.Module], frames: list[np.ndarray], device: torch.device) -> list[np.ndarray]:
    """(h, w) bool per frame: where the co-part segmentation puts less than half on the background."""
    out = []
    for frame in frames:
        background = nets["segmentation_module"](to_tensor(frame, device)).segmentation[:, :1]
        background = torch.nn.functional.interpolate(background, size=frame.shape[:2], mode="bilinear")
        out.append(background[0, 0].cpu().numpy() < 0.5)
    return out


def evaluate(config: Config, nets: dict[str, nn.Module], data: str | Path, device: torch.device,
             stability_frames: int = 8, landmarks: LandmarkDetector | None = None,
             photos: list[Path] = ()) -> dict:
    """Mean L1 (intensities in [0, 1]) over all test frames next to the identity baseline; with
    `landmarks` also AKD, MKR and mouth and eye following (and their identity baselines), with `photos`
    cross-identity motion correlation, MKR and expression following; co-part models also the matte IoU on
    blue-screen clips."""
    errors, identity, shifts, count = [], [], [], 0
    drivers, generated, still, ious = [], [], [], []
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
        if landmarks is not None:
            drivers.append([landmarks(f) for f in frames])
            generated.append([landmarks(p) for p in predictions])
            still.append([drivers[-1][0]] * len(frames))
        if config.kind == "coseg" and (~chroma_key(frames[0])).mean() >= SCREEN_SHARE:
            ious += [iou(m, chroma_key(f)) for m, f in zip(foreground_masks(nets, frames, device), frames)]
    l1, base = float(np.mean(errors)), float(np.mean(identity))
    report = {"videos": len(videos), "frames": count, "l1": l1, "identity_l1": base,
              "ratio_to_identity": l1 / base if base else float("nan"),
              "keypoint_shift_px": float(np.mean(shifts))}
    if landmarks is not None:
        flat = [x for video in drivers for x in video]
        report.update(akd=akd(flat, [x for video in generated for x in video]),
                      identity_akd=akd(flat, [x for video in still for x in video]),
                      mkr=missing_rate([x for video in generated for x in video]), driving_mkr=missing_rate(flat),
                      expression=expression_following(drivers, generated),
                      identity_expression=expression_following(drivers, still))
    if ious:
        report.update(matte_iou=float(np.mean(ious)), matte_frames=len(ious))
    if photos and landmarks is not None and config.kind == "fomm":
        report["cross_identity"] = cross_identity(config, nets, videos, photos, landmarks, device, drivers)
    return report


def face_photos(paths: list[Path], size: tuple[int, int], landmarks: LandmarkDetector) -> dict[str, np.ndarray]:
    """Model-size face crops (the live loop's margin around the Haar box, or around the landmarks where
    Haar misses, as on tightly cropped portraits) of the photos whose crop has detectable landmarks."""
    detector, out = HaarFaceDetector(), {}
    for path in paths:
        photo = load_picture(path, "photo")
        box = detector.detect(photo)
        if box is None:
            points = landmarks(photo)
            box = None if points is None else landmark_box(points)
        if box is not None:
            image = to_model_frame(crop(photo, face_crop(box, DEFAULT_MARGIN, photo.shape)), size)
            if landmarks(image) is not None:
                out[path.stem] = image
    return out


def cross_identity(config: Config, nets: dict[str, nn.Module], videos: list[Path], photos: list[Path],
                   landmarks: LandmarkDetector, device: torch.device,
                   driver_marks: list[list[np.ndarray | None]]) -> dict:
    """Photo i driven (relative motion) by held-out clip i (cycling through the clips), at most
    CROSS_FRAMES frames of it; `driver_marks[i]` are the landmarks of clip i's frames, found already. The
    identity baseline of expression following is the still photo."""
    faces = face_photos(photos, config.size, landmarks)
    correlations, drivers, results, still = [], [], [], []
    for number, image in enumerate(tqdm(faces.values(), desc="cross-identity", unit="photo", file=sys.stderr,
                                        disable=None)):
        clip = list(load_video(videos[number % len(videos)], config.size))[:CROSS_FRAMES]
        pipeline = FommPipeline(FommPuppeteer(nets, device), image)
        out = [landmarks(pipeline(f)) for f in clip]
        drivers.append(driver_marks[number % len(videos)][:CROSS_FRAMES])
        correlations.append(motion_correlation(drivers[-1], out))
        results.append(out)
        still.append([landmarks(image)] * len(clip))
    return {"photos": len(faces), "photos_given": len(photos), "pairs": len(correlations),
            # a pair whose motion cannot be measured (no landmarks, no motion) counts as not following: 0
            "motion_correlation": float(np.mean(np.nan_to_num(correlations))) if correlations else float("nan"),
            "mkr": missing_rate([x for out in results for x in out]), "photo_names": sorted(faces),
            "expression": expression_following(drivers, results),
            "identity_expression": expression_following(drivers, still)}
