"""Training pairs from videos in the official layout: ROOT/train and ROOT/test, each video a file
(mp4, avi, gif, ...) or a folder of frames.

Each item is two frames of one video, source before driving as the official sampler draws them, then
the official augmentations applied identically to both (a pair that disagreed in flip or colour would
teach the keypoints to explain the augmentation instead of the motion). Frames are decoded lazily and
kept in a small byte-bounded cache, so a worker-less DataLoader does not re-decode the same videos.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from core.media import VIDEO_SUFFIXES, frame_files, read_frames, read_image
from motion.config import Config
from motion.errors import UserError
from training.anchors import anchor_points, flip_anchors, to_keypoint_space
from training.face_masks import LANDMARK_FILE, MASK_FILE, load_landmarks, load_masks
from training.face_metrics import SCREEN_SHARE, chroma_key

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, the grey PIL's jitter blends with


class DatasetError(UserError):
    """A data folder that holds no usable videos; the message says how to make or point at some."""


def _how_to_fix(root: Path) -> str:
    return (f"run `python puppet.py make-data --output {root}` to generate synthetic training videos, or point "
            "--data at a folder ROOT with ROOT/train and ROOT/test holding videos (mp4, avi, gif or folders of frames)")


def find_videos(folder: Path) -> list[Path]:
    """Video files and non-empty frame folders directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir()
                  if (p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES) or (p.is_dir() and frame_files(p)))


def split_videos(root: str | Path, split: str) -> list[Path]:
    """The videos of ROOT/split, or a DatasetError naming the folder and the fix."""
    root = Path(root)
    folder = root / split
    if not folder.is_dir():
        raise DatasetError(f"data folder {folder} does not exist; {_how_to_fix(root)}")
    videos = find_videos(folder)
    if not videos:
        raise DatasetError(f"data folder {folder} has no videos; {_how_to_fix(root)}")
    return videos


def load_video(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """A whole video (file or frame folder) as (T, H, W, 3) float32 in [0, 1], for evaluation."""
    return np.stack(list(read_frames(path, size)[1]))


def _grey(image: np.ndarray) -> np.ndarray:
    return (image @ LUMA)[..., None]


def adjust_brightness(image: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(image * factor, 0, 1)


def adjust_contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the mean grey level, as torchvision/PIL contrast does."""
    mean = _grey(image).mean()
    return np.clip(mean + factor * (image - mean), 0, 1)


def adjust_saturation(image: np.ndarray, factor: float) -> np.ndarray:
    grey = _grey(image)
    return np.clip(grey + factor * (image - grey), 0, 1)


def adjust_hue(image: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue by ``shift`` of a full turn (in [-0.5, 0.5])."""
    hsv = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.float32), cv2.COLOR_RGB2HSV)  # hue in degrees
    hsv[..., 0] = (hsv[..., 0] + 360.0 * shift) % 360.0
    return np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0, 1)


@dataclass(frozen=True)
class ColorJitter:
    """One draw of the official colour jitter: factors and the random order they apply in."""
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0
    order: tuple[str, ...] = ("brightness", "contrast", "saturation", "hue")

    @classmethod
    def sample(cls, params: dict[str, float], rng: np.random.Generator) -> "ColorJitter":
        """Factors uniform in [max(0, 1 - p), 1 + p] and hue in [-p, p], like torchvision's ColorJitter."""
        def factor(name: str) -> float:
            spread = float(params.get(name) or 0)
            return float(rng.uniform(max(0.0, 1 - spread), 1 + spread)) if spread else 1.0
        hue = float(params.get("hue") or 0)
        order = tuple(str(name) for name in rng.permutation(cls.order))
        return cls(factor("brightness"), factor("contrast"), factor("saturation"),
                   float(rng.uniform(-hue, hue)) if hue else 0.0, order)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        for name in self.order:
            value = getattr(self, name)
            if value != (0.0 if name == "hue" else 1.0):
                image = _ADJUST[name](image, value)
        return image.astype(np.float32)


_ADJUST = {"brightness": adjust_brightness, "contrast": adjust_contrast, "saturation": adjust_saturation,
           "hue": adjust_hue}


