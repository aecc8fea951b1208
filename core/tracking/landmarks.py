"""Facial landmarks: following the face with them instead of Haar boxes (LandmarkTracker, a Tracker), so the
crop survives head turns and tilts that the frontal Haar detector misses, and dlib's 68 points of a photo
(LandmarkDetector: make-face-data, the face metrics and masks). dlib's model is loaded here only (load_dlib).

The full face detector runs once; after that each frame only fits the landmarks in a small upright window
around where the last landmarks were, which costs a fraction of a detection and follows rolled and turned
heads. A cheap check (the face's size may not jump, and its appearance must resemble the last frame's)
notices when the fit has slid off the face; the detector then runs again. The crop box comes from the
eyes and mouth, calibrated so that it frames a face as the Haar box does (the crop geometry of
core/faces.py, shared with prepare-data, stays as it is).

Landmark providers sit behind one small protocol: dlib's 68-point shape predictor (the default, offline
with dlib-bin and Debian's libdlib-data), MediaPipe's face mesh when it is installed, and face-alignment
(FAN, what avatarify uses) when it and its weights are installed.
"""
from __future__ import annotations

import functools
import glob
import importlib
import importlib.util
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from core.faces import LEFT_EYE, RIGHT_EYE, Box
from core.tracking.haar import DETECT_SIDE
from core.tracking.steady import BOX_FILTER, SteadyBox, blank
from motion.errors import UserError

LANDMARK_MODEL = "/usr/share/dlib/shape_predictor_68_face_landmarks.dat"  # Debian's libdlib-data
LANDMARKS_68 = ("dlib", "face-alignment")  # the trackers whose landmarks follow dlib's 68-point scheme
# The face box from eyes and mouth, calibrated against the Haar box on the 64 even frames of
# checkpoints/webcam.mp4 (`python scripts/landmark_tracking.py calibrate` measures these figures and
# WINDOW_SIDE / WINDOW_DOWN below): Haar side / inter-ocular distance = 2.37,
# Haar side / eyes-to-mouth distance = 2.21 (spread 2% each). The side is the larger of the two estimates,
# so it keeps its size when a head turn shortens the eye line or a nod shortens the eyes-to-mouth line.
SIDE_PER_EYES = 2.37
SIDE_PER_EYE_MOUTH = 2.21
CENTRE_DOWN = 0.17  # the Haar box centre lies this fraction of the way from the eyes' midpoint to the mouth's
# dlib's detector rectangle in the same terms (the framing its shape predictor was trained on), so a
# tracking window is placed as a detection would be
WINDOW_SIDE = 0.86
WINDOW_DOWN = 0.34
FIT_SIDE = 128  # the tracking window's side, in pixels of the upright patch the shape predictor reads
# Detection: dlib's HOG detector finds faces from 60 pixels (Haar-equivalent side; 50 it misses, measured on
# the bundled clip), so frames are searched at up to twice their size: faces from 30 pixels are found. A
# detection scans about 2 x DETECT_PIXELS at most (2 x 50 ms on one slow core); it runs only while there is
# no face, when the loop has no keypoints or generator to run.
MAX_SCALE = 2.0
DETECT_PIXELS = 400_000
TILE = 512  # a tile's side, in pixels of its scaled copy
TILE_OVERLAP = 160  # scaled pixels: more than a face the next coarser scale misses (120) with its context

MIN_SIMILARITY = 0.5  # correlation of the face's appearance with the last frame's below which it is lost
MAX_SCALE_STEP = 1.25  # a face cannot grow or shrink more than this between two frames
APPEARANCE_SIDE = 8  # pixels a side of the grey face thumbnail compared between frames

MESH_EYES = ((33, 133), (362, 263))  # MediaPipe face mesh: image-left and image-right eye corners
MESH_MOUTH = (61, 291)  # its mouth corners
MOUTH_CORNERS = (48, 54)  # the 68-point scheme's outer mouth corners


@functools.lru_cache(maxsize=4)
def load_dlib(model: str = LANDMARK_MODEL) -> tuple[Any, Any, Any]:
    """(the dlib module, its HOG frontal face detector, the 68-point shape predictor), or a one-line
    UserError naming what to install (PyPI dlib-bin, Debian's libdlib-data). Loaded once per process
    (seconds: the predictor is 100 MB); both are read-only once built."""
    try:
        import dlib
    except ImportError:
        raise UserError("facial landmarks need dlib: pip install dlib-bin") from None
    if not Path(model).is_file():
        raise UserError(f"dlib's 68-point landmark model {model} is missing; install it: apt-get install libdlib-data")
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(model)


