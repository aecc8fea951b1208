"""The virtual camera (pyvirtualcam: v4l2loopback on Linux, OBS Virtual Camera on Windows and macOS),
so video-call programs see the avatar as a webcam. The device factory is injectable for tests."""
from __future__ import annotations

import sys
from typing import Any, Callable

from motion.errors import UserError, first_line
from realtime.sinks import Packet

LINUX_FIX = "sudo apt install v4l2loopback-dkms && sudo modprobe v4l2loopback devices=1 exclusive_caps=1"
OBS_FIX = "install OBS Studio (https://obsproject.com) and start its Virtual Camera once"
FIX = (f"on Linux load v4l2loopback ({LINUX_FIX}), on Windows or macOS {OBS_FIX}; or use --output window, "
       "http:PORT or a file")


class VirtualCameraError(UserError):
    """No virtual camera device to send frames to."""


def pyvirtualcam_device(width: int, height: int, fps: float) -> Any:
    try:
        import pyvirtualcam
    except ImportError:
        raise VirtualCameraError(f"pyvirtualcam is not installed (pip install pyvirtualcam); then {FIX}") from None
    try:
        return pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB)
    except RuntimeError as err:
        raise VirtualCameraError(f"no virtual camera device ({first_line(err, 'no device')}); {FIX}") from None


class VirtualCameraSink:
    name = "vcam"
    lossless = False
    wants_alpha = False

    def __init__(self, size: tuple[int, int], fps: float,
                 device_factory: Callable[[int, int, float], Any] | None = None):
        self.camera = (device_factory or pyvirtualcam_device)(size[1], size[0], fps)
        print(f"virtual camera: {getattr(self.camera, 'device', 'ready')}", file=sys.stderr)

    def write(self, packet: Packet) -> None:
        self.camera.send(packet.rendered.image)  # no sleep_until_next_frame: the loop, not the device, sets the pace

    def close(self) -> None:
        self.camera.close()
