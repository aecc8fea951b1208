"""`puppet.py bench`: the real-time loop's latency per stage and FPS, and in the same process a naive loop
(no threads, no caching: the avatar's keypoints and encoding recomputed and the face searched in the whole
frame every time) on the same input with the same crop and resize, so the speed-up is a ratio measured in
one run. The real-time loop runs twice: reading the input as fast as it is taken (every frame processed:
the throughput, compared with the naive loop), and paced at the input's frame rate, as a camera delivers
frames (frames dropped while inference is busy: the FPS and latency a user in a call gets)."""
from __future__ import annotations

import dataclasses
import itertools
import json
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import cv2
import numpy as np
import torch

from app.session import Model, Session, open_session
from core.config import load_config_for
from core.defaults import DEFAULT_AVATAR, resolve_model
from core.faces import DEFAULT_MARGIN, centre_box, crop, face_crop, resize_uint8
from core.media import check_not_input, check_writable_file, moving_clip, read_frames
from core.options import flag
from core.pipeline import FommPipeline, frame_band, pick_device
from core.puppeteer import Puppeteer
from core.tracking.haar import HaarFaceDetector
from export.bench import run_compare, summary
from export.cpu import detect
from motion.errors import UserError
from realtime.animator import as_float
from realtime.avatars import Avatar, find_faces
from realtime.controls import Controls
from realtime.engine import Engine
from realtime.options import BenchOptions, ShowOptions
from realtime.sinks.vcam import VirtualCameraSink
from realtime.sources import SyntheticSource, open_source, synthetic_size
from realtime.stats import Stats

WARM_UP = 3
# live-loop options --compare has no use for
COMPARE_IGNORES = ("backend", "full_frame", "detail", "stabilize", "size", "tracker", "fps")


class I420Camera:
    """The virtual-camera device's stand-in in the benchmark: it converts each frame to I420, the work
    pyvirtualcam does before a frame reaches v4l2loopback, so the output's cost is in the figures."""

    device = "benchmark stand-in (RGB -> I420)"

    def __init__(self, width: int, height: int, fps: float):
        """The virtual camera's device factory signature; the conversion needs nothing of it."""

    def send(self, frame: np.ndarray) -> None:
        cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420)

    def close(self) -> None:
        """Nothing to release."""


def naive_loop(puppeteer: Puppeteer, avatar: Avatar, size: tuple[int, int], driving: str, frames: int,
               margin: float = DEFAULT_MARGIN, fps: float | None = None) -> Stats:
    """What a first real-time script does: everything in one thread, nothing reused between frames (the
    avatar's output plan aside: its paste-back, letterbox and virtual camera, the same as the real-time
    loop's)."""
    stats = Stats()
    detector = HaarFaceDetector()
    pipeline = FommPipeline(puppeteer, timer=stats.time)
    stop, asked = threading.Event(), threading.Event()
    asked.set()  # it asks for every frame
    camera = I420Camera(0, 0, 0.0)
    with closing(open_source(driving, frames=frames, fps=fps)) as source:
        while True:
            start = time.perf_counter()
            source.wait(stop, asked)
            frame = source.read(stop)
            if frame is None:
                return stats
            stats.add("capture", time.perf_counter() - start)
            with stats.time("face_crop"):
                image = frame.image
                box = detector.detect(image)
                face = as_float(resize_uint8(crop(image, face_crop(box, margin, image.shape) if box
                                                  else centre_box(image.shape)), size))
            with stats.time("prepare"):
                pipeline.set_avatar(avatar.image)
            rendered, motion = pipeline.step(face)
            with stats.time("detail"):
                band = frame_band(avatar.portrait, rendered, motion)
            with stats.time("paste_back"):
                shown = avatar.portrait(rendered, True, band)
            with stats.time("output"):
                camera.send(shown)
            stats.frame_done(time.perf_counter() - start)


def pipelined_loop(session: Session, frames: int, paced: bool) -> Stats:
    """The real-time engine on the same input, read as fast as it is taken or paced like a camera, showing
    and tracking as `live` does with the same options, into a virtual camera (a stand-in device)."""
    options = session.options
    stats = Stats()
    controls = Controls([a.name for a in session.avatars])
    animator = session.animator(controls, stats)
    source = open_source(options.driving, paced=paced, frames=frames, fps=options.fps)
    stats.extra["input_fps"] = source.fps
    camera = VirtualCameraSink(options.size[::-1], source.fps, I420Camera)
    return Engine(source, animator, [camera], stats, controls).run()


def default_avatar() -> str:
    """The bundled avatar, or the synthetic input's own photo when it is not there."""
    if DEFAULT_AVATAR.is_file():
        return str(DEFAULT_AVATAR)
    path = Path(__file__).resolve().parents[1] / "runs" / "bench-avatar.png"
    if not path.is_file():
        import imageio.v2 as imageio
        path.parent.mkdir(parents=True, exist_ok=True)
        imageio.imwrite(path, SyntheticSource().photo)
    return str(path)


def compare_clip(options: BenchOptions, avatar_path: str,
                 size: tuple[int, int]) -> tuple[tuple[np.ndarray, list[np.ndarray]], str]:
    """--compare's (avatar, driving frames) and their name: the avatar's face (as live crops it) driven by
    --driving's first frames resized as `animate` reads them, or by the face moving (moving_clip) when the
    driving is synthetic."""
    photo = find_faces([avatar_path])[0]  # a folder: its first picture
    avatar = photo.face(size)
    count = options.frames + 1
    if options.driving.partition(":")[0] == "synthetic":
        synthetic_size(options.driving)  # checked like live's; the clip is the avatar's face itself
        return (avatar, moving_clip(avatar, size, count)), f"{photo.path.name} moving"
    with closing(read_frames(options.driving, size)[1]) as frames:
        driving = list(itertools.islice(frames, count))
    if len(driving) < 2:
        raise UserError(f"--driving {options.driving} has {len(driving)} frame(s); --compare needs at least 2")
    return (avatar, driving), f"{photo.path.name} driven by {Path(options.driving).name}"


