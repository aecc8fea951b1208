"""The real-time loop end to end on files and synthetic input with the tiny models: every frame
delivered and identical to the offline pipeline, held poses, drops, slow sinks, closed inputs, memory."""
from __future__ import annotations

import itertools
import json
import math
import os
import sys
import threading
import time
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from skimage import data as skdata

import puppet
from conftest import FakeClock, naive_relative_animation
from core.faces import DEFAULT_MARGIN, Box, centre_box, crop, face_crop, resize_uint8
from core.media import frame_files, to_uint8
from core.puppeteer import FommPuppeteer
from core.tracking.haar import HaarTracker
from motion.checkpoint import load_model
from motion.config import load_config
from motion.errors import UserError
from motion.networks import build_networks
from realtime.animator import MAX_WAIT, Animator, AnimatorOptions, Rendered
from realtime.avatars import find_faces, prepare_avatars
from realtime.controls import Controls
from realtime.engine import Engine, NewestFrame
from realtime.sinks.files import RecordingSink
from realtime.smoothing import KeypointSmoother
from realtime.sources import FileSource, Frame, SyntheticSource
from realtime.stats import STAGES, Stats


class ListSink:
    """Keeps every packet; optionally slow."""

    lossless = False
    wants_alpha = False

    def __init__(self, name="list", delay=0.0, lossless=False):
        self.name, self.delay, self.lossless = name, delay, lossless
        self.packets = []
        self.closed = False

    def write(self, packet):
        time.sleep(self.delay)
        self.packets.append(packet)

    def close(self):
        self.closed = True


@pytest.fixture(scope="module")
def puppeteer(tiny_fomm):
    config = load_config(tiny_fomm[0])
    return FommPuppeteer(load_model(config, tiny_fomm[1]), torch.device("cpu")), config


def make_engine(puppeteer, astronaut_png, source, sinks, track=False, smooth=False, max_frames=None):
    pup, config = puppeteer
    stats = Stats()
    avatars = prepare_avatars(find_faces([astronaut_png]), pup, config.size)
    controls = Controls([a.name for a in avatars])
    animator = Animator(pup, avatars, controls, stats, AnimatorOptions(config.size), HaarTracker() if track else None,
                        smoother=KeypointSmoother() if smooth else None)
    return Engine(source, animator, sinks, stats, controls, max_frames), avatars


def test_video_to_frame_folder_matches_the_offline_pipeline(tiny_fomm, astronaut_png, driving_mp4, tmp_path, puppeteer):
    out, stats_path = tmp_path / "frames", tmp_path / "stats.json"
    code = puppet.main(["live", "--avatar", str(astronaut_png), "--config", str(tiny_fomm[0]), "--checkpoint",
                        str(tiny_fomm[1]), "--driving", str(driving_mp4), "--output", str(out), "--crop", "full",
                        "--no-full-frame", "--size", "64x64", "--backend", "torch",
                        "--no-smooth", "--stats", str(stats_path)])
    assert code == 0
    written = [imageio.imread(f) for f in frame_files(out)]
    assert len(written) == 6

    # the same crops through the paper's formulas, uncached, give the same frames
    pup, config = puppeteer
    avatar = prepare_avatars(find_faces([astronaut_png]), pup, config.size)[0]
    driving = [resize_uint8(crop(f, centre_box(f.shape)), config.size).astype(np.float32) / 255
               for f in imageio.mimread(driving_mp4)]
    expected = [to_uint8(f) for f in naive_relative_animation({"kp_detector": pup.kp_detector,
                                                               "generator": pup.generator}, avatar.image, driving)]
    for got, want in zip(written, expected):
        assert np.abs(got.astype(int) - want).max() <= 1

    # the avatar moves with the driver: calibration frame at rest, later frames further away
    change = [np.abs(w.astype(float) - written[0]).mean() for w in written]
    assert change[0] == 0 and all(c > 0 for c in change[1:]) and change[-1] > change[1]

    stats = json.loads(stats_path.read_text())
    assert stats["frames"] == 6 and stats["fps"] > 0 and stats["dropped"] == 0
    assert stats["sinks"]["folder"] == {"written": 6, "dropped": 0}
    for stage in ("end_to_end", *STAGES):
        figures = stats["latency_ms"][stage]
        assert 0 <= figures["p50"] <= figures["p95"] <= figures["p99"], stage
    assert stats["latency_ms"]["end_to_end"]["p50"] >= stats["latency_ms"]["generator"]["p50"]


