"""`puppet.py doctor`: the setup checks that decide whether `live` runs here and how well, one line each:
`ok: NAME: what was found`, or `missing: NAME: what is missing -> the command that fixes it`. The virtual
camera is the most common complaint in the trackers of avatarify and FasterLivePortrait, so its line names
this OS's fix.

`live` can run with its defaults, and doctor exits 0, when the live model is there, a camera opens and there is
an output (the virtual camera, else a window); the other lines are about speed and tracking. Each check is a
function whose probes are arguments (the real ones by default), so tests fake what is present and missing.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from core.defaults import resolve_model
from core.pipeline import pick_device
from core.tracking.landmarks import LANDMARK_MODEL
from export.auto import candidates
from export.cpu import CpuCapabilities, detect
from motion.errors import UserError, first_line
from realtime.sinks.vcam import LINUX_FIX, OBS_FIX
from realtime.sinks.window import has_display

REHEARSE = "python puppet.py live --driving checkpoints/webcam.mp4 --pace"
V4L2_RELOAD = "sudo modprobe -r v4l2loopback && sudo modprobe v4l2loopback devices=1 exclusive_caps=1"
COMPILER_FIX = {"linux": "sudo apt install g++", "darwin": "xcode-select --install",
                "win32": "install Visual Studio Build Tools (C++) and run from its Developer Command Prompt"}
CUDA_TORCH = "pip install torch --index-url https://download.pytorch.org/whl/cu128"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str  # what was found, or what is missing and why
    fix: str = ""  # the command that fixes it, when missing
    needed: bool = False  # `live` cannot run with its defaults without it

    def line(self) -> str:
        return f"ok: {self.name}: {self.detail}" if self.ok else f"missing: {self.name}: {self.detail} -> {self.fix}"


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def live_model() -> str:
    """The shipped live model's checkpoint; a UserError when it is missing."""
    return resolve_model("fomm-live", None, None)[1]


def model_check(model: Callable[[], str] = live_model) -> Check:
    try:
        return Check("live model", True, model(), needed=True)
    except UserError as err:
        return Check("live model", False, first_line(err).split(";")[0], "git checkout -- checkpoints", needed=True)


