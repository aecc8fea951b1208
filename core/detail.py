"""Detail transfer: the avatar photo's own fine detail, moved by the model's motion, on top of the
generator's frame at the output's resolution.

The generator sees and draws the face at the model's size (128 or 256 px), so a face pasted back into a
720p portrait is an enlarged, blurred square. The photo holds the detail the model cannot: its
high-frequency band (the crop minus what the generator can draw of it) moved by the model's dense motion
(its displacement from rest, upsampled: it is smooth) is what the enlarged generator frame lacks. The
generator keeps the low frequencies (shading, colour) and what the photo cannot show (the inside of an
opening mouth, revealed background), which the occlusion map marks and where the band fades out.

Once the avatar has been rendered at rest, the band also carries the generator's own error there (the rest
error: the photo as the generator would draw it, minus what it drew), moved with the face: colour, shading
and shapes the generator gets wrong in every pose (a warmer skin, a softened jaw line, the background's
texture). Where the expression stage (core/expression.py) moves lips, chin or lids that error stays behind,
since there the stage's 2-D warp would show the photo's own mouth and lids where dlib's landmarks misplace
them (a bearded mouth: a second mouth below the shaded one). Pure numpy/OpenCV, planned once per avatar.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import cv2
import numpy as np

SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)  # the generator blurs candidates, in model pixels (fit_blur)
# occlusion (1: the photo shows this place) -> the band's weight: full from VISIBLE up, none at HIDDEN and
# below, linear between; trained models' occlusion maps rarely reach 1 even where nothing is hidden.
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
    rest: np.ndarray | None = None  # (h, w, 3) uint8, ZERO + the rest error (with_rest); None: not measured yet
    whole: np.ndarray | None = None  # (h, w, 3) uint8, ZERO + band + rest: what a frame moves, once rest is known


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


def with_rest(plan: DetailPlan, drawn: np.ndarray) -> DetailPlan:
    """The plan with the generator's error at rest: `drawn` the avatar rendered at rest, (model h, w, 3) uint8 as
    the paste-back shows it (colour-corrected, before enlarging), against the photo as this generator would draw
    it (low_pass at the plan's sigma, which must be measured). At rest, frame + band + rest is then the photo."""
    h, w = plan.photo.shape[:2]
    enlarged = cv2.resize(drawn, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    error = low_pass(plan.photo, plan.model_size, plan.sigma) - enlarged
    return replace(plan, rest=as_band(error), whole=as_band(plan.photo - enlarged))


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


def visibility(occlusion: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The band's weight at (h, w) from a model-resolution occlusion map."""
    weight = np.clip((np.asarray(occlusion, np.float32) - HIDDEN) / (VISIBLE - HIDDEN), 0, 1)
    return cv2.resize(weight, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def below_rows_cols(values: np.ndarray, level: float, size: tuple[int, int]) -> tuple[slice, slice]:
    """The (h, w) pixels an upsampled model-resolution map can have below `level` at: the box of the cells under
    it, one cell wider each side (bilinear upsampling spreads a cell's value that far)."""
    rows, cols = np.nonzero(np.asarray(values) < level)
    (hd, wd), (h, w) = values.shape[:2], size
    return (slice(max(0, (rows.min() - 1) * h // hd), min(h, (rows.max() + 2) * h // hd + 1)),
            slice(max(0, (cols.min() - 1) * w // wd), min(w, (cols.max() + 2) * w // wd + 1)))


def _moved(band: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    return cv2.remap(band, pixels, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=(ZERO, ZERO, ZERO))


def detail_band(plan: DetailPlan, deformation: np.ndarray | None, occlusion: np.ndarray | None,
                kept: np.ndarray | None = None) -> np.ndarray:
    """The (h, w, 3) uint8 detail (ZERO + levels) to add to the enlarged generator frame: the band (and, once
    measured, the rest error) moved as the generator moves the avatar (one byte remap; nothing where the motion
    reads outside the crop), faded where the occlusion map says the photo cannot show the place, and the rest
    error faded where `kept` (a model-size map, 1: the expression stage moved nothing there) is below 1 (each
    worked out only over the box of such places, usually a small part). deformation None: the avatar's own
    still crop (still_band)."""
    if deformation is None:
        return plan.still_band
    size = plan.band.shape[:2]
    pixels = sample_map(deformation, size)
    band = _moved(plan.band if plan.whole is None else plan.whole, pixels)
    if occlusion is not None and float(np.min(occlusion)) < VISIBLE:
        rows, cols = below_rows_cols(occlusion, VISIBLE, size)
        weight = visibility(occlusion, size)[rows, cols, None]
        faded = (band[rows, cols].astype(np.float32) - ZERO) * weight + (ZERO + 0.5)
        band[rows, cols] = faded.astype(np.uint8)
    if plan.rest is not None and kept is not None and float(np.min(kept)) < 1:
        rows, cols = below_rows_cols(kept, 1.0, size)
        left = 1 - cv2.resize(np.asarray(kept, np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)[rows, cols]
        if occlusion is not None:
            left *= visibility(occlusion, size)[rows, cols]
        rest = _moved(plan.rest, np.ascontiguousarray(pixels[rows, cols])).astype(np.float32) - ZERO
        band[rows, cols] = np.clip(band[rows, cols] - rest * left[..., None] + 0.5, 0, 255).astype(np.uint8)
    return band
