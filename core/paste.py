"""The animated face crop put back into the avatar's whole portrait, and frames fitted to a camera size.

Everything that depends only on the avatar (where its crop sits in the photo, the feathered mask, the
photo's colours around the seam) or only on the sizes (where a picture lands in the output) is planned
once, so a frame costs a small resize, a blend of the crop's region and one resize into the output.
Pure numpy/OpenCV: the live loop calls these between the model and the outputs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

import cv2
import numpy as np

from core.detail import ZERO, Detail, DetailPlan, detail_band, fit_blur, plan_detail, rest_levels, with_blur, with_rest
from core.faces import Box
from motion.errors import UserError

DEFAULT_FEATHER = 0.08  # the seam's blend band, as a fraction of the crop's shorter side
GAIN_RANGE = (0.5, 2.0)  # a flat ring (plain wall) must not blow the crop's contrast up or flatten it
SIZE_RANGE = (16, 7680)  # output width and height: tiny icons to 8K


@dataclass(frozen=True)
class PastePlan:
    """Where one avatar's model crop goes back into its photo; built once per avatar by plan_paste."""
    photo: np.ndarray  # (H, W, 3) uint8: the output's background, outside the crop returned unchanged
    rect: tuple[int, int, int, int]  # x, y, width, height of the crop in photo pixels; may leave the photo
    region: tuple[slice, slice]  # the photo rows, columns the crop covers (clipped to the photo)
    window: tuple[slice, slice]  # the same pixels in the crop resized to rect's size
    alpha: np.ndarray  # (rows, cols) float32 over region: 1 inside, ramping to 0 at the crop's edges
    beta: np.ndarray  # 1 - alpha, kept so a frame does not recompute it
    model_size: tuple[int, int]  # (height, width) of the crops composite takes
    ring: np.ndarray  # flat indices of model-size pixels in the feather band and inside the photo
    ring_mean: np.ndarray  # (3,) the photo's colour on the ring, 0..255
    ring_std: np.ndarray  # (3,)
    detail: DetailPlan | None = None  # the photo's crop at rect size for detail transfer (core.detail)


@dataclass(frozen=True)
class ColourMatch:
    """A per-channel affine colour correction of the crop: value * gain + bias, in 0..255 units."""
    gain: np.ndarray  # (3,) float32
    bias: np.ndarray  # (3,) float32


def crop_rect(box: Box) -> tuple[int, int, int, int]:
    """(x, y, width, height) of the pixels core.faces.crop cuts for `box`, rounded the same way so
    the paste lands exactly where the avatar's crop was taken."""
    side = max(1, round(box.side))
    return round(box.cx - side / 2), round(box.cy - side / 2), side, side


def _ramp(n: int, band: float, open_low: bool, open_high: bool) -> np.ndarray:
    """1-D feather over n pixels: pixel-centre distance to the nearest open edge / band, clipped to 1.
    An edge at or past the photo border stays closed (alpha 1): there is no photo to blend into there."""
    centres = np.arange(n, dtype=np.float64) + 0.5
    distance = np.full(n, np.inf)
    if open_low:
        distance = np.minimum(distance, centres)
    if open_high:
        distance = np.minimum(distance, n - centres)
    return np.clip(distance / band, 0.0, 1.0) if band > 0 else np.ones(n)


def _inside(start: int, length: int, n: int, limit: int) -> np.ndarray:
    """Which of n model pixels spanning [start, start + length) have their centre in [0, limit)."""
    centres = start + (np.arange(n) + 0.5) * length / n
    return (centres >= 0) & (centres < limit)


