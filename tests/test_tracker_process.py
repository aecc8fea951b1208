"""The dlib tracker in a child process (core/tracking/process.py) must follow the face exactly as the same
tracker in this process does (the process only moves where it runs), report a child's failure as a one-line
user error, take frames of any size, and end its child on close()."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from conftest import ROOT
from core.tracking import make_tracker
from core.tracking.landmarks import LANDMARK_MODEL, DlibLandmarks, LandmarkTracker
from core.tracking.process import ProcessTracker
from motion.errors import UserError

needs_dlib = pytest.mark.skipif(importlib.util.find_spec("dlib") is None or not Path(LANDMARK_MODEL).is_file(),
                                reason=f"needs dlib (pip install dlib-bin) and {LANDMARK_MODEL} (apt-get install libdlib-data)")


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    clip = imageio.mimread(ROOT / "checkpoints" / "webcam.mp4", memtest=False)
    return [np.ascontiguousarray(f[..., :3]) for f in clip[:40]]


@needs_dlib
def test_the_child_follows_the_face_as_the_tracker_does_here(frames):
    child, here = make_tracker("dlib", own_process=True), LandmarkTracker(DlibLandmarks(LANDMARK_MODEL))
    assert isinstance(child, ProcessTracker) and child.landmarks is None and not child.steady
    blank = np.zeros_like(frames[0])
    try:
        for i, frame in enumerate([*frames[:20], blank, *frames[20:]]):
            if i % 2:  # the live loop's way: the frame handed over, its box collected later
                child.submit(frame, i / 30)
                got = child.collect()
            else:
                got = child.update(frame, i / 30)
            want = here.update(frame, i / 30)
            assert (got is None) == (want is None)
            if want is not None:
                assert (got.cx, got.cy, got.side) == (want.cx, want.cy, want.side)
                np.testing.assert_array_equal(child.landmarks, here.landmarks)
                assert child.roll == here.roll
            assert (child.steady, child.detections, child.losses) == (here.steady, here.detections, here.losses)
        assert child.detections == 2 and child.losses == 1  # the blank frame dropped the face; found again
        # a larger frame (new shared memory), then reset: the next frame is searched afresh
        big = np.pad(frames[0], ((0, 100), (0, 60), (0, 0)))
        assert child.update(big, 2.0) is not None
        child.reset()
        assert child.landmarks is None and child.update(frames[1], 2.1) is not None and child.detections == 3
        child.submit(frames[2], 2.2)  # never collected (the caller failed): reset must not take its answer
        child.reset()
        assert child.landmarks is None and child.update(frames[3], 2.3) is not None and child.detections == 4
    finally:
        child.close()
    assert not child._process.is_alive()


def test_a_tracker_the_child_cannot_make_is_a_one_line_user_error():
    with pytest.raises(UserError, match="face tracker: unknown face tracker 'nonsense'"):
        ProcessTracker("nonsense")


def test_a_child_that_died_is_a_one_line_user_error_and_its_memory_is_freed(frames):
    """A Haar tracker (no dlib needed) whose child is killed: the next call says so in one line; close()
    unlinks the shared memory block."""
    from multiprocessing.shared_memory import SharedMemory

    child = ProcessTracker("haar")
    child.update(frames[0], 0.0)
    name = child._memory[-1].name
    child._process.kill()
    child._process.join()
    with pytest.raises(UserError, match="ended unexpectedly"):
        child.update(frames[1], 0.1)
    child.close()
    with pytest.raises(FileNotFoundError):
        SharedMemory(name)
