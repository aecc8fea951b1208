"""The checkpoints we ship: they load, stay small, beat the identity baseline on the bundled real clip
(a held-out webcam recording of a person), and the bundled default run makes the avatar follow it."""
import json
import shutil

import numpy as np
import pytest

from conftest import ROOT
from core.media import read_frames
from motion.checkpoint import load_model
from motion.config import load_config
from puppet import main

CHECKPOINTS = ROOT / "checkpoints"
# Held-out L1 on checkpoints/driving.mp4 as a share of the identity baseline's: measured 0.923 (fomm-face),
# 0.916 (fomm-face-fast, the live model) and 0.814 (coseg-face) with torch 2.13 on the CPU; this chunk, the man
# leaning towards the camera, is the hardest of the held-out ones (all 16: see the README's evaluation table).
# The guards sit above the measured values by more than any library's rounding moves them, and below 1: a
# model no better than not moving the picture.
RATIO_GUARDS = {"fomm-face": 0.97, "fomm-face-fast": 0.97, "coseg-face": 0.9}


@pytest.fixture(scope="module")
def bundled_clip(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    (data / "test").mkdir()
    (data / "train").mkdir()
    shutil.copy(CHECKPOINTS / "driving.mp4", data / "test" / "driving.mp4")
    return data


@pytest.mark.parametrize("name", sorted(RATIO_GUARDS))
def test_shipped_checkpoint_loads_small_and_beats_the_identity_baseline(name, bundled_clip, tmp_path, capsys):
    config, checkpoint = CHECKPOINTS / f"{name}.yaml", CHECKPOINTS / f"{name}.pth.tar"
    assert checkpoint.stat().st_size <= 16 * 2 ** 20
    load_model(load_config(config), checkpoint)
    report = tmp_path / "eval.json"
    assert main(["eval", "--config", str(config), "--checkpoint", str(checkpoint), "--data", str(bundled_clip),
                 "--json", str(report), "--cpu"]) == 0
    figures = json.loads(report.read_text())
    assert figures["videos"] == 1 and figures["frames"] == 128
    assert figures["l1"] <= RATIO_GUARDS[name] * figures["identity_l1"], figures


def test_default_animate_follows_the_driving_clip(tmp_path, capsys):
    """No arguments but the output: shipped model, bundled avatar and real clip; the avatar moves when the
    driver does."""
    out = tmp_path / "frames"
    assert main(["animate", "--relative", "--output", str(out), "--cpu"]) == 0
    size = load_config(CHECKPOINTS / "fomm-face.yaml").size
    driving = list(read_frames(CHECKPOINTS / "driving.mp4", size)[1])
    result = list(read_frames(out, size)[1])
    assert len(result) == len(driving)
    driver_motion = [np.abs(f - driving[0]).mean() for f in driving]
    avatar_motion = [np.abs(f - result[0]).mean() for f in result]
    assert max(avatar_motion) > 0.01  # it moves at all
    assert np.corrcoef(driver_motion, avatar_motion)[0, 1] > 0.5  # and when the driver does
