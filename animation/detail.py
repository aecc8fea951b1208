"""Detail transfer: the avatar photo's own fine detail, moved by the model's motion, on top of the
generator's frame at the output's resolution.

The generator sees and draws the face at the model's size (128 or 256 px), so a face pasted back into a
720p portrait is an enlarged, blurred square. The photo holds the detail the model cannot: warping the
full-resolution crop with the model's dense motion (upsampled; it is smooth) moves that detail where the
face went, and its high-frequency band (the warped crop minus its own model-size version) is what the
enlarged generator frame lacks. The generator keeps everything else: the low frequencies (shading, colour)
and what the photo cannot show (the inside of an opening mouth, revealed background), which the
occlusion map marks and where the band fades out. Pure numpy/OpenCV, planned once per avatar.
"""
from __future__ import annotations

from dataclasses import dataclass

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
    still_band: np.ndarray  # (h, w, 3) uint8, ZERO + the photo's band without motion (a held avatar at rest)
    model_size: tuple[int, int]  # (height, width) of the generator's frames and of the band's low-pass
    sigma: float  # the generator's own blur in model pixels: the band holds what it blurs away (fit_blur)
    grid_x: np.ndarray  # (h, w) float32 pixel columns: the identity map remap starts from
    grid_y: np.ndarray  # (h, w) float32 pixel rows


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


def plan_detail(crop: np.ndarray, model_size: tuple[int, int], sigma: float = 0.0) -> DetailPlan:
    """Plan the transfer for an (h, w, 3) uint8 (or float 0..255) avatar crop at the size it is pasted back
    at; sigma: the generator's blur (fit_blur)."""
    photo = np.ascontiguousarray(crop, dtype=np.float32)
    h, w = photo.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    band = np.clip(photo - low_pass(photo, model_size, sigma) + (ZERO + 0.5), 0, 255).astype(np.uint8)
    return DetailPlan(photo, band, tuple(model_size), sigma, grid_x, grid_y)


def fit_blur(plan: DetailPlan, rendered: np.ndarray, sigmas: tuple[float, ...] = SIGMAS) -> float:
    """How much the generator blurs this avatar: the sigma (model pixels) whose blur of the photo at the
    model's size is closest to ``rendered``, the generator's (h, w, 3) frame of the avatar at rest (float
    [0, 1]); colour offsets are set aside (the paste-back matches colours on its own)."""
    target = np.asarray(rendered, np.float32) * 255
    target = target - target.mean((0, 1))
    small = shrink(plan.photo, plan.model_size)

    def error(sigma: float) -> float:
        blurred = cv2.GaussianBlur(small, (0, 0), sigma) if sigma > 0 else small
        return float(np.mean((blurred - blurred.mean((0, 1)) - target) ** 2))
    return min(sigmas, key=error)


def corner_grid(height: int, width: int) -> np.ndarray:
    """(height, width, 2) (x, y) in [-1, 1] corner to corner: the deformation of no motion
    (motion.geometry.coordinate_grid, the official convention)."""
    xs = np.linspace(-1, 1, width, dtype=np.float32)
    ys = np.linspace(-1, 1, height, dtype=np.float32)
    return np.stack(np.meshgrid(xs, ys), axis=-1)


def visibility(occlusion: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The band's weight at (h, w) from a model-resolution occlusion map."""
    weight = np.clip((np.asarray(occlusion, np.float32) - HIDDEN) / (VISIBLE - HIDDEN), 0, 1)
    return cv2.resize(weight, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def hidden_rows_cols(occlusion: np.ndarray, size: tuple[int, int]) -> tuple[slice, slice]:
    """The (h, w) pixels whose weight can be below 1: the box of the model cells under VISIBLE, one cell
    wider each side (bilinear upsampling spreads a cell's value that far)."""
    rows, cols = np.nonzero(np.asarray(occlusion) < VISIBLE)
    (hd, wd), (h, w) = occlusion.shape[:2], size
    return (slice(max(0, (rows.min() - 1) * h // hd), min(h, (rows.max() + 2) * h // hd + 1)),
            slice(max(0, (cols.min() - 1) * w // wd), min(w, (cols.max() + 2) * w // wd + 1)))


def warp_band(plan: DetailPlan, deformation: np.ndarray) -> np.ndarray:
    """The photo's band moved by an (hd, wd, 2) dense-motion deformation (backward map, [-1, 1]
    coordinates): its displacement from no motion, upsampled and in pixels, so that no motion returns the
    band exactly. The band of the moved photo is the moved band as far as the motion is smooth over the
    low-pass's width, which a flow upsampled from the model's dense motion is: one byte remap a frame."""
    h, w = plan.photo.shape[:2]
    hd, wd = deformation.shape[:2]
    shift = np.asarray(deformation, np.float32) - corner_grid(hd, wd)
    map_x = cv2.scaleAdd(cv2.resize(np.ascontiguousarray(shift[..., 0]), (w, h)), w / 2, plan.grid_x)
    map_y = cv2.scaleAdd(cv2.resize(np.ascontiguousarray(shift[..., 1]), (w, h)), h / 2, plan.grid_y)
    fixed, fraction = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)  # fixed point: 1/32 pixel, faster remap
    return cv2.remap(plan.still_band, fixed, fraction, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def detail_band(plan: DetailPlan, deformation: np.ndarray | None, occlusion: np.ndarray | None) -> np.ndarray:
    """The (h, w, 3) uint8 detail (ZERO + levels) to add to the enlarged generator frame: the photo's band
    where the motion took it, faded where the occlusion map says the photo cannot show the place (worked
    out only over the box of such places, usually a small part). deformation None: the avatar at rest."""
    if deformation is None:
        return plan.still_band
    band = warp_band(plan, deformation)
    if occlusion is not None and float(np.min(occlusion)) < VISIBLE:
        rows, cols = hidden_rows_cols(occlusion, band.shape[:2])
        weight = visibility(occlusion, band.shape[:2])[rows, cols, None]
        faded = (band[rows, cols].astype(np.float32) - ZERO) * weight + (ZERO + 0.5)
        band[rows, cols] = faded.astype(np.uint8)
    return band
