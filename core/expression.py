"""Expression transfer: the driver's mouth and eyes moved onto the animated avatar by its facial landmarks.

The trained FOMM models move the head well but open the avatar's mouth and eyes too little (#23): their
keypoints follow the head, none follows the lips on its own. This stage adds what they miss, after the
generator, in the spirit of landmark-driven portrait animation (Averbuch-Elor et al., "Bringing Portraits
to Life", 2017): the driver's 68 landmarks give each expressive point's motion with the head's motion taken
out (a similarity fitted on rigid points: nose, eye corners, temples), brought to the avatar's face size and
roll; the dense motion tells where each of the avatar's landmarks is in the rendered frame (its inverse at
those points); a thin-plate spline then moves the frame's lips, lids and chin there, leaving the rigid points,
the brows and the border of a window around the face still. The same map is folded into the dense motion, so
the photo's detail moves with it, and an opened mouth is shaded dark inside the lips (the photo has no mouth
interior to show).

Coordinates: points are (x, y) in the official corner-to-corner grid, [-1, 1] across the model's frame
(core/detail.corner_grid); landmarks in pixels convert with `to_grid`.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import cv2
import numpy as np
import torch
from scipy.spatial.distance import cdist

from core.detail import corner_grid, pixel_grid
from core.faces import inter_ocular, opening
from core.pipeline import FrameStep, motion_arrays
from core.smoothing import OneEuroFilter

# 68-point scheme (iBUG): points that move with the skull, not with an expression
RIGID = (0, 1, 2, 14, 15, 16, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45)
# points an expression moves: the chin's tip, eyelids, lips (eye corners stay rigid; the rest of the jaw line,
# which a head turn slides along the contour, is left to the model and the spline: with the chin's sides 5, 6,
# 10, 11 moved too, fomm-face's cross-identity MKR was 1.25 % against 1.00 %, L1 ratio 0.565 against 0.564)
EXPRESSIVE = (7, 8, 9) + (37, 38, 40, 41, 43, 44, 46, 47) + tuple(range(48, 68))
# points the spline keeps where the model put them: the rigid ones and the brows (dlib's brows at 128x128 are
# too unsteady to move: moving them made the held-out reconstructions worse, L1 ratio 0.634 -> 0.645)
ANCHORED = RIGID + tuple(range(17, 27))
LIPS = tuple(range(48, 68))
MIN_DETERMINANT = -0.2  # the map's local area ratio around the lips must stay above this: lips that would fold the
# frame (a broad smile at rest closed by the driver: they cross into a swirl, ratios of -0.5 to -1.8 on a held-out
# clip) move only as far as they do not. Not 0: the spline overshoots a little between lip points two pixels apart,
# ratios down to -0.08 on the spline's grid where the picture shows no fold (another person's wide-open mouth:
# shortened, it opened visibly less than the driver's). The lids need no guard: around the eyes the least ratio on
# the held-out and cross-identity frames of `eval` is 0.23 (fomm-face-fast)
LIPS_MARGIN = 0.5  # where folds are looked for: the lips' box (where they are and where they go) grown by this
# share of its size each side. Not the whole window: on a tight crop the chin's tip meets the frame's still border,
# where a fold is off the picture (a portrait whose chin touches the frame: 78 of 128 frames shortened)
INNER_LIPS = tuple(range(60, 68))
AJAR = 0.03  # a reference mouth open wider than the avatar's by more than this (inter-ocular distances) rests
# closed to the avatar's gap (ExpressionDriver)
LOWER_JAW = tuple(range(5, 12)) + tuple(range(55, 60)) + (65, 66, 67)  # what closing a mouth raises
MOUTH_CORNERS = (48, 54, 60, 64)  # raised half as far
# facing pairs whose gap may not close past zero: inner lips, eyelids
FACING = ((61, 67), (62, 66), (63, 65), (37, 41), (38, 40), (43, 47), (44, 46))
EYES = (FACING[3:5], FACING[5:7])  # each eye's facing lid points (image left, right)
LID_SCALE = (0.25, 2.0)  # bounds of an eye's lid motion scale (avatar's opening / driver's, ExpressionDriver)
BORDER = 5  # still points per side of the window's border
GRID = 32  # the spline is evaluated on GRID x GRID points over the window and upsampled (it is smooth)
WINDOW_MARGIN = 0.25  # the window: the landmarks' box grown by this share of its size each side
EDGE = 0.12  # the outer share of the window over which the map fades to the identity (inside the margin)
MOUTH_DARK = np.float32([0.16, 0.06, 0.06])  # what shows between opened lips (RGB)
MOUTH_SHADE = 0.85  # how far an opened mouth's inside goes towards MOUTH_DARK
SHADE_FROM = 0.02  # extra lip gap (inter-ocular distances) at which the shading starts, and is full at twice
OPEN_AT_REST = 0.05  # an avatar's lip gap (inter-ocular distances) from which its mouth counts as open at rest
REST_FADE = 1.0  # pixels the map moves a place by at which the generator's rest error is no longer added there
# (core.detail; fading from none moved): the photo's own mouth and lids moved by the map show where dlib put them


def to_grid(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(n, 2) pixel (x, y) in an (h, w) frame -> the corner-to-corner grid's [-1, 1]."""
    h, w = size
    return np.asarray(points, np.float64) / np.float64([(w - 1) / 2, (h - 1) / 2]) - 1


