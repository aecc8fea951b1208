"""A tracker run in a child process, for the live loop.

dlib's shape predictor holds Python's global interpreter lock for the 3-5 ms it takes a frame. In `live` it
runs in the first inference half while the second half renders the previous frame, and every numpy and
OpenCV call of the second half (detail transfer, paste-back, the sinks) waits for the lock meanwhile: ten
tiny numpy operations took 11.6 ms instead of 0.03 ms beside a thread running the predictor (2-core AMD
EPYC). In its own process the predictor blocks nobody; the frame travels through shared memory (one copy)
and the answer, a few numbers, through a pipe.
"""
from __future__ import annotations

import multiprocessing
import signal
import weakref
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from core.faces import Box
from motion.errors import UserError, first_line

ENDED = "the face tracker's process ended unexpectedly; run again, or pass --tracker haar"
START_S = 60.0  # the child imports numpy, OpenCV and dlib and loads the 100 MB landmark model


@dataclass(frozen=True)
class TrackerState:
    """What the Tracker interface exposes, as the child's tracker had it after its last call."""
    kind: str  # the child's tracker class, for the stats
    box: Box | None = None
    landmarks: np.ndarray | None = None
    roll: float | None = None
    steady: bool = False
    detections: int = 0
    losses: int = 0


def _state(tracker, box: Box | None = None) -> TrackerState:
    return TrackerState(type(tracker).__name__, box, tracker.landmarks, tracker.roll, tracker.steady,
                        tracker.detections, tracker.losses)


def _serve(connection: Connection, name: str) -> None:
    """The child: a tracker made by name, fed frames from shared memory, answering with its state. Ctrl-C
    is the parent's to handle (it ends the child through the pipe)."""
    from core.tracking.factory import local_tracker

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    memory: SharedMemory | None = None
    try:
        tracker = local_tracker(name)
        connection.send(("ok", _state(tracker)))
    except Exception as err:  # reported to the parent, which raises it as a user error
        connection.send(("error", first_line(err)))
        return
    while True:
        try:
            message = connection.recv()
        except EOFError:
            break
        command = message[0]
        if command == "close":
            break
        try:
            box = None
            if command == "update":
                name, shape, t = message[1:]
                if memory is None or memory.name != name:  # the parent made a larger block
                    if memory is not None:
                        memory.close()
                    memory = SharedMemory(name)
                box = tracker.update(np.ndarray(shape, np.uint8, buffer=memory.buf), t)
            else:
                tracker.reset()
            connection.send(("ok", _state(tracker, box)))
        except Exception as err:
            connection.send(("error", first_line(err)))
    if memory is not None:
        memory.close()


def _stop(process: multiprocessing.Process, connection: Connection, memory: list[SharedMemory]) -> None:
    """Close the child and the shared memory (at close(), garbage collection or exit)."""
    try:
        connection.send(("close",))
    except (OSError, ValueError):
        pass
    process.join(2.0)
    if process.is_alive():
        process.terminate()
        process.join(2.0)
    for block in memory:
        block.close()
        block.unlink()


class ProcessTracker:
    """The tracker `name` (core.tracking.factory.local_tracker) in a child process, behind the same Tracker
    interface."""

    def __init__(self, name: str):
        context = multiprocessing.get_context("spawn")  # no fork of a parent running inference threads
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, name), name=f"tracker-{name}", daemon=True)
        self._process.start()
        child.close()
        self._memory: list[SharedMemory] = []  # the current block last; a list so the finalizer sees changes
        self._stopper = weakref.finalize(self, _stop, self._process, self._connection, self._memory)
        self._pending = False  # a frame submitted whose answer is not collected yet
        if not self._connection.poll(START_S):
            self.close()
            raise UserError(f"the {name} face tracker did not start within {START_S:.0f} s")
        self._state = self._answer()

    def _ask(self, *message) -> TrackerState:
        """Send a message to the child and return its answer."""
        self._send(*message)
        return self._answer()

    def _settle(self) -> None:
        """Take the answer to a submit() nobody collected (the caller failed in between), so the next message's
        answer is its own and the child no longer reads the frame's memory."""
        if self._pending:
            self.collect()

    def _send(self, *message) -> None:
        try:
            self._connection.send(message)
        except (OSError, ValueError):
            raise UserError(ENDED) from None

    def _answer(self) -> TrackerState:
        try:
            status, value = self._connection.recv()
        except (EOFError, OSError):
            raise UserError(ENDED) from None
        if status == "error":
            raise UserError(f"face tracker: {value}")
        return value

    def _share(self, frame: np.ndarray) -> None:
        """Copy the frame into shared memory, made (again) when the frame outgrows it."""
        if not self._memory or self._memory[-1].size < frame.nbytes:
            block = SharedMemory(create=True, size=frame.nbytes)
            for old in self._memory:
                old.close()
                old.unlink()
            self._memory[:] = [block]
        np.ndarray(frame.shape, np.uint8, buffer=self._memory[-1].buf)[...] = frame

    def update(self, frame: np.ndarray, t: float) -> Box | None:
        self.submit(frame, t)
        return self.collect()

    def submit(self, frame: np.ndarray, t: float) -> None:
        """Start tracking a frame and return at once: the caller works beside the child until collect() (a
        frame not collected is, before the next message)."""
        self._settle()
        frame = np.asarray(frame, np.uint8)
        self._share(frame)
        self._send("update", self._memory[-1].name, frame.shape, t)
        self._pending = True

    def collect(self) -> Box | None:
        """The box of the frame submit() gave (waiting for the child), as update() would have returned it."""
        self._pending = False
        self._state = self._answer()
        return self._state.box

    def reset(self) -> None:
        self._settle()
        self._state = self._ask("reset")

    def close(self) -> None:
        """End the child and free the shared memory (also at garbage collection and exit)."""
        self._stopper()

    @property
    def kind(self) -> str:
        """The child's tracker class, as the stats name trackers."""
        return self._state.kind

    @property
    def steady(self) -> bool:
        return self._state.steady

    @property
    def landmarks(self) -> np.ndarray | None:
        return self._state.landmarks

    @property
    def roll(self) -> float | None:
        return self._state.roll

    @property
    def detections(self) -> int:
        return self._state.detections

    @property
    def losses(self) -> int:
        return self._state.losses
