"""motion/checkpoint.py: every refusal message in full, the safe-loading contract, growing heads, renames and
the interrupted save, on hand-built modules and state dicts (mutation testing, issue 12)."""
from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from conftest import TEST_CONFIGS
from motion.checkpoint import (
    CheckpointError,
    check_finite,
    check_state_dict,
    load_matching,
    load_model,
    load_state,
    model_from_checkpoint,
    read_checkpoint,
    save_checkpoint,
    start_coseg_from_fomm,
)
from motion.config import load_config

FIX = "pass the .pth.tar file saved by training"


def refused(call, *args, **kwargs) -> str:
    with pytest.raises(CheckpointError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the plain pickle below is meant to be refused
def test_read_checkpoint_messages(tmp_path):
    missing = tmp_path / "nope.pth.tar"
    assert refused(read_checkpoint, missing) == (
        f"checkpoint {missing} does not exist; pass --checkpoint with a .pth.tar file (e.g. checkpoints/NAME.pth.tar "
        "or the official vox-cpk.pth.tar)")
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps([1, 2, 3]))  # a pickle, but not a torch file
    assert refused(read_checkpoint, plain) == (
        f"checkpoint {plain} is not a PyTorch checkpoint (unpickling failed); {FIX}")
    empty = tmp_path / "empty.pth.tar"
    empty.write_bytes(b"")  # EOFError with no text: its type names it
    assert refused(read_checkpoint, empty) == (
        f"checkpoint {empty} is not a readable PyTorch checkpoint (EOFError); {FIX}")
    zipped = tmp_path / "zipped.pth.tar"
    zipped.write_bytes(b"PK\x03\x04junk")
    text = refused(read_checkpoint, zipped)
    assert text.startswith(f"checkpoint {zipped} is not a readable PyTorch checkpoint (PytorchStreamReader failed")
    assert text.endswith(f"); {FIX}") and "\n" not in text
    listed = tmp_path / "list.pth.tar"
    torch.save([torch.zeros(1)], listed)
    assert refused(read_checkpoint, listed) == (
        f"checkpoint {listed} holds a list, not a dict of state_dicts; pass a checkpoint in the first-order-model or "
        "motion-cosegmentation layout")


class Payload:
    def __reduce__(self):
        return (print, ("never",))


def test_code_carrying_checkpoint_message(tmp_path):
    evil = tmp_path / "evil.pth.tar"
    torch.save({"generator": Payload()}, evil)
    assert refused(read_checkpoint, evil) == (
        f"checkpoint {evil} contains Python objects that could run code, so it is refused; re-save it as a dict of "
        "state_dicts (torch.save({'generator': g.state_dict(), ...}))")


def test_first_line_of_a_loader_error_only(tmp_path, monkeypatch):
    path = tmp_path / "x.pth.tar"
    path.write_bytes(b"x")

    def fails(*args, **kwargs):
        raise RuntimeError("  first words\nmore words")

    monkeypatch.setattr(torch, "load", fails)
    assert refused(read_checkpoint, path) == (
        f"checkpoint {path} is not a readable PyTorch checkpoint (first words); {FIX}")


def test_checkpoints_load_weights_only_onto_the_cpu(tmp_path, monkeypatch):
    """The safety contract, whatever torch's defaults: weights_only=True (no code runs) and CPU tensors."""
    path = tmp_path / "x.pth.tar"
    path.write_bytes(b"x")
    seen = {}

    def spy(file, **kwargs):
        seen.update(kwargs)
        return {}

    monkeypatch.setattr(torch, "load", spy)
    assert read_checkpoint(path) == {}
    assert seen == {"map_location": "cpu", "weights_only": True}


def two_layers() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))


def test_check_state_dict_messages():
    net = two_layers()
    assert refused(check_state_dict, net, [1], "generator", "c.pth") == (
        "checkpoint c.pth: entry 'generator' is not a state_dict")
    state = {"0.weight": torch.zeros(3, 2), "x.a": torch.zeros(1), "1.bias": torch.zeros(2)}
    assert refused(check_state_dict, net, state, "generator", "c.pth") == (
        "checkpoint c.pth does not fit the config for 'generator' (missing keys: 0.bias, 1.weight; unexpected keys: "
        "x.a; shape mismatch: 1.bias (2,) vs (1,) in the config); pass the config the checkpoint was trained with")
    # more than three of a kind: three named and the rest counted
    assert refused(check_state_dict, net, {}, "kp_detector", "c.pth") == (
        "checkpoint c.pth does not fit the config for 'kp_detector' (missing keys: 0.weight, 0.bias, 1.weight and 1 "
        "more); pass the config the checkpoint was trained with")
    three = {"0.weight": torch.zeros(3, 2)}
    assert refused(check_state_dict, net, three, "g", "c.pth") == (
        "checkpoint c.pth does not fit the config for 'g' (missing keys: 0.bias, 1.weight, 1.bias); pass the config "
        "the checkpoint was trained with")
    check_state_dict(net, two_layers().state_dict(), "g", "c.pth")  # a fit passes


