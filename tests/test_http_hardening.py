"""The HTTP output against hostile and broken clients, with real sockets on 127.0.0.1: cross-site control,
DNS rebinding, malformed or smuggled bodies, stalled and vanishing clients. Every read has a timeout and
every loop a bound, so a regression fails instead of hanging."""
from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import struct
import threading
import time

import numpy as np
import pytest

from realtime.controls import Controls
from realtime.sinks import Packet, Rendered
from realtime.sinks.http import MAX_BODY, MAX_CLIENTS, HttpSink
from tests import test_realtime_http
from tests.test_realtime_http import get, wait_for

running = test_realtime_http.running  # the real loop on a paced synthetic face (a module fixture)


@pytest.fixture
def served():
    """An HttpSink of its own, fed a new 128x128 noise frame (with a matte) every 20 ms, and its Controls: no
    model, as these tests are about HTTP, and no connection left over from another test."""
    controls = Controls(["a", "b"], swap_available=True)
    sink = HttpSink(0, controls)
    stop = threading.Event()
    rng = np.random.default_rng(0)

    def feed() -> None:
        index = 0
        while not stop.wait(0.02):
            image = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
            sink.write(Packet(index, Rendered(image, image, image[..., 0], True, "a", False), 50.0, 1.0))
            index += 1

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    yield sink, controls
    stop.set()
    thread.join(5)
    sink.close()


def exchange(port: int, raw: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes and return all the server answers until it closes the connection; fail after timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server may answer and close before reading everything
            sock.sendall(raw)
        data, deadline = b"", time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:  # closed with unread bytes of ours: what it sent before still counts
                return data
            except TimeoutError:
                break
            if not chunk:
                return data
            data += chunk
    pytest.fail(f"the server kept the connection open for {timeout} s; got {data[:300]!r}")


def statuses(data: bytes) -> list[int]:
    """The status of each response in data (a response may follow the previous body on the same line)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) [A-Z]", data)]


def host(port: int) -> str:
    return f"Host: 127.0.0.1:{port}\r\n"


def origin(sink: HttpSink, name: str = "127.0.0.1") -> str:
    return f"http://{name}:{sink.port}"


def wait_idle(sink: HttpSink, timeout: float = 5.0) -> None:
    """Until every connection's thread has ended: all MAX_CLIENTS slots can be taken (then given back)."""
    deadline, taken = time.monotonic() + timeout, 0
    try:
        while taken < MAX_CLIENTS and sink.server.slots.acquire(timeout=max(0.01, deadline - time.monotonic())):
            taken += 1
        assert taken == MAX_CLIENTS, f"{MAX_CLIENTS - taken} connections still served after {timeout} s"
    finally:
        for _ in range(taken):
            sink.server.slots.release()


def test_a_foreign_origin_cannot_control_the_loop(running):
    sink, controls, thread = running
    frame = wait_for(sink, lambda st: st["frame"] >= 0)["frame"]
    before = controls.state()
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Origin": origin(sink, "localhost") + "0"}, {"Origin": f"http://127.0.0.1:{sink.port + 1}"},
                    {"Referer": "http://evil.example/page"}, {"Referer": origin(sink) + "0/"},
                    {"Origin": "http://evil.example", "Referer": origin(sink) + "/"}):
        for action in ("quit", "next_avatar", "toggle_swap"):
            status, kind, body = get(f"{sink.url}control?action={action}", "POST", headers)
            assert (status, kind) == (403, "application/json"), headers
            assert "cross-site" in json.loads(body)["error"]
    assert controls.state() == before and not controls.quit.is_set()
    wait_for(sink, lambda st: st["frame"] > frame + 5)  # still producing frames
    assert thread.is_alive()


def test_the_servers_own_page_and_plain_clients_control_the_loop(running):
    sink, controls, _ = running
    swap = controls.swap
    for headers in ({"Origin": origin(sink)}, {"Origin": origin(sink, "localhost")},
                    {"Origin": origin(sink, "[::1]")}, {"Referer": origin(sink) + "/?overlay=1"},
                    {}):  # neither header: curl or a script, not a web page
        status, _, body = get(sink.url + "control?action=toggle_swap", "POST", headers)
        assert status == 200, headers
        swap = not swap
        assert json.loads(body)["swap"] is swap and controls.swap is swap
    connection = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=10)  # the action in a JSON body
    connection.request("POST", "/control", json.dumps({"action": "toggle_swap"}),
                       {"Origin": origin(sink), "Content-Type": "application/json"})
    with connection.getresponse() as response:
        assert response.status == 200 and json.loads(response.read())["swap"] is not swap
    connection.close()
    get(sink.url + "control?action=toggle_swap", "POST", {"Origin": origin(sink)})  # as it was


def test_a_get_with_an_action_changes_nothing(running):
    sink, controls, thread = running
    before = controls.state()
    for query in ("action=quit", "action=next_avatar", "action=toggle_swap", "action=", "x=1&action=quit"):
        status, kind, body = get(f"{sink.url}control?{query}", headers={"Origin": origin(sink)})
        assert (status, kind) == (405, "application/json") and "POST" in json.loads(body)["error"], query
    assert controls.state() == before and thread.is_alive()
    assert get(sink.url + "control")[0] == 200


