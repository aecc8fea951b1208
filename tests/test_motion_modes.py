"""Relative vs absolute motion, adapt-scale and the relative Jacobians, checked against hand-computed
numbers (2 keypoints, known matrices, a known hull-area ratio) written from the paper's formulas, through
the offline loop and through the command line, so a change of any of them fails here."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import app.animate
from core.pipeline import FommPipeline
from motion.keypoints import Keypoints
from motion.reconstruction import ReconstructionModule, parts_mask
from motion.segmentation import Segments
from puppet import main


def kp(points, jacobians=None) -> Keypoints:
    value = torch.tensor([points], dtype=torch.float64)
    jac = None if jacobians is None else torch.tensor([jacobians], dtype=torch.float64)
    return Keypoints(value, jac)


# the avatar: a triangle of area 0.5 (hull of 3 points); the driver's first frame: the same triangle
# twice as wide and high (area 2); so sqrt(0.5 / 2) = 0.5 is adapt-scale's factor
AVATAR = kp([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], [[[1, 0], [0, 1]], [[2, 0], [0, 1]], [[1, 0], [0, 2]]])
FIRST = kp([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]], [[[2, 0], [0, 2]], [[1, 0], [0, 1]], [[1, 1], [0, 1]]])
# the driver then moves right by 0.2 and shears its Jacobians
LATER = kp([[0.2, 0.0], [2.2, 0.0], [0.2, 2.0]], [[[2, 1], [0, 2]], [[1, 0], [1, 1]], [[1, 1], [0, 1]]])


class RecordingPuppeteer:
    """FommPuppeteer's stages, with fixed keypoints per driving frame; records what motion() is given."""

    def __init__(self, driver: list[Keypoints]):
        self.driver = iter(driver)
        self.given: list[Keypoints] = []

    def prepare(self, image):
        return type("Avatar", (), {"kp": AVATAR})()

    def keypoints(self, frame):
        return next(self.driver)

    def motion(self, avatar, kp_norm):
        self.given.append(kp_norm)
        return None

    def render(self, avatar, motion):
        return np.zeros((2, 2, 3))


def run(relative: bool, adapt_scale: bool, driver: tuple[Keypoints, ...] = (FIRST, LATER)) -> list[Keypoints]:
    puppeteer = RecordingPuppeteer(list(driver))
    pipeline = FommPipeline(puppeteer, np.zeros((2, 2, 3)), relative=relative, adapt_scale=adapt_scale)
    for _ in driver:
        pipeline(None)
    return puppeteer.given


def test_absolute_mode_passes_the_driver_keypoints_through():
    first, later = run(relative=False, adapt_scale=False)
    assert torch.equal(later.value, LATER.value) and torch.equal(later.jacobian, LATER.jacobian)
    assert torch.equal(first.value, FIRST.value)


def test_relative_mode_adds_the_displacement_since_the_first_frame():
    first, later = run(relative=True, adapt_scale=False)
    np.testing.assert_allclose(first.value[0], [[0, 0], [1, 0], [0, 1]])  # the first frame: the avatar's own pose
    np.testing.assert_allclose(later.value[0], [[0.2, 0], [1.2, 0], [0.2, 1]])


def test_relative_jacobians_by_hand():
    _, later = run(relative=True, adapt_scale=False)
    # J_new = J_drv @ inv(J_drv_first) @ J_src, by hand for each keypoint:
    # 0: [[2,1],[0,2]] @ [[.5,0],[0,.5]] @ I = [[1,.5],[0,1]]
    # 1: [[1,0],[1,1]] @ I @ [[2,0],[0,1]] = [[2,0],[2,1]]
    # 2: [[1,1],[0,1]] @ [[1,-1],[0,1]] @ [[1,0],[0,2]] = I @ [[1,0],[0,2]] = [[1,0],[0,2]]
    expected = [[[1, 0.5], [0, 1]], [[2, 0], [2, 1]], [[1, 0], [0, 2]]]
    np.testing.assert_allclose(later.jacobian[0], expected)


def test_adapt_scale_scales_the_displacement_by_the_hull_ratio():
    _, later = run(relative=True, adapt_scale=True)
    # a driver twice the avatar's size: its 0.2 move becomes 0.1
    np.testing.assert_allclose(later.value[0], [[0.1, 0], [1.1, 0], [0.1, 1]])
    # the Jacobians are not scaled
    np.testing.assert_allclose(later.jacobian[0], [[[1, 0.5], [0, 1]], [[2, 0], [2, 1]], [[1, 0], [0, 2]]])


