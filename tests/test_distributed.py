"""Training under torchrun: two processes on the CPU (gloo) with DistributedDataParallel.

Two launches: one `torch.multiprocessing.spawn` of two processes that call `train` (sampler split,
equality with one process, exact resume), and one real `python -m torch.distributed.run` of
`puppet.py train` (the command users type: one writer, official checkpoint keys).
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.utils.data import Dataset

from conftest import ROOT, TEST_CONFIGS
from motion.checkpoint import INFERENCE_KEYS, load_model, read_checkpoint
from motion.config import load_config
from motion.errors import UserError
from motion.networks import build_networks
from training import distributed, trainer
from training.dataset import VideoDataset
from training.options import TrainOptions
from training.synthetic import generate_dataset

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="this PyTorch build has no torch.distributed with the gloo backend")

PAIRS = 8  # IndexedPairs per epoch, all in one global batch (exact_config)
EXACT_EPOCHS = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class IndexedPairs(Dataset):
    """Fixed random frame pairs, each a function of its index alone, noting the indices this process
    loads: one process and two then train on the same pairs whatever order the samplers draw."""

    def __init__(self, count: int = PAIRS):
        self.count = count
        self.seen: list[int] = []

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        self.seen.append(int(index))
        generator = torch.Generator().manual_seed(index)
        return {"source": torch.rand(3, 64, 64, generator=generator),
                "driving": torch.rand(3, 64, 64, generator=generator)}


def without_batchnorm(config, **kwargs) -> dict[str, nn.Module]:
    """The config's networks with every BatchNorm replaced by the identity: on the CPU each process
    normalises its own share of the batch (torch's SyncBatchNorm needs GPUs), which one process with the
    whole batch cannot reproduce; without BatchNorm every pair's loss and gradient is its own."""
    nets = build_networks(config, **kwargs)
    for net in nets.values():
        for module in list(net.modules()):
            for name, child in module.named_children():
                if isinstance(child, nn.BatchNorm2d):
                    setattr(module, name, nn.Identity())
    return nets


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("data") / "synthetic", videos=4, test_videos=1, frames=8,
                            size=64, seed=3, progress=False)


