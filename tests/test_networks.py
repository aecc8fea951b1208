"""Networks built from the official configs have exactly the official state_dicts, the official
constants and the official tensor shapes; invariants of the motion model hold."""
from pathlib import Path

import pytest
import torch

from conftest import CONFIGS, TEST_CONFIGS
from motion.blocks import AntiAliasDownsample, gaussian_kernel
from motion.config import load_config
from motion.geometry import coordinate_grid
from motion.keypoints import Keypoints
from motion.networks import build_networks
from motion.reconstruction import part_flow, parts_mask, visibility_mask
from motion.segmentation import Segments

# Copies of shared/reference: every official state_dict key with its shape.
REFERENCE = Path(__file__).resolve().parent / "reference"


def reference_keys(name: str) -> dict[str, list[int]]:
    out = {}
    for line in (REFERENCE / name).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, _ = line.split("\t")
        out[key] = [int(s) for s in shape.strip("[]").split(",") if s.strip()]
    return out


@pytest.fixture(scope="module")
def vox_fomm():
    torch.manual_seed(0)
    nets = build_networks(load_config(CONFIGS / "vox-256.yaml"), with_discriminator=True)
    return {k: v.eval() for k, v in nets.items()}


@pytest.fixture(scope="module")
def vox_coseg():
    torch.manual_seed(0)
    return {k: v.eval() for k, v in build_networks(load_config(CONFIGS / "vox-256-sem-10segments.yaml")).items()}


@pytest.mark.parametrize("kind,name,file,params", [
    ("fomm", "kp_detector", "fomm_vox256_kp_detector.txt", 14215368),
    ("fomm", "generator", "fomm_vox256_generator.txt", 45575391),
    ("fomm", "discriminator", "fomm_vox256_discriminator.txt", 2758849),
    ("coseg", "segmentation_module", "coseg_vox10_segmentation_module.txt", 14234244),
    ("coseg", "reconstruction_module", "coseg_vox10_reconstruction_module.txt", 7845123),
])
def test_state_dicts_equal_the_official_ones(kind, name, file, params, vox_fomm, vox_coseg):
    net = (vox_fomm if kind == "fomm" else vox_coseg)[name]
    mine = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert mine == reference_keys(file)
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == params


def test_anti_alias_kernel_constants():
    kernel = gaussian_kernel(0.25)
    assert kernel.shape == (13, 13)  # sigma 1.5, size 2 * round(6) + 1
    assert kernel.sum().item() == pytest.approx(1.0)
    assert torch.allclose(kernel, kernel.flip(0)) and torch.allclose(kernel, kernel.T)
    ratio = kernel[6, 7] / kernel[6, 6]
    assert ratio.item() == pytest.approx(torch.exp(torch.tensor(-1 / (2 * 1.5 ** 2))).item(), rel=1e-5)
    down = AntiAliasDownsample(3, 0.25)
    out = down(torch.full((1, 3, 256, 256), 0.5))
    assert out.shape == (1, 3, 64, 64)
    assert torch.allclose(out[:, :, 2:-2, 2:-2], torch.full_like(out[:, :, 2:-2, 2:-2], 0.5))
    # stride-4 subsampling of the blurred image keeps pixels 0, 4, 8, ...
    image = torch.rand(1, 1, 32, 32)
    blurred = torch.nn.functional.conv2d(torch.nn.functional.pad(image, (6, 6, 6, 6)), down.weight[:1])
    assert torch.allclose(AntiAliasDownsample(1, 0.25)(image), blurred[:, :, ::4, ::4])


@torch.no_grad()
def test_fomm_vox256_shapes_and_identity_jacobian_init(vox_fomm):
    kp_detector, generator = vox_fomm["kp_detector"], vox_fomm["generator"]
    image = torch.rand(1, 3, 256, 256)
    features = kp_detector.predictor(kp_detector.down(image))
    assert features.shape == (1, 35, 64, 64)
    assert kp_detector.kp(features).shape == (1, 10, 58, 58)  # 7x7 conv, no padding
    fresh = build_networks(load_config(CONFIGS / "vox-256.yaml"))["kp_detector"].eval()
    kp = fresh(image)
    assert kp.value.shape == (1, 10, 2) and kp.value.abs().max() <= 1
    assert torch.allclose(kp.jacobian, torch.eye(2).expand(1, 10, 2, 2), atol=1e-6)  # zero weights, I bias
    out = generator(image, kp, kp)
    assert out.prediction.shape == (1, 3, 256, 256)
    assert out.motion.mask.shape == (1, 11, 64, 64)
    assert out.motion.occlusion.shape == (1, 1, 64, 64)
    assert out.motion.sparse_deformed.shape == (1, 11, 3, 64, 64)
    assert torch.allclose(out.motion.mask.sum(1), torch.ones(1, 64, 64), atol=1e-5)
    assert 0 <= out.prediction.min() and out.prediction.max() <= 1


@torch.no_grad()
def test_dense_motion_is_identity_when_nothing_moves():
    nets = build_networks(load_config(TEST_CONFIGS / "tiny-fomm.yaml"))
    dense = nets["generator"].dense_motion_network.eval()
    source_small = torch.rand(2, 3, 32, 32)
    kp = Keypoints(torch.rand(2, 5, 2) * 2 - 1, torch.eye(2).repeat(2, 5, 1, 1) + 0.1 * torch.rand(2, 5, 2, 2))
    motion = dense(source_small, kp, kp)
    # every sparse motion is the identity, so any softmax mix of them is too
    assert torch.allclose(motion.deformation, coordinate_grid(32, 32).expand(2, 32, 32, 2), atol=1e-5)


@torch.no_grad()
def test_coseg_shapes_flow_visibility_and_swap(vox_coseg):
    seg_module, rec = vox_coseg["segmentation_module"], vox_coseg["reconstruction_module"]
    image = torch.rand(1, 3, 256, 256)
    seg = seg_module(image)
    assert seg.segmentation.shape == (1, 11, 64, 64)
    assert seg.shift.shape == (1, 10, 2) and seg.affine.shape == (1, 10, 2, 2)
    assert torch.allclose(seg.segmentation.sum(1), torch.ones(1, 64, 64), atol=1e-5)
    assert torch.allclose(part_flow(seg, seg), coordinate_grid(64, 64).unsqueeze(0), atol=1e-5)
    # visibility = 1 - fg_source * (1 - fg_target), checked on hand-made masks
    def fg(v):
        return torch.cat([torch.full((1, 1, 1, 1), 1 - v), torch.full((1, 1, 1, 1), v)], 1)
    src, tgt = Segments(fg(0.8), None, None), Segments(fg(0.25), None, None)
    assert visibility_mask(tgt, src).item() == pytest.approx(1 - 0.8 * 0.75)
    features = rec.encode(image)
    target = torch.rand(1, 3, 256, 256)
    seg_t = seg_module(target)
    target_features = rec.encode(target)
    none = rec.swap(features, target_features, seg_t, seg, torch.zeros(1, 1, 64, 64))
    assert torch.allclose(none, rec.decode(target_features), atol=1e-6)  # nothing swapped: the target
    whole = rec.swap(features, target_features, seg_t, seg, torch.ones(1, 1, 64, 64))
    assert torch.allclose(whole, rec(image, seg_t, seg), atol=1e-6)  # everything: the reconstruction
    mask = parts_mask(seg_t, [1, 2])
    assert torch.allclose(mask, seg_t.segmentation[:, 1:3].sum(1, keepdim=True))
