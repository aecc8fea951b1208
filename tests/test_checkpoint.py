"""Official checkpoint layouts: strict round trip, weights_only safety, helpful mismatch messages."""

import pytest
import torch

from conftest import TEST_CONFIGS, make_checkpoint
from motion.checkpoint import CheckpointError, load_model, read_checkpoint
from motion.config import ConfigError, load_config, parse_config
from motion.networks import build_networks


def test_official_layout_round_trip_is_exact(tiny_fomm):
    config_path, ckpt = tiny_fomm
    data = read_checkpoint(ckpt)
    assert set(data) == {"generator", "discriminator", "kp_detector", "optimizer_generator",
                         "optimizer_discriminator", "optimizer_kp_detector", "epoch"}
    nets = load_model(load_config(config_path), ckpt)
    for name in ("kp_detector", "generator"):
        for key, value in nets[name].state_dict().items():
            assert torch.equal(value, data[name][key]), key
    assert not nets["generator"].training


def test_coseg_layout_and_start_from_fomm(tiny_coseg, tmp_path):
    config_path, ckpt = tiny_coseg
    assert set(read_checkpoint(ckpt)) == {"reconstruction_module", "segmentation_module",
                                          "optimizer_reconstruction_module", "optimizer_segmentation_module", "epoch"}
    load_model(load_config(config_path), ckpt)
    # The co-seg loader can start from a FOMM checkpoint: kp -> shift, jacobian -> affine, encoder/decoder shared.
    fomm_like = make_checkpoint(TEST_CONFIGS / "tiny-fomm.yaml", tmp_path / "f.pth.tar")
    fomm_data = read_checkpoint(fomm_like)
    config = load_config(config_path)
    fomm_cfg = load_config(TEST_CONFIGS / "tiny-fomm.yaml")
    assert fomm_cfg.model.num_kp != config.model.num_segments  # so kp -> shift cannot fit and is skipped
    with pytest.raises(CheckpointError, match="part heads would be random"):
        load_model(config, fomm_like)  # at inference a FOMM checkpoint is refused
    from motion.networks import build_networks
    from training.trainer import initialise_from
    nets = build_networks(config)
    counts = initialise_from(nets, fomm_like)  # a training run starts from it
    reconstruction = nets["reconstruction_module"].state_dict()
    assert counts["reconstruction_module"] == (len(reconstruction), len(reconstruction))  # encoder/decoder shared
    assert 0 < counts["segmentation_module"][0] < counts["segmentation_module"][1]  # all but the shift/affine heads
    assert torch.equal(nets["reconstruction_module"].final.weight, fomm_data["generator"]["final.weight"])
    assert torch.equal(nets["segmentation_module"].predictor.encoder.down_blocks[0].conv.weight,
                       fomm_data["kp_detector"]["predictor.encoder.down_blocks.0.conv.weight"])
    assert nets["segmentation_module"].shift.weight.shape != fomm_data["kp_detector"]["kp.weight"].shape


def test_not_a_torch_file(tmp_path):
    bad = tmp_path / "bad.pth.tar"
    bad.write_text("hello, I am text")
    with pytest.raises(CheckpointError, match="not a (readable )?PyTorch checkpoint"):
        read_checkpoint(bad)


class Payload:
    """An object whose unpickling would run code."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoint_with_code_is_refused(tmp_path, capsys):
    evil = tmp_path / "evil.pth.tar"
    torch.save({"generator": Payload()}, evil)
    with pytest.raises(CheckpointError, match="could run code"):
        read_checkpoint(evil)
    assert "this must never run" not in capsys.readouterr().out


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pth.tar")


def test_mismatched_config_names_the_keys(tiny_fomm, tmp_path):
    config = load_config(TEST_CONFIGS / "tiny-fomm.yaml")
    data = read_checkpoint(tiny_fomm[1])
    data["generator"]["extra.weight"] = torch.zeros(1)
    del data["kp_detector"]["kp.bias"]
    data["kp_detector"]["jacobian.weight"] = torch.zeros(1, 2, 3, 3)
    path = tmp_path / "edited.pth.tar"
    torch.save(data, path)
    with pytest.raises(CheckpointError) as err:
        load_model(config, path)
    message = str(err.value)
    assert "kp.bias" in message and "jacobian.weight" in message and "pass the config" in message


def test_wrong_model_kind_says_which(tiny_coseg):
    with pytest.raises(CheckpointError, match="co-part segmentation model checkpoint.*First Order Motion Model"):
        load_model(load_config(TEST_CONFIGS / "tiny-fomm.yaml"), tiny_coseg[1])


def test_config_errors_name_the_key(tmp_path):
    import yaml

    from conftest import CONFIGS
    values = yaml.safe_load((CONFIGS / "vox-256.yaml").read_text())
    values["model_params"]["common_params"]["num_kps"] = values["model_params"]["common_params"].pop("num_kp")
    with pytest.raises(ConfigError, match="unknown key 'model_params.common_params.num_kps'"):
        parse_config(values)
    values = yaml.safe_load((CONFIGS / "vox-256.yaml").read_text())
    del values["model_params"]["kp_detector_params"]["temperature"]
    with pytest.raises(ConfigError, match="missing key 'model_params.kp_detector_params.temperature'"):
        parse_config(values)
    with pytest.raises(ConfigError, match="neither kp_detector_params"):
        parse_config({"model_params": {"common_params": {}}})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model_params: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_official_configs_parse_to_official_values():
    from conftest import CONFIGS
    fomm = load_config(CONFIGS / "vox-256.yaml")
    assert fomm.kind == "fomm" and fomm.size == (256, 256)
    assert fomm.model.num_kp == 10 and fomm.model.kp_detector.scale_factor == 0.25
    assert fomm.model.generator.dense_motion_params.kp_variance == 0.01  # the code default, not in the YAML
    assert fomm.train.learning_rates == {"generator": 2e-4, "discriminator": 2e-4, "kp_detector": 2e-4}
    assert fomm.train.loss_weights.equivariance_jacobian == 10
    coseg = load_config(CONFIGS / "vox-256-sem-10segments.yaml")
    assert coseg.kind == "coseg" and coseg.model.num_segments == 10
    assert coseg.model.reconstruction.estimate_visibility is True
    assert coseg.swap_index == (1, 2, 5)  # no part_swap_params: the official part_swap.py default
    nets = build_networks(coseg)
    assert nets["segmentation_module"].temperature == 0.1
