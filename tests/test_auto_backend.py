"""`--backend auto` and torch-bf16-all: CPU flags parsed from hand-written /proc/cpuinfo samples, the
candidates each kind of machine gets, the fallback to torch, and bf16 frames against FP32 on a real photo
with the shipped (trained) model, since the random-weight test model renders nearly flat frames that any
backend matches (measured: std 0.004 around 0.5)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.transform import resize

import export.auto as auto
from conftest import ROOT
from core.media import moving_clip, sample_clip
from core.pipeline import FommPipeline
from core.puppeteer import normalize_keypoints
from export.auto import MIN_PSNR_ENV, Trial, candidates, choose_backend, pick
from export.backends import BackendOptions, TorchBackend, open_backend, opener
from export.cpu import CpuCapabilities, cross_check, parse_cpuinfo
from motion.config import load_config
from motion.errors import UserError

CPU = torch.device("cpu")
SHIPPED = (ROOT / "checkpoints" / "fomm-face.yaml", ROOT / "checkpoints" / "fomm-face.pth.tar")

XEON_AMX = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse sse2 avx avx2 fma avx512f avx512dq avx512_vnni avx512_bf16 amx_bf16 avx512_fp16 amx_tile amx_int8

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse sse2 avx avx2 fma avx512f avx512dq avx512_vnni avx512_bf16 amx_bf16 avx512_fp16 amx_tile amx_int8
"""
EPYC_ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512dq avx512_bf16 avx512vl avx512_vnni avx512_bitalg
"""
HASWELL = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM) i7-4790 CPU @ 3.60GHz
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c avx2 fma bmi1 bmi2
"""
ALDER_LAKE = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: 12th Gen Intel(R) Core(TM) i7-12700H
flags\t\t: fpu sse sse2 avx avx2 fma avx_vnni sha_ni
"""
NEOVERSE_N1 = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1
"""


