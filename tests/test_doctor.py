"""`puppet.py doctor`: each check's line with its probes faked present and missing, the exit code, and one real
run (this machine: no camera and no v4l2loopback, yet one line per check and no traceback)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from app.doctor import (
    Check,
    backends_check,
    camera_check,
    compiler_check,
    gpu_check,
    landmark_check,
    mediapipe_check,
    model_check,
    run_doctor,
    virtual_camera_check,
    window_check,
)
from export.cpu import CpuCapabilities
from motion.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
EPYC = CpuCapabilities("AMD EPYC", frozenset({"avx2"}), "AVX2")
XEON = CpuCapabilities("Intel Xeon", frozenset({"amx_bf16", "amx_tile", "avx512_bf16", "avx512_vnni"}), "AVX512")
CPU = torch.device("cpu")


def missing_model():
    raise UserError("the shipped model checkpoints/fomm-face-fast.pth.tar is missing; pass --config ...")


def test_the_live_model():
    assert model_check(lambda: "checkpoints/fomm-face-fast.pth.tar").line() == \
        "ok: live model: checkpoints/fomm-face-fast.pth.tar"
    assert model_check(missing_model).line() == ("missing: live model: the shipped model "
                                                 "checkpoints/fomm-face-fast.pth.tar is missing -> git checkout -- "
                                                 "checkpoints")


def test_cameras_that_open_and_a_virtual_one_that_is_no_webcam():
    sizes = {0: (640, 480), 2: (1280, 720)}
    assert camera_check(sizes.get, lambda index: False).line() == "ok: camera: webcam:0 640x480, webcam:2 1280x720"
    assert camera_check(sizes.get, lambda index: index == 0).line() == "ok: camera: webcam:2 1280x720"
    rehearse = "python puppet.py live --driving checkpoints/webcam.mp4 --pace"
    assert camera_check({}.get, lambda index: False).line() == (
        f"missing: camera: no webcam opens at webcam:0-3 -> connect one and close programs using it, or rehearse "
        f"without: {rehearse}")
    assert camera_check({1: (640, 480)}.get, lambda index: True).line() == (
        f"missing: camera: no webcam opens at webcam:0-3 (webcam:1 is a virtual camera) -> connect one and close "
        f"programs using it, or rehearse without: {rehearse}")


def no_module():
    raise ImportError("No module named 'pyvirtualcam'")


def no_device():
    raise RuntimeError("'v4l2loopback' backend: No v4l2 loopback device found at /dev/video[0-99].\nmore")


def obs_stopped():
    raise RuntimeError("'obs' backend: virtual camera output could not be started")


@pytest.mark.parametrize("platform, probe, loaded, line", [
    ("linux", lambda: "/dev/video4 (v4l2loopback)", False, "ok: virtual camera: /dev/video4 (v4l2loopback)"),
    ("linux", no_module, False, "missing: virtual camera: pyvirtualcam is not installed -> pip install pyvirtualcam"),
    ("linux", no_device, False, "missing: virtual camera: the v4l2loopback module is not loaded -> sudo apt install "
                                "v4l2loopback-dkms && sudo modprobe v4l2loopback devices=1 exclusive_caps=1"),
    ("linux", no_device, True, "missing: virtual camera: v4l2loopback is loaded, but: 'v4l2loopback' backend: No v4l2 "
                               "loopback device found at /dev/video[0-99]. -> close programs writing to it, or sudo "
                               "modprobe -r v4l2loopback && sudo modprobe v4l2loopback devices=1 exclusive_caps=1"),
    ("win32", obs_stopped, False, "missing: virtual camera: 'obs' backend: virtual camera output could not be "
                                  "started -> install OBS Studio (https://obsproject.com) and start its Virtual "
                                  "Camera once"),
    ("darwin", no_device, False, "missing: virtual camera: 'v4l2loopback' backend: No v4l2 loopback device found at "
                                 "/dev/video[0-99]. -> install OBS Studio (https://obsproject.com) and start its "
                                 "Virtual Camera once"),
])
def test_the_virtual_camera_and_this_oss_fix(platform, probe, loaded, line):
    assert virtual_camera_check(probe, platform, lambda: loaded).line() == line


def test_window_trackers_compiler_and_gpu():
    assert window_check(lambda: True).line() == "ok: window: a display for --output window"
    assert window_check(lambda: False, needed=True) == Check(
        "window", False, "no display for --output window (DISPLAY and WAYLAND_DISPLAY are unset)",
        "run live in a desktop session, or pass --output http:8080 and open http://127.0.0.1:8080", needed=True)
    model = Path(__file__)  # any file that exists
    assert landmark_check(lambda name: True, str(model)).line() == f"ok: landmarks: dlib with {model}"
    assert landmark_check(lambda name: False, str(model)).line() == (
        "missing: landmarks: dlib is not installed (--tracker auto falls back to Haar boxes) -> pip install dlib-bin")
    assert landmark_check(lambda name: True, "/nowhere/shape.dat").line() == (
        "missing: landmarks: dlib's landmark model /nowhere/shape.dat (--tracker auto falls back to Haar boxes) -> "
        "sudo apt install libdlib-data")
    assert mediapipe_check(lambda name: name == "mediapipe").ok and not mediapipe_check(lambda name: False).ok
    assert compiler_check(EPYC, {"g++": "/usr/bin/g++"}.get, {}, "linux").line() == \
        "ok: C++ compiler: /usr/bin/g++ (for --backend torch-bf16-compiled)"
    assert compiler_check(XEON, {}.get, {"CXX": "clang++-18"}, "linux").line() == (
        "missing: C++ compiler: no clang++-18 for --backend torch-bf16-compiled (which --backend auto tries on this "
        "CPU) -> sudo apt install g++")
    assert compiler_check(EPYC, {}.get, {}, "darwin").line() == (
        "missing: C++ compiler: no clang++ for --backend torch-bf16-compiled (not tried by auto on this CPU) -> "
        "xcode-select --install")
    assert compiler_check(EPYC, {}.get, {}, "win32").detail.startswith("no cl ")
    assert gpu_check(lambda: "NVIDIA H100", {}.get).line() == f"ok: GPU: NVIDIA H100 (torch {torch.__version__})"
    assert gpu_check(lambda: None, {"nvidia-smi": "/usr/bin/nvidia-smi"}.get).line() == (
        f"missing: GPU: torch {torch.__version__} has no CUDA, though an NVIDIA GPU is here -> pip install torch "
        "--index-url https://download.pytorch.org/whl/cu128")
    assert gpu_check(lambda: None, {}.get).line() == \
        "ok: GPU: none; live runs on the CPU, which its shipped model is made for"


def test_the_backends_auto_would_try_follow_the_cpu():
    assert backends_check(EPYC, CPU, True).line() == (
        "ok: backends: CPU AMD EPYC AVX2, no bf16; --backend auto on the cpu tries onnxruntime, onnxruntime-int8 "
        "against torch")
    assert backends_check(EPYC, CPU, False).line() == (
        "missing: backends: onnxruntime, which --backend auto would try on this CPU (AMD EPYC AVX2, no bf16) -> pip "
        "install onnxruntime")
    assert backends_check(XEON, CPU, True).line() == (
        "ok: backends: CPU Intel Xeon amx_bf16,avx512_bf16,avx512_vnni; --backend auto on the cpu tries "
        "torch-bf16-compiled, torch-bf16-all, torch-bf16, onnxruntime-int8 against torch")
    assert backends_check(XEON, torch.device("cuda"), True).detail.endswith("on the cuda tries torch-bf16-all against "
                                                                              "torch")


def test_exit_code_0_only_when_live_can_run(capsys):
    ok = [Check("live model", True, "m", needed=True), Check("camera", True, "webcam:0 640x480", needed=True),
          Check("mediapipe", False, "not installed", "pip install mediapipe")]
    assert run_doctor(ok) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "live can run: python puppet.py live"
    blocked = [*ok, Check("window", False, "no display", "run it in a desktop session", needed=True)]
    blocked[1] = Check("camera", False, "none", "connect one", needed=True)
    assert run_doctor(blocked) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [check.line() for check in blocked] + \
        ["live cannot run with its defaults until these are fixed: camera, window"]


@pytest.mark.timeout(120)
def test_doctor_runs_for_real():
    """Whatever this machine has: one line per check, in order, the verdict, its exit code, and no traceback."""
    run = subprocess.run([sys.executable, "puppet.py", "doctor"], cwd=ROOT, capture_output=True, text=True,
                         timeout=110)
    lines = run.stdout.splitlines()
    names = ["live model", "camera", "virtual camera", "window", "landmarks", "mediapipe", "backends",
             "C++ compiler", "GPU"]
    assert [line.split(": ")[1] for line in lines[:-1]] == names, run.stdout
    assert all(line.startswith("ok: ") or line.startswith("missing: ") and " -> " in line for line in lines[:-1])
    assert run.returncode == (0 if lines[-1] == "live can run: python puppet.py live" else 1)
    assert "Traceback" not in run.stderr and "error" not in run.stderr.lower(), run.stderr