def to_pixels(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Grid units -> (n, 2) pixel (x, y) in an (h, w) frame (to_grid's inverse)."""
    h, w = size
    return (np.asarray(points, np.float64) + 1) * np.float64([(w - 1) / 2, (h - 1) / 2])


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The (2, 3) similarity (rotation, uniform scale, shift) taking src to dst in least squares (Umeyama)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sigma, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ d @ vt
    scale = np.trace(np.diag(sigma) @ d) / a.var(0).sum()
    linear = scale * rotation
    return np.hstack([linear, (mu_d - linear @ mu_s)[:, None]])


def affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The (2, 3) affine map taking src to dst in least squares."""
    design = np.hstack([src, np.ones((len(src), 1))])
    return np.linalg.lstsq(design, dst, rcond=None)[0].T


def apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A (2, 3) affine map applied to (n, 2) points."""
    return points @ transform[:, :2].T + transform[:, 2]


def align_head(landmarks: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The landmarks with the head's motion since the reference frame taken out: their rigid points brought onto
    the reference's by a similarity."""
    rigid = list(RIGID)
    return apply(similarity(landmarks[rigid], reference[rigid]), landmarks)


def expression_offsets(aligned: np.ndarray, reference: np.ndarray, rest: np.ndarray | None = None) -> np.ndarray:
    """(68, 2) each point's motion from the rest pose (default: the reference frame), the head's motion taken out
    already (align_head), in the reference's inter-ocular distances; zero for points that carry no expression."""
    rest = reference if rest is None else rest
    offsets = np.zeros_like(reference, dtype=np.float64)
    expressive = list(EXPRESSIVE)
    offsets[expressive] = (aligned[expressive] - rest[expressive]) / inter_ocular(reference)
    return offsets


def mouth_opening(points: np.ndarray) -> float:
    """The mean inner-lip gap in inter-ocular distances."""
    return opening(points, FACING[:3])


def lid_scales(avatar: np.ndarray, driver: np.ndarray) -> np.ndarray:
    """(68,) how far each point moves for the driver's motion of it: 1, but each eye's lids by the avatar's
    eye opening over the driver's (bounded by LID_SCALE). A blink closes any eye and a squint narrows it by
    the same share, whoever's it is: added as is, a wide-eyed driver's squint shuts narrow eyes (a mask's
    slits) and a narrow-eyed driver's blink half-closes wide ones. 1 for the driver's own face."""
    scales = np.ones(len(avatar))
    for pairs in EYES:
        driver_open = opening(driver, pairs)
        ratio = opening(avatar, pairs) / driver_open if driver_open > 0 else LID_SCALE[1]
        scales[[i for pair in pairs for i in pair]] = np.clip(ratio, *LID_SCALE)
    return scales


def close_mouth(points: np.ndarray, gap: float) -> np.ndarray:
    """The 68 points with the mouth closed to an inner-lip gap of `gap` (inter-ocular distances): the lower lip
    and the chin raised along the face's vertical (the eye line turned a right angle) by what the gap exceeds
    it, the mouth's corners half as far."""
    out = np.array(points, np.float64)
    excess = mouth_opening(out) - gap
    if excess <= 0:
        return out
    across = out[42:48].mean(0) - out[36:42].mean(0)
    lift = np.array([across[1], -across[0]]) / np.linalg.norm(across) * excess * inter_ocular(out)
    out[list(LOWER_JAW)] += lift
    out[list(MOUTH_CORNERS)] += lift / 2
    return out


def bilinear(field: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A (hd, wd, 2) map on the corner grid read at (n, 2) grid points: values (n, 2) and Jacobians (n, 2, 2)
    (d value / d (x, y)); points outside are read at the border."""
    hd, wd = field.shape[:2]
    x = np.clip((points[:, 0] + 1) * (wd - 1) / 2, 0, wd - 1 - 1e-9)
    y = np.clip((points[:, 1] + 1) * (hd - 1) / 2, 0, hd - 1 - 1e-9)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    a, b = field[y0, x0], field[y0, x0 + 1]
    c, d = field[y0 + 1, x0], field[y0 + 1, x0 + 1]
    value = (1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * c + fx * d)
    d_dx = ((1 - fy) * (b - a) + fy * (d - c)) * (wd - 1) / 2
    d_dy = ((1 - fx) * (c - a) + fx * (d - b)) * (hd - 1) / 2
    return value, np.stack([d_dx, d_dy], axis=-1)


def invert(deformation: np.ndarray, targets: np.ndarray, steps: int = 2) -> np.ndarray:
    """Where in the output frame a dense motion (hd, wd, 2: output grid point -> source point) takes each of
    (n, 2) source points from: the nearest grid node, refined by Newton steps on the bilinear map."""
    field = np.asarray(deformation, np.float64)
    hd, wd = field.shape[:2]
    nodes = _nodes(hd, wd)
    nearest = squared_distances(targets, field.reshape(-1, 2)).argmin(1)
    points = nodes[nearest].astype(np.float64)
    for _ in range(steps):
        value, jacobian = bilinear(field, points)
        (a, b), (c, d) = jacobian[:, 0].T, jacobian[:, 1].T  # rows: d value_x, d value_y by (x, y)
        determinant = a * d - b * c
        ok = np.abs(determinant) > 1e-9
        ex, ey = (value - targets).T
        safe = np.where(ok, determinant, 1.0)
        step = np.stack([(d * ex - b * ey) / safe, (a * ey - c * ex) / safe], axis=-1) * ok[:, None]
        points = np.clip(points - step, -1, 1)
    return points


@functools.lru_cache(maxsize=4)
def _nodes(height: int, width: int) -> np.ndarray:
    """The corner grid's points, (height * width, 2), read-only (shared by the loop's threads)."""
    return _frozen(corner_grid(height, width).reshape(-1, 2))


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(m, n) squared distances between (m, 2) and (n, 2) points (scipy's C loop: numpy's broadcast or a matrix
    product with an inner size of 2 is 5-10x slower, and this runs on every live frame)."""
    return cdist(a, b, "sqeuclidean")


def _kernel(r2: np.ndarray) -> np.ndarray:
    """The thin-plate spline's radial function r^2 log r^2 (0 at r = 0)."""
    return r2 * np.log(r2 + np.asarray(1e-20, r2.dtype))


def spline(centres: np.ndarray, values: np.ndarray, queries: np.ndarray, regular: float = 1e-6) -> np.ndarray:
    """The thin-plate spline through (n, 2) centres taking (n, d) values, read at (m, 2) queries."""
    n = len(centres)
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = _kernel(squared_distances(centres, centres)) + regular * np.eye(n)
    system[:n, n] = system[n, :n] = 1
    system[:n, n + 1:] = centres
    system[n + 1:, :n] = centres.T
    rhs = np.zeros((n + 3, values.shape[1]))
    rhs[:n] = values
    weights = np.linalg.solve(system, rhs).astype(np.float32)
    basis = _kernel(squared_distances(queries, centres).astype(np.float32))  # float32: numpy's log is 2x faster
    queries = queries.astype(np.float32)
    return basis @ weights[:n] + weights[n] + queries @ weights[n + 1:]


def window_of(points: np.ndarray, margin: float = WINDOW_MARGIN) -> np.ndarray:
    """(x0, y0, x1, y1): the points' bounding box grown by `margin` of its size each side, inside the frame."""
    low, high = points.min(0), points.max(0)
    grow = (high - low) * margin
    return np.concatenate([np.maximum(low - grow, -1), np.minimum(high + grow, 1)])


@functools.lru_cache(maxsize=2)
def _unit_border(count: int) -> np.ndarray:
    ticks = np.linspace(0, 1, count)
    inner = ticks[1:-1]
    return _frozen(np.concatenate([np.stack([ticks, np.zeros(count)], 1), np.stack([ticks, np.ones(count)], 1),
                                   np.stack([np.zeros(count - 2), inner], 1), np.stack([np.ones(count - 2), inner], 1)]))


def border_points(window: np.ndarray, count: int = BORDER) -> np.ndarray:
    """4 (count - 1) points along a window's border, `count` a side, corners once: the spline keeps them still."""
    return window[:2] + _unit_border(count) * (window[2:] - window[:2])


@functools.lru_cache(maxsize=2)
def _unit_grid(count: int) -> np.ndarray:
    ticks = np.linspace(0, 1, count)
    return _frozen(np.stack(np.meshgrid(ticks, ticks), axis=-1))


@functools.lru_cache(maxsize=2)
def _edge_ramp(count: int) -> np.ndarray:
    """(count, count, 1): 1 inside the window, falling smoothly to 0 over its outer EDGE band, so the map meets
    the identity outside the window without a step (the spline is still only at BORDER points a side)."""
    ticks = np.linspace(0, 1, count)
    ramp = np.clip(np.minimum(ticks, 1 - ticks) / EDGE, 0, 1)
    ramp = ramp * ramp * (3 - 2 * ramp)
    return _frozen(np.outer(ramp, ramp)[..., None])


def window_grid(window: np.ndarray, count: int = GRID) -> np.ndarray:
    """(count, count, 2) points spanning the window corner to corner."""
    return window[:2] + _unit_grid(count) * (window[2:] - window[:2])


def keep_open(targets: np.ndarray) -> np.ndarray:
    """Facing lip and lid points that a closing expression would push past each other meet instead."""
    out = targets.copy()
    for upper, lower in FACING:
        if out[upper, 1] > out[lower, 1]:
            out[upper, 1] = out[lower, 1] = (out[upper, 1] + out[lower, 1]) / 2
    return out


@dataclass(frozen=True)
class ExpressionWarp:
    """One frame's expression map over a window of the frame (the face; outside it nothing moves): `shift`
    (GRID, GRID, 2) how far from each window grid point (window_grid) the rendered frame's point to show there
    lies (grid units); `mouth` (8, 2) the moved inner lips and `opened` the lips' extra gap (inter-ocular
    distances) for the shading, 0 when the avatar's mouth is open at rest."""
    window: np.ndarray
    shift: np.ndarray
    mouth: np.ndarray
    opened: float


def plan_warp(deformation: np.ndarray, avatar: np.ndarray, offsets: np.ndarray) -> ExpressionWarp:
    """The expression map for a rendered frame: `deformation` its dense motion (hd, wd, 2), `avatar` the
    avatar's 68 landmarks (grid units, on the source), `offsets` the driver's expression (68, 2) already in
    the avatar's grid units and orientation."""
    now = invert(deformation, avatar)  # where the frame shows each of the avatar's landmarks
    head = affine(avatar[list(RIGID)], now[list(RIGID)])
    target = keep_open(apply(head, avatar + offsets))
    moving, still, lips = list(EXPRESSIVE), list(ANCHORED), list(LIPS)
    window = window_of(np.concatenate([now, target]))
    queries = window_grid(window).reshape(-1, 2)
    fixed = np.concatenate([now[still], border_points(window)])
    values = np.concatenate([now[moving], fixed])  # where each centre reads from, whatever the reach
    box = window_of(np.concatenate([now[lips], target[lips]]), LIPS_MARGIN)
    near = np.all((queries >= box[:2]) & (queries <= box[2:]), axis=1).reshape(GRID, GRID)

    def placed(reach: float) -> np.ndarray:  # the targets with the lips `reach` of the way to theirs
        out = target.copy()
        out[lips] = now[lips] + reach * (target[lips] - now[lips])
        return out

    def field(reach: float) -> np.ndarray:
        centres = np.concatenate([placed(reach)[moving], fixed])
        return spline(centres, values - centres, queries).reshape(GRID, GRID, 2)

    def sound(shift: np.ndarray) -> bool:  # no fold around the lips
        return bool(determinants(shift, window)[near].min(initial=np.inf) > MIN_DETERMINANT)
    shift, reach = unfolded(field, sound)
    target = placed(reach)
    span = max(_eye_span(target), 1e-6)
    rest = _lip_gap(apply(head, avatar)) / span
    # only a mouth closed at rest is shaded: one already open (teeth in a smile) opens by stretching what it shows
    opened = (_lip_gap(target) / span - rest) if rest < OPEN_AT_REST else 0.0
    return ExpressionWarp(window, (shift * _edge_ramp(GRID)).astype(np.float32), target[list(INNER_LIPS)], float(opened))


def determinants(shift: np.ndarray, window: np.ndarray) -> np.ndarray:
    """(n, n) the Jacobian determinant of the map q -> q + shift(q) at each node of a window's (n, n, 2) grid
    (finite differences): 1 for a shift, below 1 where it shrinks an area, 0 or less where it folds."""
    step = (window[2:] - window[:2]) / (shift.shape[0] - 1)
    field = np.asarray(shift, np.float64)
    (dx_dy, dx_dx), (dy_dy, dy_dx) = (np.gradient(field[..., k], step[1], step[0]) for k in (0, 1))
    return (1 + dx_dx) * (1 + dy_dy) - dx_dy * dy_dx


def unfolded(field: Callable[[float], np.ndarray], sound: Callable[[np.ndarray], bool],
             steps: int = 5) -> tuple[np.ndarray, float]:
    """(field(1), 1) when it is `sound`; else the longest reach in [0, 1) whose field is, found by bisection in
    `steps` halvings (a fold deepens with the reach), and its field; reach 0 and its field if none is."""
    shift = field(1.0)
    if sound(shift):
        return shift, 1.0
    low, high, best = 0.0, 1.0, None
    for _ in range(steps):
        middle = (low + high) / 2
        trial = field(middle)
        if sound(trial):
            low, best = middle, trial
        else:
            high = middle
    return (field(0.0) if best is None else best), low


def _lip_gap(points: np.ndarray) -> float:
    return float(np.mean([points[lower, 1] - points[upper, 1] for upper, lower in FACING[:3]]))


def _eye_span(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0)))


def pixel_map(warp: ExpressionWarp, size: tuple[int, int]) -> np.ndarray:
    """The (h, w, 2) float32 remap map (pixels) of the expression map for an (h, w) frame: the identity
    outside the window; inside it, the field's displacement upsampled and added to the identity (so where
    nothing moves, every pixel maps to itself exactly)."""
    h, w = size
    out = pixel_grid(h, w).copy()
    corners = np.round(to_pixels(warp.window.reshape(2, 2), size)).astype(int).ravel()
    x0, y0, x1, y1 = np.clip(corners, 0, [w - 1, h - 1] * 2)
    if x1 <= x0 or y1 <= y0:
        return out
    shift = warp.shift * np.float32([(w - 1) / 2, (h - 1) / 2])
    out[y0:y1 + 1, x0:x1 + 1] += cv2.resize(shift, (x1 - x0 + 1, y1 - y0 + 1), interpolation=cv2.INTER_LINEAR)
    return out


def mouth_shade(warp: ExpressionWarp, size: tuple[int, int]) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Where (rows, columns) and how far (an array of that box's shape) pixels go towards MOUTH_DARK: inside the
    opened inner lips, soft at their edge; None while the mouth has not opened past SHADE_FROM."""
    shade = MOUTH_SHADE * float(np.clip(warp.opened / SHADE_FROM - 1, 0, 1))
    if shade <= 0:
        return None
    h, w = size
    lips = to_pixels(warp.mouth, size)
    x0, y0 = np.maximum(np.floor(lips.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(lips.max(0)).astype(int) + 2, [w, h])
    if x1 <= x0 or y1 <= y0:
        return None
    scale = 4  # sub-pixel polygon edges
    mask = np.zeros(((y1 - y0) * scale, (x1 - x0) * scale), np.uint8)
    corners = np.round(((lips - [x0, y0] + 0.5) * scale - 0.5)).astype(np.int32)  # pixel centres at 4x
    cv2.fillPoly(mask, [corners], 255, cv2.LINE_AA)
    box = cv2.resize(mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32) * (shade / 255)
    return (slice(y0, y1), slice(x0, x1)), box


def remap(image: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """An (h, w, c) float image read at (H, W, 2) pixel positions (bilinear, edges replicated) -> (H, W, c)."""
    out = cv2.remap(np.ascontiguousarray(image, np.float32), pixels, None, cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(*pixels.shape[:2], image.shape[2])


class Moved(NamedTuple):
    """A dense motion with the expression folded in, shaped like the backends' (what the paste-back reads)."""
    deformation: torch.Tensor  # (1, h, w, 2)
    occlusion: torch.Tensor | None  # (1, 1, h, w)
    kept: np.ndarray | None = None  # (h, w) at the frame's size: 1 where the map moves nothing, 0 from REST_FADE


def express(image: np.ndarray, motion: Any, warp: ExpressionWarp | None) -> tuple[np.ndarray, Any]:
    """A rendered (h, w, 3) frame and the dense motion that made it, with the expression map applied: the
    frame moved and its opened mouth shaded; the motion read through the same map at the frame's size (so the
    photo's detail moves with the lips), its occlusion lowered where the mouth is shaded (the photo has no
    detail for an inside it never showed), and where the map moves nothing (`kept`: the photo's rest error is
    kept there, core.detail). As they were when there is no map."""
    if warp is None:
        return image, motion
    size = image.shape[:2]
    deformation, occlusion = motion_arrays(motion)
    pixels = pixel_map(warp, size)
    out = remap(image, pixels)
    scale = np.float32([(deformation.shape[1] - 1) / (size[1] - 1), (deformation.shape[0] - 1) / (size[0] - 1)])
    fields = deformation if occlusion is None else np.dstack([deformation, occlusion])
    moved = remap(fields, pixels * scale)  # the motion's grid spans the same frame corner to corner
    shade = mouth_shade(warp, size)
    if shade is not None:
        box, weight = shade
        out[box] += weight[..., None] * (MOUTH_DARK - out[box])
        if occlusion is not None:
            moved[box][..., 2] *= 1 - weight
    like = {"device": motion.deformation.device, "dtype": motion.deformation.dtype}  # the model's, for the matte
    deformation = torch.as_tensor(moved[..., :2], **like)[None]
    shift = pixels - pixel_grid(*size)
    kept = np.clip(1 - cv2.magnitude(shift[..., 0], shift[..., 1]) / REST_FADE, 0, 1)
    return out, Moved(deformation, None if occlusion is None else torch.as_tensor(moved[..., 2], **like)[None, None], kept)


def avatar_points(landmarks: np.ndarray | None, size: tuple[int, int]) -> np.ndarray | None:
    """The avatar's 68 landmarks (pixels of its model-size crop) in grid units; None without a full set."""
    return None if landmarks is None or np.shape(landmarks) != (68, 2) else to_grid(landmarks, size)


class ExpressionDriver:
    """The driver's side of expression transfer: its reference pose (the first landmarks after `recalibrate()`,
    like the reference pose of relative motion), its mouth's rest and the smoothing of its expression over time.

    The mouth rests as it was at the reference, unless the driver's mouth was open wider there than the avatar's
    is: a mouth's inner lips meet when it is closed, whoever's it is, so the rest is then the reference with its
    mouth closed to the avatar's gap, and the avatar's mouth opens as wide as the driver's from the first frame
    and closes when the driver's closes (a driver calibrated mid-sentence or mid-smile, an avatar with closed
    lips). A self-reenactment (the avatar is the reference frame) keeps the reference as the rest. Each eye's lids
    move by the driver's motion times the share of the avatar's eye opening (lid_scales)."""

    def __init__(self, min_cutoff: float = 2.0, beta: float = 8.0):
        self.filter = OneEuroFilter(min_cutoff, beta)
        self.reference: np.ndarray | None = None
        self.rest: np.ndarray | None = None  # the reference with the mouth at rest, for the current avatar
        self._to_avatar: tuple[np.ndarray, np.ndarray] | None = None  # (avatar, linear map) for the reference
        self._scales: np.ndarray | None = None  # lid_scales of the current avatar and rest

    def recalibrate(self) -> None:
        """The next landmarks are the new reference (and rest) pose."""
        self.reference = self.rest = self._to_avatar = None
        self.filter.reset()

    def offsets(self, landmarks: np.ndarray, t: float, avatar: np.ndarray) -> np.ndarray:
        """The driver's expression at time t (landmarks in any frame's pixels: only their shape counts), in the
        grid units and orientation of the avatar's landmarks (grid units)."""
        landmarks = np.asarray(landmarks, np.float64)
        if self.reference is None:
            self.reference = landmarks
        if self._to_avatar is None or self._to_avatar[0] is not avatar:  # turns and scales each offset
            self._to_avatar = avatar, similarity(self.reference[list(RIGID)], avatar[list(RIGID)])[:, :2]
            closed = mouth_opening(avatar)
            self.rest = close_mouth(self.reference, closed) if mouth_opening(self.reference) > closed + AJAR \
                else self.reference
            self._scales = lid_scales(avatar, self.rest)[:, None]
        aligned = align_head(landmarks, self.reference)
        moved = expression_offsets(aligned, self.reference, self.rest) * inter_ocular(self.reference) * self._scales
        return self.filter(moved @ self._to_avatar[1].T, t)

    def expression(self, landmarks: np.ndarray | None, t: float, avatar: np.ndarray | None) -> np.ndarray | None:
        """The driver's expression at time t for plan_warp (offsets); None when the driver's frame or the avatar
        has no 68 landmarks (the frame shows the model's expression alone)."""
        if avatar is None or landmarks is None or np.shape(landmarks) != (68, 2) or not np.isfinite(landmarks).all():
            return None
        offsets = self.offsets(landmarks, t, avatar)
        if not np.isfinite(offsets).all():  # a degenerate face (no eye distance): start again from the next one
            self.recalibrate()
            return None
        return offsets

    def plan(self, landmarks: np.ndarray | None, t: float, motion: Any,
             avatar: np.ndarray | None) -> ExpressionWarp | None:
        """The expression map for a frame's dense motion (expression, then plan_warp); None as expression."""
        offsets = self.expression(landmarks, t, avatar)
        return None if offsets is None else plan_warp(motion_arrays(motion)[0], avatar, offsets)


def expressive(step: FrameStep, landmarks: Callable[[np.ndarray], np.ndarray | None], avatar: np.ndarray,
               fps: float) -> FrameStep:
    """An offline per-frame step (driving frame -> (rendered frame, its motion)) with the driver's expression,
    its landmarks found on each driving frame; the first frame with landmarks is the rest pose."""
    driver, count = ExpressionDriver(), itertools.count()

    def run(frame: np.ndarray) -> tuple[np.ndarray, Any]:
        image, motion = step(frame)
        return express(image, motion, driver.plan(landmarks(frame), next(count) / fps, motion, avatar))
    return run
