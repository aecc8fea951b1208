"""Training losses of both papers: multi-scale perceptual reconstruction and equivariance under
random thin-plate-spline warps."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from motion.blocks import maybe_downsample
from motion.config import TransformParams
from motion.errors import UserError
from motion.geometry import coordinate_grid, tps_jacobian, tps_warp_points

DEFAULT_VGG = Path.home() / ".cache" / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision vgg19 'features' layout: conv channels per stage, 'M' = max pool.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)
VGG19_SLICE_ENDS = (2, 7, 12, 21, 30)  # after relu1_1, relu2_1, relu3_1, relu4_1, relu5_1


class ImagePyramid(nn.Module):
    """The image at each training scale, blurred before subsampling (the official anti-alias filter)."""

    def __init__(self, scales: Sequence[float], channels: int):
        super().__init__()
        self.scales = tuple(scales)
        self.downs = nn.ModuleList(maybe_downsample(channels, s) for s in self.scales)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return [down(image) for down in self.downs]


class Vgg19Features(nn.Module):
    """VGG-19 up to relu5_1, frozen, returning the five slice outputs the perceptual loss compares.

    Loads torchvision-format weights (``features.N.weight``) from a local file: nothing is downloaded.
    """

    def __init__(self, weights: str | Path):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG19_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU()]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as err:  # torch.load raises many types for files that are not checkpoints
            raise UserError(f"cannot read VGG-19 weights {weights} ({err.__class__.__name__}); pass --vgg with "
                            "torchvision's vgg19-dcbb9e9d.pth or omit it to use the L1+SSIM fallback") from None
        if not isinstance(state, dict):
            state = {}
        feature_state = {k[len("features."):]: v for k, v in state.items()
                         if isinstance(k, str) and k.startswith("features.")}
        try:
            self.features.load_state_dict(feature_state)
        except RuntimeError:
            raise UserError(f"{weights} is not a torchvision VGG-19 state_dict (features.N.weight keys); pass "
                            "torchvision's vgg19-dcbb9e9d.pth") from None
        self.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        out, start, x = [], 0, (image - self.mean) / self.std
        for end in VGG19_SLICE_ENDS:
            x = self.features[start:end](x)
            out.append(x)
            start = end
        return out


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Mean structural similarity with a box window: compares local means, contrast and structure."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    pad = window // 2
    mu_x = F.avg_pool2d(F.pad(x, [pad] * 4, mode="reflect"), window, 1)
    mu_y = F.avg_pool2d(F.pad(y, [pad] * 4, mode="reflect"), window, 1)
    sxx = F.avg_pool2d(F.pad(x * x, [pad] * 4, mode="reflect"), window, 1) - mu_x ** 2
    syy = F.avg_pool2d(F.pad(y * y, [pad] * 4, mode="reflect"), window, 1) - mu_y ** 2
    sxy = F.avg_pool2d(F.pad(x * y, [pad] * 4, mode="reflect"), window, 1) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2)
    return (num / den).mean()


class ReconstructionLoss(nn.Module):
    """Multi-scale perceptual loss: sum over pyramid scales and VGG slices of weight_i * L1(features).

    Without VGG weights (they cannot be downloaded here) each scale instead costs
    weight_0 * (L1 + (1 - SSIM)) / 2 on pixels: the same pyramid, a structural term in place of
    learned features. A warning says so.
    """

    def __init__(self, scales: Sequence[float], weights: Sequence[float], vgg: str | Path | None = None,
                 channels: int = 3):
        super().__init__()
        self.pyramid = ImagePyramid(scales, channels)
        self.weights = tuple(weights)
        if vgg is None and DEFAULT_VGG.is_file():
            vgg = DEFAULT_VGG
        self.vgg = Vgg19Features(vgg) if vgg is not None else None
        if self.vgg is None:
            warnings.warn(f"no VGG-19 weights (--vgg or {DEFAULT_VGG}): the perceptual loss falls back to "
                          "pyramid L1 + SSIM", stacklevel=2)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = prediction.new_zeros(())
        for pred, real in zip(self.pyramid(prediction), self.pyramid(target)):
            if self.vgg is not None:
                for weight, a, b in zip(self.weights, self.vgg(pred), self.vgg(real)):
                    total = total + weight * (a - b.detach()).abs().mean()
            else:
                total = total + self.weights[0] * 0.5 * ((pred - real).abs().mean() + 1 - ssim(pred, real))
        return total


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over the pixels (and channels) where `mask` (b, 1, h, w) is set, the batch
    pooled: the mouth and eyes are a few percent of the frame, so a mean over all of it barely sees them.
    Zero when no pixel is masked (no face found in any driving frame)."""
    mask = mask.to(prediction.dtype)
    count = mask.sum() * prediction.shape[1]
    return ((prediction - target).abs() * mask).sum() / count.clamp(min=1)


@dataclass
class RandomTps:
    """A random smooth deformation per batch item: affine theta (b, 2, 3) near [I | 0] plus
    thin-plate radial terms on a points_tps x points_tps control grid."""
    theta: torch.Tensor
    control_points: torch.Tensor
    control_params: torch.Tensor

    @classmethod
    def sample(cls, batch: int, params: TransformParams, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> "RandomTps":
        eye = torch.eye(2, 3, device=device).unsqueeze(0)
        theta = eye + params.sigma_affine * torch.randn(batch, 2, 3, generator=generator).to(device)
        n = params.points_tps
        controls = coordinate_grid(n, n, device=device).view(-1, 2)
        weights = params.sigma_tps * torch.randn(batch, n * n, generator=generator).to(device)
        return cls(theta, controls, weights)

    def warp_points(self, points: torch.Tensor) -> torch.Tensor:
        return tps_warp_points(points, self.theta, self.control_points, self.control_params)

    def jacobian(self, points: torch.Tensor) -> torch.Tensor:
        return tps_jacobian(points, self.theta, self.control_points, self.control_params)

    def warp_image(self, image: torch.Tensor) -> torch.Tensor:
        """Output pixel z shows input pixel T(z) (reflection at the borders, as the official transform)."""
        b, _, h, w = image.shape
        grid = coordinate_grid(h, w, image.dtype, image.device).view(1, -1, 2).expand(b, -1, -1)
        return F.grid_sample(image, self.warp_points(grid).view(b, h, w, 2), padding_mode="reflection",
                             align_corners=False)


def equivariance_losses(value: torch.Tensor, jacobian: torch.Tensor | None, warped_value: torch.Tensor,
                        warped_jacobian: torch.Tensor | None, transform: RandomTps) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Keypoints found on T-warped frames, mapped back through T, must equal the frame's own:
    L1(p - T(p_w)); and Jacobians must compose with T's derivative: L1(I - J^-1 dT(p_w) J_w).

    The Jacobian term is written against the identity rather than as J = dT J_w, which keeps its
    scale independent of J's and is stable to train.
    """
    value_loss = (value - transform.warp_points(warped_value)).abs().mean()
    if jacobian is None or warped_jacobian is None:
        return value_loss, None
    composed = torch.matmul(transform.jacobian(warped_value), warped_jacobian)
    product = torch.matmul(torch.inverse(jacobian), composed)
    eye = torch.eye(2, dtype=product.dtype, device=product.device)
    return value_loss, (eye - product).abs().mean()