def plan_paste(photo: np.ndarray, box: Box | None, model_size: tuple[int, int],
               feather: float = DEFAULT_FEATHER, detail: bool = False) -> PastePlan:
    """Plan pasting (model_size) crops of `box` back into `photo`; box None means the whole photo (the
    avatar fallback when no face is found, where the model animated the whole picture); detail: plan the
    photo's detail transfer too."""
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ValueError(f"the photo must be (H, W, 3) uint8, got {photo.shape} {photo.dtype}")
    if not 0 <= feather <= 0.5:
        raise ValueError(f"feather must be 0..0.5 of the crop side, got {feather}")
    height, width = photo.shape[:2]
    x, y, w, h = (0, 0, width, height) if box is None else crop_rect(box)
    x0, y0, x1, y1 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
    if x0 >= x1 or y0 >= y1:
        raise ValueError(f"crop {w}x{h} at ({x}, {y}) does not overlap the {width}x{height} photo")
    band = feather * min(w, h)
    opens = (x > 0, x + w < width), (y > 0, y + h < height)
    mask = _ramp(h, band, *opens[1])[:, None] * _ramp(w, band, *opens[0])[None, :]
    region = slice(y0, y1), slice(x0, x1)
    window = slice(y0 - y, y1 - y), slice(x0 - x, x1 - x)
    alpha = np.ascontiguousarray(mask[window], dtype=np.float32)

    # The same band at the model's size, less what lies outside the photo: where colours are compared.
    mh, mw = model_size
    band_y, band_x = band * mh / h, band * mw / w
    small = _ramp(mh, band_y, *opens[1])[:, None] * _ramp(mw, band_x, *opens[0])[None, :]
    inside = _inside(y, h, mh, height)[:, None] & _inside(x, w, mw, width)[None, :]
    ring = np.flatnonzero((small < 1) & inside)
    padded = cv2.copyMakeBorder(photo[region], y0 - y, y + h - y1, x0 - x, x + w - x1, cv2.BORDER_REPLICATE)
    reference = cv2.resize(padded, (mw, mh), interpolation=cv2.INTER_AREA).reshape(-1, 3)[ring].astype(np.float64)
    mean = reference.mean(0) if len(ring) else np.zeros(3)
    std = reference.std(0) if len(ring) else np.zeros(3)
    photo = photo.copy()
    photo.flags.writeable = False
    return PastePlan(photo, (x, y, w, h), region, window, alpha, 1 - alpha, (mh, mw), ring,
                     mean.astype(np.float32), std.astype(np.float32), plan_detail(padded, (mh, mw)) if detail else None)


def match_colour(plan: PastePlan, rendered: np.ndarray, std: bool = False) -> ColourMatch:
    """The correction that gives `rendered`'s feather ring the photo's mean colour there (and its spread,
    with std=True; the gain is kept within GAIN_RANGE).

    Meant to run once per avatar on the avatar rendered at rest (the first frame after calibration): the
    ring is where the crop should look like the untouched photo, so a difference there is the generator's
    colour bias, which holds for every pose. It costs well under a millisecond and may run per frame, but
    hair and shoulders moving through the ring then shift the whole face's colour from frame to frame."""
    values = _check_crop(plan, rendered).reshape(-1, 3)[plan.ring].astype(np.float64)
    if rendered.dtype != np.uint8:
        values *= 255.0
    if not len(values):
        return ColourMatch(np.ones(3, np.float32), np.zeros(3, np.float32))
    mean = values.mean(0)
    gain = np.clip(plan.ring_std / np.maximum(values.std(0), 1e-6), *GAIN_RANGE) if std else np.ones(3)
    return ColourMatch(gain.astype(np.float32), (plan.ring_mean - gain * mean).astype(np.float32))


def as_bytes(image: np.ndarray) -> np.ndarray:
    """A [0, 1] float picture or matte as uint8, rounded; uint8 passes through."""
    return image if image.dtype == np.uint8 else np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def corrected(crop: np.ndarray, colour: ColourMatch | None, rest: np.ndarray | None = None) -> np.ndarray:
    """A model-size crop (float in [0, 1] or uint8) as the paste-back enlarges it: uint8, colour-corrected, with
    the generator's error at rest (core.detail.rest_levels: levels) taken off."""
    if colour is None and rest is None:
        return as_bytes(crop)
    scale = 255.0 if crop.dtype != np.uint8 else 1.0
    gain, bias = (1.0, 0.5) if colour is None else (colour.gain, colour.bias + 0.5)
    out = crop * (scale * gain) + bias
    return np.clip(out if rest is None else out + rest, 0, 255).astype(np.uint8)


