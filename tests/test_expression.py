"""Expression transfer (core/expression.py) against hand-made geometry whose answers are known."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import puppet
from conftest import ROOT
from core import expression as ex
from core.detail import corner_grid
from core.faces import Box
from core.tracking.landmarks import LANDMARK_MODEL
from realtime.avatars import AvatarPhoto, face_landmarks


def face(scale: float = 1.0) -> np.ndarray:
    """A plausible 68-point face in a 128x128 frame: dlib's mean shape, drawn by hand coarsely."""
    rng = np.random.default_rng(3)
    points = np.zeros((68, 2))
    points[0:17] = np.stack([np.linspace(30, 98, 17), 55 + 55 * np.sin(np.linspace(0, np.pi, 17))], 1)  # jaw
    points[17:27] = np.stack([np.r_[np.linspace(36, 58, 5), np.linspace(70, 92, 5)], np.full(10, 44)], 1)  # brows
    points[27:31] = np.stack([np.full(4, 64), np.linspace(52, 70, 4)], 1)  # nose bridge
    points[31:36] = np.stack([np.linspace(56, 72, 5), np.full(5, 74)], 1)  # nostrils
    for start, cx in ((36, 46), (42, 82)):  # eyes: corners, two upper lid points, two lower
        points[start:start + 6] = [[cx - 8, 54], [cx - 3, 51], [cx + 3, 51], [cx + 8, 54], [cx + 3, 57], [cx - 3, 57]]
    outer = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    points[48:60] = np.stack([64 - 14 * np.cos(outer), 88 - 6 * np.sin(outer)], 1)
    inner = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    points[60:68] = np.stack([64 - 10 * np.cos(inner), 88 - 0.4 * np.sin(inner)], 1)  # lips closed
    return (points + rng.normal(0, 0.05, points.shape) - 64) * scale + 64


def turn(points: np.ndarray, degrees: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    a = np.radians(degrees)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return points @ (scale * rotation).T + np.array(shift)


def open_mouth(points: np.ndarray, pixels: float) -> np.ndarray:
    """The lower inner and outer lip moved down by `pixels` (before any head motion)."""
    out = points.copy()
    out[[65, 66, 67, 55, 56, 57, 58, 59]] += [0, pixels]
    return out


def test_similarity_recovers_a_known_turn_scale_and_shift():
    src = face()
    transform = ex.similarity(src, turn(src, 20, 1.3, (5, -7)))
    a = np.radians(20)
    assert np.allclose(transform[:, :2], 1.3 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]), atol=1e-9)
    assert np.allclose(ex.apply(transform, src), turn(src, 20, 1.3, (5, -7)), atol=1e-9)


def test_head_motion_alone_is_no_expression_and_a_lip_drop_is_found_in_reference_units():
    reference = face()
    still = ex.align_head(turn(reference, -15, 0.8, (10, 3)), reference)
    assert np.abs(ex.expression_offsets(still, reference)).max() < 1e-9
    moved = turn(open_mouth(reference, 4.0), -15, 0.8, (10, 3))  # the mouth opens while the head turns
    offsets = ex.expression_offsets(ex.align_head(moved, reference), reference)
    unit = np.linalg.norm(reference[36:42].mean(0) - reference[42:48].mean(0))
    assert np.allclose(offsets[[65, 66, 67]], [0, 4.0 / unit], atol=1e-9)
    assert np.abs(np.delete(offsets, [65, 66, 67, 55, 56, 57, 58, 59], axis=0)).max() < 1e-9


def test_invert_finds_where_an_affine_motion_takes_points_from():
    matrix, shift = np.array([[0.9, 0.1], [-0.05, 1.1]]), np.array([0.05, -0.03])
    grid = corner_grid(32, 32).astype(np.float64)
    deformation = grid @ matrix.T + shift  # output point q shows the source at A q + b
    sources = ex.to_grid(face(), (128, 128))
    found = ex.invert(deformation, sources)
    assert np.allclose(found, (sources - shift) @ np.linalg.inv(matrix).T, atol=1e-6)


