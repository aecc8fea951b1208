"""Losses: zero where they must be, equivariance exact for an exactly equivariant detector."""
import pytest
import torch

from motion.config import TransformParams
from motion.errors import UserError
from training.losses import (
    VGG19_LAYOUT,
    ImagePyramid,
    RandomTps,
    ReconstructionLoss,
    Vgg19Features,
    equivariance_losses,
    masked_l1,
    ssim,
)


def test_pyramid_scales():
    pyramid = ImagePyramid([1, 0.5, 0.25], 3)
    out = pyramid(torch.rand(2, 3, 64, 64))
    assert [tuple(o.shape[2:]) for o in out] == [(64, 64), (32, 32), (16, 16)]


def test_fallback_reconstruction_loss_zero_on_identical_and_positive_otherwise():
    with pytest.warns(UserWarning, match="falls back to pyramid L1"):
        loss = ReconstructionLoss([1, 0.5], [10] * 5)
    image = torch.rand(2, 3, 32, 32)
    assert loss(image, image).item() == pytest.approx(0.0, abs=1e-5)
    assert loss(image, torch.rand(2, 3, 32, 32)).item() > 1
    assert ssim(image, image).item() == pytest.approx(1.0, abs=1e-5)


def torchvision_style_vgg(path):
    """A random VGG-19 saved with torchvision's key names (features.N.weight), as users will have."""
    state, index, channels = {}, 0, 3
    for item in VGG19_LAYOUT:
        if item == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = torch.randn(item, channels, 3, 3) * 0.05
        state[f"features.{index}.bias"] = torch.zeros(item)
        channels, index = item, index + 2
    state["classifier.0.weight"] = torch.zeros(1)  # present in the real file, ignored
    torch.save(state, path)
    return path


def test_vgg_perceptual_loss_from_local_torchvision_file(tmp_path):
    weights = torchvision_style_vgg(tmp_path / "vgg19.pth")
    vgg = Vgg19Features(weights)
    feats = vgg(torch.rand(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    assert [f.shape[2] for f in feats] == [64, 32, 16, 8, 4]
    loss = ReconstructionLoss([1, 0.5], [10] * 5, vgg=weights)
    image = torch.rand(1, 3, 64, 64)
    assert loss(image, image).item() == 0.0
    assert loss(image, 1 - image).item() > 0


def test_vgg_errors(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(UserError, match="not a torchvision VGG-19"):
        Vgg19Features(bad)
    with pytest.raises(UserError, match="cannot read VGG-19 weights"):
        Vgg19Features(tmp_path / "missing.pth")


def test_random_tps_with_zero_sigmas_is_identity():
    tps = RandomTps.sample(3, TransformParams(sigma_affine=0, sigma_tps=0, points_tps=5))
    points = torch.rand(3, 10, 2) * 2 - 1
    assert torch.allclose(tps.warp_points(points), points)
    assert torch.allclose(tps.jacobian(points), torch.eye(2).expand(3, 10, 2, 2))


def test_random_tps_moves_images_and_points_consistently():
    """A bright dot at p in the warped image sits at T^-1(p): mapping the dot's warped position back
    through T lands on the original dot (up to sampling)."""
    torch.manual_seed(0)
    tps = RandomTps.sample(1, TransformParams(sigma_affine=0.05, sigma_tps=0.005, points_tps=5))
    image = torch.zeros(1, 1, 97, 97)
    image[0, 0, 48, 60] = 1  # dot at x = 60/48 - 1 = 0.25, y = 0
    warped = tps.warp_image(torch.nn.functional.avg_pool2d(image, 5, 1, 2) * 25)
    from motion.geometry import soft_argmax
    found = soft_argmax(warped / warped.sum())
    back = tps.warp_points(found)
    assert torch.allclose(back, torch.tensor([[[0.25, 0.0]]]), atol=0.02)


def test_equivariance_losses_vanish_for_an_exactly_equivariant_detector():
    torch.manual_seed(1)
    tps = RandomTps.sample(2, TransformParams())
    warped_value = torch.rand(2, 5, 2) * 1.6 - 0.8
    warped_jacobian = torch.eye(2) + 0.2 * torch.randn(2, 5, 2, 2)
    value = tps.warp_points(warped_value)  # what a perfectly equivariant detector reports on the original
    jacobian = torch.matmul(tps.jacobian(warped_value), warped_jacobian)
    v, j = equivariance_losses(value, jacobian, warped_value, warped_jacobian, tps)
    assert v.item() == pytest.approx(0, abs=1e-6) and j.item() == pytest.approx(0, abs=1e-5)
    v2, j2 = equivariance_losses(value + 0.1, jacobian * 1.5, warped_value, warped_jacobian, tps)
    assert v2.item() == pytest.approx(0.1, abs=1e-5) and j2.item() > 0.05


def test_masked_l1_is_the_offset_inside_the_mask_and_ignores_the_rest():
    """Prediction = target + 0.3 inside the mask (one item's mouth, none in the other item: no face) and
    anything outside it: the loss is exactly 0.3, times the weight in training."""
    target = torch.rand(2, 3, 16, 16)
    mask = torch.zeros(2, 1, 16, 16, dtype=torch.bool)
    mask[0, :, 4:8, 5:12] = True
    prediction = torch.where(mask, target + 0.3, torch.rand(2, 3, 16, 16))
    assert masked_l1(prediction, target, mask).item() == pytest.approx(0.3, abs=1e-6)
    assert masked_l1(prediction, target, torch.zeros_like(mask)).item() == 0
