"""What `puppet.py live` does: open the input and outputs, open the session (the models and the prepared
avatars: app/session.py), run the engine, report the stats. Everything opened is closed again, whatever stops the session."""
from __future__ import annotations

import sys
from contextlib import ExitStack

from app.session import find_model, open_session, open_swapper
from core.media import check_not_input, check_writable_file
from motion.errors import Interrupted, Terminated, UserError
from realtime.avatars import find_faces
from realtime.controls import Controls
from realtime.engine import Engine
from realtime.options import LiveOptions
from realtime.sinks import Sink
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


def check_outputs(options: LiveOptions) -> None:
    """No output or --stats file may overwrite an input; --stats must be writable (checked before anything opens)."""
    for spec in options.output:
        if spec not in ("vcam", "window") and not spec.startswith("http:"):
            check_not_input(spec, [options.driving, *options.avatar])
    if options.stats:
        check_not_input(options.stats, [options.driving, *options.avatar], "--stats")
        check_writable_file(options.stats, "--stats")


def open_sinks(options: LiveOptions, fps: float, controls: Controls, cleanup: ExitStack) -> list[Sink]:
    """Every --output (none: the default one), each closed by `cleanup` unless the engine takes them over."""
    frame_size = options.size[::-1]  # (height, width) of every frame the outputs get
    sinks: list[Sink] = []
    for spec in options.output:
        sinks.append(open_sink(spec, frame_size, fps, controls))
        cleanup.callback(sinks[-1].close)
    if not sinks:
        sinks.append(default_sink(frame_size, fps, controls))
        cleanup.callback(sinks[-1].close)
    return sinks


def run_engine(engine: Engine) -> tuple[bool, UserError | None]:
    """Run the loop until it ends: (stopped by Ctrl-C or SIGTERM, the broken input's or output's error)."""
    try:
        engine.run()
    except KeyboardInterrupt as stop:
        print(f"stopped ({'SIGTERM' if isinstance(stop, Terminated) else 'Ctrl-C'}); camera and outputs released, "
              "files finalised", file=sys.stderr)
        return True, None
    except UserError as err:  # a broken input or output: what the session did is still reported
        return False, err
    return False, None


def run_live(options: LiveOptions) -> Stats:
    model = find_model("fomm-live", options)
    stats = Stats()
    check_outputs(options)
    photos = find_faces(options.avatar, options.margin)
    with ExitStack() as cleanup:
        source = open_source(options.driving, paced=options.pace, fps=options.fps)
        cleanup.callback(source.close)
        controls = Controls([photo.path.stem for photo in photos])  # swap availability is filled in below
        sinks = open_sinks(options, source.fps, controls, cleanup)
        want_alpha = any(sink.wants_alpha for sink in sinks)
        swapper = open_swapper(options, want_alpha, model.device)
        session = open_session(options, model, photos, swapper)
        controls.swap_available = swapper is not None and bool(options.parts)
        controls.swap = controls.swap_available
        animator = session.animator(controls, stats, want_alpha)
        cleanup.pop_all()  # from here the engine owns the source and sinks and closes them
        interrupted, failure = run_engine(Engine(source, animator, sinks, stats, controls, options.max_frames))
    print(stats.table("live"), file=sys.stderr)
    if options.stats:
        stats.write_json(options.stats)
    if failure is not None:
        raise failure
    if interrupted:
        raise Interrupted  # exit code 130, as for any command stopped by Ctrl-C (or SIGTERM)
    return stats