class PairAugmentation:
    """The official dataset_params.augmentation_params (flip_param, jitter_param) for a frame pair.

    Time flip reverses the clip, which for a pair means swapping source and driving; horizontal flip
    mirrors both frames; the jitter is drawn once and applied to both.
    """

    def __init__(self, params: dict[str, Any] | None):
        params = params or {}
        flips = params.get("flip_param") or {}
        self.time_flip = bool(flips.get("time_flip"))
        self.horizontal_flip = bool(flips.get("horizontal_flip"))
        self.jitter = params.get("jitter_param") or None

    def __call__(self, source: np.ndarray, driving: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return self.colour(*self.geometry(source, driving, rng)[:2], rng)

    def geometry(self, source: np.ndarray, driving: np.ndarray, rng: np.random.Generator,
                 points: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The flips (what a mask of the frames must follow too), and the same flips of the frames' anchor
        points (2, A, 2) when given (training/anchors.py: mirrored, the eyes swapped)."""
        if self.time_flip and rng.random() < 0.5:
            source, driving = driving, source
            points = None if points is None else points[::-1]
        if self.horizontal_flip and rng.random() < 0.5:
            source, driving = source[:, ::-1], driving[:, ::-1]
            points = None if points is None else flip_anchors(points, source.shape[1])
        return source, driving, points

    def colour(self, source: np.ndarray, driving: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if self.jitter:
            jitter = ColorJitter.sample(self.jitter, rng)
            source, driving = jitter(source), jitter(driving)
        return source, driving


class _FrameCache:
    """Least-recently-used arrays under a byte budget."""

    def __init__(self, budget: int):
        self.budget = budget
        self.items: OrderedDict[Any, np.ndarray] = OrderedDict()
        self.used = 0

    def get(self, key: Any, load) -> np.ndarray:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = load()
        self.items[key] = value
        self.used += value.nbytes
        while self.used > self.budget and len(self.items) > 1:
            self.used -= self.items.popitem(last=False)[1].nbytes
        return value


def _chw(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1), dtype=np.float32))


@dataclass(frozen=True)
class Extras:
    """What items carry beyond the frame pair, each for a loss that needs it."""
    mattes: bool = False  # chroma-key mattes of the driving frame (loss_weights.matte)
    masks: bool = False  # the driving frame's mouth and eye masks (loss_weights.expression)
    anchors: bool = False  # lip and eyelid landmarks of both frames (loss_weights.anchor, .identity)

    @classmethod
    def of(cls, weights: Any, train: bool) -> "Extras":
        """What the config's loss weights need (masks and anchors in training only)."""
        return cls(mattes=bool(weights and weights.matte), masks=bool(train and weights and weights.expression),
                   anchors=bool(train and weights and (weights.anchor or weights.identity)))


class VideoDataset(Dataset):
    """Random (source, driving) frame pairs, one video per item; every video appears num_repeats times.

    Items are {'source': (3, H, W), 'driving': (3, H, W) float32 tensors in [0, 1], 'name': video name},
    with 'mask' (1, H, W), the driving frame's mouth and eye mask, when `masks` (frame folders only; made
    once by scripts/face_masks.py).
    Randomness comes from a per-dataset generator (reseeded per DataLoader worker), so a seed makes the
    pairs and augmentations reproducible.
    """

    CACHE_BYTES = 256 << 20  # decoded frames kept per dataset (per DataLoader worker)

    def __init__(self, root: str | Path, split: str = "train", size: tuple[int, int] = (256, 256),
                 augmentation: dict[str, Any] | None = None, num_repeats: int = 1, seed: int | None = None,
                 extras: Extras = Extras()):
        self.videos = split_videos(root, split)
        self.size = tuple(size)
        self.augment = PairAugmentation(augmentation)
        self.num_repeats = num_repeats
        self.mattes, self.masks, self.anchors = extras.mattes, extras.masks, extras.anchors
        for wanted, file, loss in ((extras.masks, MASK_FILE, "expression"),
                                   (extras.anchors, LANDMARK_FILE, "anchor or .identity")):
            missing = [v for v in self.videos if wanted and not (v / file).is_file()]
            if missing:
                raise DatasetError(f"{len(missing)} training clips have no {file} (e.g. {missing[0]}), which "
                                   f"loss_weights.{loss} needs; make them with `python scripts/face_masks.py "
                                   f"{root}` (frame folders only)")
        self.rng = np.random.default_rng(seed)
        self._worker: int | None = None
        self._frames: dict[Path, list[Path]] = {}
        self._cache = _FrameCache(self.CACHE_BYTES)

    @staticmethod
    def unused_keys(config: Config) -> list[str]:
        """dataset_params keys of the official configs that this loader does not read: --data replaces
        root_dir; every clip is sampled alike (no id_sampling) and pairs come at random (no pairs_list)."""
        return sorted(set(config.dataset) & {"root_dir", "id_sampling", "pairs_list"})

    @classmethod
    def from_config(cls, config: Config, root: str | Path, split: str = "train",
                    seed: int | None = None) -> "VideoDataset":
        """Frame size, augmentations and num_repeats as the config says; the test split is not augmented.
        Items carry what the config's loss weights need (Extras.of)."""
        train = split == "train"
        repeats = config.train.num_repeats if train and config.train else 1
        augmentation = config.dataset.get("augmentation_params") if train else None
        weights = config.train.loss_weights if config.train else None
        return cls(root, split, config.size, augmentation, repeats, seed, Extras.of(weights, train))

    def __len__(self) -> int:
        return len(self.videos) * self.num_repeats

    def _generator(self) -> np.random.Generator:
        info = get_worker_info()
        if info is not None and info.id != self._worker:  # workers start with copies of one generator
            self._worker = info.id
            self.rng = np.random.default_rng(info.seed)
        return self.rng

    def _video_frames(self, video: Path) -> list[Path] | np.ndarray:
        """A frame folder's file list, or a video file's decoded frames (cached)."""
        if video.is_dir():
            if video not in self._frames:
                self._frames[video] = frame_files(video)
            return self._frames[video]
        return self._cache.get(video, lambda: load_video(video, self.size))

    def _frame(self, frames: list[Path] | np.ndarray, index: int) -> np.ndarray:
        if isinstance(frames, np.ndarray):
            return frames[index]
        return self._cache.get(frames[index], lambda: read_image(frames[index], self.size))

    def __getitem__(self, index: int) -> dict[str, Any]:
        video = self.videos[index % len(self.videos)]
        rng = self._generator()
        frames = self._video_frames(video)
        first, second = np.sort(rng.choice(len(frames), size=2, replace=True))
        source, driving = self._frame(frames, first), self._frame(frames, second)
        if self.masks:  # a fourth channel, so the flips (a time flip swaps the frames) move each mask with its frame
            masks = self._cache.get(video / MASK_FILE, lambda: load_masks(video / MASK_FILE))
            source, driving = (np.concatenate([frame, masks[i][..., None]], -1) for frame, i in
                               ((source, first), (driving, second)))
        points = self._anchor_points(video, (first, second)) if self.anchors else None
        source, driving, points = self.augment.geometry(source, driving, rng, points)
        item = {"name": video.name}
        if points is not None:
            item["anchors"] = torch.from_numpy(to_keypoint_space(points, self.size))
        if self.masks:
            item["mask"] = _chw(driving[..., 3:])
            source, driving = source[..., :3], driving[..., :3]
        if self.mattes:  # keyed before the colour jitter, which would move the screen's colour
            person = chroma_key(driving)
            item["matte"] = torch.from_numpy(person[None].astype(np.float32))
            item["has_matte"] = bool((~person).mean() >= SCREEN_SHARE)
        source, driving = self.augment.colour(source, driving, rng)
        return {"source": _chw(source), "driving": _chw(driving), **item}


    def _landmarks(self, path: Path) -> np.ndarray:
        """A clip's cached landmarks, which must be in pixels of the frames this dataset reads."""
        marks, size = load_landmarks(path)
        if size != self.size:
            held = "landmarks of unknown frames" if size is None else f"landmarks of {size[1]}x{size[0]} frames"
            raise DatasetError(f"{path} holds {held}, the config's are "
                               f"{self.size[1]}x{self.size[0]}; delete it and run `python scripts/face_masks.py DATA "
                               f"--size {self.size[0]}`")
        return marks

    def _anchor_points(self, video: Path, indices: tuple[int, int]) -> np.ndarray:
        """(2, A, 2) anchor pixels of two frames of a clip at the dataset's size (NaN: no face found)."""
        marks = self._cache.get(video / LANDMARK_FILE, lambda: self._landmarks(video / LANDMARK_FILE))
        return np.stack([anchor_points(None if np.isnan(marks[i]).any() else marks[i]) for i in indices])


def measuring_batch_size(config: Config) -> int:
    """Batch size for measurements on a trained model: the training one, so BatchNorm sees batches as in
    training; 8 for a config without train_params."""
    return config.train.batch_size if config.train else 8


def seeded_batches(dataset: Dataset, count: int, batch_size: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """The first ``count`` full training batches of a seeded shuffle: the same pairs on every call, for
    measurements taken on a trained model (BatchNorm statistics, part shares)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    for index, batch in enumerate(loader):
        if index == count:
            return
        yield batch
