"""Images and videos in, frames out, the way the official demo reads them: imageio decoding,
skimage resize to the model's frame size, alpha dropped, grey replicated to RGB, floats in [0, 1]."""
from __future__ import annotations

import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Iterator

import imageio.v2 as imageio
import numpy as np
from skimage import data as skdata
from skimage import img_as_ubyte
from skimage.transform import resize

from motion.errors import UserError, first_line

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".gif", ".webm"}
WRITE_VIDEO_SUFFIXES = {".mp4", ".gif", ".avi"}
FOLDER_FPS = 30.0  # a folder of frames has no rate of its own


class MediaError(UserError):
    """An image, video or output path that cannot be used."""


def to_model_frame(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W[, C]) image of any dtype -> (h, w, 3) float32 in [0, 1], as the official demo prepares frames."""
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return resize(image, size)[..., :3].astype(np.float32)


def picture_to_rgb(image: np.ndarray) -> np.ndarray:
    """Any decoded picture as (h, w, 3) uint8 RGB: grey replicated, alpha dropped (as the official demo does),
    16-bit scaled to 8, floats read as [0, 1] unless their values run to 255 (then as 0-255)."""
    image = np.asarray(image)
    if image.dtype.kind == "f":
        image = np.nan_to_num(image.astype(np.float64))
        top = 1.0 if image.max() <= 1.0 else 255.0 if image.max() <= 255.0 else float(image.max())
        image = (np.clip(image / top, 0, 1) * 255).round().astype(np.uint8)
    elif image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:  # 16-bit (Pillow may give them as int32 'I' pictures) and wider ints
        top = 65535 if image.dtype.itemsize >= 2 and image.max() <= 65535 else np.iinfo(image.dtype).max
        image = (np.clip(image.astype(np.float64), 0, top) * 255 / top).round().astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"unexpected picture layout {image.shape}")
    if image.shape[-1] in (1, 2):  # grey, grey + alpha
        image = np.repeat(image[..., :1], 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


def load_picture(path: str | Path, what: str = "image") -> np.ndarray:
    """The one way pictures are read: (h, w, 3) uint8 RGB at full size, whatever the file's colour space
    (CMYK and palette JPEG/PNG converted by Pillow, the first frame of an animation) or sample type.
    A missing or undecodable file is a MediaError naming it."""
    from PIL import Image, UnidentifiedImageError
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{what} {path} does not exist or is not a file; pass the path of a photo (png, jpg, ...)")
    try:
        with Image.open(path) as picture:
            picture.seek(0)
            if picture.mode in ("CMYK", "YCbCr", "LAB", "HSV", "P", "PA", "1"):
                picture = picture.convert("RGBA" if "transparency" in picture.info or picture.mode == "PA" else "RGB")
            array = np.asarray(picture)
        return picture_to_rgb(array)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as err:
        try:  # formats Pillow lacks (float TIFF stacks and the like)
            array = np.asarray(imageio.imread(path))
            return picture_to_rgb(array[0] if array.ndim == 4 else array)
        except Exception:  # imageio raises many types for undecodable files
            raise MediaError(f"cannot read {what} {path} ({type(err).__name__}); pass a png or jpg file") from None


def read_image(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """A photo as the model's (h, w, 3) float32 frame in [0, 1]."""
    return to_model_frame(load_picture(path), size)


