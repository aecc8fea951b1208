"""The real-time loop: capture, inference and output on separate threads so latency never builds up.

- capture thread: reads the source into a one-frame slot. A camera's frames are read as they come and
  overwrite an unread one (counted as dropped), so inference always starts from the newest frame. A paced
  replay keeps up with its frames as they arrive but hands one over only when inference asks: the newest,
  so a frame never ages in the slot behind a slow inference (the ones passed over are dropped). An input
  that can wait (an unpaced file) is read one frame ahead, and nothing is dropped;
- inference in two halves, so two frames are in flight on two cores: the first (its own thread) takes the
  newest frame only once the second has taken its last result, then tracks the face and computes the
  keypoints and the dense motion (Animator.start); the second (the calling thread, so Ctrl-C lands here)
  runs the generator and the paste-back (Animator.finish), then hands one packet to each sink;
- one thread per sink behind a bounded queue that drops its oldest packet when full (a recording of an
  input that can wait blocks instead, so it keeps every frame); a recording's thread, and the encoder it
  starts, run at a lower priority, so encoding takes only the CPU that inference leaves.
Stopping (end of input, --max-frames, a closed window, /control quit, Ctrl-C) releases the source and
closes every sink after it has written what it was given, so files are always finalised.

End-to-end latency runs, on the source's clock, from a frame's arrival (read from the camera, or due in a
paced replay, so its wait for inference counts) to its packet handed to the outputs.
"""
from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from typing import Any

import cv2
import torch

from export.ort_runner import cpu_threads
from motion.errors import UserError, first_line
from realtime.animator import Animator
from realtime.controls import Controls
from realtime.sinks import Packet, Sink
from realtime.sources import Frame, Source
from realtime.stats import Stats

JOIN_S = 3.0
NO_FACE_S = 3.0  # capture time without a face before the user is told
BROKEN_FRAMES = 10  # reads in a row a live input may fail before the session ends
RECORDING_QUEUE = 32  # a recording absorbs an encoder's hiccups (start-up, a slow disk) before it drops
CLOSE_S = 15.0  # a video file may need a moment to flush
RECORDING_NICE = 10  # added to a recording thread's niceness: the scheduler then weighs inference ~9x above it


