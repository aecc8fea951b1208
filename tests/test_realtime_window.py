"""The window output on a virtual screen (Xvfb): it opens, keys drive the controls, q quits cleanly.
Run through the command line in a child process, so a display problem cannot take pytest down."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_display() -> int:
    for number in range(90, 200):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            return number
    raise RuntimeError("no free X display number")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def control(port: int) -> dict:
    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/control", timeout=2).read())


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_window_keys_switch_avatar_and_quit(tiny_fomm, astronaut_png, tmp_path):
    missing = [tool for tool in ("Xvfb", "xdotool") if shutil.which(tool) is None]
    if missing:
        print(f"skipping: {' and '.join(missing)} absent (apt-get install xvfb xdotool)")
        pytest.skip(f"{' and '.join(missing)} absent (apt-get install xvfb xdotool)")
    number, port = free_display(), free_port()
    env = {"PATH": "/usr/bin:/bin", "DISPLAY": f":{number}", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    xvfb = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    live = None
    try:
        wait_for(lambda: Path(f"/tmp/.X11-unix/X{number}").exists(), "Xvfb")
        live = subprocess.Popen(
            [sys.executable, str(ROOT / "puppet.py"), "live", "--avatar", str(astronaut_png), "--avatar",
             str(astronaut_png), "--config", str(tiny_fomm[0]), "--checkpoint", str(tiny_fomm[1]), "--driving",
             "synthetic:96x96", "--pace", "--crop", "full", "--output", "window", "--output", f"http:{port}"],
            env=env, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: control(port)["frame"] >= 3, "the first frames")
        window = subprocess.run(["xdotool", "search", "--sync", "--name", "^puppet$"], env=env, capture_output=True,
                                text=True, timeout=30).stdout.split()[0]
        subprocess.run(["xdotool", "key", "--window", window, "n"], env=env, check=True, timeout=30)
        wait_for(lambda: control(port)["avatar"] == 1, "the n key to switch avatars")
        subprocess.run(["xdotool", "key", "--window", window, "q"], env=env, check=True, timeout=30)
        _, err = live.communicate(timeout=30)
        assert live.returncode == 0, err
        assert "frames" in err and "FPS" in err  # the stats table printed on exit
    finally:
        for process in (live, xvfb):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