def dlib_points(shape: Any) -> np.ndarray:
    """A dlib full_object_detection's points as an (N, 2) float array."""
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


class LandmarkDetector:
    """dlib's HOG face detector and 68-point shape predictor on a photo: (68, 2) pixel landmarks of the
    largest face.

    Faces are searched on a copy upscaled to at least `min_side` pixels, since the HOG detector misses
    faces under ~80 pixels and model frames are 128x128."""

    def __init__(self, model: str = LANDMARK_MODEL, min_side: int = 256):
        self.dlib, self.detector, self.predictor = load_dlib(model)
        self.min_side = min_side

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        """Landmarks of an RGB image (uint8, or float in [0, 1]), or None when no face is found."""
        if image.dtype != np.uint8:
            image = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
        scale = max(1.0, self.min_side / min(image.shape[:2]))
        big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR) if scale > 1 else image
        big = np.ascontiguousarray(big[..., :3])
        faces = self.detector(big, 0)
        if not faces:
            return None
        return dlib_points(self.predictor(big, max(faces, key=lambda r: r.area()))) / scale


def expression_detector(tracker: str | None, note: str, tracked: bool = True) -> LandmarkDetector | None:
    """dlib's detector for expression transfer (the avatar's landmarks; offline also the driver's), or None with
    a one-line note starting with `note` when it cannot run: a tracker (`tracked`: a real-time command) whose
    landmarks are not dlib's 68 points, or no dlib."""
    if tracked and tracker not in LANDMARKS_68:
        where = f"the {tracker} tracker gives" if tracker else "without face tracking there are"
        print(f"{note}: {where} no 68 facial landmarks (use --tracker dlib)", file=sys.stderr)
        return None
    try:
        return LandmarkDetector()
    except UserError as error:
        print(f"{note}: {error}", file=sys.stderr)
        return None


@dataclass(frozen=True)
class FaceShape:
    """Landmarks in frame pixels, in their provider's scheme, with the three points the tracker uses."""
    points: np.ndarray  # (N, 2): 68 for dlib and face-alignment, 468 for MediaPipe's mesh
    left_eye: np.ndarray  # (2,) centre of the image-left eye
    right_eye: np.ndarray  # (2,) centre of the image-right eye
    mouth: np.ndarray  # (2,) midpoint of the mouth corners

    @property
    def eyes(self) -> np.ndarray:
        return (self.left_eye + self.right_eye) / 2

    @property
    def roll(self) -> float:
        """The eye line's angle in degrees, clockwise on screen (image y points down); 0 for an upright face."""
        dx, dy = self.right_eye - self.left_eye
        return math.degrees(math.atan2(dy, dx))

    @property
    def side(self) -> float:
        """The Haar-equivalent face box side."""
        return max(SIDE_PER_EYES * float(np.linalg.norm(self.right_eye - self.left_eye)),
                   SIDE_PER_EYE_MOUTH * float(np.linalg.norm(self.mouth - self.eyes)))

    def box(self) -> Box:
        """The Haar-equivalent face box, so face_crop frames it as it frames a Haar detection."""
        cx, cy = self.eyes + CENTRE_DOWN * (self.mouth - self.eyes)
        return Box(float(cx), float(cy), self.side)


def shape_68(points: np.ndarray) -> FaceShape:
    """A FaceShape from 68-point landmarks (dlib's and FAN's scheme)."""
    points = np.asarray(points, dtype=np.float64)[:, :2]
    return FaceShape(points, points[LEFT_EYE].mean(0), points[RIGHT_EYE].mean(0),
                     points[list(MOUTH_CORNERS)].mean(0))


def shape_mesh(points: np.ndarray) -> FaceShape:
    """A FaceShape from MediaPipe's 468 (or 478) face-mesh points."""
    points = np.asarray(points, dtype=np.float64)[:, :2]
    return FaceShape(points, points[list(MESH_EYES[0])].mean(0), points[list(MESH_EYES[1])].mean(0),
                     points[list(MESH_MOUTH)].mean(0))


class LandmarkProvider(Protocol):
    def landmarks(self, frame: np.ndarray, previous: FaceShape | None) -> FaceShape | None:
        """The face's landmarks in an RGB uint8 frame, or None. With `previous` None this is a full
        detection (the whole frame is searched); otherwise the face is fitted near `previous`."""
        ...