def test_lost_face_black_and_face_less_frames_hold_the_pose(puppeteer, astronaut_png, tmp_path):
    face = skdata.astronaut()
    frames = [np.roll(face, 4 * i, axis=0) for i in range(3)] + [np.zeros_like(face)] * 2 \
        + [skdata.coffee()[:, :512]] * 7 + [face] * 3
    for i, frame in enumerate(frames):
        imageio.imwrite(tmp_path / f"{i:03d}.png", frame)
    sink = ListSink(lossless=True)
    engine, _ = make_engine(puppeteer, astronaut_png, FileSource(str(tmp_path)), [sink], track=True, smooth=True)
    stats = engine.run()
    assert stats.frames == len(frames) == len(sink.packets)
    faces = [p.rendered.face_found for p in sink.packets]
    assert faces == [True] * 3 + [False] * 9 + [True] * 3
    for packet in sink.packets[3:12]:
        assert np.array_equal(packet.rendered.image, sink.packets[2].rendered.image)  # held pose
    tracking = stats.summary()["tracking"]
    assert tracking["losses"] == 1  # one loss for the whole 9-frame gap
    assert tracking["frames_without_face"] == 9
    # whole-frame searches: the first frame, each face-less one (not the black ones), the return
    assert tracking["detections"] == 1 + 7 + 1


def test_a_slow_sink_does_not_slow_inference(puppeteer, astronaut_png):
    def fps(sinks):
        engine, _ = make_engine(puppeteer, astronaut_png, SyntheticSource((64, 64), frames=40), sinks)
        return engine.run().fps

    fps([])  # warm-up
    fast = fps([])
    slow_sink = ListSink("slow", delay=0.1)
    slow = fps([slow_sink])
    assert slow > 0.5 * fast
    assert slow_sink.closed and 0 < len(slow_sink.packets) < 40


def test_live_input_drops_old_frames_and_counts_them(puppeteer, astronaut_png):
    sink = ListSink()
    engine, _ = make_engine(puppeteer, astronaut_png, SyntheticSource((64, 64), fps=1000, paced=True, frames=300),
                            [sink])
    stats = engine.run()
    assert stats.dropped > 0
    assert stats.frames + stats.dropped <= 300
    indices = [p.index for p in sink.packets]
    assert indices == sorted(indices) and indices[-1] - indices[0] > len(indices)  # skipped, never reordered


def test_an_empty_input_ends_cleanly(puppeteer, astronaut_png):
    sink = ListSink()
    engine, _ = make_engine(puppeteer, astronaut_png, SyntheticSource((16, 16), frames=0), [sink])
    assert engine.run().frames == 0 and sink.closed


class BrokenSource(SyntheticSource):
    def read(self, stop):
        if self.delivered == 3:
            raise UserError("the input broke")
        return super().read(stop)


def test_an_input_error_stops_the_loop_with_its_message(puppeteer, astronaut_png):
    sink = ListSink()
    engine, _ = make_engine(puppeteer, astronaut_png, BrokenSource((32, 32)), [sink])
    with pytest.raises(UserError, match="the input broke"):
        engine.run()
    assert sink.closed and len(sink.packets) == 3


class FailingSink(ListSink):
    def write(self, packet):
        raise UserError("disk full")


def test_a_failing_sink_stops_the_loop_and_the_others_are_closed(puppeteer, astronaut_png):
    good = ListSink()
    engine, _ = make_engine(puppeteer, astronaut_png, SyntheticSource((32, 32), frames=50), [FailingSink(), good])
    with pytest.raises(UserError, match="disk full"):
        engine.run()
    assert good.closed


def test_quit_request_stops_an_endless_input(puppeteer, astronaut_png):
    engine, _ = make_engine(puppeteer, astronaut_png, SyntheticSource((32, 32), fps=30, paced=True), [])
    threading.Timer(0.5, engine.controls.apply, ["quit"]).start()
    assert engine.run().frames > 0


