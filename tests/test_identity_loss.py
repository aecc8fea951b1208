"""Training's identity term (training/identity_loss.py): its least-squares similarity against numpy's, its
differentiable face crop against OpenCV's warp, the loss's invariants on stand-in embeddings, and the term in a
training run (train with loss_weights.identity)."""
import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_face_identity import tiny_mobileface

from conftest import TEST_CONFIGS
from motion.checkpoint import read_checkpoint
from motion.config import load_config
from motion.errors import UserError
from training.anchors import to_keypoint_space
from training.dataset import DatasetError, VideoDataset
from training.face_identity import SIZE, similarity_matrix
from training.face_masks import LANDMARK_FILE, save_landmarks
from training.identity_loss import ANCHOR_TEMPLATE, MODEL_FILE, IdentityLoss, crop_faces, fit_similarity
from training.options import TrainOptions
from training.trainer import train


def rotation(angle_degrees: float, scale: float) -> np.ndarray:
    angle = math.radians(angle_degrees)
    return scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


def test_fit_similarity_is_the_least_squares_similarity():
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, (3, 5, 2))
    exact = points @ rotation(30, 1.5).T + [0.2, -0.4]
    noisy = exact + rng.normal(0, 0.05, exact.shape)
    got = fit_similarity(torch.tensor(points), torch.tensor(noisy)).numpy()
    for i in range(3):  # face_identity's: numpy's lstsq over the four parameters
        np.testing.assert_allclose(got[i], similarity_matrix(points[i], noisy[i]), atol=1e-10)
    recovered = fit_similarity(torch.tensor(points), torch.tensor(exact[0])).numpy()  # one target for all
    np.testing.assert_allclose(recovered[0], np.c_[rotation(30, 1.5), [0.2, -0.4]], atol=1e-12)