def inference_threads(requested: int | None = None) -> int:
    """Set and return the intra-op threads of each inference half: half the usable cores (at least one),
    as the two halves run at once; OpenCV's too (the paste-back and detail transfer run in the second half).
    More threads than free cores fight: on a busy 2-core machine two torch threads per op made the loop
    ~100x slower than one, and OpenCV's default pool (every core) took the detail stage from 2 to 7 ms."""
    threads = requested or max(1, cpu_threads() // 2)
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    return threads


class Slot:
    """One item between two threads, taken by the next get()."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False

    def wait_empty(self) -> None:
        """Until the item was taken (or the slot closed)."""
        with self._cond:
            while self._item is not None and not self._closed:
                self._cond.wait(0.1)

    def put(self, item: Any) -> None:
        """Replace an untaken item (see NewestFrame)."""
        with self._cond:
            if not self._closed:
                self._item = item
                self._cond.notify_all()

    def get(self, timeout: float) -> Any:
        """The item, or None when none came within timeout."""
        with self._cond:
            if self._item is None and not self._closed:
                self._waiting()
                self._cond.wait(timeout)
            item, self._item = self._item, None
            self._cond.notify_all()
            return item

    def _waiting(self) -> None:
        """Called, holding the lock, when get() finds the slot empty."""

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._closed and self._item is None


class NewestFrame(Slot):
    """The slot between capture and inference; `dropped` counts the input frames that never reached
    inference. Input that can wait is read one ahead (wait_empty), never dropped."""

    def __init__(self) -> None:
        super().__init__()
        self._expected = 0  # the index of the next frame when none is skipped
        self.dropped = 0
        self.asked = threading.Event()  # the loop waits on the empty slot (or it closed): a paced replay's cue

    def put(self, frame: Frame) -> None:
        """Replace an unread frame so the loop always gets the newest; it is dropped, as are the frames a
        paced replay passed over (a gap in the indices)."""
        with self._cond:
            if self._closed:
                return  # the loop has stopped: a frame read meanwhile is not a drop
            self.dropped += frame.index - self._expected + (self._item is not None)
            self._expected = frame.index + 1
            self._item = frame
            self.asked.clear()
            self._cond.notify_all()

    def _waiting(self) -> None:
        self.asked.set()

    def close(self) -> None:
        with self._cond:  # (a re-entrant lock) closed and asked together: a paced replay wakes to a closed slot
            super().close()
            self.asked.set()


class FaceWatch:
    """Says once on stderr when no face has been seen for `after` seconds of capture time (from the start, or
    since the face was last seen), and once when it is back: an avatar that holds its pose is otherwise
    indistinguishable from a frozen program. Counts the frames without a face and the spells it announced."""

    def __init__(self, after: float = NO_FACE_S):
        self.after = after
        self.since: float | None = None  # the capture time of the first frame of the current spell without a face
        self.said = False
        self.frames = 0
        self.spells = 0

    def __call__(self, face_found: bool, t: float) -> float:
        """A frame captured at t (seconds), with or without a face: the seconds without one so far."""
        if face_found:
            if self.said:
                print(f"face found again after {t - self.since:.1f} s", file=sys.stderr)
            self.since, self.said = None, False
            return 0.0
        self.frames += 1
        self.since = t if self.since is None else self.since
        if t - self.since >= self.after and not self.said:
            self.said = True
            self.spells += 1
            print(f"no face found for {self.after:g} s: the avatar holds its pose (face the camera, in good light)",
                  file=sys.stderr)
        return t - self.since

    def figures(self) -> dict[str, int]:
        """For the stats: frames without a face, and the times none was found for `after` seconds."""
        return {"frames_without_face": self.frames, "face_missing": self.spells}


def yield_cpu() -> None:
    """Lower the calling thread's priority by RECORDING_NICE. On Linux niceness is per thread and a process it
    starts (ffmpeg) inherits it, so a recording encodes with the CPU inference leaves: a 1920x1080 PNG folder
    beside an mp4 took 15-25% of a paced loop's FPS. Elsewhere it would lower the whole process: left alone."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):  # a sandbox may refuse it; recording at normal priority still works
            os.nice(RECORDING_NICE)


class SinkWorker:
    """One sink on its own thread behind a bounded queue: drop-oldest, or blocking for a lossless sink
    when the input can wait."""

    _STOP = object()

    def __init__(self, sink: Sink, stats: Stats, capacity: int = 2, block: bool = False):
        self.sink, self.stats, self.block = sink, stats, block
        self.queue: queue.Queue = queue.Queue(maxsize=capacity)
        self.dropped = self.written = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"sink-{sink.name}", daemon=True)
        self.thread.start()

    def offer(self, packet: Packet) -> None:
        if self.block:
            self.queue.put(packet)
            return
        while True:
            try:
                self.queue.put_nowait(packet)
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _run(self) -> None:
        """Write until told to stop, then close the sink here: a window lives and dies on one thread."""
        if self.sink.lossless:
            yield_cpu()
        while (packet := self.queue.get()) is not self._STOP:
            if self.error is not None:
                continue  # keep draining so the loop is never blocked by a failed sink
            start = time.perf_counter()
            try:
                self.sink.write(packet)
            except Exception as err:  # reported by the loop, which stops with the sink's message
                self.error = err
                continue
            self.written += 1
            self.stats.add(f"sink_{self.sink.name}", time.perf_counter() - start)
        try:
            self.sink.close()
        except Exception as err:  # a recording that could not be finalised: reported once the loop has stopped
            self.error = self.error or err

    def close(self) -> None:
        """Let the sink write what it was given, then close it (files are finalised)."""
        try:
            self.queue.put(self._STOP, timeout=CLOSE_S)
        except queue.Full:
            print(f"output {self.sink.name} is stuck; leaving it behind", file=sys.stderr)
            return
        self.thread.join(CLOSE_S)
        if self.thread.is_alive():
            print(f"output {self.sink.name} did not close within {CLOSE_S:g} s", file=sys.stderr)