@dataclass(frozen=True)
class View:
    """A part of the frame (x0, y0, x1, y1 in frame pixels) searched on a copy scaled by `scale`."""
    scale: float
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def cost(self) -> float:
        """The pixels the detector scans (its own pyramid adds a fixed factor)."""
        return (self.x1 - self.x0) * (self.y1 - self.y0) * self.scale ** 2


def spans(length: int, tile: float, overlap: float) -> list[tuple[int, int]]:
    """The fewest equal pieces, at most `tile` long and overlapping by `overlap`, that cover `length`."""
    count = max(1, math.ceil((length - overlap) / (tile - overlap)))
    size = (length - overlap) / count + overlap
    return [(round(i * (size - overlap)), min(length, round(i * (size - overlap) + size))) for i in range(count)]


@functools.lru_cache(maxsize=8)
def search_plan(height: int, width: int, whole: float = DETECT_PIXELS) -> tuple[list[View], list[list[View]]]:
    """How a frame of this size is searched for faces from 30 pixels up: at scales MAX_SCALE, 1/2 of it,
    1/4, ... down to the first that fits DETECT_SIDE (at each, the HOG detector's own pyramid covers the
    bigger faces). Returns (the views searched on every detection: the whole frame at the coarse scales,
    while they cost `whole` pixels together; for each finer scale, coarse first, its tiles, searched in
    turn). Tiles overlap by more than the largest face their scale must find (the next coarser scale finds
    bigger ones); those nearest the frame's centre, where faces usually are, come first."""
    scales = [MAX_SCALE]
    while max(height, width) * scales[-1] > DETECT_SIDE:
        scales.append(scales[-1] / 2)
    every: list[View] = []
    tiled: list[list[View]] = []
    for scale in reversed(scales):  # coarse first: big faces are found at the least cost
        view = View(scale, 0, 0, width, height)
        if not tiled and sum(v.cost for v in every) + view.cost <= whole:
            every.append(view)
            continue
        tile, overlap = TILE / scale, TILE_OVERLAP / scale
        tiles = [View(scale, x0, y0, x1, y1) for y0, y1 in spans(height, tile, overlap)
                 for x0, x1 in spans(width, tile, overlap)]
        tiled.append(sorted(tiles, key=lambda v: math.hypot(v.x0 + v.x1 - width, v.y0 + v.y1 - height)))
    return every, tiled


class DlibLandmarks:
    """dlib's HOG frontal detector (at several scales, see search_plan) and its 68-point shape predictor.

    Tracking feeds the predictor the rectangle a detection would have given, predicted from the last
    landmarks, in a patch turned upright by the last roll: no detector runs, and tilted heads, which the
    frontal detector misses, stay tracked."""

    def __init__(self, model: str | None = None, budget: float = DETECT_PIXELS):
        self.dlib, self.detector, self.predictor = load_dlib(model or LANDMARK_MODEL)
        self.budget = budget
        self.turn = 0  # the tiled searches run so far: which scale and tile are next

    def landmarks(self, frame: np.ndarray, previous: FaceShape | None) -> FaceShape | None:
        if previous is None:
            previous = self._detect(frame)
            if previous is None:
                return None
        return self._fit(frame, previous)

    def views(self, shape: tuple[int, ...]) -> list[View]:
        """The views the next detection in a frame of this shape searches: the coarse whole-frame views,
        then tiles while they cost `budget` pixels (one at least), the tiled scales taking turns, so the
        coarser ones, with fewer tiles, are swept more often: a face found by a coarser scale is also
        the more common, nearer one."""
        every, tiled = search_plan(shape[0], shape[1], self.budget)
        chosen, spent = list(every), 0.0
        while tiled:
            tiles = tiled[self.turn % len(tiled)]
            view = tiles[self.turn // len(tiled) % len(tiles)]
            if spent and spent + view.cost > self.budget:
                break
            chosen.append(view)
            spent += view.cost
            self.turn += 1
        return chosen

    def _detect(self, frame: np.ndarray) -> FaceShape | None:
        """The largest face in the first view (coarse to fine) that has one."""
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        for view in self.views(grey.shape):
            part = grey[view.y0:view.y1, view.x0:view.x1]
            if view.scale != 1.0:
                part = cv2.resize(part, None, fx=view.scale, fy=view.scale,
                                  interpolation=cv2.INTER_AREA if view.scale < 1 else cv2.INTER_LINEAR)
            faces = self.detector(part, 0)
            if faces:
                points = dlib_points(self.predictor(part, max(faces, key=lambda r: r.area())))
                return shape_68(points / view.scale + (view.x0, view.y0))
        return None

    def _fit(self, frame: np.ndarray, previous: FaceShape) -> FaceShape:
        centre = previous.eyes + WINDOW_DOWN * (previous.mouth - previous.eyes)
        matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), previous.roll,
                                         FIT_SIDE / (WINDOW_SIDE * previous.side))
        matrix[:, 2] += FIT_SIDE - centre  # the window's centre to the middle of a patch twice its size
        patch = cv2.warpAffine(frame, matrix, (2 * FIT_SIDE, 2 * FIT_SIDE), flags=cv2.INTER_LINEAR)
        grey = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY) if patch.ndim == 3 else patch
        low, high = FIT_SIDE // 2, FIT_SIDE + FIT_SIDE // 2
        points = dlib_points(self.predictor(grey, self.dlib.rectangle(low, low, high, high)))
        back = cv2.invertAffineTransform(matrix)
        return shape_68(points @ back[:, :2].T + back[:, 2])


