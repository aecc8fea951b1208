"""`eval-live` (realtime/chain_eval.py): its scores on hand-computed cases, its clip spans, and the whole
command on the bundled webcam clip with the tiny model."""
from __future__ import annotations

import json
import math

import imageio.v2 as imageio
import numpy as np
import pytest

from conftest import ROOT
from motion.errors import UserError
from puppet import main
from realtime.chain_eval import laplacian_energy, parse_clip, region_scores

REGION = (slice(2, 6), slice(1, 5))


def test_region_scores_against_hand_computed_values():
    rng = np.random.default_rng(0)
    truths = [rng.integers(20, 200, (8, 8, 3), dtype=np.uint8) for _ in range(3)]
    same = region_scores(truths, truths, REGION)
    assert (same.l1, same.psnr, same.detail) == (0.0, math.inf, 1.0)
    brighter = [t + np.uint8(10) for t in truths]  # 10 levels everywhere: L1 10/255, PSNR 20 log10(25.5)
    scores = region_scores(brighter, truths, REGION)
    assert scores.l1 == pytest.approx(10 / 255) and scores.psnr == pytest.approx(20 * math.log10(25.5))
    assert scores.detail == pytest.approx(1.0, abs=1e-3)  # a uniform offset adds no detail
    flat = [np.full_like(t, 128) for t in truths]
    assert region_scores(flat, truths, REGION).detail == 0.0


def test_laplacian_energy_of_a_checkerboard():
    """Grey 0/255 checks: each inner pixel's 4-neighbour Laplacian is 4 * 255 in magnitude."""
    board = (np.indices((6, 6)).sum(0) % 2 * 255).astype(np.uint8)
    energy = laplacian_energy(np.repeat(board[..., None], 3, axis=2)[1:5, 1:5])
    assert energy == pytest.approx(4 * 255, rel=0.01)


def test_clip_spans():
    assert parse_clip("a/b.mp4:5-10") == ("a/b.mp4", 5, 10)
    assert parse_clip("a/b.mp4") == ("a/b.mp4", 0, None)
    assert parse_clip("odd:name/clip.mp4") == ("odd:name/clip.mp4", 0, None)
    with pytest.raises(UserError, match="at least 2 frames"):
        parse_clip("b.mp4:4-5")


def test_eval_live_on_the_webcam_clip(tiny_fomm, tmp_path, capsys):
    """Through live's chain with the tiny model (random weights: near-flat frames), the detail transfer
    must bring the camera's own detail back, and the identity baseline must be the still first frame."""
    out = tmp_path / "chain.json"
    assert main(["eval-live", "--config", str(tiny_fomm[0]), "--checkpoint", str(tiny_fomm[1]), "--clips",
                 f"{ROOT / 'checkpoints' / 'webcam.mp4'}:0-4", "--tracker", "haar", "--json", str(out),
                 "--sheet", str(tmp_path / "sheet.png")]) == 0
    report = json.loads(out.read_text())
    clip = next(iter(report["clips"].values()))
    assert clip["frames"] == 4 and clip["size"] == [400, 300]
    assert clip["detail"]["detail"] > 2 * clip["enlarged"]["detail"]
    assert 0 < clip["identity"]["l1"] < clip["enlarged"]["l1"]
    assert "identity" in capsys.readouterr().out
    assert "+expression" not in clip  # the Haar tracker gives no landmarks to move a mouth with
    sheet = imageio.imread(tmp_path / "sheet.png")  # 4 rows of truth | enlarged | detail | detail+head
    assert sheet.shape[0] % 4 == 0 and sheet.shape[1] % 4 == 0 and sheet.shape[1] // 4 <= 400
    assert main(["eval-live", "--clips", str(tmp_path / "none.mp4")]) == 2