def test_recalibration_makes_the_next_frame_the_reference_pose():
    puppeteer = RecordingPuppeteer([FIRST, LATER, LATER])
    pipeline = FommPipeline(puppeteer, np.zeros((2, 2, 3)))
    pipeline(None)
    pipeline.recalibrate()
    pipeline(None)  # LATER is now the reference: the avatar is back at its own pose
    pipeline(None)
    for given in puppeteer.given:
        np.testing.assert_allclose(given.value[0], AVATAR.value[0])
    np.testing.assert_allclose(puppeteer.given[2].jacobian[0], AVATAR.jacobian[0])


@pytest.mark.parametrize("flags, expected", [([], (True, False)), (["--absolute"], (False, False)),
                                             (["--relative"], (True, False)),
                                             (["--adapt-scale"], (True, True))])
def test_animate_command_passes_the_motion_mode_to_the_pipeline(flags, expected, tiny_fomm, astronaut_png, driving_mp4,
                                                                tmp_path, monkeypatch):
    seen = {}

    class Recording(FommPipeline):
        def __init__(self, puppeteer, avatar_image, relative, adapt_scale):
            seen["mode"] = (relative, adapt_scale)
            super().__init__(puppeteer, avatar_image, relative, adapt_scale)

    monkeypatch.setattr(app.animate, "FommPipeline", Recording)
    config, checkpoint = tiny_fomm
    assert main(["animate", "--config", str(config), "--checkpoint", str(checkpoint), "--avatar", str(astronaut_png),
                 "--driving", str(driving_mp4), "--output", str(tmp_path / "out"), "--cpu", *flags]) == 0
    assert seen["mode"] == expected


def _halves(shift: tuple[float, float]) -> Segments:
    """Two parts, the left and right halves of a 16x16 map, both moved by `shift` with identity affines."""
    segmentation = torch.zeros(1, 3, 16, 16)
    segmentation[0, 1, :, :8] = 1
    segmentation[0, 2, :, 8:] = 1
    shifts = torch.tensor([[shift, shift]])
    return Segments(segmentation, shifts, torch.eye(2).expand(1, 2, 2, 2).clone())


def naive_shift_sample(image: np.ndarray, dx: float) -> np.ndarray:
    """image sampled at (x - dx, y) for every pixel, by the conventions the official code uses: the
    pixel grid spans [-1, 1] corner to corner (x_j = -1 + 2j / (w - 1)), sampling is bilinear with
    align_corners=False (pixel centres at (2p + 1) / w - 1) and zero outside."""
    h, w = image.shape
    out = np.zeros_like(image)
    for i in range(h):
        for j in range(w):
            x, y = -1 + 2 * j / (w - 1) - dx, -1 + 2 * i / (h - 1)
            px, py = ((x + 1) * w - 1) / 2, ((y + 1) * h - 1) / 2
            x0, y0 = int(np.floor(px)), int(np.floor(py))
            for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
                for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
                    if 0 <= yy < h and 0 <= xx < w:
                        out[i, j] += wy * wx * image[yy, xx]
    return out


@pytest.mark.parametrize("use_source", [True, False])
def test_part_swap_mask_from_the_source_moves_with_the_flow(use_source):
    """The target's parts sit 0.5 right of the source's (a pure translation of every part): a mask drawn on
    the source must be moved into the target's pose with the flow; one drawn on the target stays put. The
    decoder is bypassed, so the output is the blend: warped source (ones) inside the mask, target (zeros)
    outside."""
    reconstruction = ReconstructionModule(1, 4, 8, 0, 0, estimate_visibility=False)
    reconstruction.decode = lambda features: features
    seg_source, seg_target = _halves((0.0, 0.0)), _halves((0.5, 0.0))
    mask = parts_mask(seg_source if use_source else seg_target, [1])
    out = reconstruction.swap(torch.ones(1, 1, 16, 16), torch.zeros(1, 1, 16, 16), seg_target, seg_source, mask,
                              use_source_segmentation=use_source)[0, 0].numpy()
    left = np.zeros((16, 16))
    left[:, :8] = 1
    moved_ones = naive_shift_sample(np.ones((16, 16)), 0.5)
    expected = moved_ones * (naive_shift_sample(left, 0.5) if use_source else left)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # and the two really differ: the source's half lands further right
    assert (out[8, 8:] > 0.2).sum() == (4 if use_source else 0)