class WatchedSource(SyntheticSource):
    """Counts the frames read while inference runs: a frame read ahead would wait, ageing, in the slot."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.inferring = False
        self.reading = threading.Event()
        self.read_early = 0

    def read(self, stop):
        self.read_early += self.inferring
        self.reading.set()
        return super().read(stop)


class SlowAnimator:
    """Inference that takes `periods` frame periods of fake time; notes which frame it started on, when."""

    def __init__(self, source: WatchedSource, periods: float):
        self.source, self.clock, self.fps, self.periods = source, source.clock, source.fps, periods
        self.started: list[tuple[int, float]] = []

    def start(self, image, t):
        """All the fake time is spent in the first half, so a frame starts only when the last one is out."""
        self.started.append((round(t * self.fps), self.clock.now()))
        self.source.inferring = True
        self.source.reading.clear()
        self.source.reading.wait(0.05)  # gives a capture thread that reads ahead the time to show itself
        self.clock.t += self.periods / self.fps
        self.source.inferring = False
        return Rendered(image, image, None, True, "fake", False)

    def finish(self, rendered):
        return rendered

    def jitter(self):
        return {}

    def tracking(self):
        return {}

    def close(self):
        pass


@pytest.mark.timeout(60)
@pytest.mark.parametrize("periods, outputs", [(2.0, 13), (0.5, 24), (3.5, 8)])
def test_a_paced_replay_gives_inference_the_newest_frame_and_counts_the_rest_dropped(periods, outputs):
    """24 frames at 30 FPS, on a fake clock: inference slower than the input sees about 1 frame in
    `periods`, always the newest one due when it starts (the last one once the input is over); faster,
    it sees every frame, each when it is due. Latency runs from the moment a frame was due."""
    fps, n = 30.0, 24
    source = WatchedSource((16, 16), fps, paced=True, frames=n, clock=FakeClock())
    animator = SlowAnimator(source, periods)
    sink = ListSink(lossless=True)  # a recording's queue holds 32 packets: none lost here
    stats = Stats()
    Engine(source, animator, [sink], stats, Controls(["fake"])).run()
    assert source.read_early == 0
    indices = [index for index, _ in animator.started]
    assert len(indices) == outputs and indices == [p.index for p in sink.packets]
    assert all(a < b for a, b in itertools.pairwise(indices))
    assert stats.frames == outputs and stats.dropped == n - outputs
    for (index, started), packet in zip(animator.started, sink.packets):
        assert index == min(n - 1, int(started * fps + 1e-9)) and started >= index / fps - 1e-9
        waited = started - index / fps
        assert packet.latency_ms == pytest.approx((waited + periods / fps) * 1000)


def frame(index: int) -> Frame:
    return Frame(index, np.zeros((1, 1, 3), np.uint8), 0.0, 0.0)


@pytest.mark.timeout(30)
def test_newest_frame_slot_replaces_and_counts_drops():
    slot = NewestFrame()
    slot.put(frame(0))
    slot.put(frame(1))  # replaces the unread frame 0
    assert slot.dropped == 1 and slot.get(0.01).index == 1 and slot.get(0.01) is None
    slot.put(frame(2))
    taker = threading.Timer(0.05, slot.get, [0.01])
    taker.start()
    slot.wait_empty()  # returns once frame 2 was taken
    taker.join(5)
    slot.put(frame(5))  # 3 and 4 were passed over by a paced replay
    assert slot.dropped == 3 and slot.get(0.01).index == 5
    slot.close()
    slot.put(frame(6))  # after the loop stopped: discarded, not a drop
    assert slot.finished and slot.dropped == 3


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2 ** 20


class MemorySink(ListSink):
    def write(self, packet):
        if packet.index in (300, 1999):
            self.packets.append(rss_mb())


def test_memory_stays_flat_over_2000_frames(tiny_fomm, astronaut_png, tmp_path):
    """The tiny architecture at 32x32 with random weights: only the loop's own memory is under test."""
    small = tmp_path / "tiny-32.yaml"
    small.write_text(Path(tiny_fomm[0]).read_text().replace("[64, 64, 3]", "[32, 32, 3]"))
    config = load_config(small)
    puppeteer = FommPuppeteer({k: v.eval() for k, v in build_networks(config).items()}, torch.device("cpu"))
    sink = MemorySink(lossless=True)
    engine, _ = make_engine((puppeteer, config), astronaut_png, SyntheticSource((24, 24), frames=2000), [sink],
                            smooth=True)
    stats = engine.run()
    assert stats.frames == 2000
    early, late = sink.packets
    assert late - early < 10, f"resident memory grew {late - early:.1f} MB from frame 300 to 2000"


