"""Export and backends on the tiny FOMM: clean graphs, ONNX Runtime parity with PyTorch eager, the
`animate --backend` path, the export cache and the one-line user errors."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import onnx
import pytest
import torch
from skimage import data as skdata
from skimage.transform import resize

from conftest import make_checkpoint
from core.pipeline import motion_arrays
from core.puppeteer import normalize_keypoints
from export.auto import choose_backend
from export.backends import BackendOptions, open_backend, opener
from export.bench import compare_backends, format_table
from export.bench import main as export_bench_main
from export.cache import ensure_export
from export.cpu import CpuCapabilities
from export.metadata import METADATA_FILE, StaleExportError, config_hash, default_export_dir, file_hash
from export.tensorrt import TensorRTMissingError, trt
from motion.config import load_config
from motion.errors import UserError
from puppet import main

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def exported(tiny_fomm, tmp_path_factory) -> Path:
    """The tiny model exported through the command line, once for the module."""
    config, checkpoint = tiny_fomm
    out = tmp_path_factory.mktemp("export") / "tiny"
    assert main(["export", "--config", str(config), "--checkpoint", str(checkpoint), "--output", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def frames() -> tuple[np.ndarray, np.ndarray]:
    """(avatar, driving frame): the astronaut and the astronaut moved sideways, 64x64."""
    image = resize(skdata.astronaut(), (64, 64)).astype(np.float32)
    return image, np.roll(image, 5, axis=1)


def _stages(puppeteer, frames):
    avatar_image, driving = frames
    avatar = puppeteer.prepare(avatar_image)
    kp_initial = puppeteer.keypoints(avatar_image)
    kp = normalize_keypoints(avatar.kp, puppeteer.keypoints(driving), kp_initial, relative=True, adapt_scale=False)
    motion = puppeteer.motion(avatar, kp)
    return avatar, kp, motion, puppeteer.render(avatar, motion)


def test_graphs_are_clean_opset_17_with_grid_sample(exported, tiny_fomm):
    metadata = json.loads((exported / METADATA_FILE).read_text())
    assert set(metadata["graphs"]) == {"keypoints", "avatar", "motion", "render"}
    assert metadata["opset"] >= 17
    assert metadata["config_hash"] == config_hash(load_config(tiny_fomm[0]))
    assert metadata["checkpoint_sha256"] == file_hash(tiny_fomm[1])
    for name, graph in metadata["graphs"].items():
        path = exported / graph["file"]
        onnx.checker.check_model(str(path), full_check=True)
        model = onnx.load(str(path))
        assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [metadata["opset"]]
        ops = {(node.domain, node.op_type) for node in model.graph.node}
        assert all(domain in ("", "ai.onnx") for domain, _ in ops), f"{name} uses a non-standard op: {ops}"
        assert [i.name for i in model.graph.input] == list(graph["inputs"])
        if name in ("motion", "render"):
            assert ("", "GridSample") in ops


def test_onnxruntime_matches_torch_per_stage(exported, tiny_fomm, frames):
    config = load_config(tiny_fomm[0])
    reference = _stages(open_backend("torch", config, tiny_fomm[1], CPU), frames)
    result = _stages(open_backend("onnxruntime", config, tiny_fomm[1], CPU, export_dir=exported), frames)
    (ref_avatar, ref_kp, ref_motion, ref_frame), (avatar, kp, motion, frame) = reference, result
    pairs = [(ref_avatar.features, avatar.features), (ref_avatar.small, avatar.small),
             (ref_avatar.kp.value, avatar.kp.value), (ref_avatar.kp.jacobian, avatar.kp.jacobian),
             (ref_kp.value, kp.value), (ref_kp.jacobian, kp.jacobian)]
    pairs += list(zip(ref_motion, motion))
    for expected, got in pairs:
        assert got.shape == expected.shape
        assert (got - expected).abs().max().item() <= 1e-4
    assert np.abs(frame - ref_frame).max() <= 1e-4
    # what the detail transfer reads of the exported graphs' motion: the same arrays as torch's
    for expected, got in zip(motion_arrays(ref_motion), motion_arrays(motion)):
        assert got.shape == expected.shape and got.dtype == np.float32 and np.abs(got - expected).max() <= 1e-4
    assert motion_arrays(motion)[1].shape == motion_arrays(motion)[0].shape[:2]


def _read_pngs(folder: Path) -> np.ndarray:
    return np.stack([imageio.imread(p) for p in sorted(folder.glob("*.png"))]).astype(int)


def test_animate_onnxruntime_gives_the_torch_frames(exported, tiny_fomm, astronaut_png, driving_mp4, tmp_path):
    config, checkpoint = tiny_fomm
    common = ["animate", "--config", str(config), "--checkpoint", str(checkpoint), "--avatar", str(astronaut_png),
              "--driving", str(driving_mp4), "--relative", "--no-detail"]  # the networks' frames, as drawn
    assert main(common + ["--output", str(tmp_path / "torch")]) == 0
    assert main(common + ["--output", str(tmp_path / "ort"), "--backend", "onnxruntime",
                          "--export-dir", str(exported)]) == 0
    torch_frames, ort_frames = _read_pngs(tmp_path / "torch"), _read_pngs(tmp_path / "ort")
    assert torch_frames.shape == ort_frames.shape and len(torch_frames) == 6
    assert np.abs(torch_frames - ort_frames).max() <= 1


def test_first_use_exports_to_the_cache_then_reuses_it(tiny_fomm, tmp_path, monkeypatch):
    config, checkpoint = load_config(tiny_fomm[0]), tiny_fomm[1]
    monkeypatch.setenv("PUPPET_CACHE", str(tmp_path))
    first = io.StringIO()
    with contextlib.redirect_stderr(first):
        folder, _ = ensure_export(config, checkpoint)
    assert folder == default_export_dir(config, file_hash(checkpoint)) and folder.parent.parent == tmp_path
    assert "exporting" in first.getvalue()
    again = io.StringIO()
    with contextlib.redirect_stderr(again):
        assert ensure_export(config, checkpoint)[0] == folder
    assert again.getvalue() == ""


def test_stale_export_is_refused(exported, tiny_fomm, tmp_path, capsys):
    other = make_checkpoint(Path(tiny_fomm[0]), tmp_path / "retrained.pth.tar", seed=1)
    with pytest.raises(StaleExportError, match="re-export"):
        open_backend("onnxruntime", load_config(tiny_fomm[0]), other, CPU, export_dir=exported)
    code = main(["animate", "--config", str(tiny_fomm[0]), "--checkpoint", str(other), "--output",
                 str(tmp_path / "out"), "--backend", "onnxruntime", "--export-dir", str(exported)])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "stale export" in message and "checkpoint" in message and str(exported) in message


def test_unknown_backend_is_a_user_error(tiny_fomm, tmp_path, capsys):
    code = main(["animate", "--config", str(tiny_fomm[0]), "--checkpoint", str(tiny_fomm[1]),
                 "--output", str(tmp_path / "out"), "--backend", "tflite"])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "unknown backend 'tflite'" in message and "onnxruntime" in message


def test_export_options_are_checked(tiny_fomm, tmp_path, capsys):
    base = ["export", "--config", str(tiny_fomm[0]), "--checkpoint", str(tiny_fomm[1]), "--output", str(tmp_path)]
    assert main(base + ["--fp16"]) == 2
    assert "--format tensorrt" in capsys.readouterr().err
    assert main(base + ["--opset", "13"]) == 2
    assert "opset" in capsys.readouterr().err


@pytest.mark.skipif(trt is not None, reason="TensorRT is installed; this checks the message shown without it")
def test_tensorrt_missing_names_the_package(tiny_fomm, tmp_path, capsys):
    print("TensorRT is not installed here: checking its error message instead of building engines")
    with pytest.raises(TensorRTMissingError, match="pip install tensorrt"):
        open_backend("tensorrt", load_config(tiny_fomm[0]), tiny_fomm[1], CPU, export_dir=tmp_path)
    code = main(["export", "--config", str(tiny_fomm[0]), "--checkpoint", str(tiny_fomm[1]), "--output",
                 str(tmp_path), "--format", "tensorrt"])
    assert code == 2 and "pip install tensorrt" in capsys.readouterr().err


@pytest.mark.skipif(trt is None or not torch.cuda.is_available(), reason="needs TensorRT and an NVIDIA GPU")
@pytest.mark.parametrize("name,tolerance", [("tensorrt", 1e-3), ("tensorrt-fp16", 2e-2)])
def test_tensorrt_matches_torch(exported, tiny_fomm, frames, name, tolerance):
    config = load_config(tiny_fomm[0])
    cuda = torch.device("cuda")
    ref_frame = _stages(open_backend("torch", config, tiny_fomm[1], cuda), frames)[-1]
    frame = _stages(open_backend(name, config, tiny_fomm[1], cuda, export_dir=exported), frames)[-1]
    assert np.abs(frame - ref_frame).max() <= tolerance


@pytest.mark.parametrize("name,tolerance", [("torch-fused", 1e-5), ("torch-bf16", 2e-2), ("torch-bf16-all", 2e-2),
                                            ("onnxruntime-int8", 5e-2)])
def test_variants_follow_the_reference(exported, tiny_fomm, frames, name, tolerance):
    """torch-fused is the same maths (FP32 rounding only); bf16 keeps ~3 significant digits, INT8 ~2."""
    config = load_config(tiny_fomm[0])
    ref_frame = _stages(open_backend("torch", config, tiny_fomm[1], CPU), frames)[-1]
    frame = _stages(open_backend(name, config, tiny_fomm[1], CPU, export_dir=exported), frames)[-1]
    assert np.abs(frame - ref_frame).max() <= tolerance


def test_auto_on_a_cpu_without_bf16_times_only_the_onnx_graphs(exported, tiny_fomm, capsys):
    """An AVX2 CPU (injected) with the graphs exported: FP32 torch against both ONNX Runtime backends."""
    avx2 = CpuCapabilities("Intel Core i7-4790", frozenset({"avx", "avx2", "fma"}), "AVX2")
    options = BackendOptions(load_config(tiny_fomm[0]), tiny_fomm[1], CPU, export_dir=exported)
    int8_fastest = {"torch": 30.0, "onnxruntime": 20.0, "onnxruntime-int8": 10.0}  # injected: machine-independent
    choice = choose_backend(options, opener(options), avx2, frames=2, frame_ms=lambda run: int8_fastest[run.name])
    assert [trial.name for trial in choice.trials] == ["torch", "onnxruntime", "onnxruntime-int8"]
    assert choice.name == "onnxruntime-int8" and "10.0 ms vs 30.0 ms torch" in choice.line
    assert capsys.readouterr().err.strip().endswith(choice.line) and "untried" not in choice.line


def test_reexport_removes_derived_files(tiny_fomm, tmp_path):
    """INT8 graphs and TensorRT engines are made from the graphs: a new export must not keep old ones."""
    stale = [tmp_path / "render.int8.onnx", tmp_path / "render.fp16.trt10.GPU.engine"]
    for path in stale:
        path.write_bytes(b"old")
    assert main(["export", "--config", str(tiny_fomm[0]), "--checkpoint", str(tiny_fomm[1]),
                 "--output", str(tmp_path)]) == 0
    assert not any(path.exists() for path in stale)


def test_an_unknown_backend_is_a_message_naming_the_real_ones(tiny_fomm):
    with pytest.raises(UserError, match="unknown backend 'torch-fast'; choose one of torch, .*onnxruntime-int8"):
        open_backend("torch-fast", load_config(tiny_fomm[0]), tiny_fomm[1], CPU)


def test_backend_bench_command_gives_one_line_errors(tiny_fomm, capsys):
    assert export_bench_main(["--config", "nope.yaml"]) == 2
    assert capsys.readouterr().err.strip() == ("error: config file nope.yaml does not exist; pass --config with the "
                                               "path of a YAML config (e.g. checkpoints/NAME.yaml)")
    assert export_bench_main(["--config", str(tiny_fomm[0]), "--checkpoint", str(tiny_fomm[1]), "--backends",
                              "torch,torch-fast", "--frames", "1", "--cpu"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: unknown backend 'torch-fast'")


def test_bench_prints_backends_side_by_side(exported, tiny_fomm):
    runs = compare_backends(["torch", "official", "onnxruntime"], load_config(tiny_fomm[0]), tiny_fomm[1], CPU, frames=2,
                   export_dir=exported)
    header, *rows = format_table(runs).splitlines()
    assert "generator ms" in header and "vs official" in header and "PSNR dB" in header
    assert [row.split()[0] for row in rows] == ["torch", "official", "onnxruntime"]
    assert all(len(run.times["frame"]) == 2 for run in runs)
    assert float(rows[2].split()[-1]) > 80  # same maths as torch: only FP32 rounding differs
