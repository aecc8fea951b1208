"""`puppet.py bench`: the real-time loop's latency per stage and FPS on the synthetic moving face, and in
the same process a naive loop (no threads, no caching: the avatar's keypoints and encoding recomputed and
the face searched in the whole frame every time), so the speed-up is a ratio measured in one run."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from animation.defaults import DEFAULT_AVATAR, resolve_model
from animation.media import check_writable_file, to_model_frame, to_uint8
from animation.pipeline import pick_device
from animation.puppeteer import Puppeteer
from animation.pipeline import FommPipeline
from animation.run import load_config_for
from realtime.options import BenchOptions
from export.backends import open_backend
from export.bench import run_compare
from motion.errors import UserError
from realtime.animator import Animator
from realtime.avatars import prepare_avatars
from realtime.controls import Controls
from realtime.engine import Engine, inference_threads
from animation.faces import DEFAULT_MARGIN, HaarFaceDetector, centre_box, crop, face_crop
from realtime.face import FaceTracker
from realtime.smoothing import KeypointSmoother
from realtime.sources import SyntheticSource
from realtime.stats import Stats

WARM_UP = 3


def naive_loop(puppeteer: Puppeteer, avatar_image: np.ndarray, size: tuple[int, int], frames: int,
               margin: float = DEFAULT_MARGIN) -> Stats:
    """What a first real-time script does: everything in one thread, nothing reused between frames."""
    stats = Stats()
    source = SyntheticSource()
    detector = HaarFaceDetector()
    pipeline = FommPipeline(puppeteer, timer=stats.time)
    for index in range(frames):
        start = time.perf_counter()
        with stats.time("capture"):
            frame = source.frame(index)
        with stats.time("face_crop"):
            box = detector.detect(frame)
            face = to_model_frame(crop(frame, face_crop(box, margin, frame.shape) if box else centre_box(frame.shape)), size)
        with stats.time("prepare"):
            pipeline.set_avatar(avatar_image)
        image = pipeline(face)
        with stats.time("output"):
            to_uint8(image)
        stats.frame_done(time.perf_counter() - start)
    return stats


def pipelined_loop(puppeteer: Puppeteer, avatar_path: str, size: tuple[int, int], frames: int) -> Stats:
    """The real-time engine on the same input, read as fast as it is consumed (nothing dropped)."""
    stats = Stats()
    avatars = prepare_avatars([avatar_path], puppeteer, size)
    controls = Controls([a.name for a in avatars])
    animator = Animator(puppeteer, avatars, controls, stats, size, FaceTracker(), smoother=KeypointSmoother())
    return Engine(SyntheticSource(frames=frames), animator, [], stats, controls).run()


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


def run_bench(options: BenchOptions) -> dict:
    """Both loops on the synthetic face; the table on stdout, and as JSON in --stats."""
    if options.compare:
        runs = run_compare(options.config, options.checkpoint, options.compare.split(","), options.frames,
                           pick_device(options.cpu), options.export_dir, options.threads)
        return {run.name: run.median_ms("frame") for run in runs}
    frames, backend, stats_path = options.frames, options.backend, options.stats
    if frames < 2:
        raise UserError("--frames must be at least 2")
    if stats_path:
        check_writable_file(stats_path, "--stats")
    config_path, checkpoint = resolve_model("fomm", options.config, options.checkpoint)
    loaded = load_config_for("fomm", config_path)
    device = pick_device(options.cpu)
    threads = inference_threads(options.threads)
    puppeteer = open_backend(backend, loaded, checkpoint, device, options.export_dir, threads=threads)
    avatar = options.avatar or default_avatar()
    naive_loop(puppeteer, to_model_frame(SyntheticSource().photo, loaded.size), loaded.size, WARM_UP)
    pipelined = pipelined_loop(puppeteer, avatar, loaded.size, frames)
    naive = naive_loop(puppeteer, prepare_avatars([avatar], puppeteer, loaded.size)[0].image, loaded.size, frames)
    speedup = pipelined.fps / naive.fps if naive.fps else 0.0
    print(f"{backend} backend, {loaded.path} ({loaded.size[0]}x{loaded.size[1]}), {device}, {threads} inference "
          f"thread(s), {frames} frames", file=sys.stderr)
    print(pipelined.table("real-time loop (threaded, avatar cached, face tracked)"))
    print()
    print(naive.table("naive loop (one thread, avatar recomputed, face searched every frame)"))
    print()
    print(f"end-to-end: {pipelined.fps:.1f} FPS vs {naive.fps:.1f} FPS naive: {speedup:.2f}x faster")
    result = {"backend": backend, "config": str(loaded.path), "device": str(device), "threads": threads,
              "frames": frames,
              "pipelined": pipelined.summary(), "naive": naive.summary(), "speedup": round(speedup, 3)}
    if stats_path:
        import json
        Path(stats_path).parent.mkdir(parents=True, exist_ok=True)
        Path(stats_path).write_text(json.dumps(result, indent=2) + "\n")
    return result
