"""What `puppet.py live` does: load the models, open the input and outputs, prepare the avatars, run the
engine, report the stats. Everything opened is closed again, whatever stops the session."""
from __future__ import annotations

import sys
from contextlib import ExitStack

from core.defaults import resolve_model
from core.pipeline import check_swap_index, pick_device
from core.puppeteer import SwapPuppeteer
from core.config import load_config_for
from realtime.options import LiveOptions
from export.backends import open_backend
from motion.checkpoint import load_model
from motion.errors import Interrupted, Terminated, UserError
from realtime.animator import Animator
from realtime.avatars import find_faces, prepare_avatars
from realtime.controls import Controls
from realtime.engine import Engine, inference_threads
from core.media import check_not_input, check_writable_file
from realtime.landmark_tracker import make_tracker, resolve_tracker
from realtime.sinks import Sink
from realtime.smoothing import KeypointSmoother
from realtime.sources import open_source
from realtime.stats import Stats


def open_sink(spec: str, size: tuple[int, int], fps: float, controls: Controls) -> Sink:
    """vcam, window, http:PORT, a video file (.mp4, .avi, .gif) or a folder for PNG frames."""
    kind, _, arg = spec.partition(":")
    if spec == "vcam":
        from realtime.sinks.vcam import VirtualCameraSink
        return VirtualCameraSink(size, fps)
    if spec == "window":
        from realtime.sinks.window import WindowSink
        return WindowSink(controls)
    if kind == "http":
        from realtime.sinks.http import HttpSink
        if not arg.isdigit() or int(arg) > 65535:
            raise UserError(f"--output {spec}: give a port number, e.g. http:8080 (0 picks a free one)")
        return HttpSink(int(arg), controls)
    from realtime.sinks.files import RecordingSink
    return RecordingSink(spec, fps)


def default_sink(size: tuple[int, int], fps: float, controls: Controls) -> Sink:
    """The virtual camera when one exists, else a window."""
    from realtime.sinks.vcam import VirtualCameraError
    from realtime.sinks.window import WindowError
    try:
        return open_sink("vcam", size, fps, controls)
    except VirtualCameraError as err:
        print(f"{err}\nshowing a window instead", file=sys.stderr)
    try:
        return open_sink("window", size, fps, controls)
    except WindowError:
        raise WindowError("no output available: no virtual camera (v4l2loopback / OBS Virtual Camera) and no "
                          "display for a window; pass --output http:8080, FILE.mp4 or a frame folder") from None


def _coseg_model(options: LiveOptions, needed: bool) -> tuple[str, str] | None:
    """The co-part model for --parts and the alpha matte: the user's, else the shipped one if present."""
    if options.seg_config is not None or options.seg_checkpoint is not None:
        if options.seg_config is None or options.seg_checkpoint is None:
            raise UserError("pass --seg-config and --seg-checkpoint together (or neither, for the shipped model)")
        return options.seg_config, options.seg_checkpoint
    try:
        return resolve_model("coseg", None, None)
    except UserError:
        if needed:
            raise UserError("--parts needs a co-part segmentation model and the shipped one is missing; pass "
                            "--seg-config and --seg-checkpoint") from None
        return None


def run_live(options: LiveOptions) -> Stats:
    config_path, checkpoint = resolve_model("fomm-live", options.config, options.checkpoint)
    config = load_config_for("fomm", config_path)
    device = pick_device(options.cpu)
    stats = Stats()
    for spec in options.output:
        if spec not in ("vcam", "window") and not spec.startswith("http:"):
            check_not_input(spec, [options.driving, *options.avatar])
    if options.stats:
        check_not_input(options.stats, [options.driving, *options.avatar], "--stats")
        check_writable_file(options.stats, "--stats")
    photos = find_faces(options.avatar, options.margin)
    with ExitStack() as cleanup:
        source = open_source(options.driving, paced=options.pace, fps=options.fps)
        cleanup.callback(source.close)
        names = [photo.path.stem for photo in photos]
        frame_size = options.size[::-1]  # (height, width) of every frame the outputs get
        controls = Controls(names)  # swap availability is filled in below
        sinks: list[Sink] = []
        for spec in options.output:
            sinks.append(open_sink(spec, frame_size, source.fps, controls))
            cleanup.callback(sinks[-1].close)
        if not sinks:
            sinks.append(default_sink(frame_size, source.fps, controls))
            cleanup.callback(sinks[-1].close)
        want_alpha = any(sink.wants_alpha for sink in sinks)
        swapper = swap_size = None
        coseg = _coseg_model(options, needed=bool(options.parts)) if options.parts or want_alpha else None
        if coseg is not None:
            seg_config = load_config_for("coseg", coseg[0])
            if options.parts:
                check_swap_index(options.parts, seg_config.model.num_segments)
            swapper, swap_size = SwapPuppeteer(load_model(seg_config, coseg[1], device), device), seg_config.size
        elif want_alpha:
            print("no co-part segmentation model: PNG frames are opaque (pass --seg-config/--seg-checkpoint "
                  "for a transparent background)", file=sys.stderr)
        puppeteer = open_backend(options.backend, config, checkpoint, device, options.export_dir,
                                 threads=inference_threads(options.threads), avatar=photos[0].face(config.size))
        avatars = prepare_avatars(photos, puppeteer, config.size, swapper, swap_size,
                                  full_frame=options.full_frame, out_size=options.size, detail=options.detail)
        controls.swap_available = swapper is not None and bool(options.parts)
        controls.swap = controls.swap_available
        tracker = None
        if options.crop == "face":
            name = resolve_tracker(options.tracker)
            print(f"face tracker: {name}", file=sys.stderr)
            tracker = make_tracker(name)
        animator = Animator(puppeteer, avatars, controls, stats, config.size,
                            tracker, options.margin, options.relative,
                            options.adapt_scale, KeypointSmoother() if options.smooth else None,
                            swapper, swap_size, options.parts, want_alpha, out_size=options.size,
                            follow_head=not options.stabilize)
        cleanup.pop_all()  # from here the engine owns the source and sinks and closes them
        engine = Engine(source, animator, sinks, stats, controls, options.max_frames)
        interrupted, failure = False, None
        try:
            engine.run()
        except KeyboardInterrupt as stop:
            interrupted = True
            print(f"stopped ({'SIGTERM' if isinstance(stop, Terminated) else 'Ctrl-C'}); camera and outputs released, "
                  "files finalised", file=sys.stderr)
        except UserError as err:  # a broken input or output: what the session did is still reported
            failure = err
    print(stats.table("live"), file=sys.stderr)
    if options.stats:
        stats.write_json(options.stats)
    if failure is not None:
        raise failure
    if interrupted:
        raise Interrupted  # exit code 130, as for any command stopped by Ctrl-C (or SIGTERM)
    return stats