def frame_files(folder: Path) -> list[Path]:
    """The pictures in a folder by name (a sub-folder named like a frame is not one)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _unreadable(path: Path, err: Exception, when: str = "") -> MediaError:
    """The one-line error for a video the decoders cannot open (imageio's own wording is about plugins)."""
    text = first_line(err, "")
    reason = "no decoder for this file" if text.startswith("Could not find a backend") else \
        f"{type(err).__name__}: {text}" if text else type(err).__name__
    return MediaError(f"cannot read video {path}{when} ({reason}); pass an mp4, avi or gif file, or a folder of "
                      "frames")


def _video_frames(path: Path) -> tuple[float, Iterator[np.ndarray]]:
    try:
        reader = imageio.get_reader(path)
        try:
            meta = reader.get_meta_data()
        finally:
            reader.close()  # checked and measured; reopened when the frames are wanted, so nothing is held
        fps = float(meta.get("fps") or 0)
        if not fps and meta.get("duration"):
            fps = 1000.0 / float(meta["duration"])  # gif frame duration in ms
    except Exception as err:
        raise _unreadable(path, err) from None

    announced = meta.get("nframes")
    if not (isinstance(announced, (int, float)) and np.isfinite(announced)):  # ffmpeg: from the duration
        ffmpeg = meta.get("plugin") == "ffmpeg" and meta.get("duration")  # (a GIF's duration is per frame)
        announced = round(float(meta["duration"]) * fps) if ffmpeg and fps else None

    def frames() -> Iterator[np.ndarray]:
        count = 0
        try:
            reader = imageio.get_reader(path)
        except Exception as err:  # moved or deleted since it was checked
            raise _unreadable(path, err, " any more") from None
        try:
            for frame in reader:
                count += 1
                yield np.asarray(frame)
        except (OSError, RuntimeError, ValueError, IndexError):  # the decoder gave up on damaged data
            pass
        finally:
            reader.close()
        if announced and count < announced - max(2, announced // 50):  # containers round their counts
            print(f"warning: read {count} of the {announced} frames video {path} announces (truncated or "
                  "damaged?); using those", file=sys.stderr)
    return fps or 30.0, frames()


def frame_folder(path: Path) -> list[Path]:
    """The frames of a driving folder, by name; a folder without any is an error."""
    files = frame_files(path)
    if not files:
        raise MediaError(f"frame folder {path} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                         "put the driving frames there or pass a video file")
    return files


def open_frames(path: str | Path) -> tuple[float, Iterator[np.ndarray]]:
    """(fps, raw frames) of a video file or a folder of images sorted by name."""
    path = Path(path)
    if path.is_dir():
        return FOLDER_FPS, (load_picture(f, "frame") for f in frame_folder(path))
    if not path.is_file():
        raise MediaError(f"driving video {path} does not exist; pass a video file or a folder of frames")
    return _video_frames(path)


def read_frames(path: str | Path, size: tuple[int, int]) -> tuple[float, Iterator[np.ndarray]]:
    """(fps, model-ready frames); an empty video is an error raised on first use."""
    fps, raw = open_frames(path)

    def frames() -> Iterator[np.ndarray]:
        count = 0
        for frame in raw:
            count += 1
            yield to_model_frame(frame, size)
        if count == 0:
            raise MediaError(f"driving video {path} has no frames; pass a video with at least one frame")
    return fps, frames()


def same_path(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file or folder (links and relative spellings resolved)."""
    a, b = Path(a), Path(b)
    try:
        return a.samefile(b) if a.exists() and b.exists() else a.resolve() == b.resolve()
    except OSError:
        return False


def check_not_input(output: str | Path, inputs: list[str | Path | None], flag: str = "--output") -> None:
    """An output that is one of the inputs would overwrite the user's file: refuse it up front."""
    for item in inputs:
        if item is not None and same_path(output, item):
            raise MediaError(f"{flag} {output} is also an input ({item}); writing it would destroy the input: "
                             "choose another path")


def check_writable_file(path: str | Path, flag: str) -> None:
    """Fail before any work if `path` cannot be written as a file (missing rights, a folder, /proc, ...).
    The probe appends nothing and removes the file again if it did not exist."""
    path = Path(path)
    if path.is_dir():
        raise MediaError(f"{flag} {path} is a folder; pass a file name")
    existed = os.path.lexists(path)  # a dangling link is the user's too
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab"):
            pass
    except OSError as err:
        raise MediaError(f"cannot write {flag} {path} ({err.strerror or err}); choose a writable location") from None
    if not existed:
        path.unlink()


def check_output(path: str | Path) -> None:
    """Fail before any work if FrameWriter could not write to ``path`` (a video of a known type, or a folder
    for PNG frames), creating nothing: a run that fails later leaves no trace of its output. A suffix
    without letters is no file type (runs/size0.25 is a folder); one with letters must be a video type."""
    path = Path(path)
    suffix = path.suffix.lower()
    if any(c.isalpha() for c in suffix) and suffix not in WRITE_VIDEO_SUFFIXES and not path.is_dir():
        raise MediaError(f"cannot write output {path}: unknown video type '{suffix}'; use .mp4, .avi or .gif, "
                         "or a folder name for PNG frames")
    if suffix in WRITE_VIDEO_SUFFIXES and (path.exists() or path.parent.is_dir()):
        check_writable_file(path, "output")  # ffmpeg would only fail at the first frame; removes its probe
        return
    if path.exists() and not path.is_dir():
        raise MediaError(f"cannot write output {path}: it is a file, and an output without a video suffix is a "
                         "folder of PNG frames; name a folder or an .mp4, .avi or .gif file")
    if path.is_dir():
        place = path
    else:  # what FrameWriter would create lies under the nearest existing folder
        place = next(parent for parent in path.parents if parent.exists())
    if not place.is_dir() or not os.access(place, os.W_OK | os.X_OK):
        raise MediaError(f"cannot write output {path} ({place} is not a writable folder); choose a writable "
                         "location")


class FrameWriter:
    """Writes uint8 RGB frames to a video (.mp4, .avi, .gif) or a folder of lossless PNGs.

    The destination is opened up front so an unwritable path fails before any work is done, and a
    context manager closes it on errors and Ctrl-C, so what was written stays playable. A `live` recording
    (one made while the session runs) writes an mp4 in half-second fragments, each playable once on disk, so a
    recording cut short (a full disk) plays up to its last fragment instead of lacking the index written at
    the end. It also encodes cheaply, to take little CPU from inference: x264's ultrafast preset and PNGs at
    zlib level 1 (see realtime/sinks/files.py for the costs).
    """

    def __init__(self, path: str | Path, fps: float, live: bool = False):
        self.path = Path(path)
        self.count = 0
        self.writer = None
        self.png_level = 1 if live else 6  # zlib's levels; 6 is Pillow's default
        self.last: np.ndarray | None = None  # the frame written last, for repeat()
        self.existed = self.path.exists()  # a user's old output stays if we fail before writing to it
        check_output(self.path)
        suffix = self.path.suffix.lower()
        try:
            (self.path.parent if suffix in WRITE_VIDEO_SUFFIXES else self.path).mkdir(parents=True, exist_ok=True)
            if suffix == ".gif":
                self.writer = imageio.get_writer(self.path, mode="I", duration=1000.0 / fps, loop=0)
            elif suffix in WRITE_VIDEO_SUFFIXES:
                recording = ["-movflags", "+frag_keyframe+empty_moov+default_base_moof", "-frag_duration", "500000",
                             "-preset", "ultrafast"]
                self.writer = imageio.get_writer(self.path, fps=fps, macro_block_size=1,
                                                 output_params=recording if live and suffix == ".mp4" else None)
            else:  # a folder of frames: prove a file can be made there before any work
                probe = self.path / ".write_test"
                probe.touch()
                probe.unlink()
        except OSError as err:
            raise MediaError(f"cannot write output {self.path} ({err.strerror or err}); choose a writable "
                             "location") from None

    def write(self, frame: np.ndarray) -> None:
        if self.writer is not None:
            self.writer.append_data(frame)
        else:
            imageio.imwrite(self._frame(self.count), frame, compress_level=self.png_level)
        self.last = frame
        self.count += 1

    def repeat(self, times: int) -> None:
        """The last frame `times` times more (a live recording fills the moments of frames it never got); in a
        folder as copies of its file, which cost no encoding."""
        for _ in range(times):
            if self.writer is None:
                shutil.copyfile(self._frame(self.count - 1), self._frame(self.count))
                self.count += 1
            else:
                self.write(self.last)

    def _frame(self, index: int) -> Path:
        return self.path / f"frame_{index:05d}.png"

    def close(self) -> None:
        if self.writer is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.writer.close()
            self.writer = None

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, kind, error, trace) -> None:
        """Closed on every exit; on a user error (a bad frame half-way) what was written is removed again,
        so no half-made output looks like a result. Ctrl-C keeps it, playable."""
        self.close()
        if kind is not None and issubclass(kind, UserError):
            if self.path.is_file() and (self.count or not self.existed):
                self.path.unlink()
            elif self.path.is_dir():
                for index in range(self.count):
                    self._frame(index).unlink(missing_ok=True)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float [0, 1] image -> uint8 with the official rounding (skimage img_as_ubyte)."""
    return img_as_ubyte(np.clip(image, 0, 1))


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write one uint8 image (PNG/JPEG by suffix), creating the folder; an unwritable path is a MediaError."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        imageio.imwrite(path, image)
    except (OSError, ValueError) as err:
        raise MediaError(f"cannot write image {path} ({err}); choose a writable .png path") from None


def contact_sheet(source: np.ndarray, driving: list[np.ndarray], outputs: list[np.ndarray],
                  columns: int = 6) -> np.ndarray:
    """uint8 picture for a README: the source, then evenly spaced driving frames over the results."""
    picks = np.linspace(0, len(outputs) - 1, min(columns, len(outputs))).round().astype(int)
    blank = np.full_like(to_uint8(source), 255)
    top = np.concatenate([to_uint8(source)] + [to_uint8(driving[i]) for i in picks], axis=1)
    bottom = np.concatenate([blank] + [to_uint8(outputs[i]) for i in picks], axis=1)
    return np.concatenate([top, bottom], axis=0)


def moving_clip(photo: np.ndarray, size: tuple[int, int], frames: int) -> list[np.ndarray]:
    """The photo sliding sideways (up to 24/512 of its width) and zooming in (up to 24/512 per side) in a
    repeating pattern, at the model's size: driving frames whose motion a model should follow exactly."""
    height, width = photo.shape[:2]
    driving = []
    for i in range(frames):
        dy, dx = round(height * 8 * (i % 4) / 512), round(width * 8 * (i % 4) / 512)
        moved = np.roll(photo, round(width * 6 * (i % 5) / 512), axis=1)
        driving.append(to_model_frame(moved[dy:height - dy, dx:width - dx], size))
    return driving


def sample_clip(size: tuple[int, int], frames: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """(avatar, driving frames): the astronaut photo, and it moving (moving_clip). The input of the backend
    benchmark without a photo and of INT8 calibration: a real photo, so PSNR and activation ranges mean
    something."""
    photo = skdata.astronaut()
    return to_model_frame(photo, size), moving_clip(photo, size, frames)
