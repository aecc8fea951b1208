"""Pasting the animated crop back into the portrait, colour matching, letterboxing and --size, each
checked against hand-computed numbers or an independent bound."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.faces import Box, crop
from core.paste import (
    composite,
    crop_rect,
    fit,
    letterbox,
    match_colour,
    parse_size,
    place,
    plan_paste,
)
from motion.errors import UserError

MODEL = (128, 128)


def smooth_noise(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A textured uint8 picture with both flat and busy parts (so gradients vary)."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, shape, dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 1.5)


def uniform(shape: tuple[int, ...], colour) -> np.ndarray:
    return np.broadcast_to(np.asarray(colour, np.uint8), (*shape, 3)).copy()


def test_crop_rect_is_where_faces_crop_cuts():
    photo = smooth_noise((240, 320, 3), 0)
    box = Box(151.3, 97.8, 100.4)  # 100 px side, top-left at (101, 48) with crop's rounding
    assert crop_rect(box) == (101, 48, 100, 100)
    np.testing.assert_array_equal(crop(photo, box), photo[48:148, 101:201])


def test_outside_the_box_is_the_photo_exactly():
    photo = smooth_noise((720, 1280, 3), 1)
    plan = plan_paste(photo, Box(640, 360, 300), MODEL)  # x 490..789, y 210..509
    out = composite(plan, np.random.default_rng(2).random((*MODEL, 3), dtype=np.float32))
    assert out.shape == photo.shape and out.dtype == np.uint8
    outside = np.ones(photo.shape[:2], bool)
    outside[210:510, 490:790] = False
    np.testing.assert_array_equal(out[outside], photo[outside])
    assert not np.array_equal(out[210:510, 490:790], photo[210:510, 490:790])


def test_inside_the_feather_band_is_the_resized_crop():
    photo = smooth_noise((720, 1280, 3), 3)
    animated = smooth_noise((*MODEL, 3), 4)
    plan = plan_paste(photo, Box(640, 360, 300), MODEL, feather=0.08)
    out = composite(plan, animated)
    # band = 0.08 * 300 = 24 px; alpha = (i + 0.5) / 24 reaches 1 from box pixel 24 to 300 - 25 = 275
    inner = np.s_[210 + 24:210 + 276, 490 + 24:490 + 276]
    expected = cv2.resize(animated, (300, 300), interpolation=cv2.INTER_LINEAR)[24:276, 24:276]
    np.testing.assert_array_equal(out[inner], expected)
    # one pixel further out is still blended with the photo: alpha 23.5 / 24
    assert not np.array_equal(out[210 + 23, 490 + 24:490 + 276], expected[0])
    # a float crop of one colour fills the inner region with exactly that colour
    flat = composite(plan, np.full((*MODEL, 3), 0.2, np.float32))
    assert (flat[inner] == 51).all()  # 0.2 * 255


def test_seam_step_is_bounded_by_the_feather():
    photo = uniform((400, 600), 50)
    plan = plan_paste(photo, Box(300, 200, 300), MODEL, feather=0.08)
    out = composite(plan, uniform(MODEL, 200)).astype(int)
    # flat photo and crop: each step is 150 * (1 / 24) = 6.25 grey levels, 7 after rounding
    row, column = out[200, :, 0], out[:, 300, 0]
    assert np.abs(np.diff(row)).max() <= 7 and np.abs(np.diff(column)).max() <= 7
    assert row[0] == 50 and row[300] == 200 and column[0] == 50 and column[200] == 200
    hard = composite(plan_paste(photo, Box(300, 200, 300), MODEL, feather=0.0), uniform(MODEL, 200)).astype(int)
    assert np.abs(np.diff(hard[200, :, 0])).max() == 150  # what the feather removes


def test_seam_on_textures_adds_at_most_the_colour_gap_over_the_band():
    """c = a r + (1 - a) p, so between neighbours |dc| <= max(|dp|, |dr|) + |da| * max|r - p| + 1
    (rounding), and |da| <= 1 / band for the linear ramp: no step beyond the pictures' own gradients
    except a band-th of their colour difference."""
    photo = smooth_noise((400, 600, 3), 5).astype(int)
    animated = smooth_noise((*MODEL, 3), 6)
    plan = plan_paste(photo.astype(np.uint8), Box(300, 200, 250), MODEL, feather=0.1)
    out = composite(plan, animated).astype(int)
    x0, y0, band = 175, 75, 25  # 250 px box; band 0.1 * 250
    r = photo.copy()  # the resized crop in photo coordinates, photo elsewhere (alpha 0 there)
    r[y0:y0 + 250, x0:x0 + 250] = cv2.resize(animated, (250, 250), interpolation=cv2.INTER_LINEAR)
    for axis in (0, 1):
        dc, dp, dr = (np.abs(np.diff(a, axis=axis)) for a in (out, photo, r))
        gap = np.abs(r - photo)
        gap = np.maximum(gap.take(range(gap.shape[axis] - 1), axis), gap.take(range(1, gap.shape[axis]), axis))
        assert (dc <= np.maximum(dp, dr) + gap / band + 1).all()


def test_mask_is_monotone_from_each_edge_inwards():
    plan = plan_paste(smooth_noise((400, 600, 3), 7), Box(300, 200, 250), MODEL)
    alpha = plan.alpha
    assert alpha.shape == (250, 250) and 0 < alpha.min() and alpha.max() == 1
    half = 125
    for line in (alpha[half], alpha[:, half], np.diag(alpha)):
        assert (np.diff(line[:half]) >= 0).all() and (np.diff(line[half:]) <= 0).all()
    assert alpha[0, half] == pytest.approx(0.5 / 20)  # band 0.08 * 250 = 20 px, first centre at 0.5


def test_crop_box_past_the_photo_border():
    photo = uniform((200, 300), 50)
    plan = plan_paste(photo, Box(10, 20, 100), MODEL)  # x -40..59, y -30..69; band 8 px
    assert plan.rect == (-40, -30, 100, 100) and plan.alpha.shape == (70, 60)
    out = composite(plan, uniform(MODEL, 200))
    assert out.shape == photo.shape
    assert (out[0, 0] == 200).all()  # no feather along the photo's own border: nothing to blend into there
    assert (out[:, 60:] == 50).all() and (out[70:] == 50).all()
    # the last column inside the box is box column 99: alpha 0.5 / 8, 50 + 150 / 16 = 59.4
    assert (out[:62, 59] == 59).all()
    # the ramps only run along the open bottom and right edges (box rows/columns 92..99)
    assert (plan.alpha[:62, :52] == 1).all() and (plan.alpha[62:] < 1).all() and (plan.alpha[:, 52:] < 1).all()


def test_whole_photo_plan_replaces_the_photo_at_its_aspect():
    photo = smooth_noise((90, 160, 3), 8)
    plan = plan_paste(photo, None, MODEL)
    assert (plan.alpha == 1).all() and len(plan.ring) == 0
    out = composite(plan, np.full((*MODEL, 3), 1.0, np.float32))
    assert out.shape == (90, 160, 3) and (out == 255).all()


def test_colour_match_removes_a_known_offset():
    photo = uniform((300, 400), (100, 150, 200))
    plan = plan_paste(photo, Box(200, 150, 200), MODEL)
    shifted = uniform(MODEL, (110, 130, 205))
    match = match_colour(plan, shifted)
    np.testing.assert_allclose(match.bias, [-10, 20, -5], atol=1e-4)
    np.testing.assert_allclose(match.gain, [1, 1, 1])
    assert (composite(plan, shifted, match) == photo).all()  # the seam vanishes
    as_float = match_colour(plan, shifted.astype(np.float32) / 255)
    np.testing.assert_allclose(as_float.bias, [-10, 20, -5], atol=1e-3)


def test_colour_match_with_spread():
    # columns alternate 90/110 in the photo (mean 100, std 10) and 105/135 in the crop (mean 120, std 15):
    # gain 10 / 15, bias 100 - 120 * 2 / 3 = 20, so 105 -> 90 and 135 -> 110
    photo = uniform((300, 400), 90)
    photo[:, 1::2] = 110
    plan = plan_paste(photo, Box(200, 150, 128), MODEL)  # x0 = 136: even, so the phases line up
    animated = uniform(MODEL, 105)
    animated[:, 1::2] = 135
    match = match_colour(plan, animated, std=True)
    np.testing.assert_allclose(match.gain, [2 / 3] * 3, rtol=1e-5)
    np.testing.assert_allclose(match.bias, [20] * 3, atol=1e-3)
    np.testing.assert_array_equal(composite(plan, animated, match), photo)


def test_colour_match_ignores_the_crop_beyond_the_photo():
    photo = uniform((200, 300), (60, 70, 80))
    plan = plan_paste(photo, Box(10, 100, 100), MODEL)  # x -40..59: the left 40% lies outside
    animated = uniform(MODEL, (64, 66, 90))
    animated[:, :40] = 255  # what the model drew for the replicated padding
    np.testing.assert_allclose(match_colour(plan, animated).bias, [-4, 4, -10], atol=1e-3)


def test_wrong_crop_or_box_is_refused():
    photo = uniform((100, 100), 0)
    plan = plan_paste(photo, Box(50, 50, 40), MODEL)
    with pytest.raises(ValueError, match="model size"):
        composite(plan, np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="does not overlap"):
        plan_paste(photo, Box(300, 50, 40), MODEL)


def test_letterbox_wide_picture_into_a_square():
    image = np.zeros((50, 100, 3), np.uint8)
    image[:, 50:] = 200  # left half dark, right half bright
    out, placement = fit(image, (64, 64), pad=(0, 255, 0))
    # scale = min(64 / 100, 64 / 50) = 0.64: content 64 x 32, (64 - 32) / 2 = 16 rows above and below
    assert placement.scale == pytest.approx(0.64)
    assert (placement.x, placement.y, placement.width, placement.height) == (0, 16, 64, 32)
    assert out.shape == (64, 64, 3)
    assert (out[:16] == (0, 255, 0)).all() and (out[48:] == (0, 255, 0)).all()
    assert (out[16:48, :31] == 0).all() and (out[16:48, 33:] == 200).all()
    assert placement.width / placement.height == 100 / 50
    matte, same = fit(np.ones((50, 100), np.float32), (64, 64))  # a matte fits the same way
    assert same == placement and matte.shape == (64, 64)
    assert (matte[16:48] == 1).all() and (matte[:16] == 0).all() and (matte[48:] == 0).all()


def test_letterbox_tall_and_upscaled_pictures():
    tall = place((100, 50, 3), (64, 64))  # pillarbox: 32 x 64, 16 columns either side
    assert (tall.x, tall.y, tall.width, tall.height) == (16, 0, 32, 64)
    small = np.full((16, 32, 3), 7, np.uint8)
    out, placement = fit(small, (1280, 720))  # scale min(40, 45) = 40: 1280 x 640, 40 rows above and below
    assert (placement.scale, placement.x, placement.y, placement.width, placement.height) == (40, 0, 40, 1280, 640)
    assert (out[40:680] == 7).all() and (out[:40] == 0).all() and (out[680:] == 0).all()


def test_letterbox_at_the_same_size_is_a_copy():
    image = smooth_noise((720, 1280, 3), 9)
    placement = place(image.shape, (1280, 720))
    out = letterbox(placement, image)
    np.testing.assert_array_equal(out, image)
    out[0, 0] = image[0, 0] + 1
    assert not np.array_equal(out, image)


@pytest.mark.parametrize("text, size", [("1280x720", (1280, 720)), ("16X16", (16, 16)), (" 640x480 ", (640, 480)),
                                        ("7680x4320", (7680, 4320))])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["12x", "x", "1280", "abc", "1280x720x3", "1.5x2", "-5x10", "1280*720", ""])
def test_parse_size_refuses_malformed(text):
    with pytest.raises(UserError) as error:
        parse_size(text)
    assert str(error.value) == f"--size {text}: give WIDTHxHEIGHT, e.g. 1280x720"


@pytest.mark.parametrize("text", ["15x100", "100x15", "7681x100", "0x0"])
def test_parse_size_refuses_out_of_range(text):
    with pytest.raises(UserError, match=r"must be 16\.\.7680 pixels") as error:
        parse_size(text)
    assert "\n" not in str(error.value)