class OverlapAnimator:
    """The second half of frame n waits until the first half of frame n+1 has begun: a loop that runs the
    halves one after the other never gets there and records a timeout."""

    def __init__(self):
        self.begun: dict[int, threading.Event] = {}
        self.timeouts = 0
        self.pairs: list[tuple[int, int]] = []

    def start(self, image, t):
        index = int(image[0, 0, 0])
        self.begun.setdefault(index, threading.Event()).set()
        return index

    def finish(self, index):
        overlapped = self.begun.setdefault(index + 1, threading.Event()).wait(5)
        self.timeouts += not overlapped
        self.pairs.append((index, len(self.pairs)))
        image = np.full((4, 4, 3), index, np.uint8)
        return Rendered(image, image, None, True, "fake", False)

    def jitter(self):
        return {}

    def tracking(self):
        return {}

    def close(self):
        pass


class CountingSource(SyntheticSource):
    """Frame i is filled with the value i."""

    def read(self, stop):
        frame = super().read(stop)
        if frame is not None:
            frame.image[...] = frame.index
        return frame


@pytest.mark.timeout(60)
def test_the_next_frames_first_half_runs_while_this_frame_is_finished():
    """Two frames in flight: keypoints and motion of frame n+1 overlap the generator of frame n; every
    frame's second half gets its own first half's result, in order, and none is lost."""
    n = 12
    animator = OverlapAnimator()
    sink = ListSink(lossless=True)
    stats = Stats()
    Engine(CountingSource((4, 4), frames=n), animator, [sink], stats, Controls(["fake"])).run()
    assert animator.timeouts == 1  # only the last frame has no next one
    assert [index for index, _ in animator.pairs] == list(range(n))
    assert [p.index for p in sink.packets] == list(range(n))
    assert all(int(p.rendered.image[0, 0, 0]) == p.index for p in sink.packets)
    assert stats.frames == n and stats.dropped == 0


def test_an_avatar_switch_between_the_halves_renders_the_avatar_the_motion_was_for(puppeteer, astronaut_png, tmp_path):
    """The second half may run after the user switched avatars: it must finish the frame with the avatar
    its motion was computed for (its keypoints), not mix the new one's features with the old motion."""
    pup, config = puppeteer
    cat = tmp_path / "chelsea.png"
    imageio.imwrite(cat, skdata.chelsea())
    avatars = prepare_avatars(find_faces([astronaut_png, cat]), pup, config.size)
    controls = Controls([a.name for a in avatars])
    animator = Animator(pup, avatars, controls, Stats(), AnimatorOptions(config.size, relative=False))
    driving = resize_uint8(skdata.astronaut(), config.size)
    prepared = animator.start(driving, 0.0)
    controls.apply("next_avatar")
    rendered = animator.finish(prepared)
    assert rendered.avatar == avatars[0].name
    # what the first avatar looks like in the driver's absolute pose, by the whole offline generator
    nets = pup.kp_detector, pup.generator
    with torch.no_grad():
        source = torch.from_numpy(avatars[0].image.astype(np.float32)).permute(2, 0, 1)[None]
        kp_source = nets[0](source)
        kp_driving = nets[0](torch.from_numpy(driving.astype(np.float32) / 255).permute(2, 0, 1)[None])
        expected = nets[1](source, kp_driving, kp_source).prediction[0].permute(1, 2, 0).numpy()
    assert np.abs(rendered.image.astype(np.float32) / 255 - expected).max() < 1.5 / 255


class ScriptedDetector:
    """Haar's place in the HaarTracker, giving hand-made boxes one per frame."""

    def __init__(self, boxes):
        self.boxes = iter(boxes)

    def detect(self, frame, near=None):
        return next(self.boxes)


def test_calibration_waits_for_a_steady_box_also_on_recalibration(puppeteer, astronaut_png):
    """A first box 40% too big (seen with Haar on a textured background) must not become the reference pose,
    nor must one a recalibration lands on: the reference is the crop of a box that has held still."""
    pup, config = puppeteer
    good, bad = Box(224, 114, 111), Box(224, 114, 156)
    script = [bad] + [good] * 10 + [bad] + [good] * 10  # a recalibration asked for at the second bad box
    tracker = HaarTracker(ScriptedDetector(script))
    avatars = prepare_avatars(find_faces([astronaut_png]), pup, config.size)
    controls = Controls([a.name for a in avatars])
    animator = Animator(pup, avatars, controls, Stats(), AnimatorOptions(config.size), tracker)
    photo = skdata.astronaut()
    good_kp, bad_kp = (pup.keypoints(resize_uint8(crop(photo, face_crop(box, DEFAULT_MARGIN, photo.shape)),
                                                  config.size).astype(np.float32) / 255).value for box in (good, bad))
    for i in range(len(script)):
        if i == 11:
            controls.apply("recalibrate")
        animator.start(photo, i / 30)
        if i in (10, 21):
            reference = animator.pipeline.reference.value
            assert (reference - good_kp).abs().max() < 0.2 * (reference - bad_kp).abs().max()


