"""Face metrics against hand-computed cases, and fetch-data's unpacking against a made archive."""
from __future__ import annotations

import io
import math
import tarfile
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from core.faces import Box, inter_ocular, landmark_box
from training.face_metrics import (
    EYES,
    MOUTH,
    akd,
    chroma_key,
    correlation_and_gain,
    error_by_region,
    expression_following,
    iou,
    missing_rate,
    motion_correlation,
    normalised_displacements,
    openings,
)
from training.fetch import Source, unpack


def face(shift=(0.0, 0.0), eye_gap: float = 10.0, mouth_open: float = 0.0) -> np.ndarray:
    """68 landmarks: eye contours 36-41 around (0, 0) and 42-47 around (eye_gap, 0), the rest on a mouth
    line that opens downwards."""
    points = np.zeros((68, 2))
    ring = np.array([[math.cos(a), math.sin(a)] for a in np.linspace(0, 2 * math.pi, 6, endpoint=False)])
    points[36:42] = ring
    points[42:48] = ring + [eye_gap, 0]
    rest = [i for i in range(68) if not 36 <= i < 48]
    points[rest] = np.stack([np.linspace(0, eye_gap, len(rest)), 10 + mouth_open * np.linspace(0, 1, len(rest))], 1)
    return points + np.asarray(shift)


def test_inter_ocular_is_the_eye_centre_distance():
    assert inter_ocular(face(eye_gap=10)) == pytest.approx(10)
    assert inter_ocular(face(shift=(5, 7), eye_gap=4)) == pytest.approx(4)


def test_akd_and_missing_rate_by_hand():
    a, b = face(), face(shift=(3, 4))  # every landmark 5 px away
    assert akd([a, a, None], [b, a, b]) == pytest.approx(2.5)  # frames 0 and 1 only: (5 + 0) / 2
    assert math.isnan(akd([None], [a]))
    assert missing_rate([a, None, None, b]) == 0.5


def test_displacements_are_in_inter_ocular_units():
    moved = normalised_displacements([face(eye_gap=20), face(shift=(10, 0), eye_gap=20), None])
    np.testing.assert_allclose(moved[1], np.full((68, 2), [0.5, 0.0]))
    assert moved[0].sum() == 0 and moved[2] is None


def test_motion_correlation_follows_motion_not_identity():
    driver = [face(mouth_open=m, shift=(s, 0)) for m, s in [(0, 0), (2, 1), (5, -1), (1, 2), (0, 0)]]
    # another face, twice as wide apart, doing the same motion at its own scale: correlation 1
    follower = [face(eye_gap=20, mouth_open=2 * m, shift=(2 * s + 40, 9)) for m, s in [(0, 0), (2, 1), (5, -1), (1, 2),
                                                                                    (0, 0)]]
    assert motion_correlation(driver, follower) == pytest.approx(1.0)
    mirror = [face(mouth_open=-m, shift=(-s, 0)) for m, s in [(0, 0), (2, 1), (5, -1), (1, 2), (0, 0)]]
    assert motion_correlation(driver, mirror) == pytest.approx(-1.0)
    assert math.isnan(motion_correlation(driver, [face()] * 5))  # a still picture has no motion to correlate
    # frames without landmarks are skipped, not counted as zero motion
    assert motion_correlation(driver, follower[:2] + [None] + follower[3:]) == pytest.approx(1.0)


def talking(mouth: float = 0.0, eyes: float = 2.0, eye_gap: float = 10.0, shift=(0.0, 0.0)) -> np.ndarray:
    """face() with its inner lips `mouth` and its eyelids `eyes` pixels apart (the eye centres unmoved)."""
    points = face(eye_gap=eye_gap)
    for upper, lower in MOUTH:
        points[[upper, lower]] = [[eye_gap * (upper - 60) / 4, 10.0], [eye_gap * (upper - 60) / 4, 10.0 + mouth]]
    for upper, lower in EYES:
        points[lower, 0] = points[upper, 0]
        points[upper, 1], points[lower, 1] = -eyes / 2, eyes / 2
    return points + np.asarray(shift)


def test_openings_are_gaps_from_the_first_frame_in_inter_ocular_units():
    frames = [talking(mouth=3, eye_gap=20), talking(mouth=7, eyes=0, eye_gap=20, shift=(5, 9)), None]
    assert openings(frames, MOUTH) == pytest.approx([0.0, 0.2, None])
    assert openings(frames, EYES) == pytest.approx([0.0, -0.1, None])  # a blink
    assert openings([None] + frames, MOUTH) == [None] * 4  # no reference frame, no opening