def composite(plan: PastePlan, crop: np.ndarray, colour: ColourMatch | None = None,
              band: np.ndarray | None = None, rest: np.ndarray | None = None) -> np.ndarray:
    """The photo with the animated (h, w, 3) crop (float in [0, 1] or uint8, at plan.model_size) blended
    in through the feathered mask: a new (H, W, 3) uint8 frame, the photo's own pixels outside the crop.
    The colour correction runs at the model's size (cheaper, and it commutes with linear resizing); band:
    (rect height, rect width, 3) uint8 detail around core.detail.ZERO added to the enlarged crop; rest: the
    generator's error at rest, added before (corrected)."""
    crop = corrected(_check_crop(plan, crop), colour, rest)
    _, _, w, h = plan.rect
    resized = cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)
    if band is not None:
        resized = cv2.addWeighted(resized, 1.0, band, 1.0, -ZERO)  # saturated and rounded to bytes
    resized = resized[plan.window]
    out = plan.photo.copy()
    out[plan.region] = cv2.blendLinear(np.ascontiguousarray(resized), plan.photo[plan.region], plan.alpha, plan.beta)
    return out


def _check_crop(plan: PastePlan, crop: np.ndarray) -> np.ndarray:
    if crop.shape != (*plan.model_size, 3):
        raise ValueError(f"the crop must be {(*plan.model_size, 3)} (the plan's model size), got {crop.shape}")
    return crop


@dataclass(frozen=True)
class Placement:
    """Where a picture of one fixed size lands in a letterboxed canvas; the same for its matte."""
    scale: float  # canvas pixels per input pixel
    x: int  # offset of the content's top-left corner in the canvas
    y: int
    width: int  # the content's size in the canvas
    height: int
    size: tuple[int, int]  # the canvas (width, height)
    interpolation: int  # cv2 flag: area averaging below half size (no aliasing), else bilinear (cheap)


