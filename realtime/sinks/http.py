"""A small HTTP server on 127.0.0.1 (stdlib ThreadingHTTPServer) for browsers and OBS:

  /            a page showing the live output with control buttons (/?overlay=1: transparent, PNG stream)
  /stream.mjpg MJPEG stream (multipart/x-mixed-replace; boundary=frame)
  /stream.png  the same stream as RGBA PNGs, background removed with the co-part segmentation matte
  /frame.png   the newest frame as one RGBA PNG
  /control     GET: the state as JSON; POST ?action=recalibrate|next_avatar|toggle_swap|quit (or the action
               in a JSON or form body) changes it and answers the new state

Frames are encoded at most once per kind, by the first client that asks, so an idle server costs nothing.

Binding to 127.0.0.1 keeps other machines out, but not the web pages open in the user's browser, nor
clients that stall. Hence:
  * a request whose Host is missing or is not 127.0.0.1, localhost or [::1] with this port is refused with
    421: a DNS-rebinding page reaches 127.0.0.1 under its own name;
  * only POST changes state, and a POST whose Origin (else Referer) is another site is refused with 403;
  * a body is framed by one plain Content-Length (400 otherwise, 411 for Transfer-Encoding, 413 over
    64 KiB) and read fully, and a POST's connection closes after the answer: no body is ever parsed as a
    second request;
  * sockets time out after 10 s and at most 32 connections are served at once (503 beyond), so stalled
    or slow clients cannot pin the server. A stream's handler notices a client that left only when it next
    writes, so, with every slot taken, connections whose clients have hung up give theirs back at once (on
    Linux, which reports a peer's hang-up to poll()): clients that reconnect are served, not refused.
"""
from __future__ import annotations

import contextlib
import errno
import json
import select
import socket
import sys
import threading
import time
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
PATHS = ("/", "/index.html", "/stream.mjpg", "/stream.png", "/frame.png", "/control")
HOST = "127.0.0.1"
LOCAL_NAMES = (HOST, "localhost", "[::1]")
MAX_BODY = 64 * 1024
MAX_CLIENTS = 32
TIMEOUT_S = 10.0
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
HANG_UP = getattr(select, "POLLRDHUP", 0)  # poll()'s "the peer closed its side" (Linux only)
HANG_UP_S = 0.05


class PortInUseError(UserError):
    """The HTTP port is taken."""