def test_correlation_and_gain_on_known_cases():
    driver = np.array([1.0, -1.0, 1.0, -1.0])
    assert correlation_and_gain(driver, 0.5 * driver + 3) == pytest.approx((1.0, 0.5))
    # noise uncorrelated with the driver (and as strong) leaves the gain and lowers the correlation to 1/sqrt(5)
    assert correlation_and_gain(driver, 0.5 * driver + [1.0, 1.0, -1.0, -1.0]) == pytest.approx((5 ** -0.5, 0.5))
    assert correlation_and_gain(driver, np.full(4, 0.2)) == (0.0, 0.0)  # a still mouth follows nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a still driver: no division by zero, nothing to follow
        assert all(math.isnan(x) for x in correlation_and_gain(np.zeros(4), driver))
        assert all(math.isnan(x) for x in correlation_and_gain(np.zeros(0), np.zeros(0)))


def test_expression_following_pools_clips_and_skips_frames_without_a_face():
    mouths = [[2, 3, 1, 3, 1], [0, 4, 2]]
    drivers = [[talking(mouth=m, eyes=2 + m / 4) for m in clip] for clip in mouths]
    # another face, twice as wide apart and resting with its mouth ajar, opening half as wide, eyes still
    results = [[talking(mouth=5 + m, eye_gap=20, shift=(30, 4)) for m in clip] for clip in mouths]
    results[1][1] = None
    report = expression_following(drivers, results)
    assert report["mouth"] == pytest.approx({"correlation": 1.0, "gain": 0.5, "frames": 5, "skipped": 1})
    assert report["eyes"] == {"correlation": 0.0, "gain": 0.0, "frames": 5, "skipped": 1}
    still = expression_following(drivers, [[clip[0]] * len(clip) for clip in drivers])
    assert still["mouth"]["gain"] == 0 and still["eyes"]["gain"] == 0


def test_error_by_region_splits_the_mean_error_into_landmark_boxes_by_hand():
    points = np.zeros((68, 2))
    points[48:68] = [[10, 20], [14, 22]] * 10  # mouth box: x 7..17, y 17..25 (3 px each side)
    points[36:48] = [[10, 5], [11, 6]] * 6  # eyes box: x 7..14, y 2..9
    points[5:12] = [[12, 24], [16, 28]] * 3 + [[12, 24]]  # chin box x 9..19, y 21..31, minus the mouth's
    points[[i for i in range(68) if not (5 <= i < 12 or 36 <= i < 68)]] = [2, 2]  # no box of their own
    truth = np.zeros((40, 30, 3))
    prediction = truth.copy()
    prediction[20, 10] = [0.3, 0.3, 0.3]  # in the mouth's box (also the chin's: taken by the mouth first)
    prediction[5, 8, 0] = 0.9  # in the eyes' box: 0.3 over the channels
    prediction[30, 18] = 0.6  # in the chin's box, below the mouth's
    prediction[26, 9] = 0.6  # in the chin's box, just below the mouth's
    prediction[0, 29] = 1.5  # outside every box
    shares = error_by_region(prediction, truth, points)
    pixels = 40 * 30
    assert shares == pytest.approx({"mouth": 0.3 / pixels, "eyes": 0.3 / pixels, "chin": 1.2 / pixels,
                                    "rest": 1.5 / pixels})
    assert sum(shares.values()) == pytest.approx(np.abs(prediction - truth).mean())
    edge = points.copy()
    edge[48:68] -= 12  # a mouth box past the frame's left edge (x -5..5, y 5..13) is cut there, not lost
    corner = truth.copy()
    corner[6, 1] = 0.9
    assert error_by_region(corner, truth, edge)["mouth"] == pytest.approx(0.9 / pixels)


def test_chroma_key_and_iou_by_hand():
    frame = np.zeros((2, 3, 3), np.float32)
    frame[0, 0] = [0.1, 0.3, 0.9]  # blue screen
    frame[0, 1] = [0.2, 0.2, 0.3]  # dark: not screen (blue too low)
    frame[0, 2] = [0.6, 0.5, 0.7]  # pinkish skin: blue only 0.1 above red
    frame[1] = [0.05, 0.35, 0.8]  # screen
    expected = np.array([[False, True, True], [False, False, False]])
    np.testing.assert_array_equal(chroma_key(frame), expected)
    assert iou(expected, np.array([[False, True, False], [True, False, False]])) == pytest.approx(1 / 3)
    assert iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0