def test_spline_passes_through_its_centres_and_keeps_an_affine_map_exact():
    rng = np.random.default_rng(0)
    centres = rng.uniform(-1, 1, (20, 2))
    values = rng.normal(0, 0.1, (20, 2))
    assert np.allclose(ex.spline(centres, values, centres), values, atol=1e-4)
    queries = rng.uniform(-1, 1, (50, 2))
    affine = np.array([[0.3, -0.2], [0.1, 0.5]])
    assert np.allclose(ex.spline(centres, centres @ affine.T + 0.2, queries), queries @ affine.T + 0.2, atol=1e-4)


def test_facing_points_pushed_past_each_other_meet():
    points = face()
    points[66, 1] = points[62, 1] - 2  # the lower lip above the upper
    out = ex.keep_open(points)
    assert out[62, 1] == out[66, 1] == pytest.approx(points[62, 1] - 1)
    assert np.array_equal(np.delete(out, [62, 66], 0), np.delete(points, [62, 66], 0))


def coordinates_image(size: int = 128) -> np.ndarray:
    """Each pixel's own (x, y) in its red and green channels: a warp's result says where it read from."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return np.dstack([xs / 100, ys / 100, np.zeros_like(xs)])


class Still:
    """A dense motion at rest (the corner grid), shaped like the backends'."""
    deformation = torch.from_numpy(corner_grid(32, 32))[None]
    occlusion = torch.ones(1, 1, 32, 32)


def test_no_expression_leaves_frame_and_motion_unchanged():
    avatar = ex.to_grid(face(), (128, 128))
    image = coordinates_image()
    warp = ex.plan_warp(Still.deformation[0].numpy(), avatar, np.zeros((68, 2)))
    out, moved = ex.express(image, Still, warp)
    assert np.abs(out - image).max() < 2e-3  # a pixel's coordinate to 0.2 px
    assert np.abs(moved.deformation[0].numpy() - corner_grid(128, 128)).max() < 2e-3  # remap reads at 1/32 px
    assert ex.express(image, Still, None) == (image, Still)


def test_an_opened_mouth_shows_the_lower_lip_where_the_driver_put_it_and_darkens_inside():
    points = face()
    avatar = ex.to_grid(points, (128, 128))
    target = open_mouth(points, 6.0)
    offsets = ex.to_grid(target, (128, 128)) - avatar
    warp = ex.plan_warp(Still.deformation[0].numpy(), avatar, offsets)
    out, moved = ex.express(coordinates_image(), Still, warp)
    for index in (56, 57, 58):  # the outer lower lip: moved, outside the shaded inside; it reads where it was
        x, y = np.round(target[index]).astype(int)
        assert out[y, x, :2] * 100 == pytest.approx(points[index] + (np.round(target[index]) - target[index]), abs=0.6)
    forehead = (64, 20)  # far from the mouth: unmoved
    assert np.allclose(out[forehead[1], forehead[0], :2] * 100, forehead, atol=0.05)
    inside = np.round(target[[62, 66]].mean(0)).astype(int)  # between the parted inner lips: shaded dark
    grey = ex.express(np.full((128, 128, 3), 0.8, np.float32), Still, warp)[0]
    assert np.allclose(grey[inside[1], inside[0]], 0.8 + ex.MOUTH_SHADE * (ex.MOUTH_DARK - 0.8), atol=1e-5)
    assert np.allclose(grey[forehead[1], forehead[0]], 0.8)
    assert moved.occlusion[0, 0, inside[1], inside[0]] < 0.3  # the photo's detail fades there
    assert warp.opened > 2 * ex.SHADE_FROM
    # kept (where the photo's rest error stays, core.detail): 1 less how far the frame moved, measured on the
    # coordinates image (what each pixel now reads), outside the shaded inside
    read = out[..., :2] * 100
    moved_by = np.linalg.norm(read - np.dstack(np.meshgrid(np.arange(128), np.arange(128))), axis=2)
    unshaded = np.abs(out[..., 2] - coordinates_image()[..., 2]) < 1e-6
    expected = np.clip(1 - moved_by / ex.REST_FADE, 0, 1)
    assert np.abs(moved.kept - expected)[unshaded].max() < 0.05
    assert moved.kept[forehead[1], forehead[0]] == 1 and moved.kept[int(target[57, 1]), int(target[57, 0])] == 0


