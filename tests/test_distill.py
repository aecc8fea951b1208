"""Distillation (training/distill.py, train --teacher): the cross-identity pairs a batch makes, checked by hand
on stub networks, and a teacher's frames learnt by a tiny model."""
import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from conftest import TEST_CONFIGS
from motion.checkpoint import read_checkpoint
from motion.config import load_config
from motion.errors import UserError
from motion.keypoints import Keypoints
from training.dataset import VideoDataset
from training.distill import cross_identity_prediction
from training.options import TrainOptions
from training.trainer import train


class MeanDetector(nn.Module):
    """One keypoint at (m, m) with Jacobian (1 + m) I, m the image's mean."""

    def forward(self, image):
        m = image.mean((1, 2, 3))
        return Keypoints(m[:, None, None].expand(-1, 1, 2), (1 + m)[:, None, None, None] * torch.eye(2))


class Recorder(nn.Module):
    def forward(self, source, kp_driving, kp_source):
        self.args = source, kp_driving, kp_source
        return SimpleNamespace(prediction=source + kp_driving.value[:, :, :1, None])


def test_each_source_is_moved_by_the_previous_samples_clip_from_its_source_frame():
    """Sources of means 0.1, 0.2, 0.3, driving frames 0.5, 0.7, 0.9: sample i shows source i-1 (cyclically) with
    keypoint s[i-1] + d[i] - s[i] and Jacobian (1 + d[i]) / (1 + s[i]) * (1 + s[i-1]), by hand."""
    s, d = [0.1, 0.2, 0.3], [0.5, 0.7, 0.9]
    source = torch.tensor(s)[:, None, None, None].expand(-1, 3, 4, 4).contiguous()
    driving = torch.tensor(d)[:, None, None, None].expand(-1, 3, 4, 4).contiguous()
    generator = Recorder()
    out = cross_identity_prediction({"kp_detector": MeanDetector(), "generator": generator}, source, driving)
    shown, moved, avatar = generator.args
    assert shown[:, 0, 0, 0].tolist() == pytest.approx([0.3, 0.1, 0.2])
    assert avatar.value[:, 0, 0].tolist() == pytest.approx([0.3, 0.1, 0.2])
    assert moved.value[:, 0, 0].tolist() == pytest.approx([0.3 + 0.5 - 0.1, 0.1 + 0.7 - 0.2, 0.2 + 0.9 - 0.3])
    expected = [(1 + d[i]) / (1 + s[i]) * (1 + s[i - 1]) for i in range(3)]
    assert moved.jacobian[:, 0, 0, 0].tolist() == pytest.approx(expected)
    assert moved.jacobian[:, 0, 0, 1].abs().max() == 0
    assert out.prediction[:, 0, 0, 0].tolist() == pytest.approx([0.3 + 0.7, 0.1 + 0.6, 0.2 + 0.8])
    assert out.avatar is avatar and out.moved is moved



def with_teacher_weight(config, weight: float):
    weights = dataclasses.replace(config.train.loss_weights, teacher=weight)
    return dataclasses.replace(config, train=dataclasses.replace(config.train, loss_weights=weights))


def test_a_teacher_s_frames_are_learnt_and_it_is_not_saved(clips, tmp_path, tiny_fomm):
    """A random tiny FOMM as teacher: the teacher term falls while training, and the checkpoint holds the
    model's tensors only, as without a teacher."""
    config_path, teacher = tiny_fomm
    config = with_teacher_weight(load_config(config_path), 1.0)
    options = TrainOptions(output=str(tmp_path / "a"), epochs=30, sheet_every=0, seed=0, teacher=str(teacher),
                           teacher_config=str(config_path))
    result = train(config, VideoDataset.from_config(config, clips, seed=0), options)
    taught = [h["teacher"] for h in result.history]
    assert taught[0] > 0 and np.mean(taught[-5:]) < 0.8 * np.mean(taught[:5])
    plain = train(load_config(config_path), VideoDataset.from_config(config, clips, seed=0),
                  TrainOptions(output=str(tmp_path / "b"), epochs=1, sheet_every=0))
    assert "teacher" not in plain.history[0]
    saved, alone = read_checkpoint(result.checkpoint), read_checkpoint(plain.checkpoint)
    assert set(saved) == set(alone)
    for name in ("kp_detector", "generator"):
        assert set(saved[name]) == set(alone[name])


@pytest.mark.parametrize("weight, teacher, teacher_config, message", [
    (1.0, "t.pth.tar", None, "go together"),
    (1.0, None, "t.yaml", "go together"),
    (0.0, "t.pth.tar", "t.yaml", "unused"),
    (1.0, None, None, "pass the model to learn from"),
])
def test_teacher_mistakes_are_one_line_errors(clips, weight, teacher, teacher_config, message):
    config = with_teacher_weight(load_config(TEST_CONFIGS / "tiny-fomm.yaml"), weight)
    with pytest.raises(UserError, match=message):
        train(config, VideoDataset.from_config(config, clips, seed=0),
              TrainOptions(output="/nonexistent", epochs=1, sheet_every=0, teacher=teacher,
                           teacher_config=teacher_config))


def test_a_teacher_must_exist_and_be_a_fomm_model_of_the_same_frame_size(clips, tmp_path, tiny_fomm, tiny_coseg):
    config = with_teacher_weight(load_config(TEST_CONFIGS / "tiny-fomm.yaml"), 1.0)
    bigger = tmp_path / "big.yaml"
    bigger.write_text(tiny_fomm[0].read_text().replace("frame_shape: [64, 64, 3]", "frame_shape: [128, 128, 3]"))
    for teacher_config, checkpoint, message in ((tiny_coseg[0], tiny_coseg[1], "FOMM models"),
                                                (bigger, tiny_fomm[1], "same frame_shape"),
                                                (tiny_fomm[0], tmp_path / "none.pth.tar", "--teacher .* does not exist"),
                                                (tmp_path / "none.yaml", tiny_fomm[1], "--teacher-config .* does not")):
        with pytest.raises(UserError, match=message):
            train(config, VideoDataset.from_config(config, clips, seed=0),
                  TrainOptions(output=str(tmp_path / "run"), epochs=1, sheet_every=0, teacher=str(checkpoint),
                               teacher_config=str(teacher_config)))


def test_a_model_taught_by_itself_has_nothing_to_learn(clips, tiny_fomm):
    """Teacher and model the same networks (eval mode: the same BatchNorm statistics): the teacher term is 0,
    so both sides see the same pairs; a model of other weights has a positive term."""
    from motion.checkpoint import load_model
    from motion.networks import build_networks
    from training.trainer import FommObjective
    config_path, checkpoint = tiny_fomm
    config = with_teacher_weight(load_config(config_path), 1.0)
    nets = load_model(config, checkpoint)
    batch = [VideoDataset.from_config(config, clips, seed=0)[i] for i in range(2)]
    source, driving = (torch.stack([torch.as_tensor(b[key]) for b in batch]) for key in ("source", "driving"))
    with torch.no_grad():
        assert float(FommObjective(config, nets, None, nets)(source, driving)["teacher"]) == 0
        other = {name: net.eval() for name, net in build_networks(config).items()}
        assert float(FommObjective(config, other, None, nets)(source, driving)["teacher"]) > 0
