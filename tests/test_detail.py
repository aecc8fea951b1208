"""Detail transfer (core/detail.py) through the paste-back and at the model's size (core.pipeline.with_detail),
against expectations built independently: the photo itself, np.roll shifts and the enlarged generator frame."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from core.detail import HIDDEN, VISIBLE, ZERO, detail_band, fit_blur, low_pass, plan_detail, visibility
from core.faces import Box
from core.paste import Portrait, composite, plan_paste, shrink_to_fit
from core.pipeline import with_detail
from realtime.avatars import AvatarPhoto, prepare_avatars

MODEL = (32, 32)


def textured(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A uint8 picture with detail finer than the model's size (what the transfer must carry)."""
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (0, 0), 0.8)


def no_motion(h: int, w: int) -> np.ndarray:
    """The deformation at rest, written out: x, y from -1 to 1 corner to corner (the official grid)."""
    deformation = np.zeros((h, w, 2), np.float32)
    deformation[..., 0] = np.linspace(-1, 1, w)[None, :]
    deformation[..., 1] = np.linspace(-1, 1, h)[:, None]
    return deformation


def model_size_photo(crop: np.ndarray) -> np.ndarray:
    """The photo as a perfect generator would draw it at the model's size, float [0, 1]."""
    return cv2.resize(crop, MODEL[::-1], interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def test_no_motion_and_a_generator_frame_equal_to_the_photo_give_the_full_resolution_photo():
    photo = textured((200, 260, 3), 0)
    box = Box(130, 100, 96)  # a 96 px crop inside the photo
    plan = plan_paste(photo, box, MODEL, detail=True)
    x, y, w, h = plan.rect
    generated = model_size_photo(photo[y:y + h, x:x + w])
    for deformation in (None, no_motion(8, 8)):  # the still avatar, and a rendered frame at rest
        band = detail_band(plan.detail, deformation, np.ones((8, 8), np.float32))
        out = composite(plan, generated, None, band)
        assert np.abs(out.astype(int) - photo).max() <= 1  # rounding of the sum only
    no_detail = composite(plan, generated)
    assert np.abs(no_detail[plan.region].astype(int) - photo[plan.region]).mean() > 5  # the blur it removes


def test_a_known_shift_moves_the_detail_by_that_shift():
    crop = textured((96, 96, 3), 1)
    plan = plan_detail(crop, MODEL)
    shift = 6  # pixels: the backward map samples the photo 6 px to the right, so the detail moves left
    deformation = no_motion(8, 8)
    deformation[..., 0] += 2 * shift / 96
    band = detail_band(plan, deformation, None)
    expected = np.roll(crop.astype(np.float32), -shift, axis=1)
    expected = expected - low_pass(expected, MODEL)
    inner = slice(16, 64)  # away from the border the roll wraps and the low-pass's edge
    levels = band.astype(np.float32) - ZERO  # the band travels as bytes around ZERO
    np.testing.assert_allclose(levels[inner, inner], np.clip(expected, -128, 127)[inner, inner], atol=0.51)
    assert np.abs(levels[inner, inner] - (plan.still_band[inner, inner].astype(np.float32) - ZERO)).mean() > 3


def test_places_marked_unseen_take_the_generators_pixels():
    photo = textured((128, 128, 3), 2)
    plan = plan_paste(photo, None, MODEL, detail=True)
    generated = np.random.default_rng(3).random((*MODEL, 3), dtype=np.float32)
    occlusion = np.full((8, 8), 1.0, np.float32)
    occlusion[:, :4] = HIDDEN  # the left half unseen: no detail there
    band = detail_band(plan.detail, no_motion(8, 8), occlusion)
    out = composite(plan, generated, None, band)
    bytes_ = np.floor(generated * 255 + 0.5).astype(np.uint8)  # the crop as the paste-back rounds it
    enlarged = cv2.resize(bytes_, (128, 128), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    left = np.abs(out[:, :40].astype(np.float32) - enlarged[:, :40]).max()
    right = np.abs(out[:, 90:].astype(np.float32) - enlarged[:, 90:]).mean()
    assert left <= 1 and right > 5  # the left is the generator's to rounding; the right has detail
    visible = detail_band(plan.detail, no_motion(8, 8), np.full((8, 8), VISIBLE, np.float32))
    np.testing.assert_array_equal(visible, plan.detail.still_band)  # VISIBLE and up: the whole band


def test_paste_back_with_detail_keeps_every_pixel_outside_its_region():
    photo = textured((180, 240, 3), 4)
    plan = plan_paste(photo, Box(100, 90, 80), MODEL, detail=True)
    deformation = no_motion(8, 8)
    deformation[..., 1] += 0.2
    generated = np.random.default_rng(5).random((*MODEL, 3), dtype=np.float32)
    out = composite(plan, generated, None, detail_band(plan.detail, deformation, None))
    outside = np.ones(photo.shape[:2], bool)
    outside[plan.region] = False
    np.testing.assert_array_equal(out[outside], photo[outside])
    assert not np.array_equal(out[plan.region], photo[plan.region])


def test_a_photo_larger_than_the_output_is_shrunk_once_with_its_box():
    photo = textured((1440, 1080, 3), 6)
    small, box = shrink_to_fit(photo, Box(540, 600, 400), (1280, 720))
    assert small.shape == (720, 540, 3)  # 1080x1440 fitted into 720 rows: scale 0.5
    assert (box.cx, box.cy, box.side) == (270, 300, 200)
    assert shrink_to_fit(photo, None, (4000, 4000))[0] is photo  # never enlarged
    portrait = Portrait(photo, Box(540, 600, 400), MODEL, True, (1280, 720), detail=True)
    still = model_size_photo(small[200:400, 170:370])
    frame = portrait(still, False, portrait.band(still, False))
    assert frame.shape == (720, 1280, 3)
    assert np.abs(frame[:, 370:910].astype(int) - small).max() <= 1  # at rest: the photo, at the shown size


def test_the_generators_blur_is_measured_on_the_first_rendered_frame_and_taken_out_of_the_band():
    """A generator that draws the photo blurred by sigma 2 (model pixels): the portrait finds sigma 2 on its
    first rendered frame, against the photo moved by that frame's motion (a shift of 1 model pixel here),
    and from then on photo-sharp frames come out; a colour offset does not matter."""
    wide = textured((160, 170, 3), 7)
    photo, moved = wide[:, :160], wide[:, 5:165]  # 1 model pixel is 5 photo pixels
    portrait = Portrait(photo, None, MODEL, True, None, detail=True)
    motion = no_motion(*MODEL)
    motion[..., 0] += 2 / MODEL[1]  # every place read 1 model pixel to the right
    drawn = cv2.GaussianBlur(model_size_photo(moved) * 255, (0, 0), 2.0) / 255
    assert fit_blur(portrait.plan.detail, drawn + 10 / 255, motion) == 2.0
    assert portrait.plan.detail.sigma is None
    portrait(drawn, True, portrait.band(drawn, True, motion))  # the first rendered frame: blur measured
    assert portrait.plan.detail.sigma == 2.0
    out = portrait(drawn, True, portrait.band(drawn, True, motion))
    inner = slice(12, 148)  # away from the borders, where the blur reaches past the photo
    assert np.abs(out[inner, inner].astype(int) - moved[inner, inner]).mean() < 1.5


def motion(deformation: np.ndarray, occlusion: np.ndarray | None = None) -> SimpleNamespace:
    """A dense motion shaped as the backends give it: deformation (1, h, w, 2), occlusion (1, 1, h, w)."""
    return SimpleNamespace(deformation=torch.from_numpy(deformation)[None],
                           occlusion=None if occlusion is None else torch.from_numpy(occlusion)[None, None])


def test_at_the_models_size_a_blurring_generator_gets_the_photos_detail_back_where_the_motion_moved_it():
    """A generator that draws the photo shifted 2 px left and blurred by sigma 1.5: the step's frames come out as
    the shifted photo itself (to byte rounding), measured blur and all; at rest, without a motion or where the
    occlusion says the photo cannot show the place, the frames pass unchanged."""
    wide = textured((32, 36, 3), 8).astype(np.float32) / 255
    photo, moved = wide[:, :32], wide[:, 2:34]
    drawn = cv2.GaussianBlur(moved, (0, 0), 1.5)
    shifted = no_motion(32, 32)
    shifted[..., 0] += 2 * 2 / 32  # every place read 2 px to the right
    step = with_detail(lambda frame: (drawn, motion(shifted)), photo)
    inner = slice(6, 24)  # away from the borders, where the blur (3 sigma) and the shift reach past the photo
    assert np.abs(drawn - moved)[inner, inner].mean() > 0.02  # the blur the detail must undo
    for _ in range(2):  # the first frame measures the blur, the second reuses it
        out, _ = step(None)
        assert np.abs(out - moved)[inner, inner].max() <= 1.01 / 255
    unseen = with_detail(lambda frame: (drawn, motion(shifted, np.full((8, 8), HIDDEN, np.float32))), photo)
    np.testing.assert_array_equal(unseen(None)[0], drawn)
    still = with_detail(lambda frame: (drawn, None), photo)
    assert still(None)[0] is drawn


def error_field(height: int, width: int) -> np.ndarray:
    """A generator's smooth error, model pixels, 0..255 levels: a warm cast growing to the right and a
    darker blob (the shading and colour a generator gets wrong in every pose)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    blob = -25 * np.exp(-((xs - 12) ** 2 + (ys - 16) ** 2) / 40)
    return np.dstack([10 + 0.5 * xs + blob, 4 + blob, -6 + blob])


def drawn_by_an_erring_generator(photo: np.ndarray, error: np.ndarray) -> np.ndarray:
    """The photo as a generator with blur sigma 1 and that error draws it, float [0, 1] at the model's size."""
    return np.clip((cv2.GaussianBlur(model_size_photo(photo) * 255, (0, 0), 1.0) + error) / 255, 0, 1)


def test_the_generators_error_at_rest_is_measured_there_and_moved_with_the_face():
    """A generator that blurs (sigma 1) and adds a smooth colour error that moves with the face: once the
    portrait has seen the avatar rendered at rest, frames come out as the photo itself at rest and as the moved
    photo when the face moves 1 model pixel; where the expression stage moved the frame (kept 0) the error
    stays in; a portrait not shown the rest measures the blur on its first frame, but no error."""
    wide = textured((160, 170, 3), 9)
    photo, moved = wide[:, :160], wide[:, 5:165]  # 1 model pixel is 5 photo pixels
    error = error_field(32, 34)
    at_rest_frame = drawn_by_an_erring_generator(photo, error[:, :32])
    moved_frame = drawn_by_an_erring_generator(moved, error[:, 1:33])
    rest, shifted = no_motion(*MODEL), no_motion(*MODEL)
    shifted[..., 0] += 2 / MODEL[1]  # every place read 1 model pixel to the right
    enlarged_error = cv2.resize(error[:, 1:33], (160, 160), interpolation=cv2.INTER_LINEAR)
    inner = slice(12, 148)  # away from the borders, where the blur reaches past the photo

    def shown(portrait: Portrait, frame: np.ndarray, deformation: np.ndarray, kept: np.ndarray | None = None) -> np.ndarray:
        return portrait(frame, True, portrait.band(frame, True, deformation, None, kept)).astype(np.float32)

    portrait = Portrait(photo, None, MODEL, True, None, detail=True)
    portrait.settle(at_rest_frame, rest, resting=True)
    assert np.abs(shown(portrait, at_rest_frame, rest) - photo).max() <= 2  # rounding only
    assert np.abs(shown(portrait, moved_frame, shifted) - moved)[inner, inner].mean() < 1
    kept = np.ones(MODEL, np.float32)
    kept[:, :12] = 0  # the stage moved the left of the frame
    out = shown(portrait, moved_frame, shifted, kept)
    left, right = (slice(12, 148), slice(12, 50)), (slice(12, 148), slice(80, 148))
    assert np.abs(out - moved)[right].mean() < 1
    assert np.abs(out - (moved + enlarged_error))[left].mean() < 1.5  # the error as the generator drew it
    assert np.abs(out - moved)[left].mean() > 8

    unsettled = Portrait(photo, None, MODEL, True, None, detail=True)
    for frame, deformation in ((moved_frame, shifted), (at_rest_frame, rest)):  # even a frame at rest: it may be
        shown(unsettled, frame, deformation)  # the expression stage's, or the first of absolute motion
    assert unsettled.plan.detail.rest is None and unsettled.plan.detail.sigma == 1.0
    assert np.abs(shown(unsettled, moved_frame, shifted) - (moved + enlarged_error))[inner, inner].mean() < 1.5


def test_an_occlusion_map_low_at_rest_is_read_against_its_own_level():
    """A model whose map reads 0.45 where nothing is hidden (under VISIBLE: the live model's sits near 0.7, a tenth of
    it under 0.6) and 0.05 on a small hidden patch: settled at rest, its level is the map's median, 0.45, so at
    rest the frame is the photo (the fixed thresholds would weigh the detail and the error by (0.45 - 0.2) / 0.4),
    and the patch, 0.05 / 0.45 of it, under HIDDEN, still takes the generator's pixels."""
    photo = textured((160, 160, 3), 11)
    error = error_field(32, 32)
    drawn = drawn_by_an_erring_generator(photo, error)
    low = np.full(MODEL, 0.45, np.float32)
    low[20:24, 20:24] = 0.05
    portrait = Portrait(photo, None, MODEL, True, None, detail=True)
    portrait.settle(drawn, no_motion(*MODEL), low, resting=True)
    assert portrait.plan.detail.open_level == pytest.approx(0.45)
    out = portrait(drawn, True, portrait.band(drawn, True, no_motion(*MODEL), low)).astype(np.float32)
    patch, elsewhere = (slice(105, 115), slice(105, 115)), (slice(10, 90), slice(10, 150))
    assert np.abs(out - photo)[elsewhere].max() <= 2  # rounding only
    generator = cv2.resize(drawn * 255, (160, 160), interpolation=cv2.INTER_LINEAR)
    assert np.abs(out - generator)[patch].max() < np.abs(out - photo)[patch].mean() / 4
    np.testing.assert_allclose(visibility(np.float32([[0.45, 0.3], [0.15, 0.6]]), (2, 2), 0.75)[[0, 0, 1], [0, 1, 0]],
                               [1, 0.5, 0], atol=1e-6)  # (occlusion - 0.2 x 0.75) / (0.4 x 0.75), by hand


def test_live_avatars_are_settled_on_their_own_rendering_at_rest():
    """prepare_avatars renders each detailed avatar once, with its own keypoints as the driver's (the rest, even
    for an avatar switched to mid-session), and the portrait measures the generator's error on that frame."""
    photo = textured((160, 160, 3), 10)
    error = error_field(32, 32)
    calls = []

    class Erring:  # a puppeteer whose generator blurs and errs as above
        def prepare(self, image: np.ndarray) -> SimpleNamespace:
            return SimpleNamespace(kp="its own keypoints")

        def motion(self, avatar: SimpleNamespace, kp: str) -> SimpleNamespace:
            calls.append(kp)
            noise = no_motion(*MODEL)
            noise[5, 5] += 0.1  # a quantised backend's rest need not be exact: it is the rest all the same
            return motion(noise)

        def render(self, avatar: SimpleNamespace, dense: SimpleNamespace) -> np.ndarray:
            return drawn_by_an_erring_generator(photo, error)

    avatar = prepare_avatars([AvatarPhoto(Path("me.png"), photo, None)], Erring(), MODEL, full_frame=True, detail=True)[0]
    assert calls == ["its own keypoints"]
    detail = avatar.portrait.plan.detail
    assert detail.sigma == 1.0 and detail.rest is not None
    assert np.abs(detail.rest + error)[3:29, 3:29].mean() < 1  # the error, at the model's size, with the opposite sign
    plain = prepare_avatars([AvatarPhoto(Path("me.png"), photo, None)], Erring(), MODEL, full_frame=True)[0]
    assert not plain.portrait.detailed and calls == ["its own keypoints"]  # no detail: nothing to settle
