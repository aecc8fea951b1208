"""`prepare-data`: real talking-head videos -> square face clips in the official dataset layout.

The preprocessing talking-head datasets use: find the face in every frame, cut each video into chunks
in which the face stays inside one fixed square (the union of the chunk's face boxes, widened by the
live loop's margin and clamped into the frame by the same `face_crop`), drop chunks that are short or
where the face is lost, resize, and hold out whole chunks at the end of each video (and whole videos
named with --test-video) as the test split. A fixed box per chunk keeps the camera still within a clip,
as in VoxCeleb, so the model learns the head's motion rather than the crop's.
"""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np
from tqdm import tqdm

from core.faces import Box, crop, face_crop, union_box
from core.media import VIDEO_SUFFIXES, FrameWriter, MediaError, open_frames, picture_to_rgb
from core.tracking.haar import HaarFaceDetector
from motion.errors import UserError
from training.options import PrepareDataOptions


@dataclass(frozen=True)
class ChunkRules:
    """How videos are cut. `drift`: how much larger than the chunk's mean face box the union of its boxes
    may grow before the chunk is cut (a face that moves further needs a new box)."""
    min_frames: int = PrepareDataOptions.min_frames  # the defaults are prepare-data's options'
    max_frames: int = PrepareDataOptions.max_frames
    drift: float = PrepareDataOptions.drift
    margin: float = PrepareDataOptions.margin
    test_fraction: float = PrepareDataOptions.test_fraction

    def __post_init__(self) -> None:
        if not 2 <= self.min_frames <= self.max_frames:
            raise UserError(f"chunk lengths must satisfy 2 <= --min-frames <= --max-frames (got {self.min_frames}, "
                            f"{self.max_frames})")
        if self.drift < 0 or self.margin < 0 or not 0 <= self.test_fraction < 1:
            raise UserError("--drift and --margin must be >= 0 and --test-fraction in [0, 1)")


@dataclass(frozen=True)
class Chunk:
    """Frames [start, end) of one video, cropped to `box` (frame pixels)."""
    video: str
    start: int
    end: int
    box: Box
    split: str


def cut_chunks(boxes: list[Box | None], rules: ChunkRules) -> list[tuple[int, int]]:
    """Frame ranges [start, end) where a face is found in every frame, its boxes' union stays within
    (1 + drift) of their mean side, and the length is in [min_frames, max_frames]."""
    ranges: list[tuple[int, int]] = []
    start, members = 0, []

    def close(end: int) -> None:
        if end - start >= rules.min_frames:
            ranges.append((start, end))

    for index, box in enumerate(boxes):
        if box is None:
            close(index)
            start, members = index + 1, []
            continue
        grown = members + [box]
        mean_side = sum(b.side for b in grown) / len(grown)
        if members and (union_box(grown).side > (1 + rules.drift) * mean_side or len(members) >= rules.max_frames):
            close(index)
            start, grown = index, [box]
        members = grown
    close(len(boxes))
    return ranges


def assign_splits(ranges: list[tuple[int, int]], frames: int, test_fraction: float,
                  whole_video_test: bool) -> list[str]:
    """'test' for chunks starting in the last `test_fraction` of the video (or all of a held-out video)."""
    boundary = frames * (1 - test_fraction)
    return ["test" if whole_video_test or start >= boundary else "train" for start, _ in ranges]


def detect_boxes(frames: Iterable[np.ndarray], detect: Callable[[np.ndarray, Box | None], Box | None],
                 desc: str) -> tuple[list[Box | None], tuple[int, ...]]:
    """The face box of every frame (the search starts near the last box found), and the frame shape."""
    boxes: list[Box | None] = []
    last, shape = None, (0, 0, 3)
    for frame in tqdm(frames, desc=f"faces {desc}", unit="frame", file=sys.stderr, disable=None, leave=False):
        shape = frame.shape
        found = detect(frame, last)
        if found is None and last is not None:
            found = detect(frame, None)
        boxes.append(found)
        last = found or last
    return boxes, shape


