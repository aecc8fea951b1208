"""The networks of motion/ against a naive eval-mode re-implementation written from the papers' architecture
descriptions: plain torch convolutions with each layer's own weights, BatchNorm / InstanceNorm, pooling,
upsampling, Gaussians and softmaxes spelled out by hand, on tiny non-square inputs with randomised weights
and running statistics (mutation testing, issue 12). Layer widths are checked against hand-computed numbers.
None of these references calls the module under test, so a changed constant, axis or order shows."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from motion.blocks import (
    AntiAliasDownsample,
    ConvNormRelu,
    DownBlock,
    Hourglass,
    ResBlock,
    UpBlock,
    gaussian_kernel,
    maybe_downsample,
)
from motion.config import DiscriminatorParams, parse_config
from motion.dense_motion import DenseMotionNetwork
from motion.discriminator import Discriminator, DiscriminatorBlock, MultiScaleDiscriminator
from motion.generator import EncoderDecoder, OcclusionAwareGenerator, warp_features
from motion.keypoints import KeypointDetector, Keypoints, read_anchors
from motion.networks import build_networks
from motion.reconstruction import ReconstructionModule, part_flow, parts_mask, visibility_mask
from motion.segmentation import SegmentationModule, Segments

# grid_sample without an explicit align_corners (a default that changed in torch 1.3) and softmax without an explicit
# dim warn: errors here
pytestmark = [pytest.mark.filterwarnings("error:Default grid_sample"),
              pytest.mark.filterwarnings("error:Implicit dimension choice")]
DT = torch.float64
TOL = dict(rtol=1e-9, atol=1e-11)


def randomised(module: nn.Module, seed: int) -> nn.Module:
    """float64, eval mode, every parameter and BatchNorm statistic random (so no constant hides a mistake)."""
    g = torch.Generator().manual_seed(seed)
    module = module.to(DT).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=DT) * 0.3)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g, dtype=DT) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g, dtype=DT) + 0.5)
    return module


def rand(seed: int, *shape) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


# --- naive layers (padding, kernel sizes and eps written here, from the official architecture) ---

def conv(x, m: nn.Conv2d, padding: int):
    return F.conv2d(x, m.weight, m.bias, padding=padding)


def bn(x, m: nn.BatchNorm2d):
    view = (1, -1, 1, 1)
    return ((x - m.running_mean.view(view)) / torch.sqrt(m.running_var.view(view) + 1e-5) * m.weight.view(view)
            + m.bias.view(view))


def relu(x):
    return torch.where(x > 0, x, torch.zeros_like(x))


def same(x, m, padding=1):  # conv -> BN -> ReLU
    return relu(bn(conv(x, m.conv, padding), m.norm))


def avg_pool2(x):
    b, c, h, w = x.shape
    return x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(b, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))


def nearest_up2(x):
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def down(x, m):
    return avg_pool2(same(x, m))


def up(x, m):
    return same(nearest_up2(x), m)


def res(x, m):
    out = conv(relu(bn(x, m.norm1)), m.conv1, 1)
    return x + conv(relu(bn(out, m.norm2)), m.conv2, 1)


def hourglass(x, m: Hourglass):
    skips = [x]
    for block in m.encoder.down_blocks:
        skips.append(down(skips[-1], block))
    out = skips.pop()
    for block in m.decoder.up_blocks:
        out = torch.cat([up(out, block), skips.pop()], dim=1)
    return out


def kernel_by_hand(scale: float) -> torch.Tensor:
    sigma = (1 / scale - 1) / 2
    size = 2 * round(4 * sigma) + 1
    k = torch.tensor([[math.exp(-((i - (size - 1) / 2) ** 2 + (j - (size - 1) / 2) ** 2) / (2 * sigma ** 2))
                       for j in range(size)] for i in range(size)], dtype=DT)
    return k / k.sum()


def anti_alias(x, scale: float):
    """Blur with the Gaussian (zero padding, centred), then keep pixel floor(i / scale) as output pixel i."""
    k = kernel_by_hand(scale)
    pad = k.shape[0] // 2
    c = x.shape[1]
    blurred = F.conv2d(F.pad(x, (pad, pad, pad, pad)), k.expand(c, 1, *k.shape), groups=c)
    rows = [math.floor(i / scale) for i in range(int(x.shape[2] * scale))]
    cols = [math.floor(j / scale) for j in range(int(x.shape[3] * scale))]
    return blurred[:, :, rows][:, :, :, cols]


def grid(h, w):
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, dtype=DT), torch.linspace(-1, 1, w, dtype=DT), indexing="ij")
    return torch.stack([xs, ys], -1)


def soft_argmax_and_pool(logits, temperature, maps=None):
    """Softmax over all pixels of each channel / temperature, the expected grid position, and the 4 maps pooled
    under each heatmap."""
    b, k, h, w = logits.shape
    heat = torch.softmax(logits.reshape(b, k, -1) / temperature, -1).reshape(b, k, h, w)
    value = (heat.unsqueeze(-1) * grid(h, w)).sum(dim=(2, 3))
    if maps is None:
        return heat, value, None
    pooled = (heat.unsqueeze(2) * maps).sum(dim=(3, 4))  # maps: (b, k or 1, 4, h, w)
    return heat, value, pooled.reshape(b, k, 2, 2)


def affine_flows(kp_s, kp_d, jac_s, jac_d, h, w):
    z = grid(h, w)
    flows = [z.expand(kp_s.shape[0], h, w, 2)]
    for k in range(kp_s.shape[1]):
        a = jac_s[:, k] @ torch.inverse(jac_d[:, k])
        flows.append(torch.einsum("bij,bhwj->bhwi", a, z - kp_d[:, k].view(-1, 1, 1, 2)) + kp_s[:, k].view(-1, 1, 1, 2))
    return torch.stack(flows, 1)


def sample(x, flow):
    return F.grid_sample(x, flow, mode="bilinear", padding_mode="zeros", align_corners=False)


def encoder_decoder(x, m: EncoderDecoder):
    out = same(x, m.first, padding=3)
    for block in m.down_blocks:
        out = down(out, block)
    return out


def decode(features, m: EncoderDecoder):
    out = features
    for block in m.bottleneck:
        out = res(out, block)
    for block in m.up_blocks:
        out = up(out, block)
    return torch.sigmoid(conv(out, m.final, 3))


# --- blocks ---

def test_blocks_against_naive_layers():
    x = rand(0, 2, 3, 6, 8)
    m = randomised(ConvNormRelu(3, 5), 1)
    assert m.conv.weight.shape == (5, 3, 3, 3) and m.norm.weight.shape == (5,)
    torch.testing.assert_close(m(x), same(x, m), **TOL)
    m = randomised(ConvNormRelu(3, 5, kernel_size=7, padding=3), 2)
    assert m.conv.weight.shape == (5, 3, 7, 7)
    torch.testing.assert_close(m(x), same(x, m, padding=3), **TOL)
    m = randomised(DownBlock(3, 4), 3)
    torch.testing.assert_close(m(x), down(x, m), **TOL)
    assert m(x).shape == (2, 4, 3, 4)
    m = randomised(UpBlock(3, 4), 4)
    torch.testing.assert_close(m(x), up(x, m), **TOL)
    assert m(x).shape == (2, 4, 12, 16)
    m = randomised(ResBlock(3), 5)
    assert {k: tuple(v.shape) for k, v in m.state_dict().items() if k.endswith("weight")} == {
        "conv1.weight": (3, 3, 3, 3), "conv2.weight": (3, 3, 3, 3), "norm1.weight": (3,), "norm2.weight": (3,)}
    torch.testing.assert_close(m(x), res(x, m), **TOL)


def test_hourglass_widths_by_hand_and_output():
    m = randomised(Hourglass(block_expansion=4, in_features=3, num_blocks=3, max_features=10), 6)
    # encoder widths min(10, 4 * 2^l): 8, 10, 10; decoder: 10 -> 10, (10 + 10) -> 8, (8 + 8) -> 4
    assert [tuple(b.conv.weight.shape[:2]) for b in m.encoder.down_blocks] == [(8, 3), (10, 8), (10, 10)]
    assert [tuple(b.conv.weight.shape[:2]) for b in m.decoder.up_blocks] == [(10, 10), (8, 20), (4, 16)]
    assert m.out_filters == 7 and m.decoder.out_filters == 7
    x = rand(7, 2, 3, 8, 16)
    out = m(x)
    assert out.shape == (2, 7, 8, 16)
    torch.testing.assert_close(out, hourglass(x, m), **TOL)
    assert torch.equal(out[:, 4:], x)  # the input rides along as the last channels
    default = Hourglass(block_expansion=2, in_features=1)  # defaults: 3 blocks, at most 256 features
    assert len(default.encoder.down_blocks) == 3
    wide = Hourglass(block_expansion=128, in_features=1, num_blocks=2)
    assert wide.encoder.down_blocks[1].conv.weight.shape[0] == 256


@pytest.mark.parametrize("scale, size", [(0.5, 5), (0.25, 13), (1 / 3, 9), (0.4, 7)])  # 0.4: no integer stride
def test_gaussian_kernel_and_anti_alias_downsample(scale, size):
    kernel = gaussian_kernel(scale)
    assert kernel.shape == (size, size) and kernel.dtype == torch.float32
    torch.testing.assert_close(kernel.double(), kernel_by_hand(scale), rtol=1e-6, atol=1e-8)
    m = AntiAliasDownsample(2, scale).to(DT)
    assert m.weight.shape == (2, 1, size, size) and m.scale == scale
    x = rand(8, 1, 2, 12, 18)
    out = m(x)
    assert out.shape == (1, 2, int(12 * scale), int(18 * scale))
    torch.testing.assert_close(out, anti_alias(x, scale), rtol=1e-6, atol=1e-7)
    assert "weight" in dict(m.named_buffers())


def test_maybe_downsample():
    assert isinstance(maybe_downsample(3, 1), nn.Identity)
    assert isinstance(maybe_downsample(3, 0.5), AntiAliasDownsample) and maybe_downsample(3, 0.5).weight.shape[0] == 3


# --- FOMM ---

def test_read_anchors_per_keypoint_and_single_map():
    features = rand(9, 2, 6, 7, 9)
    anchor = randomised(nn.Conv2d(6, 3, 3, padding=1), 10)
    for maps_count in (3, 1):
        affine = randomised(nn.Conv2d(6, 4 * maps_count, 3, padding=1), 11)
        value, jac = read_anchors(features, anchor, affine, 0.3, maps_count)
        _, want_value, want_jac = soft_argmax_and_pool(
            conv(features, anchor, 1), 0.3, conv(features, affine, 1).reshape(2, maps_count, 4, 7, 9))
        torch.testing.assert_close(value, want_value, **TOL)
        torch.testing.assert_close(jac, want_jac, **TOL)
    value, jac = read_anchors(features, anchor, None, 0.3, 3)
    assert jac is None
    torch.testing.assert_close(value, soft_argmax_and_pool(conv(features, anchor, 1), 0.3)[1], **TOL)


@pytest.mark.parametrize("single, pad, scale", [(False, 0, 0.5), (True, 3, 1)])
def test_keypoint_detector(single, pad, scale):
    m = randomised(KeypointDetector(block_expansion=4, num_kp=3, num_channels=2, max_features=8, num_blocks=2,
                                    temperature=0.2, estimate_jacobian=True, scale_factor=scale,
                                    single_jacobian_map=single, pad=pad), 12)
    maps = 1 if single else 3
    assert m.kp.weight.shape == (3, 6, 7, 7) and m.jacobian.weight.shape == (4 * maps, 6, 7, 7)
    # hourglass widths min(8, 4 * 2^l): 8, 8 (the cap binds at level 2)
    assert [b.conv.out_channels for b in m.predictor.encoder.down_blocks] == [8, 8]
    image = rand(13, 2, 2, 16, 24)
    small = anti_alias(image, scale) if scale != 1 else image
    features = hourglass(small, m.predictor)
    _, value, jac = soft_argmax_and_pool(conv(features, m.kp, pad), 0.2,
                                         conv(features, m.jacobian, pad).reshape(2, maps, 4, *conv(features, m.kp,
                                                                                                  pad).shape[2:]))
    out = m(image)
    torch.testing.assert_close(out.value, value, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out.jacobian, jac, rtol=1e-6, atol=1e-7)


def test_fresh_jacobian_head_predicts_the_identity():
    m = KeypointDetector(block_expansion=4, num_kp=3, num_channels=1, max_features=8, num_blocks=1, temperature=0.1,
                         estimate_jacobian=True, single_jacobian_map=True).eval()
    assert torch.equal(m.jacobian.weight, torch.zeros_like(m.jacobian.weight))
    assert m.jacobian.bias.tolist() == [1.0, 0.0, 0.0, 1.0]
    out = m(torch.rand(1, 1, 16, 16))
    torch.testing.assert_close(out.jacobian, torch.eye(2).expand(1, 3, 2, 2))
    plain = KeypointDetector(block_expansion=4, num_kp=3, num_channels=1, max_features=8, num_blocks=1,
                             temperature=0.1)
    assert plain.jacobian is None and plain(torch.rand(1, 1, 16, 16)).jacobian is None
    assert plain.kp.padding == (0, 0) and isinstance(plain.down, nn.Identity) and plain.jacobian_maps == 3


def dense_motion_by_hand(m: DenseMotionNetwork, source_small, kp_d, kp_s, variance):
    b, c, h, w = source_small.shape
    z = grid(h, w)

    def gauss(points):
        return torch.exp(-((z.view(1, 1, h, w, 2) - points.view(b, -1, 1, 1, 2)) ** 2).sum(-1) / (2 * variance))

    heat = torch.cat([torch.zeros(b, 1, h, w, dtype=DT), gauss(kp_d.value) - gauss(kp_s.value)], 1)
    flows = affine_flows(kp_s.value, kp_d.value, kp_s.jacobian, kp_d.jacobian, h, w)
    n = flows.shape[1]
    deformed = torch.stack([sample(source_small, flows[:, i]) for i in range(n)], 1)
    inputs = torch.cat([heat.unsqueeze(2), deformed], 2).reshape(b, n * (c + 1), h, w)
    features = hourglass(inputs, m.hourglass)
    mask = torch.softmax(conv(features, m.mask, 3), 1)
    occlusion = torch.sigmoid(conv(features, m.occlusion, 3)) if m.occlusion is not None else None
    return (flows * mask.unsqueeze(-1)).sum(1), mask, occlusion, deformed


def keypoints(seed, b, k):
    g = torch.Generator().manual_seed(seed)
    value = torch.rand(b, k, 2, generator=g, dtype=DT) * 1.6 - 0.8
    jac = torch.eye(2, dtype=DT) + 0.3 * torch.randn(b, k, 2, 2, generator=g, dtype=DT)
    return Keypoints(value, jac)


@pytest.mark.parametrize("occlusion", [True, False])
def test_dense_motion(occlusion):
    m = randomised(DenseMotionNetwork(block_expansion=4, num_blocks=2, max_features=8, num_kp=2, num_channels=3,
                                      estimate_occlusion_map=occlusion, scale_factor=0.5, kp_variance=0.05), 14)
    assert m.hourglass.encoder.down_blocks[0].conv.weight.shape[1] == (2 + 1) * (3 + 1)
    assert [b.conv.out_channels for b in m.hourglass.encoder.down_blocks] == [8, 8]  # min(8, 4 * 2^l)
    assert m.mask.weight.shape[:2] == (3, 4 + 12)
    source = rand(15, 2, 3, 16, 24)
    small = m.downsample(source)
    torch.testing.assert_close(small, anti_alias(source, 0.5), rtol=1e-6, atol=1e-7)
    kp_d, kp_s = keypoints(16, 2, 2), keypoints(17, 2, 2)
    out = m(small, kp_d, kp_s)
    flow, mask, occ, deformed = dense_motion_by_hand(m, small, kp_d, kp_s, 0.05)
    torch.testing.assert_close(out.deformation, flow, **TOL)
    torch.testing.assert_close(out.mask, mask, **TOL)
    torch.testing.assert_close(out.sparse_deformed, deformed, **TOL)
    if occlusion:
        torch.testing.assert_close(out.occlusion, occ, **TOL)
    else:
        assert out.occlusion is None and m.occlusion is None
    default = DenseMotionNetwork(4, 1, 8, 2, 3)
    assert default.kp_variance == 0.01 and default.occlusion is None  # the official defaults


def test_warp_features_hides_by_the_resized_mask():
    features, flow = rand(18, 2, 3, 8, 12), rand(19, 2, 4, 6, 2) * 2.2 - 1.1
    mask = rand(20, 2, 1, 4, 6)
    dense = F.interpolate(flow.permute(0, 3, 1, 2), size=(8, 12), mode="bilinear", align_corners=False)
    dense = dense.permute(0, 2, 3, 1)
    want = sample(features, dense)
    torch.testing.assert_close(warp_features(features, flow, None), want, **TOL)
    big_mask = F.interpolate(mask, size=(8, 12), mode="bilinear", align_corners=False)
    torch.testing.assert_close(warp_features(features, flow, mask), want * big_mask, **TOL)


def test_generator_encode_animate_decode():
    m = randomised(OcclusionAwareGenerator(num_channels=3, num_kp=2, block_expansion=4, max_features=8,
                                           num_down_blocks=1, num_bottleneck_blocks=2, estimate_occlusion_map=True,
                                           dense_motion_params=dict(block_expansion=4, max_features=8, num_blocks=2,
                                                                    scale_factor=0.5)), 21)
    assert [tuple(b.conv.weight.shape[:2]) for b in m.down_blocks] == [(8, 4)]
    assert [tuple(b.conv.weight.shape[:2]) for b in m.up_blocks] == [(4, 8)]
    assert m.first.conv.weight.shape == (4, 3, 7, 7) and m.final.weight.shape == (3, 4, 7, 7)
    assert len(m.bottleneck) == 2 and m.bottleneck.r1.conv1.weight.shape == (8, 8, 3, 3)
    source = rand(22, 1, 3, 16, 16)
    kp_d, kp_s = keypoints(23, 1, 2), keypoints(24, 1, 2)
    out = m(source, kp_d, kp_s)
    features = encoder_decoder(source, m)
    torch.testing.assert_close(m.encode(source), features, **TOL)
    flow, mask, occ, _ = dense_motion_by_hand(m.dense_motion_network, anti_alias(source, 0.5), kp_d, kp_s, 0.01)
    torch.testing.assert_close(out.motion.deformation, flow, rtol=1e-6, atol=1e-7)
    warped = sample(features, flow) * occ  # flow and occlusion at 8x8, the features' size here
    torch.testing.assert_close(out.prediction, decode(warped, m), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=r"^the generator needs dense_motion_params \(the official configs all have "
                                         r"them\)$"):
        OcclusionAwareGenerator(3, 2, 4, 8, 1, 0)
    plain = OcclusionAwareGenerator(3, 2, 4, 8, 1, 0, dense_motion_params=dict(block_expansion=4, max_features=8,
                                                                                num_blocks=1))
    assert plain.dense_motion_network.occlusion is None  # no occlusion map unless asked


# --- co-part segmentation ---

def test_segmentation_module():
    m = randomised(SegmentationModule(block_expansion=4, num_segments=3, num_channels=2, max_features=8, num_blocks=2,
                                      temperature=0.4, estimate_affine_part=True, scale_factor=0.5), 25)
    assert m.shift.weight.shape == (3, 6, 7, 7) and m.affine.weight.shape == (12, 6, 7, 7)
    assert m.segmentation.weight.shape == (4, 6, 7, 7)
    assert [b.conv.out_channels for b in m.predictor.encoder.down_blocks] == [8, 8]  # min(8, 4 * 2^l)
    image = rand(26, 2, 2, 16, 24)
    features = hourglass(anti_alias(image, 0.5), m.predictor)
    _, shift, affine = soft_argmax_and_pool(conv(features, m.shift, 3), 0.4,
                                            conv(features, m.affine, 3).reshape(2, 3, 4, 8, 12))
    out = m(image)
    torch.testing.assert_close(out.shift, shift, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out.affine, affine, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out.segmentation, torch.softmax(conv(features, m.segmentation, 3), 1), rtol=1e-6,
                               atol=1e-7)
    fresh = SegmentationModule(4, 3, 2, 8, 1, 0.1, estimate_affine_part=True)
    assert fresh.affine.bias.tolist() == [1.0, 0.0, 0.0, 1.0] * 3 and not fresh.affine.weight.any()
    assert SegmentationModule(4, 3, 2, 8, 1, 0.1).affine is None


def segments(seed, b, k, h, w):
    g = torch.Generator().manual_seed(seed)
    seg = torch.softmax(torch.randn(b, k + 1, h, w, generator=g, dtype=DT) * 2, 1)
    shift = torch.rand(b, k, 2, generator=g, dtype=DT) * 1.6 - 0.8
    affine = torch.eye(2, dtype=DT) + 0.3 * torch.randn(b, k, 2, 2, generator=g, dtype=DT)
    return Segments(seg, shift, affine)


def test_part_flow_visibility_and_parts_mask():
    target, source = segments(27, 2, 3, 5, 7), segments(28, 2, 3, 5, 7)
    flows = affine_flows(source.shift, target.shift, source.affine, target.affine, 5, 7)
    torch.testing.assert_close(part_flow(target, source), (flows * target.segmentation.unsqueeze(-1)).sum(1), **TOL)
    fg_s = 1 - source.segmentation[:, 0:1]
    fg_t = 1 - target.segmentation[:, 0:1]
    torch.testing.assert_close(visibility_mask(target, source), 1 - fg_s * (1 - fg_t), **TOL)
    torch.testing.assert_close(parts_mask(target, (3, 1)), target.segmentation[:, 1:2] + target.segmentation[:, 3:4],
                               **TOL)


@pytest.mark.parametrize("visibility", [True, False])
def test_reconstruction_forward_and_swap(visibility):
    m = randomised(ReconstructionModule(num_channels=3, block_expansion=4, max_features=8, num_down_blocks=1,
                                        num_bottleneck_blocks=1, estimate_visibility=visibility), 29)
    source, target_image = rand(30, 2, 3, 12, 16), rand(31, 2, 3, 12, 16)
    seg_t, seg_s = segments(32, 2, 3, 6, 8), segments(33, 2, 3, 6, 8)
    flow = (affine_flows(seg_s.shift, seg_t.shift, seg_s.affine, seg_t.affine, 6, 8)
            * seg_t.segmentation.unsqueeze(-1)).sum(1)
    vis = 1 - (1 - seg_s.segmentation[:, :1]) * seg_t.segmentation[:, :1] if visibility else 1
    features, target_features = encoder_decoder(source, m), encoder_decoder(target_image, m)
    warped = sample(features, flow) * vis
    torch.testing.assert_close(m(source, seg_t, seg_s), decode(warped, m), **TOL)
    blend = rand(34, 2, 1, 12, 16)  # drawn at image size: resized to the features'
    small = F.interpolate(blend, size=(6, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(m.swap(features, target_features, seg_t, seg_s, blend),
                               decode(target_features * (1 - small) + warped * small, m), **TOL)
    other_flow = rand(36, 2, 6, 8, 2) * 2 - 1  # a flow given to warp_source is the one used
    torch.testing.assert_close(m.warp_source(features, seg_t, seg_s, other_flow), sample(features, other_flow) * vis,
                               **TOL)
    on_source = rand(35, 2, 1, 6, 8)  # drawn on the source: moved with the flow first
    moved = sample(on_source, flow)
    torch.testing.assert_close(m.swap(features, target_features, seg_t, seg_s, on_source, use_source_segmentation=True),
                               decode(target_features * (1 - moved) + warped * moved, m), **TOL)


# --- discriminator ---

def instance_norm(x, m):
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + 1e-5) * m.weight.view(1, -1, 1, 1) + m.bias.view(1, -1, 1, 1)


def test_discriminator_against_naive_blocks():
    m = randomised(Discriminator(num_channels=3, block_expansion=4, num_blocks=3, max_features=12, sn=False), 36)
    assert [tuple(b.conv.weight.shape) for b in m.down_blocks] == [(8, 3, 4, 4), (12, 8, 4, 4), (12, 12, 4, 4)]
    assert [b.norm is None for b in m.down_blocks] == [True, False, False]
    assert [b.pool for b in m.down_blocks] == [True, True, False]
    assert m.conv.weight.shape == (1, 12, 1, 1)
    x = rand(37, 2, 3, 30, 34)
    out = m(x)
    want, h = [], x
    for i, block in enumerate(m.down_blocks):
        h = conv(h, block.conv, 0)
        if i != 0:
            h = instance_norm(h, block.norm)
        h = torch.where(h > 0, h, 0.2 * h)
        if i != 2:
            h = avg_pool2(h)
        want.append(h)
    want.append(conv(h, m.conv, 0))
    assert len(out) == 4
    for got, expected in zip(out, want):
        torch.testing.assert_close(got, expected, **TOL)
    spectral = Discriminator(3, 4, 2, 8, sn=True)
    assert hasattr(spectral.conv, "weight_orig") and all(hasattr(b.conv, "weight_orig") for b in spectral.down_blocks)
    assert not hasattr(m.conv, "weight_orig")
    block = DiscriminatorBlock(3, 4, norm=True, pool=False, sn=False)
    assert block.norm.affine and block.norm.weight.shape == (4,)


class Tagged(nn.Module):
    def __init__(self, tag: float):
        super().__init__()
        self.tag = tag

    def forward(self, x):
        return [x + self.tag]


def test_multiscale_discriminator_routes_each_scale_to_its_own_network():
    params = DiscriminatorParams(scales=(1, 0.5), block_expansion=4, max_features=8, num_blocks=2)
    m = MultiScaleDiscriminator(params, 3)
    assert sorted(m.discs) == ["0-5", "1"] and m.scales == (1, 0.5)
    assert m.discs["1"].down_blocks[0].conv.weight.shape == (8, 3, 4, 4) and len(m.discs["0-5"].down_blocks) == 2
    m.discs = nn.ModuleDict({"1": Tagged(10.0), "0-5": Tagged(20.0)})
    out = m({1: torch.zeros(1), 0.5: torch.ones(1)})
    assert list(out) == [1, 0.5] and out[1][0].item() == 10.0 and out[0.5][0].item() == 21.0
    with pytest.raises(NotImplementedError) as caught:
        MultiScaleDiscriminator(DiscriminatorParams(use_kp=True), 3)
    assert str(caught.value) == "discriminator_params.use_kp=True is not supported; set it to False"


# --- config -> networks ---

def test_build_networks_passes_every_config_value():
    values = {"model_params": {
        "common_params": {"num_kp": 3, "num_channels": 2, "estimate_jacobian": True},
        "kp_detector_params": {"block_expansion": 4, "max_features": 16, "num_blocks": 2, "temperature": 0.3,
                               "scale_factor": 0.5, "single_jacobian_map": True, "pad": 2},
        "generator_params": {"block_expansion": 6, "max_features": 12, "num_down_blocks": 1,
                             "num_bottleneck_blocks": 3, "estimate_occlusion_map": True,
                             "dense_motion_params": {"block_expansion": 5, "max_features": 9, "num_blocks": 1,
                                                     "scale_factor": 0.25, "kp_variance": 0.2}},
        "discriminator_params": {"scales": [1, 0.5], "block_expansion": 7, "max_features": 14, "num_blocks": 3,
                                 "sn": True}},
        "dataset_params": {"frame_shape": [32, 32, 2]}}
    nets = build_networks(parse_config(values, "x.yaml"), with_discriminator=True)
    kp = nets["kp_detector"]
    assert kp.temperature == 0.3 and kp.jacobian_maps == 1 and kp.kp.padding == (2, 2) and kp.kp.out_channels == 3
    assert kp.down.scale == 0.5 and kp.down.weight.shape[0] == 2
    assert kp.predictor.encoder.down_blocks[0].conv.weight.shape[:2] == (8, 2)
    assert len(kp.predictor.encoder.down_blocks) == 2
    assert kp.predictor.encoder.down_blocks[1].conv.weight.shape[0] == 16 and kp.jacobian.out_channels == 4
    gen = nets["generator"]
    assert gen.first.conv.weight.shape[:2] == (6, 2) and len(gen.down_blocks) == 1 and len(gen.bottleneck) == 3
    assert gen.down_blocks[0].conv.weight.shape[0] == 12
    dense = gen.dense_motion_network
    assert dense.kp_variance == 0.2 and dense.num_kp == 3 and dense.down.scale == 0.25 and dense.occlusion is not None
    assert dense.hourglass.encoder.down_blocks[0].conv.weight.shape[:2] == (9, (3 + 1) * (2 + 1))
    assert len(dense.hourglass.encoder.down_blocks) == 1
    disc = nets["discriminator"]
    assert disc.scales == (1, 0.5) and len(disc.discs["0-5"].down_blocks) == 3
    assert disc.discs["1"].down_blocks[0].conv.weight_orig.shape == (14, 2, 4, 4)
    assert set(build_networks(parse_config(values, "x.yaml"))) == {"kp_detector", "generator"}

    coseg = {"model_params": {
        "common_params": {"num_segments": 3, "num_channels": 2, "estimate_affine_part": True},
        "segmentation_module_params": {"block_expansion": 4, "max_features": 16, "num_blocks": 2, "temperature": 0.3,
                                       "scale_factor": 0.5},
        "reconstruction_module_params": {"block_expansion": 6, "max_features": 12, "num_down_blocks": 1,
                                         "num_bottleneck_blocks": 2, "estimate_visibility": True}},
        "dataset_params": {"frame_shape": [32, 32, 2]}}
    nets = build_networks(parse_config(coseg, "y.yaml"))
    seg, rec = nets["segmentation_module"], nets["reconstruction_module"]
    assert set(nets) == {"segmentation_module", "reconstruction_module"}
    assert seg.temperature == 0.3 and seg.shift.out_channels == 3 and seg.affine is not None and seg.down.scale == 0.5
    assert seg.predictor.encoder.down_blocks[0].conv.weight.shape[:2] == (8, 2)
    assert seg.predictor.encoder.down_blocks[1].conv.weight.shape[0] == 16
    assert len(seg.predictor.encoder.down_blocks) == 2
    assert rec.estimate_visibility is True and rec.first.conv.weight.shape[:2] == (6, 2) and len(rec.bottleneck) == 2
    assert rec.down_blocks[0].conv.weight.shape[0] == 12 and len(rec.down_blocks) == 1
    assert ReconstructionModule(3, 4, 8, 1, 0).estimate_visibility is False  # the default


def test_build_fomm_leaves_the_discriminator_out_by_default():
    from motion.networks import build_fomm
    config = parse_config({"model_params": {
        "common_params": {"num_kp": 2, "num_channels": 3},
        "kp_detector_params": {"block_expansion": 4, "max_features": 8, "num_blocks": 1, "temperature": 0.1},
        "generator_params": {"block_expansion": 4, "max_features": 8, "num_down_blocks": 1, "num_bottleneck_blocks": 0,
                             "dense_motion_params": {"block_expansion": 4, "max_features": 8, "num_blocks": 1}}}})
    assert set(build_fomm(config.model)) == {"kp_detector", "generator"}
    assert set(build_fomm(config.model, with_discriminator=True)) == {"kp_detector", "generator", "discriminator"}
