"""Detail transfer: the avatar photo's own fine detail, moved by the model's motion, on top of the
generator's frame at the output's resolution.

The generator sees and draws the face at the model's size (128 or 256 px), so a face pasted back into a
720p portrait is an enlarged, blurred square. The photo holds the detail the model cannot: its
high-frequency band (the crop minus what the generator can draw of it) moved by the model's dense motion
(its displacement from rest, upsampled: it is smooth) is what the enlarged generator frame lacks. The
generator keeps the low frequencies (shading, colour) and what the photo cannot show (the inside of an
opening mouth, revealed background), which the occlusion map marks and where the band fades out.

The generator also errs at its own size, in every pose: a warmer skin, a softened jaw line, the background's
texture. Measured once on the avatar rendered at rest (the photo as this generator would draw it, minus what
it drew) and moved with the face, that error at rest is taken off each model-size frame before it is enlarged
(cheap: the model's pixels, not the output's). Not where the expression stage (core/expression.py) moves lips, chin
or lids: there a 2-D warp of the photo's own mouth and lids would show them where dlib's landmarks misplace
them (a bearded mouth: a second mouth below the shaded one). Pure numpy/OpenCV, planned once per avatar.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import NamedTuple

import cv2
import numpy as np

SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)  # the generator blurs candidates, in model pixels (fit_blur)
# occlusion (1: the photo shows this place) -> the band's weight: full from VISIBLE up, none at HIDDEN and
# below, linear between, both as shares of the map's level where nothing is hidden (DetailPlan.open_level):
# trained models' occlusion maps rarely reach 1 even at rest.
VISIBLE, HIDDEN = 0.6, 0.2
# The band travels as bytes around ZERO (clipped to -128..127 levels: a byte remap is the fastest OpenCV has,
# about a third of a float one) and is added with cv2.addWeighted(frame, 1, band, 1, -ZERO), saturated.
ZERO = 128


@dataclass(frozen=True)
class DetailPlan:
    """The avatar crop at paste size and what each frame reuses; built once per avatar by plan_detail."""
    photo: np.ndarray  # (h, w, 3) float32 0..255: the crop at its pixel size in the photo, borders replicated
    still_band: np.ndarray  # (h, w, 3) uint8, ZERO + the photo minus its model-size version: the avatar's
    # own still crop (no generator, no blur) enlarged plus this is the photo
    band: np.ndarray  # (h, w, 3) uint8, ZERO + the photo minus the generator's version of it (blur sigma)
    model_size: tuple[int, int]  # (height, width) of the generator's frames and of the band's low-pass
    sigma: float | None  # the generator's own blur in model pixels; None: not measured yet (fit_blur)
    rest: np.ndarray | None = None  # (model h, w, 3) float32 levels: the generator's error at rest, to add to its
    # frames (with_rest); None: not measured
    open_level: float = 1.0  # the occlusion map's value where nothing is hidden: the median of this model's map
    # for this avatar at rest (with_rest; fomm-face's about 0.85, the live model's about 0.72), else 1


def shrink(image: np.ndarray, model_size: tuple[int, int]) -> np.ndarray:
    """An (h, w, 3) picture at the model's size, area-averaged."""
    return cv2.resize(image, (model_size[1], model_size[0]), interpolation=cv2.INTER_AREA)


def low_pass(image: np.ndarray, model_size: tuple[int, int], sigma: float = 0.0) -> np.ndarray:
    """What an (h, w, 3) picture looks like drawn by the generator: at the model's size, blurred by its
    sigma there, and enlarged bilinearly as the generator's frame is in the paste-back."""
    h, w = image.shape[:2]
    small = shrink(image, model_size)
    if sigma > 0:
        small = cv2.GaussianBlur(small, (0, 0), sigma)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def as_band(levels: np.ndarray) -> np.ndarray:
    """Float detail levels as bytes around ZERO."""
    return np.clip(levels + (ZERO + 0.5), 0, 255).astype(np.uint8)