class Engine:
    def __init__(self, source: Source, animator: Animator, sinks: list[Sink], stats: Stats, controls: Controls,
                 max_frames: int | None = None, queue_size: int = 2):
        self.source, self.animator, self.sinks = source, animator, sinks
        self.stats, self.controls, self.max_frames, self.queue_size = stats, controls, max_frames, queue_size
        self.clock = source.clock
        self.slot = NewestFrame()
        self.prepared = Slot()  # (frame, Animator.start's result) for the second half
        self.stop = threading.Event()
        self.capture_error: BaseException | None = None
        self.first_half_error: BaseException | None = None
        self.watch = FaceWatch()
        self.unreadable = 0  # frames a live input failed to deliver

    def _capture(self) -> None:
        failures = 0  # reads in a row that failed
        try:
            while not self.stop.is_set():
                if not self.source.live:
                    self.slot.wait_empty()
                self.source.wait(self.stop, self.slot.asked)
                start = time.perf_counter()
                try:
                    frame = self.source.read(self.stop)
                except (UserError, OSError) as err:
                    if not self.source.live:
                        raise
                    failures += 1
                    self._unreadable(err, failures)
                    continue
                failures = 0
                if frame is None:
                    break
                self.stats.add("capture", time.perf_counter() - start)
                self.slot.put(frame)
        except Exception as err:  # re-raised in the loop's thread, with its own message
            self.capture_error = err
        finally:
            self.slot.close()

    def _unreadable(self, err: Exception, failures: int) -> None:
        """A live input failed to read a frame (corrupt, vanished): the avatar holds its pose and the session
        goes on, said once; BROKEN_FRAMES failures in a row end it with this error."""
        self.unreadable += 1
        if failures >= BROKEN_FRAMES:
            raise UserError(f"input {self.source.name} stays broken: {failures} frames in a row could not be read; "
                            f"last: {first_line(err)}")
        if self.unreadable == 1:
            print(f"warning: skipped a frame of {self.source.name}, the avatar holds its pose (said once; --stats "
                  f"counts them): {first_line(err)}", file=sys.stderr)

    def _first_half(self) -> None:
        """Take a frame only when the second half is free to take its result, so none ages in between."""
        try:
            while not self.stop.is_set() and not self.controls.quit.is_set():
                self.prepared.wait_empty()
                frame = self.slot.get(0.1)
                if frame is None:
                    if self.slot.finished:
                        break
                    continue
                self.prepared.put((frame, self.animator.start(frame.image, frame.t)))
        except Exception as err:  # re-raised in the loop's thread
            self.first_half_error = err
        finally:
            self.prepared.close()

    def run(self) -> Stats:
        """Run until the input ends, max_frames are out, or a quit is requested; always cleans up."""
        workers = [SinkWorker(sink, self.stats, max(self.queue_size, RECORDING_QUEUE) if sink.lossless
                              else self.queue_size, block=sink.lossless and not self.source.live)
                   for sink in self.sinks]
        threads = [threading.Thread(target=self._capture, name="capture", daemon=True),
                   threading.Thread(target=self._first_half, name="first-half", daemon=True)]
        for thread in threads:
            thread.start()
        fps, previous = 0.0, None
        try:
            while not self.controls.quit.is_set():
                item = self.prepared.get(0.1)
                if item is None:
                    if self.prepared.finished:
                        break
                    continue
                frame, prepared = item
                rendered = self.animator.finish(prepared)
                with self.stats.time("output"):
                    now = self.clock.now()
                    if previous is not None:
                        fps = 0.9 * fps + 0.1 / max(now - previous, 1e-6) if fps else 1 / max(now - previous, 1e-6)
                    previous = now
                    packet = Packet(frame.index, rendered, fps, (now - frame.captured_at) * 1000,
                                    self.watch(rendered.face_found, frame.t), frame.t)
                    for worker in workers:
                        worker.offer(packet)
                self.stats.frame_done(self.clock.now() - frame.captured_at)
                failed = next((w.error for w in workers if w.error is not None), None)
                if failed is not None:
                    raise failed
                if self.max_frames is not None and self.stats.frames >= self.max_frames:
                    break
        finally:
            self.stop.set()
            self.slot.close()
            self.prepared.close()
            for thread in threads:
                thread.join(JOIN_S)
            self.source.close()
            for worker in workers:
                worker.close()
            self.stats.dropped = self.slot.dropped
            self.stats.extra["unreadable_frames"] = self.unreadable
            self.stats.extra["sinks"] = {w.sink.name: {"written": w.written, "dropped": w.dropped} for w in workers}
            self.stats.extra["jitter"] = self.animator.jitter()
            self.stats.extra["tracking"] = {**self.animator.tracking(), **self.watch.figures()}
            self.animator.close()
        for error in (self.capture_error, self.first_half_error, *(w.error for w in workers)):
            if error is not None:
                raise error
        return self.stats