def encode(packet: Packet, kind: str) -> bytes:
    """'jpeg': the avatar as JPEG; 'png': RGBA PNG whose alpha is the matte (opaque without one)."""
    image, alpha = packet.rendered.image, packet.rendered.alpha
    if kind == "jpeg":
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    else:
        alpha = alpha if alpha is not None else np.full(image.shape[:2], 255, np.uint8)
        bgra = np.dstack([cv2.cvtColor(image, cv2.COLOR_RGB2BGR), alpha])
        ok, data = cv2.imencode(".png", bgra, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {kind} frame")
    return data.tobytes()


class HttpSink:
    name = "http"
    lossless = False
    wants_alpha = True

    def __init__(self, port: int, controls: Controls):
        self.controls = controls
        self._cond = threading.Condition()
        self._packet: Packet | None = None
        self._encoded: dict[str, tuple[int, bytes]] = {}
        self.closed = False
        self.requests: dict[str, int] = {}
        handler = type("Handler", (_Handler,), {"sink": self})
        try:
            self.server = _Server((HOST, port), handler)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise PortInUseError(f"port {port} on {HOST} is in use; pass another, e.g. --output http:{port + 1}, "
                                     "or stop the program using it") from None
            raise UserError(f"cannot serve on {HOST}:{port} ({err.strerror}); pick another --output http:PORT"
                            ) from None
        self.port = self.server.server_address[1]
        # What browsers send in Host and Origin for this server (they leave out the default port 80).
        names = [f"{name}:{self.port}" for name in LOCAL_NAMES] + (list(LOCAL_NAMES) if self.port == 80 else [])
        self.hosts = frozenset(names)
        self.origins = frozenset(f"http://{name}" for name in names)
        self.url = f"http://{HOST}:{self.port}/"
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
            return {**self.controls.state(), "frame": -1, "fps": 0.0, "latency_ms": 0.0, "face": False,
                    "no_face_s": 0.0, "showing": None}
        rendered = packet.rendered
        live = {"frame": packet.index, "fps": round(packet.fps, 2), "latency_ms": round(packet.latency_ms, 2),
                "face": rendered.face_found, "no_face_s": round(packet.no_face_s, 2),
                "showing": {"avatar": rendered.avatar, "swap": rendered.swap}}
        return {**self.controls.state(), **live}

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer serving at most MAX_CLIENTS connections at once, quiet about clients that leave."""
    daemon_threads = True
    block_on_close = False  # close() must not wait for stalled clients to time out
    request_queue_size = MAX_CLIENTS  # the stdlib's 5 makes a burst of connections wait a second for SYN retries

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]):
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self.holders: set[socket.socket] = set()  # the connections holding a slot
        self.holders_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        """A thread for the connection while a slot is free (or one is freed by a client that left);
        otherwise 503 and close at once."""
        if self._take_slot():
            with self.holders_lock:
                self.holders.add(request)
            super().process_request(request, client_address)
            return
        with contextlib.suppress(OSError):
            request.sendall(BUSY)
        self.shutdown_request(request)

    def _take_slot(self) -> bool:
        """A free slot, or one freed by a client that hung up: for up to HANG_UP_S, as a hang-up on one core
        may reach the server after the same client's next connection did on another."""
        deadline = time.monotonic() + HANG_UP_S
        while not self.slots.acquire(blocking=False):
            if self._free_hung_up():
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self.slots.acquire(timeout=min(0.01, left)):
                return True
        return True

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._free(request)

    def _free(self, request: socket.socket) -> bool:
        """Give the connection's slot back, unless that was done already; whether it was done now."""
        with self.holders_lock:
            if request not in self.holders:
                return False
            self.holders.discard(request)
        self.slots.release()
        return True

    def _free_hung_up(self) -> bool:
        """Free the slots of connections whose clients hung up: their sockets are shut, so their handlers
        end at their next write (a stream's next frame). Whether any was freed."""
        with self.holders_lock:
            gone = [request for request in self.holders if hung_up(request)]
        for request in gone:
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)
        return sum(self._free(request) for request in gone) > 0

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up or times out (a closed tab, OBS reloading) is normal; a traceback is for bugs."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def hung_up(connection: socket.socket) -> bool:
    """Whether the client closed or reset the connection (False where poll() cannot tell, and for a socket
    its handler has closed already)."""
    if not HANG_UP:
        return False
    poller = select.poll()
    try:
        poller.register(connection, HANG_UP)
    except (OSError, ValueError):
        return False
    return any(events & (HANG_UP | select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))