def test_a_box_held_through_misses_is_not_steady():
    """A one-off bad box followed by misses is held for a few frames, but those held frames are no evidence
    that the face is there: only fresh detections that agree make the box steady."""
    photo = skdata.astronaut()
    bad, good = Box(224, 114, 156), Box(224, 114, 111)
    tracker = HaarTracker(ScriptedDetector([bad, None, None, None, None] + [good] * 20))
    steady = []
    for i in range(25):
        box = tracker.update(photo, i / 30)
        steady.append(tracker.steady)
        assert box is not None  # held through the misses
    assert not any(steady[:9]) and steady[-1]  # 5 fresh detections at least, and then it holds


class Beside:
    """A tracker that works beside the animator (submit a frame, collect its box later), giving scripted boxes
    one per frame and recording the calls; its landmarks are the number of the frame it read last."""
    detections = losses = 0
    steady, roll = True, None

    def __init__(self, boxes):
        self.boxes, self.calls, self.pending, self.read, self.landmarks = iter(boxes), [], None, -1, None

    def update(self, frame, t):
        self.submit(frame, t)
        self.calls[-1] = "update"
        return self.collect(record=False)

    def submit(self, frame, t):
        self.calls.append("submit")
        self.pending, self.read = next(self.boxes), self.read + 1

    def collect(self, record=True):
        if record:
            self.calls.append("collect")
        self.landmarks = np.full((68, 2), float(self.read))
        return self.pending

    def reset(self):
        pass

    def close(self):
        pass


class ExpressionSpy:
    """The animator's expression driver, recording the landmarks each frame's expression was taken from."""

    def __init__(self):
        self.seen = []

    def expression(self, landmarks, t, avatar):
        self.seen.append(float(landmarks[0, 0]))

    def recalibrate(self):
        pass


def test_a_tracker_working_beside_the_keypoints_cuts_each_frame_by_the_last_box(puppeteer, astronaut_png):
    """With a tracker that works beside it, a followed face is cut by the last frame's box while this frame's
    is found; this frame's box still decides that the face is gone (no motion made), its landmarks drive the
    expression, and a box that jumped (found afresh) is cut again. A first face, and one found again, is
    waited for; so is every face when the head's position is not followed (--stabilize)."""
    pup, config = puppeteer
    a, b, c, d, far = Box(224, 114, 111), Box(230, 120, 120), Box(215, 110, 100), Box(218, 112, 104), Box(300, 200, 100)
    tracker = Beside([a, b, None, c, d, far])
    avatars = prepare_avatars(find_faces([astronaut_png]), pup, config.size)
    animator = Animator(pup, avatars, Controls([x.name for x in avatars]), Stats(), AnimatorOptions(config.size), tracker)
    animator.expression = spy = ExpressionSpy()
    photo = skdata.astronaut()
    prepared = [animator.start(photo, i / 30) for i in range(6)]
    assert tracker.calls == ["update", "submit", "collect", "submit", "collect", "update", "submit", "collect",
                             "submit", "collect"]
    for i, box in [(0, a), (1, a), (3, c), (4, c), (5, far)]:  # the box each frame was cut by
        np.testing.assert_array_equal(prepared[i].face_crop, crop(photo, face_crop(box, DEFAULT_MARGIN, photo.shape)))
        assert prepared[i].motion is not None
    assert prepared[2].face_crop is None and prepared[2].motion is None and animator.losses == 1
    assert spy.seen == [0, 1, 3, 4, 5]  # each frame's own landmarks, never the last frame's
    still = Beside([a, b, c])
    options = AnimatorOptions(config.size, follow_head=False)
    animator = Animator(pup, avatars, Controls([x.name for x in avatars]), Stats(), options, still)
    for i in range(3):
        animator.start(photo, i / 30)
    assert still.calls == ["update"] * 3