def _archive(path, entries: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_unpack_takes_only_the_listed_members(tmp_path):
    archive = tmp_path / "pkg.tgz"
    _archive(archive, {"package/media/a.mp4": b"a", "package/media/sub/b.jpg": b"b", "package/LICENSE": b"MIT",
                       "package/build/big.js": b"x", "package/media/../../escape.txt": b"!", "other/media/c": b"c"})
    dest = tmp_path / "out"
    written = unpack(archive, Source("pkg", ("true",), "package", ("media", "LICENSE"), "MIT"), dest)
    assert sorted(p.relative_to(dest).as_posix() for p in written) == ["LICENSE", "media/a.mp4", "media/sub/b.jpg"]
    assert (dest / "media" / "sub" / "b.jpg").read_bytes() == b"b"
    assert not (tmp_path / "escape.txt").exists()


def test_landmark_box_is_the_square_around_the_landmarks():
    points = np.array([[10.0, 20.0], [30.0, 25.0], [20.0, 60.0]])  # 20 wide, 40 high
    assert landmark_box(points) == Box(20.0, 40.0, 40.0)


class BrightnessLandmarks:
    """A stand-in landmark detector: no face in dark frames, else talking()'s face moved by (100 m, 0) for
    the frame's mean intensity m, its mouth `opening` m pixels open, so every landmark figure can be computed
    by hand from the frames."""

    def __init__(self, opening: float = 0.0):
        self.opening = opening

    def __call__(self, image):
        mean = float(np.asarray(image, np.float64).mean())
        return None if mean < 0.3 else talking(mouth=self.opening * mean, shift=(100 * mean, 0))


def grey_clip(root, levels: list[float]) -> list[np.ndarray]:
    """A held-out clip of flat grey frames under root/data, as the model reads them back."""
    import imageio.v2 as imageio

    clip = root / "data" / "test" / "clip"
    clip.mkdir(parents=True)
    (root / "data" / "train").mkdir()
    for index, level in enumerate(levels):
        imageio.imwrite(clip / f"frame_{index:05d}.png", np.full((64, 64, 3), round(255 * level), np.uint8))
    return [np.full((64, 64, 3), round(255 * v) / 255, np.float32) for v in levels]


def test_evaluate_reports_akd_and_mkr_of_its_frames(tmp_path, tiny_fomm):
    import torch

    from motion.checkpoint import load_model
    from motion.config import load_config
    from training.evaluate import evaluate

    levels = [0.5, 0.6, 0.2, 0.8]  # one frame without a "face"
    grey_clip(tmp_path, levels)
    config = load_config(tiny_fomm[0])
    report = evaluate(config, load_model(config, tiny_fomm[1]), tmp_path / "data", torch.device("cpu"),
                      landmarks=BrightnessLandmarks())
    seen = [round(255 * v) / 255 for v in levels]
    assert report["driving_mkr"] == 0.25
    # identity baseline: the first frame's landmarks against each frame's that has some
    expected = np.mean([100 * abs(seen[0] - v) for v in seen if v >= 0.3])
    assert report["identity_akd"] == pytest.approx(expected, rel=1e-5)
    # the reconstructions are scored by the same stand-in: recompute AKD and MKR from them by hand
    from training.evaluate import reconstruct
    frames = [np.full((64, 64, 3), v, np.float32) for v in seen]
    predictions = reconstruct(config, load_model(config, tiny_fomm[1]), frames, torch.device("cpu"))
    marks = [BrightnessLandmarks()(p) for p in predictions]
    assert report["mkr"] == pytest.approx(sum(m is None for m in marks) / 4)
    # the L1 by region, over the frames whose truth has a face, adds up to their L1 over the identity baseline's
    faced = [np.abs(p - f).mean() for p, f, v in zip(predictions, frames, seen) if v >= 0.3]
    assert sum(report["ratio_by_region"].values()) == pytest.approx(np.mean(faced) / report["identity_l1"], rel=1e-4)
    pairs = [(100 * v, m[0, 0]) for v, m in zip(seen, marks) if v >= 0.3 and m is not None]
    if pairs:
        assert report["akd"] == pytest.approx(np.mean([abs(a - b) for a, b in pairs]), rel=1e-4)


def test_evaluate_reports_expression_following_and_its_still_baseline(tmp_path, tiny_fomm):
    import torch

    from app.train import expression_lines
    from motion.checkpoint import load_model
    from motion.config import load_config
    from training.evaluate import evaluate, reconstruct

    frames = grey_clip(tmp_path, [0.5, 0.6, 0.2, 0.8])  # the mouth opens with the brightness; frame 2 has no face
    config = load_config(tiny_fomm[0])
    nets, marks = load_model(config, tiny_fomm[1]), BrightnessLandmarks(opening=20)
    report = evaluate(config, nets, tmp_path / "data", torch.device("cpu"), landmarks=marks)
    drivers = [[marks(f) for f in frames]]
    results = [[marks(p) for p in reconstruct(config, nets, frames, torch.device("cpu"))]]
    for name, expected in expression_following(drivers, results).items():
        assert report["expression"][name] == pytest.approx(expected, nan_ok=True)
    # the still source: 2 frames after the first compared, the dark one skipped, nothing followed
    assert report["identity_expression"]["mouth"] == {"correlation": 0.0, "gain": 0.0, "frames": 2, "skipped": 1}
    assert math.isnan(report["identity_expression"]["eyes"]["gain"])  # the driver never blinks
    mouth, eyes = expression_lines(report["expression"], report["identity_expression"], "  ")
    assert mouth.startswith("  mouth corr / gain      ") and eyes.startswith("  eyes corr / gain       ")
    assert "(identity baseline 0.000 / 0.000; 2 frames, 1 without a face skipped)" in mouth


def test_cross_identity_reports_each_portraits_pair_and_counts_an_unmeasurable_one_as_zero(monkeypatch):
    """Two portraits driven by a moving face: one result follows it (correlation 1, nothing missed), the
    other has no face in its first frame (no reference to measure from: None, 0 in the mean, 1 missing)."""
    from training import evaluate as ev

    moving = [face(shift=(k, 0.5 * k * k)) for k in range(4)]
    results = {0.25: moving, 0.75: [None, *moving[1:]]}  # a portrait's grey level -> its results' landmarks
    photos = {"followed": np.full((8, 8, 3), 0.25, np.float32), "lost": np.full((8, 8, 3), 0.75, np.float32)}
    monkeypatch.setattr(ev, "face_photos", lambda paths, size, landmarks: photos)
    monkeypatch.setattr(ev, "load_video", lambda video, size: [np.zeros((8, 8, 3), np.float32)] * 4)
    monkeypatch.setattr(ev, "animate_photo", lambda nets, device, image, clip, marks, avatar, detail:
                        [np.full((8, 8, 3), float(image[0, 0, 0]) + k, np.float32) for k in range(len(clip))])

    def landmarks(image):
        level, frame = math.modf(float(image[0, 0, 0]))
        return results[round(level, 2)][int(frame)]
    report = ev.cross_identity(SimpleNamespace(size=(8, 8)), {}, ["clip"], [], None, [moving],
                               ev.Scoring(landmarks))
    assert report["per_photo"] == {"followed": {"motion_correlation": pytest.approx(1.0), "missing": 0},
                                   "lost": {"motion_correlation": None, "missing": 1}}
    assert report["motion_correlation"] == pytest.approx(0.5) and report["mkr"] == pytest.approx(1 / 8)

    class Identity:  # each result frame's cosine similarity to its portrait: the lost one's drift to another person
        def similarities(self, image, points, shown, found):
            return np.array([1.0, 1.0, 1.0] if image[0, 0, 0] == 0.25 else [1.0, 0.99997, 0.9])
    report = ev.cross_identity(SimpleNamespace(size=(8, 8)), {}, ["clip"], [], None, [moving],
                               ev.Scoring(landmarks, face_id=Identity()))
    # below the same-person threshold 1 - 2.5e-5: none of the followed portrait's frames, two of the lost one's three
    assert report["per_photo"]["followed"]["other_person"] == 0
    assert report["per_photo"]["lost"]["other_person"] == pytest.approx(2 / 3)
    assert report["identity"]["other_person"] == pytest.approx(2 / 6)


def test_dlib_landmarks_find_the_astronaut_eyes():
    pytest.importorskip("dlib")
    from pathlib import Path

    from skimage import data as skdata

    from core.tracking.landmarks import LANDMARK_MODEL, LandmarkDetector
    if not Path(LANDMARK_MODEL).is_file():
        pytest.skip(f"{LANDMARK_MODEL} missing (apt-get install libdlib-data)")
    points = LandmarkDetector()(skdata.astronaut())
    assert points.shape == (68, 2)
    # her eyes sit near (195, 100) and (250, 100) in the 512x512 photo; 68-point eye contours 36-47
    left, right = points[36:42].mean(0), points[42:48].mean(0)
    assert abs(left[1] - right[1]) < 10 and 35 < right[0] - left[0] < 80 and 80 < left[1] < 130
    # the opening pairs face each other in dlib's scheme: each upper lid and lip point above its lower one
    for upper, lower in MOUTH + EYES:
        assert points[upper, 1] <= points[lower, 1] and abs(points[upper, 0] - points[lower, 0]) < 5
    assert LandmarkDetector()(np.zeros((64, 64, 3), np.uint8)) is None