def camera_size(index: int) -> tuple[int, int] | None:
    """The frame size camera `index` opens with (released at once), or None when it does not open."""
    import cv2

    from realtime.sources import CameraError, WebcamSource
    try:
        source = WebcamSource(index)
    except CameraError:
        return None
    try:
        return int(source.capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(source.capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        source.close()


def is_loopback(index: int) -> bool:
    """Linux: /dev/video{index} is a virtual device (v4l2loopback), the avatar's way out rather than a webcam."""
    return "virtual" in Path(f"/sys/class/video4linux/video{index}").resolve().parts


def camera_check(size: Callable[[int], tuple[int, int] | None] = camera_size,
                 loopback: Callable[[int], bool] = is_loopback, indices: Sequence[int] = range(4)) -> Check:
    opened = {index: found for index in indices if (found := size(index)) is not None}
    cameras = [f"webcam:{index} {width}x{height}" for index, (width, height) in opened.items() if not loopback(index)]
    if cameras:
        return Check("camera", True, ", ".join(cameras), needed=True)
    tried = f"webcam:{indices[0]}" + (f"-{indices[-1]}" if len(indices) > 1 else "")
    virtual = "".join(f" (webcam:{index} is a virtual camera)" for index in opened)
    return Check("camera", False, f"no webcam opens at {tried}{virtual}",
                 f"connect one and close programs using it, or rehearse without: {REHEARSE}", needed=True)


def open_virtual_camera() -> str:
    """The device pyvirtualcam opens here and its backend (closed again at once); ImportError without
    pyvirtualcam, RuntimeError with pyvirtualcam's reason without a device."""
    import pyvirtualcam
    with pyvirtualcam.Camera(640, 480, 30) as camera:
        return f"{camera.device} ({camera.backend})"


def v4l2loopback_loaded() -> bool:
    return Path("/sys/module/v4l2loopback").is_dir()


def virtual_camera_check(open_device: Callable[[], str] = open_virtual_camera, platform: str = sys.platform,
                         module_loaded: Callable[[], bool] = v4l2loopback_loaded) -> Check:
    try:
        return Check("virtual camera", True, open_device())
    except ImportError:
        return Check("virtual camera", False, "pyvirtualcam is not installed", "pip install pyvirtualcam")
    except RuntimeError as err:
        reason = first_line(err, "no device")
    if not platform.startswith("linux"):
        return Check("virtual camera", False, reason, OBS_FIX)
    if not module_loaded():
        return Check("virtual camera", False, "the v4l2loopback module is not loaded", LINUX_FIX)
    return Check("virtual camera", False, f"v4l2loopback is loaded, but: {reason}",
                 f"close programs writing to it, or {V4L2_RELOAD}")


def window_check(display: Callable[[], bool] = has_display, needed: bool = False) -> Check:
    """`needed`: without a virtual camera, the window is live's default output."""
    if display():
        return Check("window", True, "a display for --output window", needed=needed)
    return Check("window", False, "no display for --output window (DISPLAY and WAYLAND_DISPLAY are unset)",
                 "run live in a desktop session, or pass --output http:8080 and open http://127.0.0.1:8080",
                 needed=needed)


def landmark_check(has: Callable[[str], bool] = installed, model: str = LANDMARK_MODEL) -> Check:
    """dlib's landmarks follow the face through tilts; without them the Haar box tracker is used."""
    if not has("dlib"):
        return Check("landmarks", False, "dlib is not installed (--tracker auto falls back to Haar boxes)",
                     "pip install dlib-bin")
    if not Path(model).is_file():
        return Check("landmarks", False, f"dlib's landmark model {model} (--tracker auto falls back to Haar boxes)",
                     "sudo apt install libdlib-data")
    return Check("landmarks", True, f"dlib with {model}")


def mediapipe_check(has: Callable[[str], bool] = installed) -> Check:
    if has("mediapipe"):
        return Check("mediapipe", True, "installed (--tracker auto uses its face mesh)")
    return Check("mediapipe", False, "not installed (optional: --tracker auto uses dlib, else Haar boxes; its wheels "
                 "need numpy<2)", "pip install mediapipe")


def compiler_check(cpu: CpuCapabilities, which: Callable[[str], str | None] = shutil.which,
                   environ: Mapping[str, str] = os.environ, platform: str = sys.platform) -> Check:
    """The compiler TorchInductor looks for ($CXX, else g++, clang++ on macOS, cl on Windows), which
    --backend torch-bf16-compiled needs; auto tries that backend only on CPUs with bf16 units."""
    system = "win32" if platform.startswith("win") else "darwin" if platform == "darwin" else "linux"
    name = environ.get("CXX") or {"linux": "g++", "darwin": "clang++", "win32": "cl"}[system]
    path = which(name)
    if path is not None:
        return Check("C++ compiler", True, f"{path} (for --backend torch-bf16-compiled)")
    tried = "which --backend auto tries on this CPU" if cpu.fast_bf16 else "not tried by auto on this CPU"
    return Check("C++ compiler", False, f"no {name} for --backend torch-bf16-compiled ({tried})",
                 COMPILER_FIX[system])


def backends_check(cpu: CpuCapabilities, device: torch.device, onnxruntime: bool) -> Check:
    """The CPU's features and the backends `--backend auto` times against torch on them."""
    wanted, tried = candidates(device, cpu, True), candidates(device, cpu, onnxruntime)
    if wanted != tried:
        return Check("backends", False, f"onnxruntime, which --backend auto would try on this CPU ({cpu.label()})",
                     "pip install onnxruntime")
    return Check("backends", True, f"CPU {cpu.label()}; --backend auto on the {device.type} tries {', '.join(tried)} "
                 "against torch")


def cuda_device() -> str | None:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def gpu_check(gpu: Callable[[], str | None] = cuda_device, which: Callable[[str], str | None] = shutil.which) -> Check:
    name = gpu()
    if name is not None:
        return Check("GPU", True, f"{name} (torch {torch.__version__})")
    if which("nvidia-smi") is not None:
        return Check("GPU", False, f"torch {torch.__version__} has no CUDA, though an NVIDIA GPU is here", CUDA_TORCH)
    return Check("GPU", True, "none; live runs on the CPU, which its shipped model is made for")


def checks(cameras: int = 4) -> list[Check]:
    """Every check on this machine, cameras webcam:0 to webcam:{cameras - 1} first: the virtual camera's probe
    would hold a loopback device that is among them."""
    cpu = detect()
    camera, vcam = camera_check(indices=range(cameras)), virtual_camera_check()
    return [model_check(), camera, vcam, window_check(needed=not vcam.ok), landmark_check(), mediapipe_check(),
            backends_check(cpu, pick_device(False), installed("onnxruntime")), compiler_check(cpu), gpu_check()]


def run_doctor(found: list[Check]) -> int:
    """Print one line per check and the verdict; the exit code: 0 when live can run with its defaults."""
    for check in found:
        print(check.line())
    blocking = [check.name for check in found if check.needed and not check.ok]
    print(f"live cannot run with its defaults until these are fixed: {', '.join(blocking)}" if blocking
          else "live can run: python puppet.py live")
    return 1 if blocking else 0
