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
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from core.expression import avatar_points, expressive
from core.faces import DEFAULT_MARGIN, crop, face_crop, landmark_box
from core.media import load_picture, to_model_frame
from core.pipeline import FommPipeline, rest_frame, with_detail
from core.puppeteer import FommPuppeteer, to_tensor
from core.tracking.haar import HaarFaceDetector
from core.tracking.landmarks import LandmarkDetector
from motion.config import Config, TransformParams
from training.dataset import load_video, split_videos
from training.face_identity import MODEL_DIR, FaceIdentity, identity_summary, optional_identity
from training.face_metrics import (
    REGIONS,
    SCREEN_SHARE,
    akd,
    chroma_key,
    error_by_region,
    expression_following,
    iou,
    missing_rate,
    motion_correlation,
)
from training.losses import RandomTps

CROSS_FRAMES = 128  # at most this many driving frames of a held-out clip in cross-identity animation
STABILITY_FRAMES = 8  # frames of each clip whose keypoints are checked under random TPS warps
CLIP_FPS = 25.0  # the held-out clips' rate (expression smoothing runs in their time)


def _detector(config: Config, nets: dict[str, nn.Module]) -> nn.Module:
    return nets["kp_detector"] if config.kind == "fomm" else nets["segmentation_module"]


def _anchors(config: Config, nets: dict[str, nn.Module], images: torch.Tensor) -> torch.Tensor:
    found = _detector(config, nets)(images)
    return found.value if config.kind == "fomm" else found.shift


@torch.no_grad()
def reconstruct(config: Config, nets: dict[str, nn.Module], frames: list[np.ndarray], device: torch.device,
                marks: list[np.ndarray | None] | None = None, detail: bool = False) -> list[np.ndarray]:
    """Every frame rebuilt from the first one (absolute motion: the driving frame's own anchors); with the
    frames' landmarks `marks` (FOMM), the expression moved by them too (core/expression.py); with `detail`
    (FOMM), the first frame's own detail moved onto them (core.pipeline.with_detail)."""
    source = to_tensor(frames[0], device)
    detector = _detector(config, nets)
    found_source = detector(source)
    out = []
    if config.kind == "fomm":
        generator = nets["generator"]
        features, small = generator.encode(source), generator.dense_motion_network.downsample(source)
        found = iter(marks or [None] * len(frames))
        avatar = None if marks is None else avatar_points(marks[0], config.size)
        step = expressive(lambda frame: _rebuilt(generator, features, small, detector(to_tensor(frame, device)),
                                                 found_source), lambda frame: next(found), avatar, CLIP_FPS)
        if detail:  # measured on the network alone at rest
            step = with_detail(step, frames[0], _rebuilt(generator, features, small, found_source, found_source))
        out = [step(frame)[0] for frame in frames]
    else:
        reconstruction = nets["reconstruction_module"]
        features = reconstruction.encode(source)
        for frame in frames:
            warped = reconstruction.warp_source(features, detector(to_tensor(frame, device)), found_source)
            out.append(reconstruction.decode(warped)[0].permute(1, 2, 0).cpu().numpy())
    return out