def plan_detail(crop: np.ndarray, model_size: tuple[int, int]) -> DetailPlan:
    """Plan the transfer for an (h, w, 3) uint8 avatar crop at the size it is pasted back at; the band for
    rendered frames waits for the generator's blur (with_blur)."""
    photo = np.ascontiguousarray(crop, dtype=np.float32)
    still = as_band(photo - low_pass(photo, model_size))
    return DetailPlan(photo, still, still, tuple(model_size), None)


def with_blur(plan: DetailPlan, sigma: float) -> DetailPlan:
    """The plan with the band of rendered frames taken against a generator that blurs by sigma."""
    return replace(plan, band=as_band(plan.photo - low_pass(plan.photo, plan.model_size, sigma)), sigma=sigma)


def with_rest(plan: DetailPlan, drawn: np.ndarray, occlusion: np.ndarray | None = None) -> DetailPlan:
    """The plan with the generator's error at rest: `drawn` the avatar rendered at rest, (model h, w, 3) uint8 as
    the paste-back shows it (colour-corrected, before enlarging), against the photo as this generator would draw
    it (at the model's size, blurred by the plan's sigma, which must be measured). At rest, the frame plus this,
    enlarged, plus the band is then the photo (low_pass enlarges linearly, as the paste-back does). With the
    occlusion map of that rest render, also the map's level where nothing is hidden (open_level): its median,
    since at rest nothing is (the live model's map sits near 0.7 there, which the fixed thresholds read as
    partly hidden: a tenth of its face lost part of the detail and of this correction even at rest)."""
    small = shrink(plan.photo, plan.model_size)
    blurred = cv2.GaussianBlur(small, (0, 0), plan.sigma) if plan.sigma else small
    level = plan.open_level if occlusion is None else float(np.clip(np.median(occlusion), HIDDEN, 1))
    return replace(plan, rest=blurred - drawn.astype(np.float32), open_level=level)


class Detail(NamedTuple):
    """What one frame adds of the photo: `band` (output h, w, 3) uint8 around ZERO, added after the frame is
    enlarged; `rest` (model h, w, 3) float32 levels, added to the colour-corrected model-size frame, or None."""
    band: np.ndarray
    rest: np.ndarray | None = None


def corner_grid(height: int, width: int) -> np.ndarray:
    """(height, width, 2) (x, y) in [-1, 1] corner to corner: the deformation at rest
    (motion.geometry.coordinate_grid, the official convention)."""
    xs = np.linspace(-1, 1, width, dtype=np.float32)
    ys = np.linspace(-1, 1, height, dtype=np.float32)
    return np.stack(np.meshgrid(xs, ys), axis=-1)


@functools.lru_cache(maxsize=4)
def pixel_grid(height: int, width: int) -> np.ndarray:
    """(height, width, 2) float32 (x, y) of every pixel, read-only: the identity map, made once per size."""
    grid = np.dstack(np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)))
    grid.flags.writeable = False
    return grid