class FaceAlignmentLandmarks:
    """face-alignment's FAN (68 points). `network` is a face_alignment.FaceAlignment or anything with its
    get_landmarks(image, detected_faces=...) method; by default one is built on `device`, after checking
    that its weights are cached, since it would otherwise try to download them."""

    def __init__(self, network: Any = None, device: str = "cpu"):
        self.network = network if network is not None else load_face_alignment(device)

    def landmarks(self, frame: np.ndarray, previous: FaceShape | None) -> FaceShape | None:
        faces = None
        if previous is not None:  # FAN crops around a face box: the last landmarks' bounding box
            faces = [np.concatenate([previous.points.min(0), previous.points.max(0)])]
        found = self.network.get_landmarks(frame, detected_faces=faces)
        if not found:
            return None
        points = max((np.asarray(p)[:, :2] for p in found), key=lambda p: float(np.prod(np.ptp(p, axis=0))))
        return shape_68(points)


FAN_WEIGHTS = ("2DFAN4*", "s3fd*")  # the 2-D landmark network and the face detector it builds by default


def face_alignment_cache() -> Path:
    """Where face-alignment keeps its weights: the torch hub cache's checkpoints folder."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def load_face_alignment(device: str = "cpu") -> Any:
    """A face_alignment.FaceAlignment for 2-D landmarks, or a UserError saying what is missing. Weights
    are checked first: the constructor would download them, and hang or fail without internet."""
    if importlib.util.find_spec("face_alignment") is None:
        raise UserError("the face-alignment tracker needs the face-alignment package: pip install face-alignment")
    cache = face_alignment_cache()
    missing = [p for p in FAN_WEIGHTS if not glob.glob(os.path.join(glob.escape(str(cache)), p))]
    if missing:
        raise UserError(f"face-alignment's weights ({', '.join(missing)}) are not in the torch hub cache {cache}; "
                        "run the face-alignment package once with internet to download them, or copy them there")
    module = importlib.import_module("face_alignment")
    kinds = module.LandmarksType
    kind = kinds.TWO_D if hasattr(kinds, "TWO_D") else kinds._2D  # renamed in face-alignment 1.4
    return module.FaceAlignment(kind, device=device, flip_input=False)


class MediaPipeLandmarks:
    """MediaPipe's face mesh in video mode, which tracks the face between frames itself (`previous` is
    not needed). `mesh` is a mediapipe FaceMesh or anything with its process(rgb) method."""

    def __init__(self, mesh: Any = None):
        if mesh is None:
            try:
                from mediapipe.solutions import face_mesh
            except ImportError:
                raise UserError("the mediapipe tracker needs mediapipe with its face mesh solution: "
                                "pip install mediapipe") from None
            mesh = face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=False)
        self.mesh = mesh

    def landmarks(self, frame: np.ndarray, previous: FaceShape | None) -> FaceShape | None:
        faces = self.mesh.process(frame).multi_face_landmarks
        if not faces:
            return None
        h, w = frame.shape[:2]
        return shape_mesh(np.array([[p.x * w, p.y * h] for p in faces[0].landmark]))


def appearance(frame: np.ndarray, shape: FaceShape) -> np.ndarray:
    """A tiny upright grey thumbnail of the face box, zero-mean and unit-norm, so that the dot product of
    two is their correlation: indifferent to exposure, high for the same face a frame later (0.99 on
    the bundled clip), low for background (0.25 at most, measured). It is blurry on purpose (8x8, area
    averaged from 32x32): a fit 5% of the face off still scores 0.75, so landmark jitter is not a loss."""
    box = shape.box()
    big = 4 * APPEARANCE_SIDE
    matrix = cv2.getRotationMatrix2D((box.cx, box.cy), shape.roll, big / box.side)
    matrix[:, 2] += big / 2 - np.array([box.cx, box.cy])
    thumb = cv2.resize(cv2.warpAffine(frame, matrix, (big, big), flags=cv2.INTER_LINEAR),
                       (APPEARANCE_SIDE, APPEARANCE_SIDE), interpolation=cv2.INTER_AREA)
    grey = (cv2.cvtColor(thumb, cv2.COLOR_RGB2GRAY) if thumb.ndim == 3 else thumb).astype(np.float32).ravel()
    grey -= grey.mean()
    return grey / max(float(np.linalg.norm(grey)), 1e-6)


class LandmarkTracker:
    """Follows one face with landmarks (a Tracker, see core/tracking/__init__.py).

    update() returns the Haar-equivalent face box, smoothed with a One Euro filter (BOX_FILTER, relative to
    the frame size), or None while there is no face: as soon as the landmarks cannot be fitted or found (there is
    no holding on: a fit that fails its check is re-detected in the same frame, and only a failed
    detection drops the face), and at once on a blank frame. `landmarks` and `roll` describe the last
    frame; `detections` counts full detections run, `losses` the times a tracked face was lost."""

    def __init__(self, provider: LandmarkProvider | None = None, min_similarity: float = MIN_SIMILARITY,
                 max_scale_step: float = MAX_SCALE_STEP):
        self.provider = provider if provider is not None else DlibLandmarks()
        self.min_similarity, self.max_scale_step = min_similarity, max_scale_step
        self.filter = BOX_FILTER.make()
        self.stillness = SteadyBox()
        self.detections = 0
        self.losses = 0
        self.reset()

    @property
    def steady(self) -> bool:
        """Has the box held still for a few frames (see SteadyBox)?"""
        return self.stillness.steady

    def close(self) -> None:
        """Nothing to free (the Tracker interface)."""

    def reset(self) -> None:
        """Forget the face: the next update detects it afresh."""
        self.shape: FaceShape | None = None
        self.box: Box | None = None
        self.roll: float | None = None
        self._look: np.ndarray | None = None
        self.filter.reset()
        self.stillness.add(None)

    @property
    def landmarks(self) -> np.ndarray | None:
        """The last frame's landmarks, (N, 2) frame pixels in the provider's scheme, or None."""
        return None if self.shape is None else self.shape.points

    def update(self, frame: np.ndarray, t: float) -> Box | None:
        """The face box in an RGB uint8 frame captured at time t (seconds), or None."""
        self.stillness.add(self._update(frame, t))
        return self.box

    def _update(self, frame: np.ndarray, t: float) -> Box | None:
        if blank(frame):
            return self._lose()
        shape = look = None
        if self.shape is not None:
            shape = self.provider.landmarks(frame, self.shape)
            look = None if shape is None else appearance(frame, shape)
            if shape is not None and not self._holds(frame, shape, look):
                shape = None
        if shape is None:
            self.detections += 1
            shape = self.provider.landmarks(frame, None)
            if shape is None:
                return self._lose()
            look = appearance(frame, shape)
        self.shape, self._look = shape, look
        box = shape.box()
        norm = float(max(frame.shape[:2]))
        smoothed = self.filter(np.array([box.cx / norm, box.cy / norm, box.side / norm, math.radians(shape.roll)]), t)
        self.box = Box(*(float(v) * norm for v in smoothed[:3]))
        self.roll = math.degrees(float(smoothed[3]))
        return self.box

    def _holds(self, frame: np.ndarray, shape: FaceShape, look: np.ndarray) -> bool:
        """Is a fit still on the face? Its size may not jump, its eyes must be in the frame, and it must
        look like the last frame's face."""
        step = shape.side / self.shape.side
        h, w = frame.shape[:2]
        cx, cy = shape.eyes
        return (1 / self.max_scale_step <= step <= self.max_scale_step and 0 <= cx < w and 0 <= cy < h
                and float(look @ self._look) >= self.min_similarity)

    def _lose(self) -> None:
        if self.shape is not None:
            self.losses += 1
        self.reset()

