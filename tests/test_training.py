"""A tiny training run on a generated clip: the loss goes down, resume continues exactly, the
checkpoint animates, eval reports the papers' protocol."""
import dataclasses
import shutil

import numpy as np
import pytest
import torch

from conftest import TEST_CONFIGS
from motion.checkpoint import load_model, read_checkpoint
from motion.config import load_config
from motion.errors import UserError
from puppet import main
from training.dataset import VideoDataset
from training.evaluate import evaluate
from training.face_masks import LANDMARK_FILE, MASK_FILE, save_landmarks, save_masks
from training.options import TrainOptions
from training.trainer import fit_schedule, train


@pytest.mark.parametrize("name", ["tiny-fomm", "tiny-coseg"])
def test_training_lowers_the_loss(clips, tmp_path, name):
    config = load_config(TEST_CONFIGS / f"{name}.yaml")
    dataset = VideoDataset.from_config(config, clips, seed=0)
    result = train(config, dataset, TrainOptions(output=str(tmp_path), epochs=30, sheet_every=0, seed=0))
    totals = [h["total"] for h in result.history]
    assert len(totals) == 30  # 2 videos, 1 repeat, batch 2: one step per epoch
    assert np.mean(totals[-5:]) < 0.8 * np.mean(totals[:5])


def test_expression_weight_trains_on_the_driving_masks(clips, tmp_path):
    """A non-zero loss_weights.expression hands the driving frames' masks to the loss; zero (every official
    config) loads no masks and adds no term."""
    config = load_config(TEST_CONFIGS / "tiny-fomm.yaml")
    assert config.train.loss_weights.expression == 0 and "mask" not in VideoDataset.from_config(config, clips)[0]
    clips = shutil.copytree(clips, tmp_path / "data")  # the module's clips stay without masks
    for video in (clips / "train").iterdir():
        masks = np.zeros((len(list(video.glob("*.png"))), 64, 64), bool)
        masks[:, 20:40, 16:48] = True
        save_masks(video / MASK_FILE, masks)
    weights = dataclasses.replace(config.train.loss_weights, expression=5.0)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, loss_weights=weights))
    result = train(config, VideoDataset.from_config(config, clips, seed=0),
                   TrainOptions(output=str(tmp_path / "run"), epochs=1, sheet_every=0))
    assert result.history[0]["expression"] > 0


def with_anchors(config, weight: float, keypoints: tuple[int, ...]):
    weights = dataclasses.replace(config.train.loss_weights, anchor=weight)
    return dataclasses.replace(config, train=dataclasses.replace(config.train, loss_weights=weights,
                                                                 anchor_keypoints=keypoints))


def test_anchor_weight_pulls_the_chosen_keypoints_onto_their_landmarks(clips, tmp_path):
    """Every frame's lips at (32, 40) / (32, 48) and lids at (20, 22) / (44, 22) pixels: with a strong anchor
    weight the anchor term falls to well under half of where it began, and the four chosen keypoints of the
    saved model (eval mode) are nearer those places (in [-1, 1]) than after one step."""
    config = load_config(TEST_CONFIGS / "tiny-fomm.yaml")
    clips = shutil.copytree(clips, tmp_path / "data")
    marks = np.zeros((68, 2), np.float32)
    marks[[62, 66]] = [[32, 40], [32, 48]]
    marks[[37, 38]], marks[[43, 44]] = [20, 22], [44, 22]
    for video in (clips / "train").iterdir():
        save_landmarks(video / LANDMARK_FILE, [marks] * len(list(video.glob("*.png"))), (64, 64))
    target = torch.tensor([[32, 40], [32, 48], [20, 22], [44, 22]]) / 63 * 2 - 1
    config = with_anchors(config, 100.0, (3, 0, 1, 2))
    frames = VideoDataset.from_config(config, clips, seed=0)[0]["source"][None]

    @torch.no_grad()
    def distance(checkpoint) -> float:
        kp = load_model(config, checkpoint)["kp_detector"].eval()(frames).value[0, [3, 0, 1, 2]]
        return float((kp - target).abs().sum(-1).mean())
    first = train(config, VideoDataset.from_config(config, clips, seed=0),
                  TrainOptions(output=str(tmp_path / "a"), epochs=1, sheet_every=0, seed=0))
    last = train(config, VideoDataset.from_config(config, clips, seed=0),
                 TrainOptions(output=str(tmp_path / "b"), epochs=40, sheet_every=0, seed=0))
    anchor = [h["anchor"] for h in last.history]
    assert first.history[0]["anchor"] == pytest.approx(anchor[0]) and anchor[0] > 0
    assert np.mean(anchor[-5:]) < 0.5 * anchor[0]
    assert distance(last.checkpoint) < 0.8 * distance(first.checkpoint)


