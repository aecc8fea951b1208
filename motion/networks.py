"""Config -> networks: the one place that knows which official config key feeds which constructor."""
from __future__ import annotations

from torch import nn

from motion.config import Config, CosegParams, FommParams
from motion.discriminator import MultiScaleDiscriminator
from motion.generator import OcclusionAwareGenerator
from motion.keypoints import KeypointDetector
from motion.reconstruction import ReconstructionModule
from motion.segmentation import SegmentationModule


def build_fomm(params: FommParams, with_discriminator: bool = False) -> dict[str, nn.Module]:
    kp = params.kp_detector
    gen = params.generator
    dense = gen.dense_motion_params
    nets: dict[str, nn.Module] = {
        "kp_detector": KeypointDetector(
            block_expansion=kp.block_expansion, num_kp=params.num_kp, num_channels=params.num_channels,
            max_features=kp.max_features, num_blocks=kp.num_blocks, temperature=kp.temperature,
            estimate_jacobian=params.estimate_jacobian, scale_factor=kp.scale_factor,
            single_jacobian_map=kp.single_jacobian_map, pad=kp.pad),
        "generator": OcclusionAwareGenerator(
            num_channels=params.num_channels, num_kp=params.num_kp, block_expansion=gen.block_expansion,
            max_features=gen.max_features, num_down_blocks=gen.num_down_blocks,
            num_bottleneck_blocks=gen.num_bottleneck_blocks, estimate_occlusion_map=gen.estimate_occlusion_map,
            dense_motion_params=dict(block_expansion=dense.block_expansion, max_features=dense.max_features,
                                     num_blocks=dense.num_blocks, scale_factor=dense.scale_factor,
                                     kp_variance=dense.kp_variance)),
    }
    if with_discriminator:
        nets["discriminator"] = MultiScaleDiscriminator(params.discriminator, params.num_channels)
    return nets


def build_coseg(params: CosegParams) -> dict[str, nn.Module]:
    seg = params.segmentation
    rec = params.reconstruction
    return {
        "segmentation_module": SegmentationModule(
            block_expansion=seg.block_expansion, num_segments=params.num_segments,
            num_channels=params.num_channels, max_features=seg.max_features, num_blocks=seg.num_blocks,
            temperature=seg.temperature, estimate_affine_part=params.estimate_affine_part,
            scale_factor=seg.scale_factor),
        "reconstruction_module": ReconstructionModule(
            num_channels=params.num_channels, block_expansion=rec.block_expansion, max_features=rec.max_features,
            num_down_blocks=rec.num_down_blocks, num_bottleneck_blocks=rec.num_bottleneck_blocks,
            estimate_visibility=rec.estimate_visibility),
    }


def build_networks(config: Config, with_discriminator: bool = False) -> dict[str, nn.Module]:
    """The inference networks named by their official checkpoint keys (plus the discriminator on request)."""
    if isinstance(config.model, FommParams):
        return build_fomm(config.model, with_discriminator)
    return build_coseg(config.model)