def test_crop_faces_is_opencv_s_warp_to_the_template():
    """A smooth image whose anchors sit turned, scaled and shifted: the crop is cv2.warpAffine's by the similarity
    from the pixel anchors to the template (cv2's fixed-point bilinear weights: within 1/100)."""
    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.uniform(0, 1, (128, 128, 3)).astype(np.float32), (0, 0), 3)
    image = (image - image.min()) / (image.max() - image.min())
    template = np.array(ANCHOR_TEMPLATE)
    anchors = template @ rotation(-12, 0.8).T + [20, 6]
    want = cv2.warpAffine(image, similarity_matrix(anchors, template), (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    got = crop_faces(torch.from_numpy(image).permute(2, 0, 1)[None],
                     torch.from_numpy(to_keypoint_space(anchors, (128, 128)))[None].float())
    assert got.shape == (1, 3, SIZE, SIZE)
    assert np.abs(got[0].permute(1, 2, 0).numpy() - want).max() < 0.01


def pixel_embedding(crops: torch.Tensor) -> torch.Tensor:
    """A stand-in network for the invariants: the crop's pixels about their mean, so only equal crops have cosine 1."""
    flat = crops.flatten(1)
    return flat - flat.mean(1, keepdim=True)


@pytest.fixture
def identity_loss(tmp_path) -> IdentityLoss:
    """IdentityLoss on a tiny graph with MobileFace's ops (112 x 112 in: 57 x 56 after its stem, 29 x 28 after the
    depthwise), written where fetch-data puts the real one."""
    folder = tmp_path / Path(MODEL_FILE).parent
    folder.mkdir(parents=True)
    tiny_mobileface(29, 28).write(folder, quantize="").rename(tmp_path / MODEL_FILE)
    return IdentityLoss(tmp_path)


def textured_faces(count: int, seed: int = 2) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    frames = np.stack([cv2.GaussianBlur(rng.uniform(0, 1, (128, 128, 3)).astype(np.float32), (0, 0), 2)
                       for _ in range(count)])
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()


def anchors_at(count: int) -> torch.Tensor:
    """The template's points at 0.9 of its scale, centred in a 128 x 128 frame, in keypoint space."""
    pixels = (np.array(ANCHOR_TEMPLATE) - 56) * 0.9 + 64
    return torch.from_numpy(to_keypoint_space(pixels, (128, 128))).float().expand(count, -1, -1).clone()


def test_the_drawn_face_is_aligned_by_the_motion_it_was_given(identity_loss):
    """A frame that is its avatar moved 6 pixels right and 4 down scores 0 when the keypoints say so, and scores
    as another face when they say the head stayed: the crop follows the head."""
    identity_loss.net = pixel_embedding
    avatar = textured_faces(2)
    drawn = torch.roll(avatar, (4, 6), (2, 3))
    keypoints = torch.rand(2, 10, 2) * 2 - 1
    shift = torch.tensor([6, 4]) * 2 / 127  # pixels in keypoint space
    anchors = anchors_at(2)
    told = identity_loss(drawn, avatar, anchors, keypoints, keypoints + shift)
    untold = identity_loss(drawn, avatar, anchors, keypoints, keypoints)
    assert float(told) == pytest.approx(0, abs=1e-5)
    assert float(untold) > 0.3
    assert float(identity_loss(avatar, avatar, anchors, keypoints, keypoints)) == pytest.approx(0, abs=1e-6)


def test_only_avatars_with_a_face_count_and_only_the_drawn_frames_learn(identity_loss):
    avatar, drawn = textured_faces(3), textured_faces(3, seed=5)
    drawn.requires_grad_(True)
    avatar.requires_grad_(True)
    keypoints = torch.rand(3, 10, 2) * 2 - 1
    anchors = anchors_at(3)
    anchors[0] = float("nan")  # no face found in the first avatar
    loss = identity_loss(drawn, avatar, anchors, keypoints, keypoints)
    alone = identity_loss(drawn[1:], avatar[1:], anchors[1:], keypoints[1:], keypoints[1:])
    assert float(loss.detach()) == pytest.approx(float(alone.detach()), rel=1e-6) and float(loss.detach()) > 0
    loss.backward()
    assert avatar.grad is None
    assert drawn.grad[0].abs().max() == 0 and drawn.grad[1:].abs().max() > 0
    anchors[:] = float("nan")
    nothing = identity_loss(drawn, avatar, anchors, keypoints, keypoints)
    assert float(nothing.detach()) == 0
    nothing.backward()


def test_a_missing_network_says_how_to_get_it(tmp_path):
    with pytest.raises(UserError, match="fetch-data"):
        IdentityLoss(tmp_path)


def with_identity_weight(config, weight: float):
    weights = dataclasses.replace(config.train.loss_weights, identity=weight)
    return dataclasses.replace(config, train=dataclasses.replace(config.train, loss_weights=weights))


def with_landmarks(clips: Path, copy: Path) -> Path:
    """The synthetic clips with landmark caches whose anchor points sit around each frame's centre."""
    import shutil
    shutil.copytree(clips, copy)
    face = np.zeros((68, 2))
    face[[37, 38]], face[[43, 44]], face[62], face[66] = (22, 24), (42, 24), (32, 44), (32, 47)
    for folder in (copy / "train").iterdir():
        frames = len(list(folder.glob("*.png")))
        save_landmarks(folder / LANDMARK_FILE, [face] * frames, (64, 64))
    return copy


def test_training_with_the_identity_term(clips, tmp_path, tiny_fomm, identity_loss):
    """The term is in every step's losses, with the anchor landmarks it aligns by; the checkpoint holds the
    model's tensors only."""
    config_path, _ = tiny_fomm
    config = with_identity_weight(load_config(config_path), 1.0)
    data = with_landmarks(clips, tmp_path / "data")
    options = TrainOptions(output=str(tmp_path / "a"), epochs=1, sheet_every=0, seed=0, identity_model=str(tmp_path))
    result = train(config, VideoDataset.from_config(config, data, seed=0), options)
    assert all(h["identity"] > 0 for h in result.history)
    plain = train(load_config(config_path), VideoDataset.from_config(config, data, seed=0),
                  TrainOptions(output=str(tmp_path / "b"), epochs=1, sheet_every=0))
    assert "identity" not in plain.history[0]
    saved, alone = read_checkpoint(result.checkpoint), read_checkpoint(plain.checkpoint)
    assert {k: set(v) for k, v in saved.items() if k in ("kp_detector", "generator")} == \
        {k: set(v) for k, v in alone.items() if k in ("kp_detector", "generator")}


def test_identity_mistakes_are_one_line_errors(clips, tmp_path):
    config = with_identity_weight(load_config(TEST_CONFIGS / "tiny-fomm.yaml"), 1.0)
    with pytest.raises(DatasetError, match="loss_weights.anchor or .identity"):
        VideoDataset.from_config(config, clips, seed=0)
    data = with_landmarks(clips, tmp_path / "data")
    with pytest.raises(UserError, match="fetch-data"):
        train(config, VideoDataset.from_config(config, data, seed=0),
              TrainOptions(output=str(tmp_path / "run"), epochs=1, sheet_every=0, identity_model=str(tmp_path)))
    coseg = with_identity_weight(load_config(TEST_CONFIGS / "tiny-coseg.yaml"), 1.0)
    with pytest.raises(UserError, match="needs a FOMM model"):
        train(coseg, VideoDataset.from_config(coseg, data, seed=0),
              TrainOptions(output=str(tmp_path / "run"), epochs=1, sheet_every=0))