def _rebuilt(generator: nn.Module, features: torch.Tensor, small: torch.Tensor, kp_driving: Any,
             kp_source: Any) -> tuple[np.ndarray, Any]:
    out = generator.animate(features, small, kp_driving, kp_source)
    return out.prediction[0].permute(1, 2, 0).cpu().numpy(), out.motion


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
             landmarks: LandmarkDetector | None = None, photos: list[Path] = (), expression: bool = False,
             identity_model: str | Path | None = MODEL_DIR, detail: bool = False) -> dict:
    """Mean L1 (intensities in [0, 1]) over all test frames next to the identity baseline; with
    `landmarks` also AKD, MKR and mouth and eye following (and their identity baselines), with `photos`
    cross-identity motion correlation, MKR and expression following; co-part models also the matte IoU on
    blue-screen clips. `expression` (with `landmarks`): FOMM results with the expression stage, as the commands
    show them by default. `detail`: FOMM results with the source photo's own detail at the model's size, as live's
    full-frame paste-back shows them (core.pipeline.with_detail). With `landmarks` and the face identity network
    in `identity_model` (fetch-data's; left out with a note when missing) also how much the results still look
    like their source person ("identity")."""
    errors, identity, shifts, count, regions = [], [], [], 0, []
    drivers, generated, still, ious = [], [], [], []
    face_id, similarities = _identity_network(landmarks, identity_model), []
    params = config.train.transform_params if config.train else TransformParams()
    videos = split_videos(data, "test")
    for index, video in enumerate(tqdm(videos, desc="eval", unit="video", file=sys.stderr, disable=None)):
        frames = list(load_video(video, config.size))
        marks = None if landmarks is None else [landmarks(f) for f in frames]
        predictions = reconstruct(config, nets, frames, device, marks if expression else None, detail)
        errors += [float(np.abs(p - f).mean()) for p, f in zip(predictions, frames)]
        identity += [float(np.abs(frames[0] - f).mean()) for f in frames]
        picks = frames[:: max(1, len(frames) // STABILITY_FRAMES)][:STABILITY_FRAMES]
        shifts.append(keypoint_shift(config, nets, picks, device, params, seed=index))
        count += len(frames)
        if landmarks is not None:
            regions += [error_by_region(p, f, m) for p, f, m in zip(predictions, frames, marks) if m is not None]
            drivers.append(marks)
            generated.append([landmarks(p) for p in predictions])
            still.append([drivers[-1][0]] * len(frames))
            if face_id is not None:  # each reconstruction against the source frame
                similarities.append(face_id.similarities(frames[0], marks[0], predictions, generated[-1]))
        if config.kind == "coseg" and (~chroma_key(frames[0])).mean() >= SCREEN_SHARE:
            ious += [iou(m, chroma_key(f)) for m, f in zip(foreground_masks(nets, frames, device), frames)]
    l1, base = float(np.mean(errors)), float(np.mean(identity))
    report = {"videos": len(videos), "frames": count, "l1": l1, "identity_l1": base,
              "ratio_to_identity": l1 / base if base else float("nan"),
              "keypoint_shift_px": float(np.mean(shifts)),
              # FOMM results went through the expression stage (it needs the driving frames' landmarks)
              "expression_stage": bool(expression and landmarks is not None and config.kind == "fomm"),
              "detail": bool(detail and config.kind == "fomm")}
    if landmarks is not None:
        flat = [x for video in drivers for x in video]
        report.update(akd=akd(flat, [x for video in generated for x in video]),
                      identity_akd=akd(flat, [x for video in still for x in video]),
                      mkr=missing_rate([x for video in generated for x in video]), driving_mkr=missing_rate(flat),
                      expression=expression_following(drivers, generated),
                      # each region's share of the L1 in units of the identity baseline (frames where the truth
                      # has a face: with a face in every frame, they add up to the ratio)
                      ratio_by_region={name: float(np.mean([r[name] for r in regions])) / base if regions and base
                                       else float("nan") for name in (*REGIONS, "rest")},
                      identity_expression=expression_following(drivers, still))
    report.update(_identity_report(face_id, similarities))
    if ious:
        report.update(matte_iou=float(np.mean(ious)), matte_frames=len(ious))
    if photos and landmarks is not None and config.kind == "fomm":
        scoring = Scoring(landmarks, expression, detail, face_id)
        report["cross_identity"] = cross_identity(config, nets, videos, photos, device, drivers, scoring)
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


@torch.no_grad()
def animate_photo(nets: dict[str, nn.Module], device: torch.device, image: np.ndarray, clip: list[np.ndarray],
                  marks: list[np.ndarray | None], avatar: np.ndarray | None, detail: bool = False) -> list[np.ndarray]:
    """A model-size photo driven by a clip in relative motion; with the photo's landmarks `avatar` (grid units)
    and the clip's `marks`, its expression moved too; with `detail`, the photo's own detail moved onto it."""
    found = iter(marks)
    pipeline = FommPipeline(FommPuppeteer(nets, device), image)
    step = expressive(pipeline.step, lambda frame: next(found), avatar, CLIP_FPS)
    step = with_detail(step, image, rest_frame(pipeline.puppeteer, pipeline.avatar)) if detail else step
    return [step(frame)[0] for frame in clip]


class Scoring(NamedTuple):
    """How cross-identity results are made and scored: landmarks (dlib), the expression stage on or off, the photo's
    detail on or off, the face identity network (None: no identity figures)."""
    landmarks: LandmarkDetector
    expression: bool = False
    detail: bool = False
    face_id: FaceIdentity | None = None


def cross_identity(config: Config, nets: dict[str, nn.Module], videos: list[Path], photos: list[Path],
                   device: torch.device, driver_marks: list[list[np.ndarray | None]], scoring: Scoring) -> dict:
    """Photo i driven (relative motion) by held-out clip i (cycling through the clips), at most
    CROSS_FRAMES frames of it; `driver_marks[i]` are the landmarks of clip i's frames, found already. The
    identity baseline of expression following is the still photo. With `face_id` also how much each result frame
    still looks like its photo's person ("identity")."""
    landmarks, face_id = scoring.landmarks, scoring.face_id
    faces = face_photos(photos, config.size, landmarks)
    correlations, drivers, results, still, similarities = [], [], [], [], []
    for number, image in enumerate(tqdm(faces.values(), desc="cross-identity", unit="photo", file=sys.stderr,
                                        disable=None)):
        clip = list(load_video(videos[number % len(videos)], config.size))[:CROSS_FRAMES]
        drivers.append(driver_marks[number % len(videos)][:CROSS_FRAMES])
        avatar = avatar_points(landmarks(image), config.size) if scoring.expression else None
        shown = animate_photo(nets, device, image, clip, drivers[-1], avatar, scoring.detail)
        out = [landmarks(x) for x in shown]
        if face_id is not None:
            similarities.append(face_id.similarities(image, landmarks(image), shown, out))
        correlations.append(motion_correlation(drivers[-1], out))
        results.append(out)
        still.append([landmarks(image)] * len(clip))
    # each pair's figures: a few hard portraits (a mask, sunglasses) can decide the means (motion correlation
    # None: not measurable, counted 0 below; other_person: the share of its frames taken for another person)
    per_photo = {name: {"motion_correlation": None if np.isnan(correlation) else correlation,
                        "missing": sum(x is None for x in out)}
                 for name, correlation, out in zip(faces, correlations, results)}
    for name, values in zip(faces, similarities):
        per_photo[name]["other_person"] = identity_summary(values)["other_person"]
    return {"photos": len(faces), "photos_given": len(photos), "pairs": len(correlations),
            # a pair whose motion cannot be measured (no landmarks, no motion) counts as not following: 0
            "motion_correlation": float(np.mean(np.nan_to_num(correlations))) if correlations else float("nan"),
            "per_photo": per_photo,
            "mkr": missing_rate([x for out in results for x in out]), "photo_names": sorted(faces),
            "expression": expression_following(drivers, results),
            "identity_expression": expression_following(drivers, still), **_identity_report(face_id, similarities)}


def _identity_network(landmarks: LandmarkDetector | None, folder: str | Path | None) -> FaceIdentity | None:
    """The face identity network when there are landmarks to align faces with and its files are in `folder`."""
    return None if landmarks is None or folder is None else optional_identity(folder)


def _identity_report(face_id: FaceIdentity | None, similarities: list[np.ndarray]) -> dict:
    """{"identity": mean cosine similarity, share taken for another person, frames compared}, or {} without
    the network."""
    return {} if face_id is None else {"identity": identity_summary(np.concatenate([np.zeros(0), *similarities]))}