@pytest.fixture(scope="module")
def exact_config(tmp_path_factory) -> Path:
    """tiny-fomm with the whole epoch in one global batch and no equivariance terms: their random warps
    come from each process's own stream, which one process cannot draw (and identity warps make their
    L1 gradients signs of rounding errors). The generator's loss still trains the keypoint detector."""
    values = yaml.safe_load((TEST_CONFIGS / "tiny-fomm.yaml").read_text())
    values["train_params"]["batch_size"] = PAIRS
    values["train_params"]["loss_weights"].update(equivariance_value=0, equivariance_jacobian=0)
    path = tmp_path_factory.mktemp("config") / "exact-fomm.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _worker(rank: int, port: int, out: Path, clips: Path, exact: Path) -> None:
    """One of two processes, placed as torchrun places them (environment variables)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2")
    torch.set_num_threads(1)
    with distributed.session(torch.device("cpu")):
        pairs = IndexedPairs()
        with mock.patch.object(trainer, "build_networks", without_batchnorm):
            exact_run = trainer.train(load_config(exact), pairs,
                                      TrainOptions(output=str(out / "exact"), epochs=EXACT_EPOCHS, sheet_every=0))
        config = load_config(TEST_CONFIGS / "tiny-fomm.yaml")

        def run(name: str, **kwargs) -> trainer.TrainResult:  # the dataset seeded as run_train seeds it
            dataset = VideoDataset.from_config(config, clips, seed=rank)
            return trainer.train(config, dataset, TrainOptions(output=str(out / name), sheet_every=0, **kwargs))

        straight = run("straight", epochs=2)
        resumed = run("resumed", epochs=2, resume=str(run("first", epochs=1).checkpoint))
    report = {"seen": pairs.seen, "exact": exact_run.history, "straight": straight.history,
              "resumed": resumed.history}
    (out / f"rank{rank}.json").write_text(json.dumps(report))


@pytest.fixture(scope="module")
def spawned(tmp_path_factory, clips, exact_config) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("spawned")
    torch.multiprocessing.spawn(_worker, args=(_free_port(), out, clips, exact_config), nprocs=2)
    return out, [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(2)]


def test_each_epoch_is_split_into_disjoint_halves(spawned):
    _, reports = spawned
    seen = [report["seen"] for report in reports]
    half = PAIRS // 2
    assert [len(s) for s in seen] == [EXACT_EPOCHS * half] * 2  # one batch of 4 per process and epoch
    epochs = [[s[e * half:(e + 1) * half] for s in seen] for e in range(EXACT_EPOCHS)]
    for first, second in epochs:
        assert not set(first) & set(second)
        assert set(first) | set(second) == set(range(PAIRS))
    assert epochs[0] != epochs[1]  # set_epoch: a new shuffle every epoch


def test_two_processes_train_as_one_with_the_global_batch(spawned, exact_config, tmp_path, monkeypatch):
    """The same 8 pairs in one global batch, two processes of 4 against one of 8, two Adam steps.

    BatchNorm is taken out (see without_batchnorm), so equality holds only if DDP averages every
    network's gradients (the loss terms are means over equal shares). Weights are compared through what
    they compute: Adam's first steps move each weight by about the learning rate whatever its gradient's
    size, so a gradient that is zero up to rounding (e.g. a bias under a spatial softmax) flips sign
    between runs, harmlessly; the predictions and losses do not depend on such weights.
    """
    out, reports = spawned
    monkeypatch.setattr(trainer, "build_networks", without_batchnorm)
    config = load_config(exact_config)
    single = trainer.train(config, IndexedPairs(),
                           TrainOptions(output=str(tmp_path), epochs=EXACT_EPOCHS, sheet_every=0))
    assert len(single.history) == EXACT_EPOCHS
    for expected, got in zip(single.history, reports[0]["exact"], strict=True):
        assert got.keys() == expected.keys()
        assert got == pytest.approx(expected, rel=1e-4)
    assert reports[1]["exact"] == reports[0]["exact"]  # every process logs the global batch's losses
    pairs = IndexedPairs()
    source = torch.stack([pairs[i]["source"] for i in range(PAIRS)])
    driving = torch.stack([pairs[i]["driving"] for i in range(PAIRS)])
    torch.manual_seed(0)  # the untrained model, as train builds it
    untrained = without_batchnorm(config)
    predictions = []
    for checkpoint in (single.checkpoint, out / "exact" / "checkpoint.pth.tar"):
        nets = without_batchnorm(config)
        data = read_checkpoint(checkpoint)
        for name, net in nets.items():
            net.load_state_dict(data[name])
        predictions.append(_predict(nets, source, driving))
    for one, two, before in zip(*predictions, _predict(untrained, source, driving)):
        assert torch.allclose(one, two, atol=1e-4)
        assert (one - before).abs().max() > 10 * 1e-4  # training moved them well beyond the tolerance


@torch.no_grad()
def _predict(nets: dict[str, nn.Module], source: torch.Tensor, driving: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return trainer.predict("fomm", nets, source, driving)


def test_distributed_resume_continues_exactly(spawned):
    out, reports = spawned
    for report in reports:
        assert len(report["straight"]) == 4  # 4 videos, global batch 2: 2 steps per epoch
        assert report["resumed"] == report["straight"][2:]
    straight, resumed = (read_checkpoint(out / name / "checkpoint.pth.tar") for name in ("straight", "resumed"))
    assert straight["epoch"] == resumed["epoch"] == 2
    for name in INFERENCE_KEYS["fomm"]:
        for key in straight[name]:
            assert torch.equal(straight[name][key], resumed[name][key]), key
    ranks = straight["rng_ranks"]  # each process's own random streams, saved for the resume
    assert len(ranks) == 2 and not torch.equal(ranks[0]["torch"], ranks[1]["torch"])


SITECUSTOMIZE = '''
import os, sys
if "RANK" in os.environ and "WRITES_LOG" in os.environ:
    _log = open(os.path.join(os.environ["WRITES_LOG"], "rank%s.txt" % os.environ["RANK"]), "a", buffering=1)

    def _note(event, args):
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            mode, flags = args[1], args[2]
            if (isinstance(mode, str) and set(mode) & set("wax+")) or (flags or 0) & (os.O_WRONLY | os.O_RDWR):
                _log.write(os.path.abspath(os.fsdecode(args[0])) + "\\n")
        elif event == "os.rename":
            _log.write(os.path.abspath(os.fsdecode(args[1])) + "\\n")

    sys.addaudithook(_note)
'''


def test_torchrun_train_command_writes_from_rank_0_only(clips, tmp_path):
    """A real `torchrun --nproc_per_node 2 puppet.py train ...`. Each process's file writes are noted by a
    Python audit hook (a sitecustomize on PYTHONPATH), outside the code under test."""
    hook, writes, out = tmp_path / "hook", tmp_path / "writes", tmp_path / "run"
    hook.mkdir(), writes.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, "WRITES_LOG": str(writes), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))}
    config = TEST_CONFIGS / "tiny-coseg.yaml"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
               "127.0.0.1", "--master_port", str(_free_port()), str(ROOT / "puppet.py"), "train", "--config",
               str(config), "--data", str(clips), "--output", str(out), "--epochs", "2", "--sheet-every", "1", "--cpu"]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240,
                          check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stderr.count("trained 4 steps (2 epochs)") == 1 and "x 2 processes" in done.stderr
    assert done.stderr.count("BatchNorm statistics stay per process") == 1
    written = {rank: [Path(p) for p in (writes / f"rank{rank}.txt").read_text().split()] for rank in range(2)}
    assert out / "checkpoint.pth.tar" in written[0] and out / "sheet_000004.png" in written[0]
    assert not [p for p in written[1] if out in p.parents]
    data = read_checkpoint(out / "checkpoint.pth.tar")
    fresh = build_networks(load_config(config))
    for name in INFERENCE_KEYS["coseg"]:
        assert list(data[name]) == list(fresh[name].state_dict())  # official keys: no "module." prefix
    load_model(load_config(config), out / "checkpoint.pth.tar")  # a plain model takes it strictly
    assert data["epoch"] == 2 and data["step"] == 4 and len(data["rng_ranks"]) == 2


def test_global_batch_must_split_evenly(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(UserError, match="batch_size 3 is the global batch .* multiple of 2"):
        trainer._loader(IndexedPairs(), 3, workers=0, seed=0)
