"""The HTTP output, fetched with real HTTP clients while the loop runs: MJPEG multipart stream, RGBA PNG
with the co-part matte as alpha, /control changing the loop's state, the page in headless Chromium."""
from __future__ import annotations

import http.client
import io
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from skimage import data as skdata

from core.puppeteer import FommPuppeteer, SwapPuppeteer
from motion.checkpoint import load_model
from motion.config import load_config
from realtime.animator import Animator, AnimatorOptions
from realtime.avatars import PartSwapper, find_faces, prepare_avatars
from realtime.controls import Controls
from realtime.engine import Engine
from realtime.sinks.http import HttpSink, PortInUseError
from realtime.sources import SyntheticSource
from realtime.stats import Stats

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def running(tiny_fomm, tiny_coseg, astronaut_png, tmp_path_factory):
    """The loop on an endless paced synthetic input, two avatars, part swap available, HTTP output."""
    cat = tmp_path_factory.mktemp("avatars") / "chelsea.png"
    imageio.imwrite(cat, skdata.chelsea())
    device = torch.device("cpu")
    config, seg_config = load_config(tiny_fomm[0]), load_config(tiny_coseg[0])
    puppeteer = FommPuppeteer(load_model(config, tiny_fomm[1]), device)
    swapper = SwapPuppeteer(load_model(seg_config, tiny_coseg[1]), device)
    avatars = prepare_avatars(find_faces([astronaut_png, cat]), puppeteer, config.size,
                              PartSwapper(swapper, seg_config.size))
    controls = Controls([a.name for a in avatars], swap_available=True)
    stats = Stats()
    sink = HttpSink(0, controls)
    animator = Animator(puppeteer, avatars, controls, stats, AnimatorOptions(config.size, want_alpha=True, swap_parts=[1, 2]),
                        swapper=PartSwapper(swapper, seg_config.size))
    engine = Engine(SyntheticSource((96, 96), fps=20, paced=True), animator, [sink], stats, controls)
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    yield sink, controls, thread
    controls.apply("quit")
    thread.join(10)


def get(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def act(sink: HttpSink, action: str) -> tuple[int, dict]:
    """POST an action as the server's own page does (with its Origin): (status, JSON answer)."""
    status, _, body = get(f"{sink.url}control?action={action}", "POST", {"Origin": sink.url.rstrip("/")})
    return status, json.loads(body)


def frame_png(sink: HttpSink) -> np.ndarray:
    status, kind, body = get(sink.url + "frame.png")
    assert status == 200 and kind == "image/png"
    return imageio.imread(io.BytesIO(body))


def wait_for(sink: HttpSink, condition) -> dict:
    """The /control state once condition(state) holds; the loop keeps producing frames meanwhile."""
    deadline = time.time() + 20
    while time.time() < deadline:
        state = json.loads(get(sink.url + "control")[2])
        if condition(state):
            return state
        time.sleep(0.05)
    raise AssertionError(f"the loop never reached the expected state; last: {state}")


def test_mjpeg_stream_has_boundaries_and_jpegs(running):
    sink = running[0]
    connection = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=10)
    connection.request("GET", "/stream.mjpg")
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=frame"
    parts = []
    for _ in range(2):
        assert response.readline() == b"--frame\r\n"
        headers = {}
        while (line := response.readline()) != b"\r\n":
            key, _, value = line.decode().partition(":")
            headers[key.strip().lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg"
        body = response.read(int(headers["content-length"]))
        assert body[:2] == b"\xff\xd8" and response.readline() == b"\r\n"
        parts.append(imageio.imread(io.BytesIO(body)))
    connection.close()
    assert parts[0].shape == (64, 64, 3)


def test_png_stream_and_frame_carry_the_matte_as_alpha(running):
    sink = running[0]
    image = frame_png(sink)
    assert image.shape == (64, 64, 4)
    alpha = image[..., 3].astype(int)
    assert alpha.max() - alpha.min() > 10  # a real matte, not an opaque plane
    connection = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=10)
    connection.request("GET", "/stream.png")
    response = connection.getresponse()
    assert response.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=frame"
    assert response.readline() == b"--frame\r\n" and response.readline() == b"Content-Type: image/png\r\n"
    connection.close()


def test_control_changes_the_loops_state(running):
    sink, controls, _ = running
    status, kind, body = get(sink.url + "control")
    state = json.loads(body)
    assert status == 200 and kind == "application/json"
    assert state["avatars"] == 2 and state["swap_available"] and not state["swap"]

    wait_for(sink, lambda st: st["frame"] >= 0)
    state = act(sink, "next_avatar")[1]
    assert state["avatar"] == 1 and state["avatar_name"] == "chelsea"
    shown = wait_for(sink, lambda st: st["showing"]["avatar"] == "chelsea")
    assert shown["showing"]["swap"] is False and shown["face"] is True and shown["fps"] > 0

    assert act(sink, "toggle_swap")[1]["swap"] is True
    wait_for(sink, lambda st: st["showing"]["swap"])
    act(sink, "toggle_swap")
    calibrations = controls.recalibrations
    act(sink, "recalibrate")
    wait_for(sink, lambda st: st["recalibrations"] == calibrations + 1 and not st["showing"]["swap"])

    status, answer = act(sink, "explode")
    assert status == 400 and "unknown action" in answer["error"]
    assert get(sink.url + "nothing-here")[0] == 404
    act(sink, "next_avatar")  # back to the first avatar


def test_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1 is in use"):
            HttpSink(port, Controls(["a"]))


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--no-first-run",
                           f"--user-data-dir={profile}", "--virtual-time-budget=3000", *args],
                          capture_output=True, text=True, timeout=60)


def test_the_page_shows_the_live_output_in_chromium(running, tmp_path):
    if not CHROMIUM.exists():
        print("skipping: /usr/bin/chromium is absent (apt-get install chromium)")
        pytest.skip("/usr/bin/chromium is absent (apt-get install chromium)")
    sink = running[0]
    streams = sink.requests.get("/stream.mjpg", 0)
    dom = chromium(["--dump-dom", sink.url], tmp_path / "profile1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-loaded="yes"' in dom.stdout  # the <img> decoded a frame of the stream
    assert "avatar " in dom.stdout and "FPS" in dom.stdout  # the script read /control
    assert sink.requests.get("/stream.mjpg", 0) > streams

    shot = tmp_path / "overlay.png"
    result = chromium(["--window-size=300,300", f"--screenshot={shot}", sink.url + "?overlay=1"], tmp_path / "profile2")
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    screen = imageio.imread(shot)[..., :3].astype(int)
    page = screen[270:, 270:]  # right of and below the 256x256 <img>: the bare page
    assert page.std() < 1  # one flat colour, nothing drawn there
    drawn = np.abs(screen[:256, :256] - page[0, 0]).sum(axis=-1)
    assert np.mean(drawn > 30) > 0.5  # the avatar covers most of the place where the image sits
    assert sink.requests.get("/stream.png", 0) > 0
