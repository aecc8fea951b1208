"""Face detection on a real photo, tracking through misses and blanks, crop geometry."""
from __future__ import annotations

import numpy as np
import pytest
from skimage import data as skdata

from core.faces import Box, centre_box, crop, resize_uint8
from core.tracking.haar import HaarFaceDetector, HaarTracker
from realtime.sources import SyntheticSource


@pytest.fixture(scope="module")
def detector() -> HaarFaceDetector:
    return HaarFaceDetector()


def test_finds_the_astronauts_face(detector):
    box = detector.detect(skdata.astronaut())
    assert box is not None
    assert abs(box.cx - 224) < 20 and abs(box.cy - 114) < 20 and 70 < box.side < 140


def test_no_face_in_a_face_less_photo_or_black_frame(detector):
    assert detector.detect(skdata.coffee()) is None
    assert detector.detect(np.zeros((240, 320, 3), np.uint8)) is None
    assert detector.detect(np.zeros((10, 10, 3), np.uint8)) is None


def test_search_near_the_last_box_finds_the_same_face(detector):
    photo = skdata.astronaut()
    full = detector.detect(photo)
    near = detector.detect(photo, full)
    assert abs(near.cx - full.cx) < 10 and abs(near.cy - full.cy) < 10


def test_tracker_follows_the_synthetic_face(detector):
    source = SyntheticSource()
    tracker = HaarTracker(detector)
    boxes = [tracker.update(source.frame(i), i / 30) for i in range(0, 30, 3)]
    assert all(b is not None for b in boxes)
    xs = [b.cx for b in boxes]
    assert max(xs) - min(xs) > 5  # the face slides, the box follows


def test_tracker_holds_through_misses_then_loses_and_redetects(detector):
    photo = skdata.astronaut()
    no_face = skdata.coffee()[:, :512]
    tracker = HaarTracker(detector, patience=3)
    first = tracker.update(photo, 0.0)
    assert first is not None
    held = [tracker.update(no_face, i / 30) for i in range(1, 4)]
    assert all(h == first for h in held)
    assert tracker.update(no_face, 4 / 30) is None
    assert tracker.update(photo, 5 / 30) is not None
    assert tracker.detections == 2  # whole-frame searches: the first frame and the return; misses search near the box


def test_tracker_drops_the_box_on_a_blank_frame_at_once(detector):
    tracker = HaarTracker(detector, patience=10)
    assert tracker.update(skdata.astronaut(), 0.0) is not None
    assert tracker.update(np.zeros((512, 512, 3), np.uint8), 1 / 30) is None


def test_tracker_smooths_a_jittering_box(detector):
    photo = skdata.astronaut()
    tracker = HaarTracker(detector)
    rng = np.random.default_rng(0)
    raw, smoothed = [], []
    for i in range(20):
        shift = int(rng.integers(-4, 5))
        frame = np.roll(photo, shift, axis=1)
        smoothed.append(tracker.update(frame, i / 30).cx)
        raw.append(detector.detect(frame).cx)
    assert np.std(np.diff(smoothed)) < np.std(np.diff(raw))


def test_crop_is_square_with_margin_and_pads_at_edges():
    frame = np.arange(100 * 120 * 3, dtype=np.uint32).reshape(100, 120, 3).astype(np.uint8)
    inside = crop(frame, Box(60, 50, 40))
    assert inside.shape == (40, 40, 3)
    assert np.array_equal(inside, frame[30:70, 40:80])
    assert crop(frame, Box(60, 50, 20).expanded(0.5)).shape == (40, 40, 3)
    edge = crop(frame, Box(5, 5, 30))
    assert edge.shape == (30, 30, 3)
    assert np.array_equal(edge[0, 0], frame[0, 0])  # replicated border


def test_centre_box_and_resize():
    box = centre_box((100, 160, 3))
    assert (box.cx, box.cy, box.side) == (80, 50, 100)
    assert resize_uint8(np.zeros((100, 100, 3), np.uint8), (64, 48)).shape == (64, 48, 3)


def test_opencv_without_the_face_detector_is_named(monkeypatch, tmp_path, capsys):
    """Minimal OpenCV builds (seen on a GPU image) lack CascadeClassifier: one line naming the package."""
    import cv2

    from puppet import main

    monkeypatch.delattr(cv2, "CascadeClassifier")
    assert main(["make-data", "--output", str(tmp_path / "d"), "--videos", "1", "--test-videos", "1"]) == 2
    err = capsys.readouterr().err
    assert "no Haar face detector" in err and "pip install opencv-python" in err and "Traceback" not in err