def test_a_face_that_never_holds_still_is_calibrated_after_max_wait(puppeteer, astronaut_png):
    """A box that keeps swaying (40 px either way, a user who never sits still) is never steady: the
    reference pose follows it for MAX_WAIT frames, then stays where it was taken."""
    pup, config = puppeteer
    boxes = [Box(224 + 40 * math.sin(0.7 * i), 200, 100) for i in range(MAX_WAIT + 5)]
    tracker = HaarTracker(ScriptedDetector(boxes))
    avatars = prepare_avatars(find_faces([astronaut_png]), pup, config.size)
    animator = Animator(pup, avatars, Controls([a.name for a in avatars]), Stats(), AnimatorOptions(config.size), tracker)
    references = []
    for i in range(len(boxes)):
        animator.start(skdata.astronaut(), i / 30)
        references.append(animator.pipeline.reference)
    assert animator.calibrating is False and not tracker.steady
    assert references[MAX_WAIT - 2] is not references[MAX_WAIT - 1]  # still following at the last wait
    assert all(r is references[MAX_WAIT - 1] for r in references[MAX_WAIT:])  # then fixed


class ScriptedFaces:
    """An animator that finds a face only in the frames numbered in `faces` (frame i captured at i / fps)."""

    def __init__(self, faces: set[int], fps: float):
        self.faces, self.fps = faces, fps

    def start(self, image, t):
        return Rendered(image, image, None, round(t * self.fps) in self.faces, "fake", False)

    def finish(self, rendered):
        return rendered

    def jitter(self):
        return {}

    def tracking(self):
        return {"losses": 0}

    def close(self):
        pass


def test_no_face_for_3_s_of_capture_time_is_said_once_and_so_is_its_return(capsys):
    """A held avatar looks like a frozen program: 3 s without a face (here from the start) is said on stderr
    once, the face's return once, a shorter gap not at all; packets (the HTTP status, the window) carry the
    time without a face and the stats count the frames. Capture time is the frames' own, at 2 FPS: no sleeping."""
    fps, faces = 2.0, {8, 9, 12, 13}  # none in 0-7 (t 0-3.5 s), 10-11 (1 s)
    sink, stats = ListSink(lossless=True), Stats()
    Engine(SyntheticSource((4, 4), fps, frames=14), ScriptedFaces(faces, fps), [sink], stats, Controls(["fake"])).run()
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "face" in line] == [
        "no face found for 3 s: the avatar holds its pose (face the camera, in good light)",
        "face found again after 4.0 s"]
    assert [p.no_face_s for p in sink.packets] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 0, 0, 0, 0.5, 0, 0]
    assert [p.rendered.face_found for p in sink.packets] == [i in faces for i in range(14)]
    assert stats.summary()["tracking"] == {"losses": 0, "frames_without_face": 10, "face_missing": 1}


def frame_folder(folder: Path, count: int, broken: range) -> Path:
    """`count` tiny frames (frame i filled with i), those numbered in `broken` corrupt (not a picture)."""
    folder.mkdir()
    for i in range(count):
        if i in broken:
            (folder / f"{i:03d}.png").write_bytes(b"not a png")
        else:
            imageio.imwrite(folder / f"{i:03d}.png", np.full((8, 8, 3), i, np.uint8))
    return folder


def test_a_paced_input_skips_a_corrupt_or_vanished_frame_says_so_once_and_goes_on(tmp_path, capsys):
    """A camera's bad frame must not end a call: the frame is skipped (the avatar holds its pose, as for a
    dropped frame), one warning is printed however many are bad, and the stats count them. On a fake clock
    every frame is due when asked for, so each is read."""
    source = FileSource(str(frame_folder(tmp_path / "in", 8, range(3, 4))), paced=True, clock=FakeClock())
    (tmp_path / "in" / "005.png").unlink()  # vanished after the folder was listed
    sink, stats = ListSink(lossless=True), Stats()
    Engine(source, ScriptedFaces(set(range(8)), source.fps), [sink], stats, Controls(["fake"])).run()
    assert [p.index for p in sink.packets] == [0, 1, 2, 4, 6, 7]
    assert [int(p.rendered.image[0, 0, 0]) for p in sink.packets] == [0, 1, 2, 4, 6, 7]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "skipped a frame" in line]
    assert len(warnings) == 1 and "003.png" in warnings[0], warnings
    assert stats.summary()["unreadable_frames"] == 2 and stats.frames == 6


