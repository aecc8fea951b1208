"""Co-part reconstruction: the source's features move with the mask-weighted sum of part affines,
occluded background is hidden by the visibility mask, and part swap blends chosen parts of the
warped source into the driving frame's own features."""
from __future__ import annotations

from typing import Sequence

import torch

from motion.generator import EncoderDecoder, warp_features
from motion.geometry import blend_motions, local_affine_motions, resize_map, warp
from motion.segmentation import Segments


def part_flow(seg_target: Segments, seg_source: Segments) -> torch.Tensor:
    """Backward flow target -> source: each pixel follows the affine of the parts it belongs to."""
    h, w = seg_target.segmentation.shape[2:]
    motions = local_affine_motions(seg_source.shift, seg_target.shift, seg_source.affine, seg_target.affine, h, w)
    return blend_motions(motions, seg_target.segmentation)


def visibility_mask(seg_target: Segments, seg_source: Segments) -> torch.Tensor:
    """1 where source features may be shown: hides source foreground that lands on target background."""
    source_fg = seg_source.segmentation[:, 1:].sum(dim=1, keepdim=True)
    target_fg = seg_target.segmentation[:, 1:].sum(dim=1, keepdim=True).detach()
    return 1 - source_fg * (1 - target_fg)


def parts_mask(segments: Segments, swap_index: Sequence[int]) -> torch.Tensor:
    """(b, 1, h, w) soft mask of the chosen parts (indices into the K+1 channels; 0 is background)."""
    return segments.segmentation[:, list(swap_index)].sum(dim=1, keepdim=True)


class ReconstructionModule(EncoderDecoder):
    def __init__(self, num_channels: int, block_expansion: int, max_features: int,
                 num_down_blocks: int, num_bottleneck_blocks: int, estimate_visibility: bool = False):
        super().__init__(num_channels, block_expansion, max_features, num_down_blocks, num_bottleneck_blocks)
        self.estimate_visibility = estimate_visibility

    def warp_source(self, source_features: torch.Tensor, seg_target: Segments, seg_source: Segments,
                    flow: torch.Tensor | None = None) -> torch.Tensor:
        flow = part_flow(seg_target, seg_source) if flow is None else flow
        visibility = visibility_mask(seg_target, seg_source) if self.estimate_visibility else None
        return warp_features(source_features, flow, visibility)

    def forward(self, source: torch.Tensor, seg_target: Segments, seg_source: Segments) -> torch.Tensor:
        """Reconstruct the target from the source alone (the training objective)."""
        return self.decode(self.warp_source(self.encode(source), seg_target, seg_source))

    def swap(self, source_features: torch.Tensor, target_features: torch.Tensor, seg_target: Segments,
             seg_source: Segments, blend_mask: torch.Tensor, use_source_segmentation: bool = False) -> torch.Tensor:
        """Replace the blend_mask region of the target by the source moved into the target's pose.

        A mask drawn on the source (use_source_segmentation) is first moved with the same flow.
        """
        flow = part_flow(seg_target, seg_source)
        warped = self.warp_source(source_features, seg_target, seg_source, flow)
        if use_source_segmentation:
            blend_mask = warp(blend_mask, flow)
        blend_mask = resize_map(blend_mask, warped.shape[2], warped.shape[3])
        return self.decode(target_features * (1 - blend_mask) + warped * blend_mask)
