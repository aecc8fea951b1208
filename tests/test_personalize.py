"""personalize end to end on a tiny budget: a recorded face clip -> chunks -> before/after -> a model
that the live loop's loader takes."""
from __future__ import annotations

import imageio.v2 as imageio
import pytest
import torch

from conftest import TEST_CONFIGS
from motion.checkpoint import load_model
from motion.config import load_config
from motion.errors import UserError
from realtime.sources import SyntheticSource
from training.options import PersonalizeOptions
from training.personalize import personalize
from training.prepare import ChunkRules


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    source = SyntheticSource(size=(256, 256))
    path = tmp_path_factory.mktemp("rec") / "me.mp4"
    imageio.mimsave(path, [source.frame(i) for i in range(60)], fps=30, macro_block_size=1)
    return path


def options(video, out, config, checkpoint, **more) -> PersonalizeOptions:
    return PersonalizeOptions(video=str(video), output=str(out), config=str(config), checkpoint=str(checkpoint),
                              **more)


def test_personalize_fine_tunes_and_reports_before_and_after(recording, tmp_path, tiny_fomm, capsys):
    config, checkpoint = tiny_fomm
    rules = ChunkRules(min_frames=8, max_frames=15, test_fraction=0.25)
    result = personalize(options(recording, tmp_path / "me", config, checkpoint, minutes=1),
                         device=torch.device("cpu"), rules=rules, max_steps=40)
    # 60 frames in chunks of 15: the last one (from frame 45 = 75 %) is held out
    assert sorted(p.name for p in (tmp_path / "me" / "data" / "test").iterdir()) == ["me_003"]
    assert len(list((tmp_path / "me" / "data" / "train").iterdir())) == 3
    # a random-weight start reconstructs badly; a few seconds of fine-tuning on the face make it better
    assert result.after["l1"] < 0.9 * result.before["l1"]
    assert result.before["identity_l1"] == pytest.approx(result.after["identity_l1"])
    err = capsys.readouterr().err
    assert "before: held-out L1" in err and "after:  held-out L1" in err
    loaded = load_model(load_config(result.config), result.checkpoint, torch.device("cpu"))
    assert set(loaded) == {"kp_detector", "generator"}
    assert not (tmp_path / "me" / "run").exists()
    with pytest.raises(UserError, match="--overwrite"):
        personalize(options(recording, tmp_path / "me", config, checkpoint, minutes=0.1),
                    device=torch.device("cpu"), rules=rules)
    # --overwrite replaces what personalize wrote, and nothing else of the folder
    (tmp_path / "me" / "notes.txt").write_text("mine")
    personalize(options(recording, tmp_path / "me", config, checkpoint, minutes=1, overwrite=True),
                device=torch.device("cpu"), rules=rules, max_steps=2)
    assert (tmp_path / "me" / "notes.txt").read_text() == "mine"
    # an input inside the folder it would rewrite is refused before anything is touched
    inside = tmp_path / "me" / "clip.mp4"
    inside.write_bytes(recording.read_bytes())
    with pytest.raises(UserError, match="lies inside --output"):
        personalize(options(inside, tmp_path / "me", config, checkpoint, minutes=1, overwrite=True),
                    device=torch.device("cpu"), rules=rules)
    assert inside.read_bytes() == recording.read_bytes()


def test_personalize_too_short_a_clip_says_so(recording, tmp_path, tiny_fomm):
    config, checkpoint = tiny_fomm
    with pytest.raises(UserError, match="too few for a training and a held-out part"):
        personalize(options(recording, tmp_path / "short", config, checkpoint, minutes=0.1),
                    device=torch.device("cpu"))  # default chunks of 32-128 frames: one chunk, nothing held out
    with pytest.raises(UserError, match="co-part"):
        personalize(options(recording, tmp_path / "x", TEST_CONFIGS / "tiny-coseg.yaml", checkpoint, minutes=0.1),
                    device=torch.device("cpu"))