def place(shape: tuple[int, ...], size: tuple[int, int]) -> Placement:
    """Plan fitting pictures of `shape` (height, width, ...) into `size` (width, height) without
    stretching: scaled to fit, centred; planned once since an avatar's portrait size never changes."""
    h, w = shape[:2]
    width, height = size
    scale = min(width / w, height / h)
    cw, ch = min(width, max(1, round(w * scale))), min(height, max(1, round(h * scale)))
    flag = cv2.INTER_AREA if scale < 0.5 else cv2.INTER_LINEAR
    return Placement(scale, (width - cw) // 2, (height - ch) // 2, cw, ch, (width, height), flag)


def letterbox(placement: Placement, image: np.ndarray, pad: float | tuple[float, ...] = 0) -> np.ndarray:
    """A new canvas holding `image` (of the shape the placement was planned for; colour or a matte) at its
    placement, the rest filled with `pad`: one resize and one bordered copy per frame."""
    content = image
    if image.shape[:2] != (placement.height, placement.width):
        content = cv2.resize(image, (placement.width, placement.height), interpolation=placement.interpolation)
    width, height = placement.size
    bottom, right = height - placement.height - placement.y, width - placement.width - placement.x
    if isinstance(pad, (int, float)) and image.ndim == 3:
        pad = (pad,) * image.shape[2]
    return cv2.copyMakeBorder(content, placement.y, bottom, placement.x, right, cv2.BORDER_CONSTANT, value=pad)


def fit(image: np.ndarray, size: tuple[int, int], pad: float | tuple[float, ...] = 0) -> tuple[np.ndarray, Placement]:
    """`image` letterboxed into `size` (width, height), and its placement (to fit a matte alike)."""
    placement = place(image.shape, size)
    return letterbox(placement, image, pad), placement


def parse_size(text: str) -> tuple[int, int]:
    """--size WIDTHxHEIGHT -> (width, height), each within SIZE_RANGE."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise UserError(f"--size {text}: give WIDTHxHEIGHT, e.g. 1280x720")
    width, height = int(match[1]), int(match[2])
    low, high = SIZE_RANGE
    if not (low <= width <= high and low <= height <= high):
        raise UserError(f"--size {text}: width and height must be {low}..{high} pixels, e.g. 1280x720")
    return width, height


def shrink_to_fit(photo: np.ndarray, box: Box | None, size: tuple[int, int]) -> tuple[np.ndarray, Box | None]:
    """A photo larger than the output it is shown in, resized once to the size it is shown at (and its face
    box with it), so that no frame pastes, transfers detail or letterboxes at more pixels than are shown."""
    placement = place(photo.shape, size)
    if placement.scale >= 1:
        return photo, box
    h, w = photo.shape[:2]
    sx, sy = placement.width / w, placement.height / h
    small = cv2.resize(photo, (placement.width, placement.height), interpolation=cv2.INTER_AREA)
    return small, None if box is None else Box(box.cx * sx, box.cy * sy, box.side * (sx + sy) / 2)


class Portrait:
    """What the outputs show of one avatar: the animated crop, or (full_frame) the crop pasted back into
    the whole photo, then letterboxed to `size` (width, height) when one is given. The colour correction
    is measured once, on the first rendered crop or the avatar rendered at rest (settle: each avatar is, when it
    is prepared with a puppeteer, and by with_detail). detail (full_frame only): the photo's own
    detail and the generator's rest error moved by each frame's motion (core.detail)."""

    def __init__(self, photo: np.ndarray, box: Box | None, model_size: tuple[int, int], full_frame: bool,
                 size: tuple[int, int] | None, detail: bool = False):
        if full_frame and size:
            photo, box = shrink_to_fit(photo, box, size)
        self.plan = plan_paste(photo, box, model_size, detail=detail) if full_frame else None
        self.colour: ColourMatch | None = None
        shape = photo.shape if full_frame else (*model_size, 3)
        self.placement = place(shape, size) if size else None

    @property
    def detailed(self) -> bool:
        """Whether frames get the photo's detail (full_frame with detail)."""
        return self.plan is not None and self.plan.detail is not None

    def band(self, crop: np.ndarray, rendered: bool = True, deformation: np.ndarray | None = None,
             occlusion: np.ndarray | None = None, kept: np.ndarray | None = None) -> Detail | None:
        """The photo's detail for a model-size crop (float [0, 1]) made by this motion (deformation
        (hd, wd, 2), occlusion (hd, wd), kept: where the expression stage moved nothing, core.detail), or None
        without detail transfer; a step of its own to be timed apart. Not `rendered` (the avatar's own still
        crop): the still band. A rendered crop first settles the portrait (settle)."""
        if not self.detailed:
            return None
        if not rendered or deformation is None:
            return Detail(self.plan.detail.still_band)
        self.settle(crop, deformation)
        detail = self.plan.detail
        return Detail(detail_band(detail, deformation, occlusion), rest_levels(detail, deformation, occlusion, kept))

    def settle(self, crop: np.ndarray, deformation: np.ndarray, occlusion: np.ndarray | None = None,
               resting: bool = False) -> None:
        """What a rendered model-size crop (float [0, 1]) and its motion tell about the generator, each
        measured once: the colour correction and the blur (against the photo moved by the crop's own motion, so
        any pose will do) on the first crop, and, when `resting` (the avatar rendered at rest by the network alone:
        core.pipeline.rest_frame), its error at rest and its occlusion map's level there."""
        if self.colour is None:
            self.colour = match_colour(self.plan, crop)
        detail = self.plan.detail
        if detail.sigma is None:
            detail = with_blur(detail, fit_blur(detail, crop, deformation))
        if detail.rest is None and resting:
            detail = with_rest(detail, corrected(crop, self.colour), occlusion)
        if detail is not self.plan.detail:
            self.plan = replace(self.plan, detail=detail)

    def __call__(self, crop: np.ndarray, rendered: bool = True, detail: Detail | None = None) -> np.ndarray:
        """A model-size crop (float [0, 1]) and its band() -> the output frame (uint8). The colour is
        measured on the first `rendered` crop (not on the avatar's own still crop, which has no generator
        bias)."""
        if self.plan is None:
            image = as_bytes(crop)
        else:
            if self.colour is None and rendered:
                self.colour = match_colour(self.plan, crop)
            image = composite(self.plan, crop, self.colour, *(detail or ()))
        return image if self.placement is None else letterbox(self.placement, image)

    def matte(self, alpha: np.ndarray) -> np.ndarray:
        """A model-size foreground probability -> the output's uint8 matte; with full_frame the face's
        matte sits where the crop was pasted (the photo outside the crop has no segmentation: transparent)."""
        matte = as_bytes(alpha)
        if self.plan is not None:
            _, _, w, h = self.plan.rect
            full = np.zeros(self.plan.photo.shape[:2], np.uint8)
            resized = cv2.resize(matte, (w, h), interpolation=cv2.INTER_LINEAR)[self.plan.window]
            full[self.plan.region] = (resized * self.plan.alpha + 0.5).astype(np.uint8)
            matte = full
        return matte if self.placement is None else letterbox(self.placement, matte)