def input_videos(inputs: list[str]) -> list[Path]:
    """Video files, and the videos inside folders, in the order given."""
    videos: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise MediaError(f"folder {item} holds no videos ({', '.join(sorted(VIDEO_SUFFIXES))})")
            videos += found
        elif item.is_file():
            videos.append(item)
        else:
            raise MediaError(f"input {item} does not exist; pass video files or folders of videos")
    names = [clip_name(v) for v in videos]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"several inputs are named {', '.join(twice)}; their clips would overwrite each other: "
                        "rename one")
    return videos


def clip_name(video: Path) -> str:
    """The video's name for its clip folders (dots would read as a file type)."""
    return video.stem.replace(".", "_")


def prepare_data(inputs: list[str], out: str | Path, size: int = 128, rules: ChunkRules = ChunkRules(),
                 test_videos: Iterable[str] = (), detector: HaarFaceDetector | None = None,
                 overwrite: bool = False) -> list[Chunk]:
    """Cut, crop and write every input video; returns the chunks written (also listed in OUT/chunks.json)."""
    out = Path(out)
    videos = input_videos(inputs)
    held_out = set(test_videos)
    unknown = held_out - {v.stem for v in videos} - {v.name for v in videos}
    if unknown:
        raise UserError(f"--test-video {', '.join(sorted(unknown))} is not among the inputs")
    if (out / "train").exists() or (out / "test").exists():
        if not overwrite:
            raise UserError(f"{out} already holds a dataset; choose another --output or pass --overwrite")
        for split in ("train", "test"):  # only now that the inputs are known to be usable
            shutil.rmtree(out / split, ignore_errors=True)
    detector = detector or HaarFaceDetector()
    chunks: list[Chunk] = []
    for video in videos:
        fps, frames = open_frames(video)
        boxes, shape = detect_boxes((picture_to_rgb(f) for f in frames), detector.detect, video.name)
        ranges = cut_chunks(boxes, rules)
        splits = assign_splits(ranges, len(boxes), rules.test_fraction, video.stem in held_out or video.name in held_out)
        chunks_here = [Chunk(clip_name(video), a, b, face_crop(union_box(boxes[a:b]), rules.margin, shape), s)
                       for (a, b), s in zip(ranges, splits)]
        _write_chunks(video, chunks_here, out, size, fps)
        chunks += chunks_here
        found = sum(b is not None for b in boxes)
        print(f"{video.name}: {len(boxes)} frames, face in {found}, {len(chunks_here)} chunks "
              f"({sum(c.split == 'train' for c in chunks_here)} train, {sum(c.split == 'test' for c in chunks_here)} test)",
              file=sys.stderr)
    if not chunks:
        raise UserError("no chunk had a face in enough frames; use videos with one visible face in view, or (prepare-data) "
                        "lower --min-frames")
    manifest = [{**asdict(c), "box": asdict(c.box), "frames": c.end - c.start} for c in chunks]
    (out / "chunks.json").write_text(json.dumps({"size": size, "rules": asdict(rules), "chunks": manifest}, indent=1))
    return chunks


def _write_chunks(video: Path, chunks: list[Chunk], out: Path, size: int, fps: float) -> None:
    """Second pass over the video: each frame goes into the chunk that holds it."""
    if not chunks:
        return
    writers = {}
    try:
        for index, frame in enumerate(open_frames(video)[1]):
            for number, chunk in enumerate(chunks):
                if chunk.start <= index < chunk.end:
                    if number not in writers:
                        writers[number] = FrameWriter(out / chunk.split / f"{chunk.video}_{number:03d}", fps)
                    face = cv2.resize(crop(picture_to_rgb(frame), chunk.box), (size, size), interpolation=cv2.INTER_AREA)
                    writers[number].write(face)
    finally:
        for writer in writers.values():
            writer.close()