def naive_psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """10 log10(peak^2 / MSE) over every pixel and channel, peak 1 for [0, 1] images."""
    mse = float(np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def frames_of(puppeteer, config, count: int = 4) -> list[np.ndarray]:
    avatar, driving = sample_clip(config.size, count)
    pipeline = FommPipeline(puppeteer, avatar)
    return [pipeline(frame) for frame in driving]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: these tests time backends, and on a busy 2-core machine two threads wait on each
    other (README: export and backends), making a tiny-model frame take a second instead of 20 ms."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


AMX = parse_cpuinfo(XEON_AMX)
# Injected frame times (ms): which backend is faster is fixed by the test, never by the machine running it.
BF16_FASTEST = {"torch": 50.0, "torch-bf16-compiled": 20.0, "torch-bf16-all": 30.0, "torch-bf16": 40.0,
                "onnxruntime": 25.0, "onnxruntime-int8": 35.0}
TORCH_FASTEST = {name: 100.0 + ms for name, ms in BF16_FASTEST.items()} | {"torch": 10.0}


def timed(ms: dict[str, float]):
    """A frame_ms for choose_backend that reads a trial's time from ``ms`` by backend name."""
    return lambda run: ms[run.name]
BF16 = ["torch-bf16-compiled", "torch-bf16-all", "torch-bf16"]  # what a bf16 CPU tries without ONNX Runtime
AVX2 = parse_cpuinfo(HASWELL)


@pytest.mark.parametrize("text,name,fast_bf16,vnni,label", [
    (XEON_AMX, "Intel Xeon Platinum 8480+", True, True, "Intel Xeon Platinum 8480+ amx_bf16,avx512_bf16,avx512_vnni"),
    (EPYC_ZEN4, "AMD EPYC 9654", True, True, "AMD EPYC 9654 avx512_bf16,avx512_vnni"),
    (HASWELL, "Intel Core i7-4790", False, False, "Intel Core i7-4790 unknown vector level, no bf16"),
    (ALDER_LAKE, "12th Gen Intel Core i7-12700H", False, True, "12th Gen Intel Core i7-12700H avx_vnni"),
    (NEOVERSE_N1, "ARM part 0xd0c", False, False, "ARM part 0xd0c unknown vector level, no bf16"),
])
def test_cpuinfo_samples_parse_to_their_capabilities(text, name, fast_bf16, vnni, label):
    caps = parse_cpuinfo(text)
    assert (caps.name, caps.fast_bf16, caps.vnni, caps.label()) == (name, fast_bf16, vnni, label)


def test_cpuinfo_flags_are_the_first_processors_and_arm_features_count():
    assert parse_cpuinfo(XEON_AMX).amx and "amx_int8" in parse_cpuinfo(XEON_AMX).flags
    assert not parse_cpuinfo(EPYC_ZEN4).amx and parse_cpuinfo(EPYC_ZEN4).avx512_bf16
    assert {"asimd", "asimddp"} <= parse_cpuinfo(NEOVERSE_N1).flags
    assert parse_cpuinfo("").name == "unknown CPU" and not parse_cpuinfo("").flags


def test_torch_probes_overrule_cpuinfo_and_stand_in_without_it():
    refused = cross_check(AMX, {"amx_tile": False, "avx512_bf16": True}, "AVX512")
    assert not refused.amx and "amx_bf16" not in refused.flags and refused.fast_bf16  # AVX-512-BF16 still there
    none = cross_check(AMX, {"amx_tile": False, "avx512_bf16": False, "avx512_vnni": True}, "AVX512")
    assert not none.fast_bf16 and none.vnni and none.torch_capability == "AVX512"
    alone = cross_check(None, {"amx_tile": False, "avx512_bf16": True}, "AVX512")
    assert alone.flags == {"avx512_bf16"} and alone.fast_bf16
    assert cross_check(AVX2, {}, "AVX2").label() == "Intel Core i7-4790 AVX2, no bf16"


def test_candidates_follow_the_hardware():
    for cpu in (AVX2, parse_cpuinfo(ALDER_LAKE), parse_cpuinfo(NEOVERSE_N1)):
        for onnxruntime in (False, True):
            assert not [name for name in candidates(CPU, cpu, onnxruntime) if "bf16" in name]
    assert candidates(CPU, AVX2, True) == ["onnxruntime", "onnxruntime-int8"]
    assert candidates(CPU, AVX2, False) == []
    bf16 = ["torch-bf16-compiled", "torch-bf16-all", "torch-bf16"]
    assert candidates(CPU, AMX, True) == [*bf16, "onnxruntime-int8"]
    assert candidates(CPU, parse_cpuinfo(EPYC_ZEN4), False) == bf16
    assert candidates(CPU, CpuCapabilities("no vnni", frozenset({"avx512_bf16"})), True) == bf16
    assert candidates(torch.device("cuda"), AVX2, True) == ["torch-bf16-all"]


def test_auto_exports_a_new_model_once_for_onnxruntime(tiny_fomm, tmp_path, capsys):
    """No bf16 units: the ONNX Runtime backends are the candidates, so a model's first run exports it."""
    export_dir = tmp_path / "exports"
    options = BackendOptions(load_config(tiny_fomm[0]), tiny_fomm[1], CPU, export_dir=export_dir)
    choice = choose_backend(options, opener(options), AVX2, frames=2, frame_ms=timed(BF16_FASTEST))
    assert [t.name for t in choice.trials] == ["torch", "onnxruntime", "onnxruntime-int8"]
    assert choice.name == "onnxruntime" and "25.0 ms vs 50.0 ms torch" in choice.line
    err = capsys.readouterr().err
    assert "exporting" in err and "untried" not in choice.line and list(export_dir.rglob("*.onnx"))
    choose_backend(options, opener(options), AVX2, frames=2, frame_ms=timed(BF16_FASTEST))
    assert "exporting" not in capsys.readouterr().err  # the second run reuses the export


def fail_export(monkeypatch: pytest.MonkeyPatch, message: str = "not in this test") -> None:
    """The exporter fails: auto is left with the torch candidates (and the tests with no export's wait)."""
    def broken(*args, **kwargs):
        raise RuntimeError(message)

    monkeypatch.setattr(auto, "ensure_export", broken)


def test_a_failed_export_leaves_torch_and_says_why(tiny_fomm, tmp_path, capsys, monkeypatch):
    fail_export(monkeypatch, "unsupported operator\nmore detail")
    options = BackendOptions(load_config(tiny_fomm[0]), tiny_fomm[1], CPU, export_dir=tmp_path / "none")
    choice = choose_backend(options, opener(options), AVX2)
    assert (choice.name, choice.trials) == ("torch", ())
    line = capsys.readouterr().err.strip()
    assert line == choice.line and line.startswith("backend auto: torch (Intel Core i7-4790") and "bf16," not in line
    assert line.endswith("onnxruntime untried: the export failed (unsupported operator))")


def test_forced_check_failure_falls_back_to_torch_and_says_why(tiny_fomm, tmp_path, capsys, monkeypatch):
    fail_export(monkeypatch)
    config = load_config(tiny_fomm[0])
    options = BackendOptions(config, tiny_fomm[1], CPU, export_dir=tmp_path / "none")
    choice = choose_backend(options, opener(options), AMX, min_psnr=math.inf, frames=2,
                            frame_ms=timed(BF16_FASTEST))
    assert choice.name == "torch" and [t.name for t in choice.trials] == ["torch", *BF16]
    assert "below inf dB vs FP32 on the astronaut: torch-bf16-compiled" in choice.line
    assert "torch-bf16-all " in choice.line and "torch-bf16 " in choice.line
    capsys.readouterr()
    # the same through open_backend, forced by the environment, as `live --backend auto` would be
    monkeypatch.setenv(MIN_PSNR_ENV, "inf")
    monkeypatch.setattr("export.auto.detect", lambda: AMX)
    puppeteer = open_backend("auto", config, tiny_fomm[1], CPU, export_dir=tmp_path / "none")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("torch-bf16-compiled: compiling")  # why it takes a while
    assert lines[1].startswith("backend auto: torch (Intel Xeon Platinum 8480+ amx_bf16") and "below inf dB" in lines[1]
    assert isinstance(puppeteer, TorchBackend) and not puppeteer.fused
    monkeypatch.setenv(MIN_PSNR_ENV, "high")
    with pytest.raises(UserError, match=f"{MIN_PSNR_ENV}='high' is not a number"):
        open_backend("auto", config, tiny_fomm[1], CPU, export_dir=tmp_path / "none")


def test_moving_clip_slides_and_zooms_by_the_documented_amounts():
    """At 512x512 frame i slides 6 * (i % 5) px and crops 8 * (i % 4) px a side: frame 7 slides 12, crops 24."""
    photo = np.random.default_rng(1).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    frames = moving_clip(photo, (64, 64), 8)
    by_hand = resize(np.roll(photo, 12, axis=1)[24:488, 24:488], (64, 64)).astype(np.float32)
    assert len(frames) == 8 and np.allclose(frames[7], by_hand, atol=1e-6)
    assert np.allclose(frames[0], resize(photo, (64, 64)), atol=1e-6)


def test_auto_checks_its_choice_on_the_users_avatar(tiny_fomm, tmp_path, monkeypatch):
    """Every candidate and the FP32 reference start on the avatar given (not the astronaut), and the line
    says where the PSNR was measured; without one, the astronaut."""
    fail_export(monkeypatch)
    config = load_config(tiny_fomm[0])
    avatar = np.random.default_rng(0).random((*config.size, 3), dtype=np.float32)
    prepared = []

    def spying(options):
        def open_named(name):
            puppeteer = opener(options)(name)
            original = puppeteer.prepare
            puppeteer.prepare = lambda image: prepared.append((name, image)) or original(image)
            return puppeteer
        return open_named
    moved = []
    monkeypatch.setattr(auto, "moving_clip", lambda photo, *args: moved.append(photo) or moving_clip(photo, *args))
    options = BackendOptions(config, tiny_fomm[1], CPU, export_dir=tmp_path / "none", avatar=avatar)
    choice = choose_backend(options, spying(options), AMX, frames=2, frame_ms=timed(BF16_FASTEST))
    assert [name for name, _ in prepared] == ["torch", *BF16]
    assert all(image is avatar for _, image in prepared) and len(moved) == 1 and moved[0] is avatar
    assert choice.name == "torch-bf16-compiled" and "dB vs FP32 on the avatar, 20.0 ms vs 50.0 ms torch" in choice.line
    prepared.clear()
    plain = BackendOptions(config, tiny_fomm[1], CPU, export_dir=tmp_path / "none")
    choice = choose_backend(plain, spying(plain), AMX, frames=2, frame_ms=timed(BF16_FASTEST))
    astronaut = sample_clip(config.size, 1)[0]
    assert [name for name, _ in prepared] == ["torch", *BF16]
    assert all(np.array_equal(image, astronaut) for _, image in prepared) and "on the astronaut" in choice.line


@pytest.fixture(scope="module")
def shipped_fp32() -> list[np.ndarray]:
    config = load_config(SHIPPED[0])
    return frames_of(open_backend("torch", config, SHIPPED[1], CPU), config)


def test_pick_takes_the_fastest_that_keeps_the_bar_else_torch():
    torch_trial = Trial("torch", 50.0, math.inf)
    trials = [torch_trial, Trial("fast-but-wrong", 10.0, 30.0), Trial("b", 20.0, 40.0), Trial("c", 15.0, 34.9)]
    assert pick(trials, 35.0).name == "b"
    assert pick(trials, 45.0) is torch_trial
    assert pick([torch_trial, Trial("slow", 60.0, 50.0)], 35.0) is torch_trial


def test_auto_picks_a_candidate_whose_frames_keep_35_db(shipped_fp32, tmp_path, monkeypatch):
    fail_export(monkeypatch)
    config = load_config(SHIPPED[0])
    options = BackendOptions(config, SHIPPED[1], CPU, export_dir=tmp_path / "none")
    choice = choose_backend(options, opener(options), AMX, frames=2, frame_ms=timed(BF16_FASTEST))
    assert [t.name for t in choice.trials] == ["torch", *BF16]
    # the rule, worked out here from the trials' measured PSNR and the injected times (bf16 keeps ~44 dB on
    # the shipped model, but how much is the CPU's business, not this test's)
    kept = [trial for trial in choice.trials[1:] if trial.psnr >= 35]
    expected = min(kept, key=lambda trial: BF16_FASTEST[trial.name]).name if kept else "torch"
    assert choice.name == expected and choice.line.startswith(f"backend auto: {expected} (Intel Xeon Platinum 8480+")
    assert min(naive_psnr(a, b) for a, b in zip(frames_of(choice.puppeteer, config), shipped_fp32)) >= 35
    slower = choose_backend(options, opener(options), AMX, frames=2, frame_ms=timed(TORCH_FASTEST))
    assert slower.name == "torch"
    assert all(f"{trial.name} {TORCH_FASTEST[trial.name]:.1f} ms" in slower.line for trial in kept)
    assert (" vs 10.0 ms torch" in slower.line) == bool(kept)  # "slower: ..." names them against torch


@pytest.mark.parametrize("name", ["torch-bf16-all", "torch-bf16-compiled"])
def test_bf16_all_keeps_35_db_on_a_real_photo(shipped_fp32, name):
    """Measured 44.0 dB (torch 2.13, AVX2 CPU): the bf16 keypoint hourglass costs most of it."""
    config = load_config(SHIPPED[0])
    frames = frames_of(open_backend(name, config, SHIPPED[1], CPU), config)
    assert min(naive_psnr(a, b) for a, b in zip(frames, shipped_fp32)) >= 35


@pytest.mark.parametrize("name", ["torch-bf16-all", "torch-bf16-compiled"])
def test_bf16_all_runs_trunks_in_bf16_and_positions_in_fp32(tiny_fomm, name):
    """On the tiny model (random weights): keypoints and flow within a tenth of a pixel of FP32 (measured
    0.008 and 0.002 px at 64x64), every trunk weight bf16, every head FP32; compiled: the three trunks."""
    config = load_config(tiny_fomm[0])
    avatar, driving = sample_clip(config.size, 3)
    stages, backends = {}, {name: open_backend(name, config, tiny_fomm[1], CPU) for name in ("torch", name)}
    for name, backend in backends.items():
        prepared = backend.prepare(avatar)
        kp = normalize_keypoints(prepared.kp, backend.keypoints(driving[2]), backend.keypoints(driving[0]),
                                 relative=True, adapt_scale=False)
        stages[name] = (prepared.kp.value, kp.value, backend.motion(prepared, kp).deformation)
    pixels = config.size[0] / 2  # [-1, 1] spans the frame
    for fp32, bf16 in zip(stages["torch"], stages[name]):
        assert bf16.dtype == torch.float32 and (bf16 - fp32).abs().max() * pixels < 0.1
    bf16 = backends[name]
    detector, dense = bf16.kp_detector, bf16.generator.dense_motion_network
    assert {p.dtype for p in detector.predictor.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in dense.hourglass.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in bf16.decoder.parameters()} == {torch.bfloat16}
    heads = [detector.kp, detector.jacobian, dense.mask, dense.occlusion]
    assert {p.dtype for head in heads for p in head.parameters()} == {torch.float32}
    compiled = [detector.predictor.trunk, dense.hourglass.trunk, bf16.decode]
    assert [hasattr(part, "_torchdynamo_orig_callable") or hasattr(part, "_orig_mod") for part in compiled] == \
        [name == "torch-bf16-compiled"] * 3


def test_a_backend_that_cannot_compile_is_one_line_and_auto_leaves_it_out(tiny_fomm, tmp_path, monkeypatch):
    """No C++ compiler (forced: compiled code fails on its first call): asked for, a one-line error naming
    the eager alternative; under auto, the other candidates run and the line says why it was left out."""
    class Uncompilable(torch.nn.Module):
        def forward(self, *args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")
    monkeypatch.setattr(torch, "compile", lambda target, **kwargs: Uncompilable())
    fail_export(monkeypatch)
    config = load_config(tiny_fomm[0])
    with pytest.raises(UserError) as error:
        open_backend("torch-bf16-compiled", config, tiny_fomm[1], CPU)
    assert str(error.value) == ("torch-bf16-compiled cannot run here (compiling failed: InvalidCxxCompiler: No "
                                "working C++ compiler found); use --backend torch-bf16-all")
    options = BackendOptions(config, tiny_fomm[1], CPU, export_dir=tmp_path / "none")
    choice = choose_backend(options, opener(options), AMX, frames=2, frame_ms=timed(BF16_FASTEST))
    assert [t.name for t in choice.trials] == ["torch", "torch-bf16-all", "torch-bf16"]
    assert choice.name == "torch-bf16-all"
    assert "torch-bf16-compiled untried (compiling failed: InvalidCxxCompiler" in choice.line