def test_check_finite_names_the_tensor():
    net = two_layers()
    check_finite({"generator": net}, "c.pth")
    with torch.no_grad():
        net[1].bias.fill_(float("inf"))
    assert refused(check_finite, {"kp": two_layers(), "generator": net}, "c.pth") == (
        "checkpoint c.pth: generator.1.bias holds NaN or infinite values (a diverged training run?); use an earlier "
        "checkpoint")
    with torch.no_grad():
        net[1].bias.fill_(0)
        net[0].weight[1, 0] = float("nan")
    assert "generator.0.weight holds NaN" in refused(check_finite, {"generator": net}, "c.pth")


def test_load_matching_renames_prefixes_and_skips_what_does_not_fit():
    net = nn.ModuleDict({"shift": nn.Linear(2, 3), "other": nn.ModuleDict({"kp": nn.Linear(3, 3)})})
    state = {
        "junk.weight": torch.ones(5),  # unknown: skipped, the rest still read
        "kp.weight": torch.full((3, 2), 2.0),  # renamed kp. -> shift.
        "kp.bias": torch.full((4,), 9.0),  # renamed, but the shape does not fit
        "other.kp.bias": torch.full((3,), 7.0),  # 'kp.' not at the start: not renamed
    }
    before = net.shift.bias.detach().clone()
    assert load_matching(net, state, {"kp.": "shift.", "nothing.": "x."}) == 2
    assert torch.equal(net.shift.weight, torch.full((3, 2), 2.0))
    assert torch.equal(net.shift.bias, before)
    assert torch.equal(net.other.kp.bias, torch.full((3,), 7.0))
    fresh = nn.ModuleDict({"kp": nn.Linear(2, 3)})
    assert load_matching(fresh, {"kp.weight": torch.zeros(3, 2)}) == 1  # no renames at all


def test_load_matching_grows_heads_only_when_asked_and_only_along_dim_0():
    net = nn.ModuleDict({"head": nn.Conv2d(2, 4, 1), "norm": nn.BatchNorm2d(4)})
    fresh = {k: v.detach().clone() for k, v in net.state_dict().items()}
    saved = {"head.weight": torch.full((2, 2, 1, 1), 5.0), "head.bias": torch.full((3,), 6.0),
             "norm.num_batches_tracked": torch.zeros(2, dtype=torch.long)}  # own is 0-d: never grown
    assert load_matching(net, saved) == 0  # grow defaults to False: nothing fits
    assert load_matching(net, saved, grow=True) == 2
    weight, bias = net.head.weight.detach(), net.head.bias.detach()
    assert torch.equal(weight[:2], torch.full((2, 2, 1, 1), 5.0)) and torch.equal(weight[2:], fresh["head.weight"][2:])
    assert torch.equal(bias[:3], torch.full((3,), 6.0)) and bias[3] == fresh["head.bias"][3]
    assert net.norm.num_batches_tracked.dim() == 0
    other = nn.ModuleDict({"head": nn.Conv2d(2, 4, 1)})
    before = other.head.weight.detach().clone()
    not_growable = {"head.weight": torch.ones(2, 3, 1, 1),  # differs beyond dim 0
                    "head.bias": torch.ones(4)}  # same size: plainly taken
    assert load_matching(other, not_growable, grow=True) == 1
    assert torch.equal(other.head.weight, before)
    larger = {"head.weight": torch.ones(6, 2, 1, 1)}  # saved larger than own: never shrunk
    assert load_matching(other, larger, grow=True) == 0


def test_start_coseg_from_fomm_renames_the_heads():
    nets = {"segmentation_module": nn.ModuleDict({"shift": nn.Linear(2, 3), "affine": nn.Linear(2, 12),
                                                  "segmentation": nn.Linear(2, 4), "predictor": nn.Linear(2, 2)}),
            "reconstruction_module": nn.ModuleDict({"final": nn.Linear(3, 3)})}
    data = {"kp_detector": {"kp.weight": torch.full((3, 2), 1.0), "jacobian.weight": torch.full((12, 2), 2.0),
                            "semantic_seg.weight": torch.full((4, 2), 3.0), "predictor.weight": torch.full((2, 2), 4.0),
                            "predictor.bias": torch.ones(5)},
            "generator": {"final.weight": torch.full((3, 3), 5.0), "final.bias": torch.zeros(3),
                          "dense.x": torch.ones(1)}}
    counts = start_coseg_from_fomm(nets, data)
    assert counts == {"segmentation_module": (4, 8), "reconstruction_module": (2, 2)}
    seg = nets["segmentation_module"]
    assert torch.equal(seg.shift.weight, torch.full((3, 2), 1.0))
    assert torch.equal(seg.affine.weight, torch.full((12, 2), 2.0))
    assert torch.equal(seg.segmentation.weight, torch.full((4, 2), 3.0))
    assert torch.equal(nets["reconstruction_module"].final.weight, torch.full((3, 3), 5.0))