def test_a_foreign_or_missing_host_is_refused(served):
    sink, controls = served
    port = sink.port
    for path in ("/", "/frame.png", "/stream.mjpg", "/stream.png", "/control", "/control?action=quit"):
        for name in ("evil.example", f"evil.example:{port}", f"127.0.0.1:{port + 1}", f"127.0.0.1.evil.example:{port}"):
            for method in ("GET", "POST"):
                request = f"{method} {path} HTTP/1.1\r\nHost: {name}\r\nContent-Length: 0\r\n\r\n"
                assert statuses(exchange(port, request.encode())) == [421], (method, path, name)
        assert statuses(exchange(port, f"GET {path} HTTP/1.0\r\n\r\n".encode())) == [421], path
        assert statuses(exchange(port, f"GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n".encode())) == [421], path
        twice = f"GET {path} HTTP/1.1\r\n{host(port)}Host: evil.example\r\n\r\n"
        assert statuses(exchange(port, twice.encode())) == [421], path
    assert sink.requests == {} and controls.state()["running"]  # nothing reached a handler
    for name in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"LocalHost:{port}"):
        answer = exchange(port, f"GET /frame.png HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        assert statuses(answer) == [200] and b"\x89PNG" in answer, name


def test_malformed_requests_answer_400_without_a_traceback(served, capfd):
    sink, controls = served
    port, before = sink.port, controls.state()
    for length in ("abc", "-5", str(10**12), "0x10", "5 5", "", "\u00b2"):
        request = f"POST /control?action=next_avatar HTTP/1.1\r\n{host(port)}Content-Length: {length}\r\n\r\nhello"
        assert statuses(exchange(port, request.encode())) == [400], length
    two = f"POST /control HTTP/1.1\r\n{host(port)}Content-Length: 0\r\nContent-Length: 5\r\n\r\nhello"
    assert statuses(exchange(port, two.encode())) == [400]
    # A broken request line gets the stdlib's error page (without a status line: it can't tell the version).
    assert b"Error code: 400" in exchange(port, b"NONSENSE\r\n\r\n")
    assert b"Error code: 400" in exchange(port, b"GET / HTTP/1.1 x\r\n\r\n")
    assert controls.state() == before
    assert get(sink.url + "control")[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "HTTP/1.1\" " not in err, err[-2000:]  # no traceback, no request log


def test_an_oversized_body_is_413_and_one_at_the_cap_is_read(served):
    sink, controls = served
    port = sink.port
    head = f"POST /control HTTP/1.1\r\n{host(port)}Content-Length: {MAX_BODY + 1}\r\n\r\n"
    assert statuses(exchange(port, head.encode() + b"x" * (MAX_BODY + 1))) == [413]
    assert not controls.swap
    payload = json.dumps({"action": "toggle_swap", "pad": ""})
    payload = payload.replace('""', '"' + "x" * (MAX_BODY - len(payload)) + '"')
    assert len(payload) == MAX_BODY
    head = f"POST /control HTTP/1.1\r\n{host(port)}Content-Length: {MAX_BODY}\r\n\r\n"
    assert statuses(exchange(port, head.encode() + payload.encode())) == [200] and controls.swap


def test_a_body_is_never_parsed_as_a_second_request(served):
    sink, controls = served
    port, before = sink.port, controls.state()
    # What would change the state if it were parsed: a POST without Origin (allowed) and the brief's GET.
    own = host(port)
    smuggled = f"POST /control?action=next_avatar HTTP/1.1\r\n{own}Content-Length: 0\r\n\r\n"
    smuggled += f"GET /control?action=quit HTTP/1.1\r\n{own}\r\n"
    chunk = f"{len(smuggled):x}\r\n{smuggled}"
    cases = {  # request -> the only answer expected
        f"POST /control HTTP/1.1\r\n{own}Content-Length: 2\r\n\r\n{{}}{smuggled}": 200,  # short length
        f"POST /control HTTP/1.1\r\n{own}Content-Length: abc\r\n\r\n{smuggled}": 400,
        f"POST /control HTTP/1.1\r\n{own}Content-Length: -5\r\n\r\n{smuggled}": 400,
        f"POST /elsewhere HTTP/1.1\r\n{own}Content-Length: {len(smuggled)}\r\n\r\n{smuggled}": 404,
        f"POST /control HTTP/1.1\r\n{own}Origin: http://evil.example\r\nContent-Length: 1\r\n\r\nx{smuggled}": 403,
        f"POST /control HTTP/1.1\r\n{own}Transfer-Encoding: chunked\r\n\r\n{chunk}\r\n0\r\n\r\n": 411,
        f"GET /control HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 0\r\n\r\n{smuggled}": 421,
        f"GET /control?action=quit HTTP/1.1\r\n{own}\r\n{smuggled}": 405,
    }
    for request, status in cases.items():
        assert statuses(exchange(port, request.encode())) == [status], request[:60]
    # A GET's body is read and dropped: the request after it is the next one, the body is not.
    keep_alive = (f"GET /control HTTP/1.1\r\n{own}Content-Length: {len(smuggled)}\r\n\r\n{smuggled}"
                  f"GET /control HTTP/1.1\r\n{own}Connection: close\r\n\r\n")
    assert statuses(exchange(port, keep_alive.encode())) == [200, 200]
    assert controls.state() == before and not controls.quit.is_set()


def test_stalled_clients_do_not_hold_up_others(served):
    sink, _ = served
    port, stalled = sink.port, []
    try:
        for i in range(20):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            stalled.append(sock)
            if i % 3 == 1:  # half a request
                sock.sendall(f"GET /control HTTP/1.1\r\n{host(port)}".encode())
            elif i % 3 == 2:  # headers, half the body
                sock.sendall(f"POST /control HTTP/1.1\r\n{host(port)}Content-Length: 40\r\n\r\n{{".encode())
        start = time.monotonic()
        assert get(sink.url + "control")[0] == 200
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/stream.mjpg")
        response = connection.getresponse()
        assert response.status == 200 and response.readline() == b"--frame\r\n"
        response.close()
        assert time.monotonic() - start < 3
    finally:
        for sock in stalled:
            sock.close()


def test_connections_beyond_the_limit_get_503_until_slots_free(served):
    sink, _ = served
    port, stalled = sink.port, []
    try:
        for _ in range(MAX_CLIENTS):
            stalled.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
            answer, deadline = b"", time.monotonic() + 5
            while time.monotonic() < deadline and (chunk := extra.recv(4096)):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 503 "), answer
    finally:
        for sock in stalled:
            sock.close()
    deadline = time.monotonic() + 5
    while get(sink.url + "control")[0] != 200:
        assert time.monotonic() < deadline, "the server never served again after the stalled clients left"
        time.sleep(0.05)


def test_clients_that_stall_or_stop_reading_a_stream_are_dropped(served, monkeypatch):
    sink, _ = served
    monkeypatch.setattr(sink.server.RequestHandlerClass, "timeout", 1.0)  # TIMEOUT_S, shortened
    idle = socket.create_connection(("127.0.0.1", sink.port), timeout=5)  # sends nothing
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(5)
    try:
        slow.connect(("127.0.0.1", sink.port))
        slow.sendall(f"GET /stream.png HTTP/1.1\r\n{host(sink.port)}\r\n".encode())  # never read
        time.sleep(0.5)  # the stream's buffers fill up
        start = time.monotonic()
        assert get(sink.url + "frame.png")[0] == 200 and time.monotonic() - start < 2
        assert idle.recv(1) == b""  # closed by the server after its timeout
        wait_idle(sink, timeout=20)  # the stream's blocked write timed out too
    finally:
        idle.close()
        slow.close()


def test_dropping_a_stream_logs_no_traceback(served, capfd):
    sink, _ = served
    for path in ("/stream.mjpg", "/stream.png"):
        for reset in (False, True):
            with socket.create_connection(("127.0.0.1", sink.port), timeout=5) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\n{host(sink.port)}\r\n".encode())
                data = b""
                for _ in range(100):
                    if b"\r\n--frame\r\n" in (data := data + sock.recv(65536)):
                        break
                assert data.startswith(b"HTTP/1.1 200 ") and b"\r\n--frame\r\n" in data
                if reset:  # RST instead of FIN: the server sees ConnectionResetError rather than BrokenPipeError
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    wait_idle(sink)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Error" not in err and "stream" not in err, err[-2000:]


@pytest.mark.timeout(60)
def test_30_clients_reconnecting_to_a_stream_are_all_served():
    """Below the connection limit nobody may get 503. A stream's handler notices a client that left only
    when it next writes, and while the loop is paused there is no next frame: 30 clients that each take
    the frame, leave and come back would fill the 32 slots with handlers of closed connections."""
    sink = HttpSink(0, Controls(["a"]))
    image = np.zeros((16, 16, 3), np.uint8)
    sink.write(Packet(0, Rendered(image, image, None, True, "a", False), 1.0, 1.0))  # one frame, then none
    answers: list[int] = []

    def client() -> None:
        for _ in range(3):
            connection = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=5)
            try:
                connection.request("GET", "/stream.mjpg")
                response = connection.getresponse()
                if response.status == 200:
                    response.readline()  # the frame's boundary: the stream is served
                answers.append(response.status)
                response.close()
            finally:
                connection.close()

    try:
        clients = [threading.Thread(target=client) for _ in range(30)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(30)
        assert len(answers) == 90 and set(answers) == {200}, {code: answers.count(code) for code in set(answers)}
        wait_idle(sink)  # the handlers of the last connections end too, without another frame
    finally:
        sink.close()


def test_made_up_paths_are_counted_together(served):
    """Per-path request counts must not grow with every path a scanner invents."""
    sink, _ = served
    for i in range(20):
        assert get(f"{sink.url}probe{i}")[0] == 404
    assert sink.requests == {"other": 20}