def test_an_input_that_stays_broken_ends_the_session_with_its_message(tmp_path):
    """Ten failed reads in a row are a broken input, not a glitch: the session ends with a one-line error."""
    source = FileSource(str(frame_folder(tmp_path / "in", 20, range(2, 20))), paced=True, clock=FakeClock())
    sink, stats = ListSink(lossless=True), Stats()
    engine = Engine(source, ScriptedFaces(set(range(20)), source.fps), [sink], stats, Controls(["fake"]))
    with pytest.raises(UserError, match=r"stays broken: 10 frames in a row could not be read; last: cannot read "
                                        r"frame .*011\.png"):
        engine.run()
    assert len(sink.packets) == 2 and sink.closed and stats.summary()["unreadable_frames"] == 10


class FakeTimeAnimator(SlowAnimator):
    """Inference that takes `seconds` of the source's fake clock and shows the driving frame as it is."""

    def __init__(self, clock: FakeClock, seconds: float):
        self.clock, self.seconds = clock, seconds

    def start(self, image, t):
        self.clock.t += self.seconds
        return Rendered(image, image, None, True, "fake", False)


@pytest.mark.timeout(60)
def test_a_paced_sessions_recording_lasts_as_long_as_the_session(tmp_path):
    """A 30 fps camera rehearsed for 10 s of fake time, inference 2.5 frame periods a frame: fewer than half the
    frames are delivered, yet the mp4 plays for the session's time (frames = duration x fps, within 2%)."""
    clock = FakeClock()
    source = SyntheticSource((32, 32), 30.0, paced=True, frames=300, clock=clock)
    stats, video = Stats(), tmp_path / "out.mp4"
    Engine(source, FakeTimeAnimator(clock, 2.5 / 30), [RecordingSink(video, source.fps)], stats,
           Controls(["fake"])).run()
    assert stats.frames < 300 / 2 and stats.dropped > 300 / 2
    assert imageio.get_reader(video).count_frames() / 30 == pytest.approx(clock.t, rel=0.02)


class GatedRecording(ListSink):
    """A recording whose first write blocks until `gate` opens (at most 10 s): an encoder that has stalled.
    `opened`: the gate opened while it waited (False: the wait timed out)."""

    def __init__(self, gate: threading.Event):
        super().__init__("gated", lossless=True)
        self.gate, self.opened = gate, False

    def write(self, packet):
        if not self.packets:
            self.opened = self.gate.wait(10)
        super().write(packet)


class GateOpener(ListSink):
    """A live output that opens the gate once it has the input's last frame."""

    def __init__(self, gate: threading.Event, last: int):
        super().__init__("opener")
        self.gate, self.last = gate, last

    def write(self, packet):
        super().write(packet)
        if packet.index == self.last:
            self.gate.set()


@pytest.mark.timeout(60)
def test_a_stalled_recording_never_holds_up_the_other_outputs():
    """A live input: while a recording is stuck in its first write, the loop delivers every frame and the
    other output gets the last one (which opens the gate); the recording's queue drops its oldest meanwhile."""
    gate, clock = threading.Event(), FakeClock()
    source = SyntheticSource((16, 16), 30.0, paced=True, frames=80, clock=clock)
    recording, other, stats = GatedRecording(gate), GateOpener(gate, 79), Stats()
    Engine(source, FakeTimeAnimator(clock, 0.0), [recording, other], stats, Controls(["fake"])).run()
    assert recording.opened and other.packets[-1].index == 79 and stats.frames == 80
    assert stats.extra["sinks"]["gated"]["dropped"] > 0 and recording.closed


class NiceSink(ListSink):
    """Notes the niceness of the thread that writes it."""

    def write(self, packet):
        self.nice = os.getpriority(os.PRIO_PROCESS, 0)  # on Linux: the calling thread's
        super().write(packet)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="niceness is per thread only on Linux")
def test_recordings_encode_at_a_lower_priority_than_inference():
    """A recording's thread (and the ffmpeg it starts) yields the CPU to inference; live outputs do not."""
    recording, window = NiceSink("recording", lossless=True), NiceSink("window")
    engine = Engine(SyntheticSource((16, 16), frames=3), ScriptedFaces({0, 1, 2}, 30.0), [recording, window], Stats(),
                    Controls(["fake"]))
    engine.run()
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert recording.nice == min(19, base + 10) and window.nice == base
