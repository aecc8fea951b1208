"""The one per-frame pipeline (core/pipeline.py): stage order and timing, the reference pose across
avatar switches, the swap path's arguments, part-number checks. Expectations are written by hand."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch

from core.pipeline import FOMM_STAGES, FommPipeline, SwapPipeline, check_swap_index, pick_device
from motion.errors import UserError
from motion.keypoints import Keypoints


def kp(*points) -> Keypoints:
    return Keypoints(torch.tensor([points], dtype=torch.float64), None)


class Stages:
    """FommPuppeteer's stages over fixed keypoints; logs every call in order."""

    def __init__(self, driver):
        self.driver, self.log = iter(driver), []

    def prepare(self, image):
        self.log.append("prepare")
        return type("Avatar", (), {"kp": kp(*image)})()

    def keypoints(self, frame):
        self.log.append("keypoints")
        return next(self.driver)

    def motion(self, avatar, kp_driving):
        self.log.append("motion")
        return kp_driving

    def render(self, avatar, motion):
        self.log.append("render")
        return motion.value[0].numpy()


def test_stages_run_in_order_each_timed_once_per_frame():
    timed = []

    @contextmanager
    def timer(stage):
        timed.append(stage)
        yield

    stages = Stages([kp([0.0, 0.0]), kp([0.1, 0.0])])
    pipeline = FommPipeline(stages, [[0.5, 0.5]], timer=timer)
    pipeline(None)
    pipeline(None)
    assert stages.log == ["prepare"] + ["keypoints", "motion", "render"] * 2
    assert timed == list(FOMM_STAGES) * 2 == ["keypoints", "dense_motion", "generator"] * 2


def test_the_reference_pose_survives_an_avatar_switch():
    """The driver's first frame stays the reference: after switching, the new avatar moves by the driver's
    displacement since that frame (0.3 - 0.0), not since the switch."""
    stages = Stages([kp([0.0, 0.0]), kp([0.3, 0.0])])
    pipeline = FommPipeline(stages, [[0.5, 0.5]])
    np.testing.assert_allclose(pipeline(None), [[0.5, 0.5]])
    pipeline.set_avatar([[-0.2, 0.1]])
    np.testing.assert_allclose(pipeline(None), [[0.1, 0.1]])


def test_render_returns_the_frame_and_the_motion_that_made_it():
    stages = Stages([kp([0.2, 0.0])])
    pipeline = FommPipeline(stages, [[0.0, 0.0]], relative=False)
    image, motion = pipeline.render(pipeline.drive(pipeline.keypoints(None)))
    np.testing.assert_allclose(image, [[0.2, 0.0]])
    assert torch.equal(motion.value, kp([0.2, 0.0]).value)


class Swapper:
    def __init__(self):
        self.calls = []

    def prepare(self, image):
        return ("avatar", image)

    def segments(self, frame):
        return ("target", frame), type("Segments", (), {"segmentation": f"segmentation of {frame}"})()

    def swap(self, avatar, target, segments, parts, use_source_segmentation):
        self.calls.append((avatar, target, parts, use_source_segmentation))
        self.given = segments.segmentation
        return f"swapped into {target[1]}"


@pytest.mark.parametrize("source_segmentation", [False, True])
def test_swap_passes_its_parts_and_segmentation_choice(source_segmentation):
    swapper = Swapper()
    pipeline = SwapPipeline(swapper, (1, 3), "photo", source_segmentation)
    image, segmentation = pipeline.step("frame")
    assert image == "swapped into frame" and segmentation == swapper.given == "segmentation of frame"
    assert swapper.calls == [(("avatar", "photo"), ("target", "frame"), [1, 3], source_segmentation)]
    assert pipeline("frame 2") == "swapped into frame 2"


@pytest.mark.parametrize("parts, ok", [((0, 4), True), ((1,), True), ((5,), False), ((-1,), False), ((), False)])
def test_part_numbers_run_from_0_to_the_model_parts(parts, ok):
    if ok:
        check_swap_index(parts, 4)
    else:
        with pytest.raises(UserError, match=r"--parts .*is invalid: parts are numbered 1 to 4 \(0 is the background\)"):
            check_swap_index(parts, 4)


def test_cpu_flag_and_no_gpu_give_the_cpu():
    assert pick_device(True).type == "cpu"
    assert pick_device(False).type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_swap_defaults_and_stage_timing():
    """Driving-frame segmentation by default (not the avatar's), timed as keypoints then generator; the
    avatar prepared only when given."""
    timed, swapper = [], Swapper()

    @contextmanager
    def timer(stage):
        timed.append(stage)
        yield

    pipeline = SwapPipeline(swapper, (2,), timer=timer)
    assert pipeline.avatar is None
    pipeline.avatar = swapper.prepare("photo")
    pipeline.step("frame")
    assert swapper.calls[0][3] is False and timed == ["keypoints", "generator"]
    assert FommPipeline(Stages([])).avatar is None


def test_absolute_mode_without_jacobians_keeps_none_and_bad_parts_are_listed():
    stages = Stages([kp([0.2, 0.0])])
    pipeline = FommPipeline(stages, [[0.0, 0.0]])
    assert pipeline.drive(pipeline.keypoints(None)).jacobian is None
    with pytest.raises(UserError, match=r"^--parts 1,9 is invalid"):
        check_swap_index((1, 9), 4)


def test_relative_motion_keeps_the_drivers_jacobians_when_the_avatar_has_none():
    """Without the avatar's Jacobians there is nothing to compose: the driver's pass through unchanged."""
    from core.puppeteer import normalize_keypoints
    jacobian = torch.tensor([[[[2.0, 0.0], [0.0, 1.0]]]], dtype=torch.float64)
    driver = Keypoints(torch.tensor([[[0.3, 0.0]]], dtype=torch.float64), jacobian)
    out = normalize_keypoints(kp([0.0, 0.0]), driver, Keypoints(driver.value * 0, jacobian), True, False)
    np.testing.assert_allclose(out.value[0], [[0.3, 0.0]])
    assert torch.equal(out.jacobian, jacobian)