def sample_map(deformation: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The (h, w, 2) float32 remap map for an (h, w) picture from an (hd, wd, 2) deformation in [-1, 1]:
    its displacement from the deformation at rest, upsampled bilinearly (one two-channel resize) and in
    pixels, added to the identity, so that the avatar at rest maps every pixel to itself. (Read as
    grid_sample reads it, the official corner-to-corner grid at rest would shrink the picture by 1/wd; the
    trained generators undo most of that: at rest their frame matches the photo scaled by 0.99, not the
    0.97 of a plain 32x32 warp.)"""
    h, w = size
    hd, wd = deformation.shape[:2]
    shift = (np.asarray(deformation, np.float32) - corner_grid(hd, wd)) * np.float32([w / 2, h / 2])
    return cv2.resize(shift, (w, h), interpolation=cv2.INTER_LINEAR) + pixel_grid(h, w)


def fit_blur(plan: DetailPlan, rendered: np.ndarray, deformation: np.ndarray,
             sigmas: tuple[float, ...] = SIGMAS) -> float:
    """How much the generator blurs this avatar: the sigma (model pixels) whose blur of the photo, moved by
    the frame's deformation and brought to the model's size, is closest to ``rendered``, the generator's
    (h, w, 3) frame (float [0, 1]); colour offsets are set aside (the paste-back matches colours)."""
    target = np.asarray(rendered, np.float32) * 255
    target = target - target.mean((0, 1))
    moved = cv2.remap(plan.photo, sample_map(deformation, plan.photo.shape[:2]), None, cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REPLICATE)
    small = shrink(moved, plan.model_size)

    def error(sigma: float) -> float:
        blurred = cv2.GaussianBlur(small, (0, 0), sigma) if sigma > 0 else small
        return float(np.mean((blurred - blurred.mean((0, 1)) - target) ** 2))
    return min(sigmas, key=error)


def visibility(occlusion: np.ndarray, size: tuple[int, int], level: float = 1.0) -> np.ndarray:
    """The band's weight at (h, w) from a model-resolution occlusion map whose value where nothing is hidden is
    `level`."""
    weight = np.clip((np.asarray(occlusion, np.float32) - HIDDEN * level) / ((VISIBLE - HIDDEN) * level), 0, 1)
    return cv2.resize(weight, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def hidden_rows_cols(occlusion: np.ndarray, size: tuple[int, int], level: float = 1.0) -> tuple[slice, slice]:
    """The (h, w) pixels whose weight can be below 1: the box of the model cells under VISIBLE (of `level`), one
    cell wider each side (bilinear upsampling spreads a cell's value that far)."""
    rows, cols = np.nonzero(np.asarray(occlusion) < VISIBLE * level)
    (hd, wd), (h, w) = occlusion.shape[:2], size
    return (slice(max(0, (rows.min() - 1) * h // hd), min(h, (rows.max() + 2) * h // hd + 1)),
            slice(max(0, (cols.min() - 1) * w // wd), min(w, (cols.max() + 2) * w // wd + 1)))


def detail_band(plan: DetailPlan, deformation: np.ndarray | None, occlusion: np.ndarray | None) -> np.ndarray:
    """The (h, w, 3) uint8 detail (ZERO + levels) to add to the enlarged generator frame: the band moved as
    the generator moves the avatar (one byte remap; no detail where the motion reads outside the crop),
    faded where the occlusion map says the photo cannot show the place (worked out only over the box of
    such places, usually a small part). deformation None: the avatar's own still crop (still_band)."""
    if deformation is None:
        return plan.still_band
    band = cv2.remap(plan.band, sample_map(deformation, plan.band.shape[:2]), None, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=(ZERO, ZERO, ZERO))
    if occlusion is not None and float(np.min(occlusion)) < VISIBLE * plan.open_level:
        rows, cols = hidden_rows_cols(occlusion, band.shape[:2], plan.open_level)
        weight = visibility(occlusion, band.shape[:2], plan.open_level)[rows, cols, None]
        faded = (band[rows, cols].astype(np.float32) - ZERO) * weight + (ZERO + 0.5)
        band[rows, cols] = faded.astype(np.uint8)
    return band


def rest_levels(plan: DetailPlan, deformation: np.ndarray, occlusion: np.ndarray | None,
                kept: np.ndarray | None) -> np.ndarray | None:
    """The generator's error at rest (None: not measured) moved as the generator moves the avatar, faded where
    the occlusion map says the photo cannot show the place and where `kept` (model-size, 1: the expression stage
    moved nothing there) is below 1: (model h, w, 3) float32 levels for the model-size frame."""
    if plan.rest is None:
        return None
    size = plan.rest.shape[:2]
    moved = cv2.remap(plan.rest, sample_map(deformation, size), None, cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    weight = None if occlusion is None else visibility(occlusion, size, plan.open_level)
    if kept is not None:  # made by the expression stage on this model-size frame: the same size
        weight = kept if weight is None else weight * kept
    return moved if weight is None else moved * weight[..., None]