def test_a_closed_mouth_is_not_shaded_nor_one_open_at_rest():
    avatar = ex.to_grid(face(), (128, 128))
    warp = ex.plan_warp(Still.deformation[0].numpy(), avatar, np.zeros((68, 2)))
    assert ex.mouth_shade(warp, (128, 128)) is None
    smiling = ex.to_grid(open_mouth(face(), 6.0), (128, 128))  # teeth showing at rest: opening wider stretches them
    offsets = ex.to_grid(open_mouth(open_mouth(face(), 6.0), 6.0), (128, 128)) - smiling
    assert ex.mouth_shade(ex.plan_warp(Still.deformation[0].numpy(), smiling, offsets), (128, 128)) is None


def test_determinants_of_a_linear_map_are_its_own():
    window = np.array([-0.5, -0.25, 0.1, 0.75])  # 0.6 wide, 1 high: x and y steps differ
    grid = ex.window_grid(window, 16)
    assert np.allclose(ex.determinants(np.zeros((16, 16, 2)), window), 1.0)
    matrix = np.array([[0.2, -0.3], [0.1, -0.4]])  # q + M q: determinant (1.2)(0.6) - (-0.3)(0.1) = 0.75
    assert np.allclose(ex.determinants(grid @ matrix.T + 0.3, window), 0.75)
    assert np.allclose(ex.determinants(grid @ np.diag([-2.0, 0.0]).T, window), -1.0)  # x mirrored: folded


def test_a_folding_map_is_shortened_to_the_longest_reach_that_does_not_fold():
    window = np.array([-1.0, -1.0, 1.0, 1.0])
    grid = ex.window_grid(window, 8)

    def squeeze(reach: float) -> np.ndarray:  # determinant 1 - 2 reach: folds from reach 1/2 on
        return reach * grid @ np.diag([-2.0, 0.0]).T

    def sound(shift: np.ndarray) -> bool:
        return bool(ex.determinants(shift, window).min() > 0)
    shift, reach = ex.unfolded(squeeze, sound)
    assert reach == 15 / 32  # bisection in five halvings: 1/2 folds, 1/4, 3/8, 7/16, 15/32 do not
    assert np.allclose(shift, squeeze(15 / 32))
    shift, reach = ex.unfolded(lambda reach: 0.1 * reach * grid, sound)
    assert reach == 1.0 and np.allclose(shift, 0.1 * grid)
    shift, reach = ex.unfolded(lambda reach: (reach + 1) * grid @ np.diag([-2.0, 0.0]).T, sound)
    assert reach == 0.0 and np.allclose(shift, grid @ np.diag([-2.0, 0.0]).T)  # none sound: reach 0's field


def test_closing_a_smile_past_itself_does_not_fold_the_frame_and_leaves_the_lids_be(monkeypatch):
    """A driver pulling the avatar's outer lower lip 14 px up through an open smile (the inner one 3 px) while
    narrowing the eyes: the lips cross, which unguarded folds the frame over itself (a swirl: determinants down to
    -5). Guarded, the lips go part of the way (the map is checked on the spline's grid against -0.2, so between
    its nodes a pixel's may dip a little lower, not to a swirl) and the lids all the way."""
    points = open_mouth(face(), 4.0)
    avatar = ex.to_grid(points, (128, 128))
    driven = squint(points, 2.0)  # lids 6 px apart -> 4 px
    driven[list(range(55, 60))] += [0, -14.0]  # the outer lower lip above the upper one
    driven[[65, 66, 67]] += [0, -3.0]  # the inner lower lip 3 px up, still below the upper
    offsets = ex.to_grid(driven, (128, 128)) - avatar

    def least(warp: ex.ExpressionWarp) -> float:  # the frame's remap map, its determinant by finite differences
        pixels = ex.pixel_map(warp, (128, 128)).astype(np.float64)
        (dx_dy, dx_dx), (dy_dy, dy_dx) = (np.gradient(pixels[..., k]) for k in (0, 1))
        return float((dx_dx * dy_dy - dx_dy * dy_dx).min())
    warp = ex.plan_warp(Still.deformation[0].numpy(), avatar, offsets)
    assert least(warp) > -0.4
    raised = points[[65, 66, 67], 1] - ex.to_pixels(warp.mouth, (128, 128))[5:8, 1]  # inner lips 60-67: 65-67
    assert np.all(raised > 0.3) and np.all(raised < 2.7)  # part of the way, not none nor all of it
    out, _ = ex.express(coordinates_image(), Still, warp)
    for index in (37, 38, 43, 44):  # the upper lids, 1 px down: each reads where the lid was
        x, y = np.round(driven[index]).astype(int)
        assert out[y, x, 1] * 100 == pytest.approx(points[index, 1] + (y - driven[index, 1]), abs=0.6)
    monkeypatch.setattr(ex, "MIN_DETERMINANT", -np.inf)
    assert least(ex.plan_warp(Still.deformation[0].numpy(), avatar, offsets)) < -1