def check_compare_options(options: BenchOptions) -> None:
    """--compare times the listed backends' model stages alone: refuse the live-loop options it would ignore."""
    ignored = [flag(field.name) for field in dataclasses.fields(ShowOptions)
               if field.name in COMPARE_IGNORES and getattr(options, field.name) != field.default]
    if ignored:
        raise UserError(f"{', '.join(ignored)} {'does' if len(ignored) == 1 else 'do'} not apply to --compare, "
                        "which times the model stages of the backends it lists; drop "
                        f"{'it' if len(ignored) == 1 else 'them'} or run bench without --compare")


def write_stats(path: str | None, result: dict) -> dict:
    """The figures as JSON in --stats, when given; returns them."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=2) + "\n")
    return result


def run_bench(options: BenchOptions) -> dict:
    """The three loops on --driving (with --compare instead: the backends side by side); the tables on
    stdout, and as JSON in --stats."""
    config_path, checkpoint = resolve_model("fomm-live", options.config, options.checkpoint)
    if options.driving.partition(":")[0] == "webcam":
        raise UserError("bench needs an input it can replay: pass --driving VIDEO|FRAME_DIR|synthetic[:HxW]")
    avatar_path = options.avatar or default_avatar()
    if options.stats:
        check_not_input(options.stats, [avatar_path, options.driving], "--stats")
        check_writable_file(options.stats, "--stats")
    if options.compare is not None:
        return bench_compare(options, config_path, checkpoint, avatar_path)
    session = open_session(options, Model.load("fomm", config_path, checkpoint, options.cpu), find_faces([avatar_path]))
    avatar, size, driving = session.avatars[0], session.size, options.driving
    naive_loop(session.puppeteer, avatar, size, driving, WARM_UP)
    pipelined = pipelined_loop(session, options.frames, False)
    paced = pipelined_loop(session, options.frames, True)
    naive = naive_loop(session.puppeteer, avatar, size, driving, options.frames, fps=options.fps)
    return write_stats(options.stats, report(session, pipelined, paced, naive))


def bench_compare(options: BenchOptions, config_path: str, checkpoint: str, avatar_path: str) -> dict:
    """--compare: the listed backends' model stages side by side on the avatar driven by --driving."""
    check_compare_options(options)
    if options.threads:
        torch.set_num_threads(options.threads)  # the torch backends' threads; ONNX Runtime gets them too
    clip, clip_name = compare_clip(options, avatar_path, load_config_for("fomm", config_path).size)
    runs = run_compare(config_path, checkpoint, options.compare.split(","), options.frames,
                       pick_device(options.cpu), options.export_dir, options.threads, (clip, clip_name))
    result = {"config": str(config_path), "cpu": detect().label(), "threads": torch.get_num_threads(),
              "input": clip_name, "frames": len(runs[0].times["frame"]), "backends": summary(runs)}
    return write_stats(options.stats, result)


def report(session: Session, pipelined: Stats, paced: Stats, naive: Stats) -> dict:
    """The loops' tables on stdout (the setup on stderr); returns the figures."""
    options, loaded, threads = session.options, session.model.config, session.threads
    backend, device, driving = options.backend, session.model.device, options.driving
    speedup = pipelined.fps / naive.fps if naive.fps else 0.0
    input_fps = paced.extra["input_fps"]
    latency = paced.summary()["latency_ms"]["end_to_end"]
    shown = f"{'full portrait' if options.full_frame else 'face crop'} in {options.size[0]}x{options.size[1]}"
    print(f"{backend} backend, {loaded.path} ({loaded.size[0]}x{loaded.size[1]}), {device}, {threads} inference "
          f"thread(s), {driving}: {pipelined.frames} frames, {shown}, {options.tracker} tracker", file=sys.stderr)
    print(pipelined.table("real-time loop, input read as fast as it is taken (threaded, avatar cached, face "
                          "tracked)"))
    print()
    print(paced.table(f"real-time loop, input paced at its {input_fps:g} FPS like a camera (frames dropped "
                      "while inference is busy)"))
    print()
    print(naive.table("naive loop (one thread, avatar recomputed, face searched every frame)"))
    print()
    print(f"end-to-end: {pipelined.fps:.1f} FPS vs {naive.fps:.1f} FPS naive: {speedup:.2f}x faster")
    print(f"paced at {input_fps:g} FPS: {paced.fps:.1f} FPS out, {paced.dropped} of {paced.frames + paced.dropped} "
          f"frames dropped, latency from the frame's arrival p50 {latency['p50']:.0f} / p95 {latency['p95']:.0f} ms")
    result = {"backend": backend, "config": str(loaded.path), "device": str(device), "threads": threads,
              "cpu": detect().label(), "full_frame": options.full_frame, "size": list(options.size),
              "tracker": pipelined.extra["tracking"]["tracker"], "driving": driving, "frames": options.frames,
              "pipelined": pipelined.summary(), "paced": paced.summary(), "naive": naive.summary(),
              "speedup": round(speedup, 3)}
    return result