def test_anchor_weight_needs_four_keypoints_of_the_model(clips):
    config = load_config(TEST_CONFIGS / "tiny-fomm.yaml")
    for keypoints in ((0, 1, 2), (0, 1, 2, config.model.num_kp), (0, 1, 1, 2)):
        with pytest.raises(UserError, match="anchor_keypoints"):
            train(with_anchors(config, 1.0, keypoints), VideoDataset.from_config(config, clips, seed=0),
                  TrainOptions(output="/nonexistent", epochs=1, sheet_every=0))


def test_resume_continues_exactly(clips, tmp_path):
    config = load_config(TEST_CONFIGS / "tiny-fomm.yaml")
    straight = train(config, VideoDataset.from_config(config, clips, seed=0),
                     TrainOptions(output=str(tmp_path / "a"), epochs=2, sheet_every=0, seed=0))
    first = train(config, VideoDataset.from_config(config, clips, seed=0),
                  TrainOptions(output=str(tmp_path / "b"), epochs=1, sheet_every=0, seed=0))
    resumed = train(config, VideoDataset.from_config(config, clips, seed=0),
                    TrainOptions(output=str(tmp_path / "c"), epochs=2, resume=str(first.checkpoint), sheet_every=0,
                                 seed=0))
    assert resumed.steps == straight.steps == 2
    assert resumed.history == straight.history[1:]
    a, c = read_checkpoint(straight.checkpoint), read_checkpoint(resumed.checkpoint)
    assert a["epoch"] == c["epoch"] == 2
    for name in ("kp_detector", "generator"):
        for key in a[name]:
            assert torch.equal(a[name][key], c[name][key]), key
    # and the saved file is an ordinary official-layout checkpoint
    load_model(config, resumed.checkpoint)


def test_train_and_eval_commands(clips, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", str(TEST_CONFIGS / "tiny-coseg.yaml"), "--data", str(clips), "--output",
                 str(out), "--max-steps", "2", "--sheet-every", "1", "--cpu"]) == 0
    assert (out / "checkpoint.pth.tar").is_file() and (out / "sheet_000001.png").is_file()
    assert main(["eval", "--config", str(TEST_CONFIGS / "tiny-coseg.yaml"), "--checkpoint",
                 str(out / "checkpoint.pth.tar"), "--data", str(clips), "--json", str(tmp_path / "e.json")]) == 0
    printed = capsys.readouterr().out
    assert "L1 identity baseline" in printed and (tmp_path / "e.json").is_file()
    assert main(["train", "--config", str(TEST_CONFIGS / "tiny-fomm.yaml"), "--data", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_evaluate_identity_baseline_and_perfect_prediction(clips, tiny_fomm):
    config = load_config(tiny_fomm[0])
    nets = load_model(config, tiny_fomm[1])
    report = evaluate(config, nets, clips, torch.device("cpu"))
    assert report["videos"] == 1 and report["frames"] == 8
    assert report["identity_l1"] > 0.005  # the generated clip really moves
    assert report["l1"] > 0 and report["keypoint_shift_px"] >= 0
    assert report["ratio_to_identity"] == pytest.approx(report["l1"] / report["identity_l1"])
    assert not report["detail"]
    detailed = evaluate(config, nets, clips, torch.device("cpu"), detail=True)  # the source's detail on the frames
    assert detailed["detail"] and detailed["identity_l1"] == report["identity_l1"]
    assert detailed["l1"] != pytest.approx(report["l1"], rel=1e-4)


def test_gan_weight_is_refused(clips, tmp_path):
    config = load_config(TEST_CONFIGS / "tiny-fomm.yaml")
    weights = dataclasses.replace(config.train.loss_weights, generator_gan=1)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, loss_weights=weights))
    with pytest.raises(UserError, match="generator_gan"):
        train(config, VideoDataset.from_config(config, clips), TrainOptions(output=str(tmp_path), epochs=1))