def test_driver_offsets_are_turned_and_scaled_into_the_avatar_face():
    driver, avatar_pixels = face(), turn(face(), 90, 0.5, (128, 0))  # the avatar lies on its side, half as big
    avatar = ex.to_grid(avatar_pixels, (128, 128))
    drive = ex.ExpressionDriver(min_cutoff=1e6)  # no smoothing: each frame's value
    assert np.abs(drive.offsets(driver, 0.0, avatar)).max() < 1e-12  # the first frame is the rest pose
    offsets = drive.offsets(open_mouth(driver, 4.0), 0.04, avatar)
    # 4 px down in the driver -> 2 avatar pixels along the avatar's own "down" (turned 90 degrees: -x)
    expected = ex.to_grid(turn(open_mouth(driver, 4.0), 90, 0.5, (128, 0)), (128, 128)) - avatar
    assert np.allclose(offsets[[65, 66, 67]], expected[[65, 66, 67]], atol=1e-6)
    drive.recalibrate()
    assert np.abs(drive.offsets(turn(driver, 10, 1.2, (5, -3)), 0.08, avatar)).max() < 1e-12  # a new rest pose
    assert drive.plan(None, 0.1, Still, avatar) is None and drive.plan(driver[:5], 0.1, Still, avatar) is None


def test_avatar_landmarks_follow_the_crop_and_resize():
    photo = np.zeros((400, 300, 3), np.uint8)
    box = Box(150, 200, 200)  # the crop: x 50..250, y 100..300, shown at 128x128
    found = face() * 200 / 128  # what a detector reports on the 200 px crop

    def detector(image: np.ndarray) -> np.ndarray:
        assert image.shape[:2] == (200, 200)
        return found
    points = face_landmarks(AvatarPhoto(None, photo, box), (128, 128), detector)
    pixels = ex.to_pixels(points, (128, 128))
    assert np.allclose(pixels, (found + 0.5) * 128 / 200 - 0.5)
    assert face_landmarks(AvatarPhoto(None, photo, box), (128, 128), lambda image: None) is None


def test_closing_a_mouth_raises_the_lower_lip_and_chin_along_the_faces_own_vertical():
    lying = turn(open_mouth(face(), 6.0), 90, 1.0, (128, 0))  # a face on its side: its "up" is +x in the frame
    closed = ex.close_mouth(lying, 0.02)
    assert abs(ex.mouth_opening(closed) - 0.02) < 1e-3
    np.testing.assert_array_equal(closed[[49, 50, 51, 52, 53, 61, 62, 63]], lying[[49, 50, 51, 52, 53, 61, 62, 63]])
    lift = closed - lying
    assert np.allclose(lift[[8, 66, 57]], lift[8]) and lift[8, 0] > 0 and abs(lift[8, 1]) < 0.02 * lift[8, 0]
    assert np.allclose(lift[[48, 54]], lift[8] / 2)  # the corners half as far
    np.testing.assert_array_equal(ex.close_mouth(lying, 1.0), lying)  # already closed that far: unchanged


