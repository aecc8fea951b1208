"""The FOMM paper's face metrics and the one that matters for an avatar, as pure functions of landmarks.

AKD: mean distance of the 68 facial landmarks of driving and generated frames (pixels at the model's
size), over frames where both have a face. MKR: share of generated frames with no detectable face.
Cross-identity motion correlation: landmark displacements from the first frame, each sequence
normalised by its own first frame's inter-ocular distance, correlated (Pearson) between driver and
result, since an avatar of another person can only follow the driver's motion, not match its landmarks.
Expression following: head motion carries that correlation, so the mouth and eye openings (lip and lid gaps
in inter-ocular distances, from the first frame's) are compared on their own: correlation says whether the
result opens when the driver does, gain how wide (1: as wide, 0: a still mouth).
Matte IoU: the co-part foreground against a chroma key of a blue-screen clip.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from core.faces import inter_ocular, opening

Landmarks = np.ndarray | None  # (68, 2) pixels, or None where no face was found


def akd(driving: Sequence[Landmarks], generated: Sequence[Landmarks]) -> float:
    """Mean landmark distance over frames where both have landmarks (nan when none do)."""
    distances = [float(np.linalg.norm(d - g, axis=-1).mean())
                 for d, g in zip(driving, generated) if d is not None and g is not None]
    return float(np.mean(distances)) if distances else float("nan")


def missing_rate(generated: Sequence[Landmarks]) -> float:
    """Share of frames without landmarks (MKR)."""
    return sum(g is None for g in generated) / len(generated) if len(generated) else float("nan")


def normalised_displacements(sequence: Sequence[Landmarks]) -> list[np.ndarray | None]:
    """Each frame's landmarks minus the first frame's, in units of the first frame's inter-ocular distance."""
    first = sequence[0]
    if first is None:
        return [None] * len(sequence)
    unit = inter_ocular(first)
    return [None if s is None else (s - first) / unit for s in sequence]


def motion_correlation(driving: Sequence[Landmarks], result: Sequence[Landmarks]) -> float:
    """Pearson correlation of normalised landmark displacements from the first frame, over the frames
    (after the first) where both have landmarks; nan when there is no such frame or no motion."""
    pairs = [(d, r) for d, r in zip(normalised_displacements(driving)[1:], normalised_displacements(result)[1:])
             if d is not None and r is not None]
    if not pairs:
        return float("nan")
    a = np.concatenate([d.ravel() for d, _ in pairs])
    b = np.concatenate([r.ravel() for _, r in pairs])
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


MOUTH = ((61, 67), (62, 66), (63, 65))  # inner lips: each upper point and the lower one facing it
EYES = ((37, 41), (38, 40), (43, 47), (44, 46))  # upper and lower eyelids, both eyes
EXPRESSIONS = {"mouth": MOUTH, "eyes": EYES}


def openings(sequence: Sequence[Landmarks], gaps: Sequence[tuple[int, int]]) -> list[float | None]:
    """Each frame's mean gap between the paired landmarks, in its inter-ocular distances, minus the first
    frame's (a face may rest with its mouth ajar); None without landmarks, all None when the first has none."""
    values = [None if s is None else opening(s, gaps) for s in sequence]
    if not values or values[0] is None:
        return [None] * len(values)
    return [None if v is None else v - values[0] for v in values]


def correlation_and_gain(driver: np.ndarray, result: np.ndarray) -> tuple[float, float]:
    """Pearson correlation and least-squares slope of `result` on `driver`. A still driver shows nothing to
    follow: (nan, nan). A still result under a moving driver follows nothing: (0, 0), not an undefined
    correlation, so the identity baseline scores 0 like a still photo in motion correlation."""
    if len(driver) < 2 or np.ptp(driver) == 0:
        return float("nan"), float("nan")
    if np.ptp(result) == 0:
        return 0.0, 0.0
    covariance = np.cov(driver, result)
    return (float(covariance[0, 1] / np.sqrt(covariance[0, 0] * covariance[1, 1])),
            float(covariance[0, 1] / covariance[0, 0]))


def expression_following(drivers: Sequence[Sequence[Landmarks]], results: Sequence[Sequence[Landmarks]]) -> dict:
    """Per expression (mouth, eyes): correlation and gain of the results' openings on their drivers', the
    frames after the first of every clip pooled (one clip's few blinks say little alone); `frames` compared,
    `skipped` for want of a face on either side."""
    report = {}
    for name, gaps in EXPRESSIONS.items():
        pairs = [(d, r) for driver, result in zip(drivers, results)
                 for d, r in zip(openings(driver, gaps)[1:], openings(result, gaps)[1:])]
        kept = np.array([(d, r) for d, r in pairs if d is not None and r is not None]).reshape(-1, 2)
        correlation, gain = correlation_and_gain(kept[:, 0], kept[:, 1])
        report[name] = {"correlation": correlation, "gain": gain, "frames": len(kept),
                        "skipped": len(pairs) - len(kept)}
    return report


# boxes around the truth's landmarks that split a reconstruction's error, taken in this order (each without the
# ones before it), the rest of the frame last: where a change to the picture gains or loses (the expression
# stage's L1 cost sits in the chin's box)
REGIONS = {"mouth": tuple(range(48, 68)), "eyes": tuple(range(36, 48)), "chin": tuple(range(5, 12))}
REGION_MARGIN = 3  # pixels each box grows by on every side


def error_by_region(prediction: np.ndarray, truth: np.ndarray, landmarks: np.ndarray) -> dict[str, float]:
    """A reconstruction's mean absolute error (over pixels and channels) split into the shares of REGIONS' boxes
    around the truth's (68, 2) pixel landmarks and of the rest of the frame: the shares add up to the mean."""
    error = np.abs(np.asarray(prediction, np.float64) - truth).mean(-1)
    height, width = error.shape
    taken = np.zeros((height, width), bool)
    shares = {}
    for name, points in REGIONS.items():
        x0, y0 = np.maximum(np.floor(landmarks[list(points)].min(0)).astype(int) - REGION_MARGIN, 0)
        x1, y1 = np.maximum(np.ceil(landmarks[list(points)].max(0)).astype(int) + REGION_MARGIN + 1, 0)
        box = np.zeros((height, width), bool)
        box[y0:y1, x0:x1] = True
        box &= ~taken
        taken |= box
        shares[name] = float(error[box].sum() / error.size)
    shares["rest"] = float(error[~taken].sum() / error.size)
    return shares


SCREEN_SHARE = 0.2  # a frame at least this much blue screen is keyed (a matte label or a matte score)


def chroma_key(frame: np.ndarray, dominance: float = 0.12, min_blue: float = 0.35) -> np.ndarray:
    """(h, w) bool: True where the pixel is not blue screen (blue above `min_blue` and above red and green
    by `dominance`); frame float RGB in [0, 1]."""
    r, g, b = frame[..., 0], frame[..., 1], frame[..., 2]
    screen = (b > min_blue) & (b - np.maximum(r, g) > dominance)
    return ~screen


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