def test_ctrl_c_saves_a_checkpoint_first(clips, tmp_path):
    config = load_config(TEST_CONFIGS / "tiny-fomm.yaml")

    def interrupt(step, record):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, VideoDataset.from_config(config, clips, seed=0),
              TrainOptions(output=str(tmp_path), epochs=10, sheet_every=0), on_step=interrupt)
    saved = read_checkpoint(tmp_path / "checkpoint.pth.tar")
    assert saved["step"] == 3 and saved["epoch"] == 2  # two whole epochs done when step 3 was interrupted
    load_model(config, tmp_path / "checkpoint.pth.tar")


def test_init_takes_the_tensors_that_fit(tiny_fomm, tmp_path):
    import yaml

    from motion.config import parse_config
    from motion.networks import build_networks
    from training.trainer import initialise_from
    values = yaml.safe_load((TEST_CONFIGS / "tiny-fomm.yaml").read_text())
    values["model_params"]["generator_params"]["block_expansion"] = 12  # a wider encoder/decoder
    nets = build_networks(parse_config(values))
    counts = initialise_from(nets, tiny_fomm[1])
    source = read_checkpoint(tiny_fomm[1])
    assert counts["kp_detector"] == (len(source["kp_detector"]), len(source["kp_detector"]))
    taken, total = counts["generator"]
    assert 0 < taken < total  # dense motion fits, the widened encoder/decoder does not
    assert torch.equal(nets["generator"].dense_motion_network.mask.weight,
                       source["generator"]["dense_motion_network.mask.weight"])


def test_init_grows_a_model_to_more_parts(tiny_coseg):
    import yaml

    from motion.config import parse_config
    from motion.networks import build_networks
    from training.trainer import initialise_from
    values = yaml.safe_load((TEST_CONFIGS / "tiny-coseg.yaml").read_text())
    values["model_params"]["common_params"]["num_segments"] = 6  # 4 trained parts + 2 new ones
    torch.manual_seed(1)
    nets = build_networks(parse_config(values))
    fresh = {k: v.clone() for k, v in nets["segmentation_module"].state_dict().items()}
    counts = initialise_from(nets, tiny_coseg[1])
    saved = read_checkpoint(tiny_coseg[1])["segmentation_module"]
    assert counts["segmentation_module"] == (len(saved), len(saved))  # every tensor taken, heads grown
    own = nets["segmentation_module"].state_dict()
    for key, channels in [("segmentation.weight", 5), ("shift.bias", 4), ("affine.weight", 16)]:
        assert own[key].shape[0] > saved[key].shape[0]
        assert torch.equal(own[key][:channels], saved[key])  # background + the 4 trained parts
        assert torch.equal(own[key][channels:], fresh[key][channels:])  # new parts: their fresh init
    assert torch.equal(own["affine.bias"][16:], torch.tensor([1.0, 0, 0, 1]).repeat(2))  # new affines start at I
    image = torch.rand(1, 3, 64, 64)
    segments = nets["segmentation_module"].eval()(image)
    assert segments.segmentation.shape[1] == 7 and segments.affine.shape[1] == 6