def test_a_driver_calibrated_mouth_open_opens_a_closed_avatar_as_wide_and_closes_it_with_his():
    open_face, closed = open_mouth(face(), 6.0), face()
    avatar = ex.to_grid(closed, (128, 128))  # same size and turn as the driver: offsets are the driver's, scaled
    per_pixel = 2 / 127
    drive = ex.ExpressionDriver(min_cutoff=1e6)
    first = drive.offsets(open_face, 0.0, avatar)  # the reference: mouth open wider than the avatar's
    assert np.allclose(first[[65, 66, 67]], [0, 6.0 * per_pixel], atol=0.02 * per_pixel)  # as open as his
    assert np.abs(drive.offsets(closed, 0.04, avatar)[[65, 66, 67]]).max() < 0.02 * per_pixel  # closed with his
    reopened = drive.offsets(open_mouth(closed, 3.0), 0.08, avatar)
    assert np.allclose(reopened[[65, 66, 67]], [0, 3.0 * per_pixel], atol=0.02 * per_pixel)


def test_a_self_reenactment_keeps_its_reference_as_the_rest_and_closes_below_it():
    open_face = open_mouth(face(), 6.0)
    avatar = ex.to_grid(open_face, (128, 128))  # the avatar is the reference frame itself
    drive = ex.ExpressionDriver(min_cutoff=1e6)
    drive.offsets(open_face, 0.0, avatar)
    closing = drive.offsets(face(), 0.04, avatar)
    assert np.allclose(closing[[65, 66, 67]], [0, -6.0 * 2 / 127], atol=1e-9)


@pytest.mark.skipif(not (importlib.util.find_spec("dlib") and Path(LANDMARK_MODEL).is_file()),
                    reason="dlib or its landmark model is missing (apt-get install libdlib-data)")
@pytest.mark.parametrize("expression", [True, False])
def test_live_runs_the_expression_stages_only_when_asked(tiny_fomm, astronaut_png, tmp_path, expression):
    """The bundled webcam clip (a real face) through live with dlib's tracker: both halves of the expression
    stage are timed with --expression (the default), neither with --no-expression."""
    stats = tmp_path / "stats.json"
    args = ["live", "--avatar", str(astronaut_png), "--config", str(tiny_fomm[0]), "--checkpoint", str(tiny_fomm[1]),
            "--driving", str(ROOT / "checkpoints" / "webcam.mp4"), "--max-frames", "6", "--tracker", "dlib",
            "--output", str(tmp_path / "frames"), "--backend", "torch", "--stats", str(stats)]
    assert puppet.main(args + ([] if expression else ["--no-expression"])) == 0
    stages = json.loads(stats.read_text())["latency_ms"]
    assert ("expression" in stages and "expression_warp" in stages) == expression
    assert ("expression" in stages or "expression_warp" in stages) == expression


def squint(points: np.ndarray, pixels: float) -> np.ndarray:
    """Both eyes narrowed by `pixels`: upper lids down and lower lids up by half of it each."""
    out = points.copy()
    out[[37, 38, 43, 44], 1] += pixels / 2
    out[[40, 41, 46, 47], 1] -= pixels / 2
    return out


@pytest.mark.parametrize("avatar_gap, scale", [(3.0, 0.5), (6.0, 1.0), (18.0, 2.0)])  # 18 px: 3x, bounded at 2x
def test_lids_move_by_the_share_of_the_avatars_eye_opening(avatar_gap, scale):
    """The driver's lids (6 px apart) narrow by 2 px, then blink shut: an avatar's lids 3 px apart narrow by
    1 px and close; as wide apart, as the driver's; 18 px apart, twice the driver's (the bound)."""
    driver = face()
    avatar = ex.to_grid(squint(face(), 6.0 - avatar_gap), (128, 128))
    drive = ex.ExpressionDriver(min_cutoff=1e6)
    drive.offsets(driver, 0.0, avatar)
    per_pixel = 2 / 127
    for t, narrowed in ((0.04, 2.0), (0.08, 6.0)):
        offsets = drive.offsets(squint(driver, narrowed), t, avatar)
        moved = scale * narrowed / 2 * per_pixel
        assert np.allclose(offsets[[37, 38, 43, 44]], [0, moved], rtol=0.03, atol=1e-6)
        assert np.allclose(offsets[[40, 41, 46, 47]], [0, -moved], rtol=0.03, atol=1e-6)
        assert np.abs(offsets[list(range(48, 68))]).max() < 1e-3 * per_pixel  # nothing but the lids moved
