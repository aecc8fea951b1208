"""A small HTTP server on 127.0.0.1 (stdlib ThreadingHTTPServer) for browsers and OBS:

  /            a page showing the live output with control buttons (/?overlay=1: transparent, PNG stream)
  /stream.mjpg MJPEG stream (multipart/x-mixed-replace; boundary=frame)
  /stream.png  the same stream as RGBA PNGs, background removed with the co-part segmentation matte
  /frame.png   the newest frame as one RGBA PNG
  /control     GET: state as JSON; POST or GET ?action=recalibrate|next_avatar|toggle_swap|quit

Frames are encoded at most once per kind, by the first client that asks, so an idle server costs nothing.
"""
from __future__ import annotations

import errno
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from motion.errors import UserError
from realtime.controls import Controls
from realtime.sinks import Packet

BOUNDARY = "frame"
PAGE = (Path(__file__).with_name("page.html")).read_bytes()
FIRST_FRAME_S = 10.0


class PortInUseError(UserError):
    """The HTTP port is taken."""


def encode(packet: Packet, kind: str) -> bytes:
    """'jpeg': the avatar as JPEG; 'png': RGBA PNG whose alpha is the matte (opaque without one)."""
    if kind == "jpeg":
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(packet.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    else:
        alpha = packet.alpha if packet.alpha is not None else np.full(packet.image.shape[:2], 255, np.uint8)
        bgra = np.dstack([cv2.cvtColor(packet.image, cv2.COLOR_RGB2BGR), alpha])
        ok, data = cv2.imencode(".png", bgra, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {kind} frame")
    return data.tobytes()


class HttpSink:
    name = "http"
    lossless = False
    wants_alpha = True

    def __init__(self, port: int, controls: Controls, host: str = "127.0.0.1"):
        self.controls = controls
        self._cond = threading.Condition()
        self._packet: Packet | None = None
        self._encoded: dict[str, tuple[int, bytes]] = {}
        self.closed = False
        self.requests: dict[str, int] = {}
        handler = type("Handler", (_Handler,), {"sink": self})
        try:
            self.server = ThreadingHTTPServer((host, port), handler)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise PortInUseError(f"port {port} on {host} is in use; pass another, e.g. --output http:{port + 1}, "
                                     "or stop the program using it") from None
            raise UserError(f"cannot serve on {host}:{port} ({err.strerror}); pick another --output http:PORT"
                            ) from None
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)
        self.thread.start()
        print(f"live output at {self.url} (OBS browser source: {self.url}?overlay=1)", file=sys.stderr)

    def write(self, packet: Packet) -> None:
        with self._cond:
            self._packet = packet
            self._cond.notify_all()

    def next_packet(self, after: int, timeout: float) -> Packet | None:
        """The first packet newer than index `after`, or None when closed or none came in time."""
        with self._cond:
            self._cond.wait_for(lambda: self.closed or (self._packet is not None and self._packet.index > after),
                                timeout)
            return None if self.closed or self._packet is None or self._packet.index <= after else self._packet

    def encoded(self, packet: Packet, kind: str) -> bytes:
        with self._cond:
            cached = self._encoded.get(kind)
            if cached is not None and cached[0] == packet.index:
                return cached[1]
        data = encode(packet, kind)
        with self._cond:
            self._encoded[kind] = (packet.index, data)
        return data

    def state(self) -> dict:
        with self._cond:
            packet = self._packet
        if packet is None:
            return {**self.controls.state(), "frame": -1, "fps": 0.0, "latency_ms": 0.0, "face": False, "showing": None}
        live = {"frame": packet.index, "fps": round(packet.fps, 2), "latency_ms": round(packet.latency_ms, 2),
                "face": packet.face, "showing": {"avatar": packet.avatar, "swap": packet.swap}}
        return {**self.controls.state(), **live}

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    sink: HttpSink
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:
        """Quiet: the terminal belongs to the loop's messages."""

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        self.sink.requests[url.path] = self.sink.requests.get(url.path, 0) + 1
        if url.path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", PAGE)
        elif url.path == "/stream.mjpg":
            self._stream("jpeg", "image/jpeg")
        elif url.path == "/stream.png":
            self._stream("png", "image/png")
        elif url.path == "/frame.png":
            packet = self.sink.next_packet(-1, FIRST_FRAME_S)
            if packet is None:
                self._send(503, "text/plain", b"no frame yet\n")
            else:
                self._send(200, "image/png", self.sink.encoded(packet, "png"))
        elif url.path == "/control":
            self._control(parse_qs(url.query).get("action", [None])[0])
        else:
            self._send(404, "text/plain", b"not found; try /, /stream.mjpg, /stream.png, /frame.png or /control\n")

    def do_POST(self) -> None:
        url = urlparse(self.path)
        if url.path != "/control":
            self._send(404, "text/plain", b"only /control takes POST\n")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        action = parse_qs(url.query).get("action", [None])[0]
        if action is None and body:
            try:
                action = json.loads(body).get("action")
            except (json.JSONDecodeError, AttributeError):
                action = parse_qs(body).get("action", [None])[0]
        self._control(action)

    def _control(self, action: str | None) -> None:
        try:
            if action is not None:
                self.sink.controls.apply(action)
        except ValueError as err:
            self._send(400, "application/json", json.dumps({"error": str(err)}).encode())
            return
        self._send(200, "application/json", json.dumps(self.sink.state()).encode())

    def _stream(self, kind: str, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        index = -1
        try:
            while (packet := self.sink.next_packet(index, 1.0)) is not None or not self.sink.closed:
                if packet is None:
                    continue
                index = packet.index
                data = self.sink.encoded(packet, kind)
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\nContent-Length: {len(data)}"
                                 f"\r\n\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return  # the client went away