@pytest.mark.parametrize("seconds_left,epoch_seconds,done,milestones,expected", [
    (99.0, 1.0, 1, [14], (100, [70])),   # 100 epochs fit: the drop at 70 %, as 14 of 20
    (9.5, 1.0, 1, [14], (10, [7])),      # a short budget keeps its low-learning-rate tail
    (0.5, 1.0, 3, [14], (3, [4])),       # no time for another epoch: the run ends
    (50.0, 1.0, 80, [70], (130, [70])),  # a milestone already passed stays
    (1.0, 1.0, 1, [14], (2, [2])),       # never moved to an epoch already done
])
def test_fit_schedule(seconds_left, epoch_seconds, done, milestones, expected):
    assert fit_schedule(seconds_left, epoch_seconds, done, 20, [14], milestones) == expected


def test_time_budget_fits_the_schedule(clips, tmp_path, capsys):
    config = load_config(TEST_CONFIGS / "tiny-fomm.yaml")
    result = train(config, VideoDataset.from_config(config, clips, seed=0),
                   TrainOptions(output=str(tmp_path / "t"), minutes=0.05, sheet_every=0, workers=2))
    saved = read_checkpoint(result.checkpoint)
    assert result.epochs_done >= 1 and saved["epoch"] == result.epochs_done
    scheduler = saved["scheduler_generator"]
    assert scheduler["last_epoch"] == result.epochs_done
    lr = config.train.learning_rates["generator"]
    low = result.epochs_done >= min(scheduler["milestones"])  # the run ended in its low-learning-rate phase
    assert saved["optimizer_generator"]["param_groups"][0]["lr"] == pytest.approx(lr * (0.1 if low else 1))
    assert main(["train", "--config", str(TEST_CONFIGS / "tiny-fomm.yaml"), "--data", str(clips), "--output",
                 str(tmp_path / "u"), "--epochs", "1", "--minutes", "1"]) == 2
    assert "either --epochs or --minutes" in capsys.readouterr().err


def test_average_states_means_floats_and_keeps_counters():
    from training.averaging import average_states
    a = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(4)}
    b = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(9)}
    out = average_states([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0])) and int(out["n"]) == 9


def test_snapshots_and_average_command(clips, tmp_path, tiny_fomm, capsys):
    config_path = TEST_CONFIGS / "tiny-coseg.yaml"
    out = tmp_path / "run"
    assert main(["train", "--config", str(config_path), "--data", str(clips), "--output", str(out), "--epochs", "2",
                 "--snapshots", "--sheet-every", "0", "--cpu"]) == 0
    snaps = [out / "checkpoint_001.pth.tar", out / "checkpoint_002.pth.tar"]
    assert torch.equal(read_checkpoint(snaps[1])["segmentation_module"]["shift.weight"],
                       read_checkpoint(out / "checkpoint.pth.tar")["segmentation_module"]["shift.weight"])
    averaged = tmp_path / "average.pth.tar"
    args = ["average", *map(str, snaps), "--config", str(config_path), "--data", str(clips), "--batches", "1",
            "--cpu", "--output"]
    assert main(args + [str(averaged)]) == 0
    first, second, mean = (read_checkpoint(p) for p in (*snaps, averaged))
    for key in ("shift.weight", "predictor.encoder.down_blocks.0.conv.weight"):
        expected = (first["segmentation_module"][key] + second["segmentation_module"][key]) / 2
        assert torch.allclose(mean["segmentation_module"][key], expected), key
    # BatchNorm statistics are measured again for the mean weights, the same way every time
    bn = "predictor.encoder.down_blocks.0.norm.running_mean"
    assert not torch.allclose(mean["segmentation_module"][bn],
                              (first["segmentation_module"][bn] + second["segmentation_module"][bn]) / 2)
    assert main(args + [str(tmp_path / "again.pth.tar")]) == 0
    assert torch.equal(read_checkpoint(tmp_path / "again.pth.tar")["segmentation_module"][bn],
                       mean["segmentation_module"][bn])
    assert mean["epoch"] == 2
    load_model(load_config(config_path), averaged)
    # a checkpoint of another model is refused with a message, not a traceback
    capsys.readouterr()
    assert main(["average", str(snaps[0]), "--config", str(tiny_fomm[0]), "--data", str(clips),
                 "--output", str(tmp_path / "bad.pth.tar"), "--cpu"]) == 2
    assert "--config" in capsys.readouterr().err


