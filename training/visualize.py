"""Sample sheets: columns source | driving | prediction per batch item, anchors drawn on each."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from core.media import to_uint8


def _colours(count: int) -> list[tuple[int, int, int]]:
    """Distinct hues, so the same keypoint has the same colour in every column."""
    hsv = np.stack([np.linspace(0, 179, count, endpoint=False), np.full(count, 255), np.full(count, 255)], -1)
    rgb = cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0]
    return [tuple(int(c) for c in colour) for colour in rgb]


def draw_points(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """uint8 (h, w, 3) image with (k, 2) points in [-1, 1] drawn as filled dots."""
    h, w = image.shape[:2]
    out = np.ascontiguousarray(image.copy())
    radius = max(1, round(min(h, w) / 64))
    for (x, y), colour in zip(points, _colours(len(points))):
        cv2.circle(out, (int(round((x + 1) / 2 * (w - 1))), int(round((y + 1) / 2 * (h - 1)))), radius, colour, -1)
    return out


def sample_sheet(source: torch.Tensor, driving: torch.Tensor, prediction: torch.Tensor,
                 kp_source: torch.Tensor | None = None, kp_driving: torch.Tensor | None = None,
                 rows: int = 4) -> np.ndarray:
    """uint8 image, one row per batch item (at most ``rows``)."""
    def image(t: torch.Tensor, i: int) -> np.ndarray:
        return to_uint8(t[i].detach().permute(1, 2, 0).float().cpu().numpy())

    lines = []
    for i in range(min(rows, source.shape[0])):
        src, drv, pred = image(source, i), image(driving, i), image(prediction, i)
        if kp_source is not None and kp_driving is not None:
            src = draw_points(src, kp_source[i].detach().cpu().numpy())
            drv = draw_points(drv, kp_driving[i].detach().cpu().numpy())
            pred = draw_points(pred, kp_driving[i].detach().cpu().numpy())
        lines.append(np.concatenate([src, drv, pred], axis=1))
    return np.concatenate(lines, axis=0)