@pytest.fixture(scope="module")
def fomm_config():
    return load_config(TEST_CONFIGS / "tiny-fomm.yaml")


def test_load_state_messages(fomm_config, tiny_fomm, tiny_coseg):
    from motion.networks import build_networks
    coseg_config = load_config(TEST_CONFIGS / "tiny-coseg.yaml")
    nets = build_networks(fomm_config)
    assert refused(load_state, nets, {}, fomm_config, "c.pth") == (
        f"checkpoint c.pth has entries nothing but the config {fomm_config.path} describes a First Order Motion Model "
        "(needs kp_detector, generator); pass the matching --config")
    assert refused(load_state, nets, {"generator": {}, 3: 1}, fomm_config, "c.pth") == (
        f"checkpoint c.pth has entries 3, generator but the config {fomm_config.path} describes a First Order Motion "
        "Model (needs kp_detector, generator); pass the matching --config")
    coseg_data = read_checkpoint(tiny_coseg[1])
    assert refused(load_state, nets, coseg_data, fomm_config, "c.pth") == (
        "checkpoint c.pth has entries epoch, optimizer_reconstruction_module, optimizer_segmentation_module, "
        "reconstruction_module, segmentation_module (a co-part segmentation model checkpoint) but the config "
        f"{fomm_config.path} describes a First Order Motion Model (needs kp_detector, generator); pass the matching "
        "--config")
    assert refused(load_state, build_networks(coseg_config), {"generator": {}}, coseg_config, "c.pth") == (
        f"checkpoint c.pth has entries generator but the config {coseg_config.path} describes a co-part segmentation "
        "model (needs segmentation_module, reconstruction_module); pass the matching --config")
    fomm_data = read_checkpoint(tiny_fomm[1])
    assert refused(load_state, build_networks(coseg_config), fomm_data, coseg_config, "c.pth") == (
        f"checkpoint c.pth is a First Order Motion Model, but {coseg_config.path} is a co-part segmentation config: "
        "its part heads would be random. Pass a co-part checkpoint (a co-part training run can start from this one "
        "with `train --init`)")


def test_load_model_names_the_file_in_every_refusal(fomm_config, tiny_fomm, tmp_path):
    data = read_checkpoint(tiny_fomm[1])
    data["generator"]["final.bias"] = torch.full_like(data["generator"]["final.bias"], float("nan"))
    nan_path = tmp_path / "nan.pth.tar"
    torch.save(data, nan_path)
    assert refused(load_model, fomm_config, nan_path) == (
        f"checkpoint {nan_path}: generator.final.bias holds NaN or infinite values (a diverged training run?); use an "
        "earlier checkpoint")
    del data["kp_detector"]["kp.bias"]
    cut = tmp_path / "cut.pth.tar"
    torch.save(data, cut)
    assert refused(load_model, fomm_config, cut) == (
        f"checkpoint {cut} does not fit the config for 'kp_detector' (missing keys: kp.bias); pass the config the "
        "checkpoint was trained with")


def test_models_land_on_the_requested_device_in_eval_mode(fomm_config, tiny_fomm):
    nets = load_model(fomm_config, tiny_fomm[1], device="meta")
    assert all(p.device.type == "meta" for net in nets.values() for p in net.parameters())
    data = read_checkpoint(tiny_fomm[1])
    default = model_from_checkpoint(fomm_config, data, tiny_fomm[1])  # the device defaults to the CPU
    assert set(default) == {"kp_detector", "generator"}
    assert all(p.device.type == "cpu" for net in default.values() for p in net.parameters())
    assert not any(net.training for net in default.values())
    assert torch.equal(default["generator"].final.weight, data["generator"]["final.weight"])


def test_save_checkpoint_layout_and_interrupted_save(tmp_path, monkeypatch):
    net = two_layers()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    path = tmp_path / "deep" / "er" / "run.pth.tar"  # missing parent folders are made
    save_checkpoint(path, {"generator": net}, {"generator": optimizer}, epoch=7, extra={"note": "x"})
    data = torch.load(path, weights_only=True)
    assert set(data) == {"generator", "optimizer_generator", "epoch", "note"}
    assert data["epoch"] == 7 and data["note"] == "x"
    assert torch.equal(data["generator"]["1.bias"], net[1].bias.detach())
    assert data["optimizer_generator"]["param_groups"][0]["lr"] == 0.1
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.pth.tar"]  # the temporary file is gone

    def interrupted(obj, file):
        with open(file, "wb") as handle:
            handle.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"generator": two_layers()}, {}, epoch=8)
    assert torch.load(path, weights_only=True)["epoch"] == 7  # the previous checkpoint is intact
    # the half-written file sits next to it under a name .gitignore's *.tmp covers
    assert (path.parent / "run.pth.tar.tmp").read_bytes() == b"half"