def test_split_plan_gives_each_empty_part_half_of_the_heaviest():
    from training.part_split import split_plan
    shares = torch.tensor([0.3, 0.0, 0.1, 0.001, 0.2])
    # part 1 halves part 0 (0.3 -> 0.15 + 0.15); then part 4 (0.2) is the heaviest and gives part 3 half
    assert split_plan(shares, 0.005) == [(0, 1), (4, 3)]
    assert split_plan(torch.tensor([0.2, 0.1]), 0.005) == []
    assert split_plan(torch.zeros(3), 0.005) == []  # nothing to split from


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_split_parts_keeps_the_prediction(noise):
    import yaml

    from motion.config import parse_config
    from motion.networks import build_networks
    from training.part_split import split_parts
    from training.trainer import predict
    values = yaml.safe_load((TEST_CONFIGS / "tiny-coseg.yaml").read_text())
    values["model_params"]["common_params"]["num_segments"] = 6
    torch.manual_seed(2)
    nets = {k: v.eval() for k, v in build_networks(parse_config(values)).items()}
    segmentation = nets["segmentation_module"]
    with torch.no_grad():
        segmentation.affine.weight.normal_(std=0.01)  # parts with affines of their own, not all I
        segmentation.segmentation.bias[5:] = -1e4  # parts 4 and 5 (channels 5, 6) are empty
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        before, masks = predict("coseg", nets, source, driving)[0], segmentation(driving).segmentation
        split_parts(segmentation, [(0, 4), (2, 5)], noise=noise)
        after, split = predict("coseg", nets, source, driving)[0], segmentation(driving).segmentation
    assert split[:, 5].mean() > 0.2 * masks[:, 1].mean()  # the new parts carry mass
    if noise:
        assert not torch.allclose(split[:, 1], split[:, 5], atol=1e-4)  # the halves can drift apart
        assert (after - before).abs().mean() < 0.02
    else:
        assert torch.allclose(split[:, 1], split[:, 5]) and torch.allclose(split[:, 3], split[:, 6])
        assert torch.allclose(split[:, 1] + split[:, 5], masks[:, 1], atol=1e-6)
        assert torch.allclose(split[:, [0, 2, 4]], masks[:, [0, 2, 4]], atol=1e-6)
        assert torch.allclose(after, before, atol=1e-5)


def test_split_parts_command(clips, tmp_path, tiny_coseg, tiny_fomm, capsys):
    out = tmp_path / "split.pth.tar"
    assert main(["split-parts", str(tiny_coseg[1]), "--config", str(tiny_coseg[0]), "--data", str(clips),
                 "--output", str(out), "--batches", "1", "--min-share", "0.2", "--cpu"]) == 0
    err = capsys.readouterr().err
    assert "parts in use" in err and str(out) in err
    plan = read_checkpoint(out)["split_parts"]
    assert plan and ", ".join(f"{p + 1} <- {d + 1}" for d, p in plan) in err  # numbered as --parts
    segmentation = load_model(load_config(tiny_coseg[0]), out)["segmentation_module"]
    from training.part_split import part_shares
    with pytest.raises(UserError, match="fewer than 8 pairs"):  # too little data: a message, not a traceback
        part_shares(segmentation, [{"source": torch.rand(3, 64, 64)}], batches=1, batch_size=8)
    assert main(["split-parts", str(tiny_fomm[1]), "--config", str(tiny_fomm[0]), "--data", str(clips),
                 "--output", str(tmp_path / "bad.pth.tar"), "--cpu"]) == 2
    assert "co-part segmentation config" in capsys.readouterr().err
