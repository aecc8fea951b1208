"""Landmark-anchored keypoints: a few of FOMM's free keypoints tied to the lips and upper eyelids.

Unsupervised keypoints settle where they explain most pixels: on a talking head that is the head's pose,
and the mouth and eyelids get no keypoint that moves with them alone (issue "talking faces": on a held-out
clip no keypoint or Jacobian followed the mouth opening). Relative motion can only carry what the keypoints
see. The anchor loss pulls chosen keypoints onto dlib landmarks of the same frame (the middle of the upper
and lower inner lip, the middle of each upper eyelid), in source and driving frames alike, so the driver's
mouth opening and blinks become keypoint motion that dense motion and the generator learn to render. The
other keypoints stay free.

Anchors are named by their place in the image (the image-left eye), so a horizontal flip of a training
pair mirrors the points and swaps the two eyes (flip_anchors).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

# anchor -> the dlib 68-point landmarks averaged for it (0-based)
ANCHOR_LANDMARKS = {"upper_lip": (62,), "lower_lip": (66,), "left_lid": (37, 38), "right_lid": (43, 44)}
ANCHORS = tuple(ANCHOR_LANDMARKS)
MIRRORED = (0, 1, 3, 2)  # anchor order after a horizontal flip: the image-left eye becomes the image-right one


def anchor_points(landmarks: np.ndarray | None) -> np.ndarray:
    """(A, 2) anchor positions in pixels from (68, 2) landmarks; all NaN without landmarks."""
    if landmarks is None:
        return np.full((len(ANCHORS), 2), np.nan, np.float32)
    return np.stack([landmarks[list(points)].mean(0) for points in ANCHOR_LANDMARKS.values()]).astype(np.float32)


def flip_anchors(points: np.ndarray, width: int) -> np.ndarray:
    """(..., A, 2) anchors of a frame mirrored left-right (x -> width - 1 - x), in the same anchor order."""
    mirrored = points[..., list(MIRRORED), :].copy()
    mirrored[..., 0] = width - 1 - mirrored[..., 0]
    return mirrored


def to_keypoint_space(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pixel (x, y) -> the keypoints' [-1, 1] frame (pixel centres, corner to corner: x = 2i / (w - 1) - 1)."""
    h, w = size
    return (points / np.float32([w - 1, h - 1])) * 2 - 1


def anchor_loss(keypoints: torch.Tensor, anchors: torch.Tensor, indices: tuple[int, ...]) -> torch.Tensor:
    """Mean L1 distance between keypoints[:, indices[a]] (B, K, 2) and anchors[:, a] (B, A, 2), over the
    anchors that are known (NaN: no face found in that frame); 0 when none is."""
    chosen = keypoints[:, list(indices)]
    known = ~torch.isnan(anchors).any(-1)
    if not bool(known.any()):
        return keypoints.sum() * 0
    return (chosen - torch.nan_to_num(anchors)).abs().sum(-1)[known].mean()


def nearest_keypoints(keypoints: np.ndarray, anchors: np.ndarray) -> tuple[int, ...]:
    """The keypoint to anchor to each anchor: a one-to-one assignment minimising the mean distance over
    frames (keypoints (N, K, 2), anchors (N, A, 2), NaN where unknown), so training moves each chosen
    keypoint the least."""
    known = ~np.isnan(anchors).any(-1)  # (N, A)
    if not known.any(0).all():
        raise ValueError("an anchor has no landmarks in any frame: no face was found")
    cost = np.zeros((anchors.shape[1], keypoints.shape[1]))
    for a in range(anchors.shape[1]):
        rows = known[:, a]
        cost[a] = np.linalg.norm(keypoints[rows] - anchors[rows, a][:, None], axis=-1).mean(0)
    chosen_anchors, chosen_keypoints = linear_sum_assignment(cost)
    return tuple(int(k) for _, k in sorted(zip(chosen_anchors, chosen_keypoints)))