class _Handler(BaseHTTPRequestHandler):
    sink: HttpSink
    protocol_version = "HTTP/1.1"
    timeout = TIMEOUT_S  # on every read and write: stalled, idle and slow clients are dropped

    def log_message(self, format: str, *args) -> None:
        """Quiet: the terminal belongs to the loop's messages."""

    def parse_request(self) -> bool:
        """The stdlib's parsing, then what every request must pass: a Host naming this server, a sound body."""
        if not super().parse_request():
            return False
        hosts = self.headers.get_all("Host") or []
        if len(hosts) != 1 or hosts[0].strip().lower() not in self.sink.hosts:
            return self._error(421, f"Host must be one of {', '.join(sorted(self.sink.hosts))}")
        return self._read_body()

    def _read_body(self) -> bool:
        """Read the whole body into self.body, so it can never be taken for the next request; or answer an error
        and close without reading it.

        A Content-Length that is not one plain decimal number, or is 2**31 or more (where other HTTP stacks
        overflow: a request-smuggling trick, never an honest request here), is malformed (400); a sound one
        over MAX_BODY is 413.
        """
        if "Transfer-Encoding" in self.headers:
            return self._error(411, "send the body with a Content-Length, not a Transfer-Encoding")
        values = {value.strip() for value in self.headers.get_all("Content-Length") or ["0"]}
        value = values.pop() if len(values) == 1 else "several"
        if not (value.isascii() and value.isdigit()) or int(value) >= 2**31:
            return self._error(400, f"bad Content-Length ({value[:20]!r})")
        length = int(value)
        if length > MAX_BODY:
            return self._error(413, f"the body is over {MAX_BODY} bytes")
        self.body = self.rfile.read(length)
        if len(self.body) < length:  # the client hung up mid-body
            self.close_connection = True
            return False
        return True

    def _send(self, status: int, content_type: str, body: bytes, close: bool = False, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in headers.items():
            self.send_header(key, value)
        if close:
            self.send_header("Connection", "close")  # also sets self.close_connection
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, **headers: str) -> bool:
        """Answer {"error": message} and close: whatever else the client sent is never read. False."""
        self._send(status, "application/json", json.dumps({"error": message}).encode(), close=True, **headers)
        return False

    def do_GET(self) -> None:
        url = urlparse(self.path)
        counted = url.path if url.path in PATHS else "other"  # a scanner's made-up paths must not fill memory
        self.sink.requests[counted] = self.sink.requests.get(counted, 0) + 1
        if url.path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", PAGE)
        elif url.path == "/stream.mjpg":
            self._stream("jpeg", "image/jpeg")
        elif url.path == "/stream.png":
            self._stream("png", "image/png")
        elif url.path == "/frame.png":
            packet = self.sink.next_packet(-1, FIRST_FRAME_S)
            if packet is None:
                self._error(503, "no frame yet")
            else:
                self._send(200, "image/png", self.sink.encoded(packet, "png"))
        elif url.path == "/control":
            if "action" in parse_qs(url.query, keep_blank_values=True):
                self._error(405, "actions change the loop's state: send them with POST", Allow="POST")
            else:
                self._send(200, "application/json", json.dumps(self.sink.state()).encode())
        else:
            self._error(404, "not found; try /, /stream.mjpg, /stream.png, /frame.png or /control")

    def do_POST(self) -> None:
        """Carry out an action from the query, a JSON body or a form body, for this server's own page or a
        non-browser client. The connection closes after the answer, so bytes beyond a short Content-Length
        are dropped, never parsed as a second request (the page's button clicks need no keep-alive)."""
        url = urlparse(self.path)
        if url.path != "/control":
            self._error(404, "only /control takes POST")
            return
        if not self._own_page():
            self._error(403, "cross-site request refused: only this server's page may change the loop")
            return
        action = parse_qs(url.query).get("action", [None])[0]
        body = self.body.decode("utf-8", "replace")
        if action is None and body:
            try:
                action = json.loads(body).get("action")
            except (json.JSONDecodeError, AttributeError):
                action = parse_qs(body).get("action", [None])[0]
        try:
            if action is not None:
                self.sink.controls.apply(action)
        except ValueError as err:
            self._error(400, str(err))
            return
        self._send(200, "application/json", json.dumps(self.sink.state()).encode(), close=True)

    def _own_page(self) -> bool:
        """Whether the request's Origin, or without one its Referer, is this server; True when it has neither.

        Browsers send Origin with every cross-site POST (fetch, even no-cors, and forms; "null" from sandboxed
        frames and no-referrer pages, which counts as foreign), so a POST with neither header comes from a
        program such as curl, not from a web page, and a local program can reach 127.0.0.1 anyway.
        """
        origin, referer = self.headers.get("Origin"), self.headers.get("Referer")
        if origin is not None:
            return origin.strip().lower() in self.sink.origins
        if referer is not None:
            return referer.strip().lower().startswith(tuple(own + "/" for own in self.sink.origins))
        return True

    def _stream(self, kind: str, content_type: str) -> None:
        """Frames as they come until the sink closes; a client that leaves ends it with an OSError, which the
        server drops quietly, or, while no frame comes (the loop paused), when it is seen to have hung up; one
        that stops reading times out."""
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        index = -1
        while (packet := self.sink.next_packet(index, 1.0)) is not None or not self.sink.closed:
            if packet is None:
                if hung_up(self.connection):
                    return
                continue
            index = packet.index
            data = self.sink.encoded(packet, kind)
            self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\nContent-Length: {len(data)}"
                             f"\r\n\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
