"""POST /event on the listen daemon alone, against a bus peer written for the test.

The listen daemon runs for real on a free loopback port; harness.FakeBroadcast
stands in for the broadcast daemon on the UNIX-socket bus and records every
frame byte for byte (a few tests run the real broadcast daemon and a
WebSocket subscriber instead). Publishers are real HTTP clients: http.client,
curl, and raw sockets where the test must send something a polite client
would not.
"""

import asyncio
import http.client
import json
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib import harness  # noqa: E402
from lib.metrics import metric, wait_metric  # noqa: E402
from lib.harness import FakeBroadcast, TIME_SCALE, wait_for  # noqa: E402

# Small limits keep the file fast; each test may override some.
DEFAULT_FLAGS = {
    "--bus-wait-ms": "300",
    "--bus-ack-timeout-ms": "500",
    "--request-timeout-ms": "1000",
}

JSON_TYPE = "application/json"


# --- clients -------------------------------------------------------------------------------------

def post(port, body, authorization=None, path="/event", method="POST", headers=None,
         timeout=20.0):
    """One request on a fresh http.client connection.
    Returns (status, lower-cased headers, raw body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout * TIME_SCALE)
    try:
        h = {"Content-Type": "application/json"}
        if authorization is not None:
            h["Authorization"] = authorization
        h.update(headers or {})
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def curl(port, body, authorization=None, extra=(), path="/event"):
    """POST with curl. Returns (status, content type, body bytes)."""
    argv = ["curl", "-sS", "--max-time", str(20 * TIME_SCALE), "-o", "-",
            "-w", "\n%{http_code} %{content_type}", "--data-binary", "@-",
            "-H", "Content-Type: application/json"]
    if authorization is not None:
        argv += ["-H", f"Authorization: {authorization}"]
    argv += list(extra) + [f"http://127.0.0.1:{port}{path}"]
    if isinstance(body, str):
        body = body.encode()
    out = subprocess.run(argv, input=body, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         timeout=30 * TIME_SCALE)
    if out.returncode != 0:
        raise AssertionError(f"curl failed ({out.returncode}): {out.stderr.decode()}")
    text, _, trailer = out.stdout.rpartition(b"\n")
    code, _, ctype = trailer.decode().partition(" ")
    return int(code), ctype, text


class RawClient:
    """A TCP connection for sending exactly the bytes a test needs and reading
    HTTP/1.1 answers back (Content-Length framed, as the daemon sends them)."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout * TIME_SCALE)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by the daemon")
        self.buf += chunk

    def read_response(self):
        """Returns (status, lower-cased headers, body bytes)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ")[:2]
        assert version == "HTTP/1.1", lines[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(status), headers, body

    def readable_within(self, seconds):
        """True when the daemon sent something (or closed) within seconds."""
        if self.buf:
            return True
        r, _, _ = select.select([self.sock], [], [], seconds)
        return bool(r)

    def closed_by_peer(self, timeout=5.0):
        """Reads until EOF; returns the bytes that came before it.
        Raises AssertionError when the connection stays open past timeout."""
        self.sock.settimeout(timeout * TIME_SCALE)
        extra = self.buf
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return extra
                extra += chunk
        except ConnectionResetError:
            return extra
        except socket.timeout:
            raise AssertionError("the daemon did not close the connection")

    def close(self):
        self.sock.close()


def publish_request(token, body, extra_headers=""):
    """A complete POST /event request as bytes."""
    if isinstance(body, str):
        body = body.encode()
    auth = f"Authorization: Basic {token}\r\n" if token is not None else ""
    return (f"POST /event HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{extra_headers}\r\n").encode() + body


def chunked(*pieces, last=b"0\r\n", trailers=b""):
    """A chunked body (RFC 9112 section 7.1): each piece a chunk, or a
    (piece, extension) pair; then the last chunk, trailers and the final CRLF."""
    out = b""
    for piece in pieces:
        piece, ext = piece if isinstance(piece, tuple) else (piece, b"")
        if isinstance(piece, str):
            piece = piece.encode()
        out += b"%x" % len(piece) + ext + b"\r\n" + piece + b"\r\n"
    return out + last + trailers + b"\r\n"


def chunked_head(token, extra_headers="", version="1.1", coding="chunked"):
    """The head of a POST /event whose body is framed by Transfer-Encoding."""
    auth = f"Authorization: Basic {token}\r\n" if token is not None else ""
    return (f"POST /event HTTP/{version}\r\nHost: 127.0.0.1\r\n{auth}"
            f"Content-Type: application/json\r\nTransfer-Encoding: {coding}\r\n"
            f"{extra_headers}\r\n").encode()


def chunked_request(token, body, extra_headers="", pieces=3):
    """A complete chunked POST /event carrying body cut into pieces chunks."""
    if isinstance(body, str):
        body = body.encode()
    step = max(1, -(-len(body) // pieces))
    return chunked_head(token, extra_headers) + chunked(
        *(body[i:i + step] for i in range(0, len(body), step)))


# --- base class ----------------------------------------------------------------------------------

class ListenCase(harness.ServiceCase):
    """The listen daemon alone, with FakeBroadcast peers on the bus."""

    def setUp(self):
        super().setUp()
        self.listens = []

    def tearDown(self):
        # Whatever a test threw at it, the daemon must still be running.
        for d in self.listens:
            self.assertTrue(d.running(), f"event-listen died (exit {d.proc.returncode}):\n"
                            f"{d.log()[-4000:]}")

    def bus_path(self, name="bus"):
        return os.path.join(self.dir, f"{name}.sock")

    def fake_bus(self, name="bus", **kwargs):
        fb = FakeBroadcast(self.bus_path(name), **kwargs)
        self.addCleanup(fb.close)
        return fb

    def listen(self, bus, wait_bus=True, env=None, **flags):
        """Starts event-listen with DEFAULT_FLAGS overridden by flags
        (bus_wait_ms=... becomes --bus-wait-ms ...)."""
        merged = dict(DEFAULT_FLAGS)
        for key, value in flags.items():
            merged["--" + key.replace("_", "-")] = str(value)
        args = [x for kv in merged.items() for x in kv]
        d = self.start_listen(*args, bus=bus, env=env)
        self.listens.append(d)
        if wait_bus:
            wait_for(lambda: harness.http_get(d.port, "/healthz")[0] == 200,
                     what="listen to reach the bus peer")
        return d

    def wait_ready(self, port, *peers):
        """Waits until the listen daemon on port has completed the bus
        handshake with every peer: as many ready links as peers."""
        wait_metric(port, "evs_listen_bus_links_ready", len(peers))

    def auth(self, token=None):
        return f"Basic {token or self.token}"

    def assert_answer(self, status, headers, body, want_status, want_code):
        """Every answer is a JSON {"code": ...} with Content-Type application/json."""
        self.assertEqual(status, want_status, body)
        self.assertEqual(headers.get("content-type"), JSON_TYPE)
        self.assertEqual(json.loads(body), {"code": want_code})
        # An accepted event, and only one, is answered with its id.
        if status == 200 and want_code == "OK" and "event-id" in headers:
            self.assertRegex(headers["event-id"], EVENT_ID_RE)
        elif status != 200:
            self.assertNotIn("event-id", headers)

    def assert_publish(self, port, body, authorization, want_status, want_code, **kw):
        status, headers, data = post(port, body, authorization, **kw)
        self.assert_answer(status, headers, data, want_status, want_code)


EVENT_ID_RE = r"^[0-9a-f]{16}-[0-9a-f]{16}$"


def event_body(event, data_text=None):
    """A publish body with data_text spliced in verbatim."""
    body = '{"event":' + json.dumps(event, ensure_ascii=False)
    if data_text is not None:
        body += ',"data":' + data_text
    return body + "}"


# --- every code and status of POST /event --------------------------------------------------------

class PublishCodesTest(ListenCase):

    def test_publish_with_valid_token_is_200_ok_and_json(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        self.assert_publish(l.port, event_body("a", "1"), self.auth(), 200, "OK")
        self.assertEqual(len(fb.wait_events(1)), 1)

    def test_publish_with_curl_is_200_ok_and_json(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        status, ctype, body = curl(l.port, event_body("curl", '{"x":[1,2]}'), self.auth())
        self.assertEqual((status, ctype, json.loads(body)), (200, JSON_TYPE, {"code": "OK"}))
        seq, etype, message = fb.wait_events(1)[0]
        self.assertEqual(etype, b"curl")
        self.assertEqual(message, b'{"type":"event","event":"curl","data":{"x":[1,2]}}')

    def test_publish_without_authorization_is_403_unauthenticated(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        self.assert_publish(l.port, event_body("a"), None, 403, "UNAUTHENTICATED")
        status, ctype, body = curl(l.port, event_body("a"), None)
        self.assertEqual((status, ctype, json.loads(body)),
                         (403, JSON_TYPE, {"code": "UNAUTHENTICATED"}))
        self.assertEqual(fb.events, [])

    def test_publish_with_wrong_token_is_403_unauthenticated(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        for auth in (self.auth(harness.new_token()), self.auth(self.token + "x"),
                     self.auth(self.token[:-1]), "Basic " + self.token.upper(), ""):
            with self.subTest(auth=auth):
                self.assert_publish(l.port, event_body("a"), auth, 403, "UNAUTHENTICATED")
        self.assertEqual(fb.events, [])

    def test_basic_scheme_without_token_is_403_unauthenticated(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        for auth in ("Basic", "Basic ", "basic   "):
            with self.subTest(auth=auth):
                self.assert_publish(l.port, event_body("a"), auth, 403, "UNAUTHENTICATED")
        # curl sends the header exactly as given.
        status, ctype, body = curl(l.port, event_body("a"), "Basic")
        self.assertEqual((status, json.loads(body)), (403, {"code": "UNAUTHENTICATED"}))

    def test_token_from_file_line_shorter_than_16_chars_is_403_unauthenticated(self):
        short, exact = "abcdefghijklmno", "abcdefghijklmnop"  # 15 and 16 characters
        self.write_tokens([short, exact])
        fb = self.fake_bus()
        l = self.listen(fb.path)
        self.assert_publish(l.port, event_body("a"), self.auth(short), 403, "UNAUTHENTICATED")
        self.assert_publish(l.port, event_body("a"), self.auth(exact), 200, "OK")
        self.assertIn("1 lines ignored, shorter than 16", l.log())

    def test_bearer_and_token_schemes_are_403_auth_unrecognized_scheme(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        for auth in ("Bearer x", "Token x", "Bearer " + self.token, "Digest " + self.token,
                     "Basicx " + self.token):
            with self.subTest(auth=auth):
                self.assert_publish(l.port, event_body("a"), auth, 403,
                                    "AUTH_UNRECOGNIZED_SCHEME")
        status, ctype, body = curl(l.port, event_body("a"), "Bearer x")
        self.assertEqual((status, ctype, json.loads(body)),
                         (403, JSON_TYPE, {"code": "AUTH_UNRECOGNIZED_SCHEME"}))
        self.assertEqual(fb.events, [])

    def test_basic_scheme_is_case_insensitive(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        for scheme in ("basic", "BASIC", "bAsIc", "Basic"):
            with self.subTest(scheme=scheme):
                self.assert_publish(l.port, event_body("a"), f"{scheme} {self.token}", 200, "OK")
        self.assertEqual(len(fb.wait_events(4)), 4)

    def test_invalid_bodies_are_400_invalid_body(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        cases = {
            "empty": b"",
            "not JSON": b"not json",
            "array": b'[{"event":"a"}]',
            "string": b'"event"',
            "number": b"42",
            "missing event": b'{"data":1}',
            "empty event": b'{"event":""}',
            "event number": b'{"event":5}',
            "event null": b'{"event":null}',
            "event array": b'{"event":["a"]}',
            "event object": b'{"event":{"a":"b"}}',
            "event 256 bytes": event_body("e" * 256).encode(),
            "event 256 bytes of 2-byte chars": event_body("\u00e9" * 128).encode(),
            "event 256 bytes via escapes": ('{"event":"' + "\\u00e9" * 128 + '"}').encode(),
            "trailing garbage": b'{"event":"a"} x',
            "two objects": b'{"event":"a"}{"event":"b"}',
            "trailing comma": b'{"event":"a",}',
            "unterminated": b'{"event":"a"',
            "invalid UTF-8 in event": b'{"event":"\xff\xfe"}',
            "invalid UTF-8 in data": b'{"event":"a","data":"\xc3\x28"}',
            "overlong UTF-8": b'{"event":"a","data":"\xc0\xaf"}',
        }
        for name, body in cases.items():
            with self.subTest(case=name):
                self.assert_publish(l.port, body, self.auth(), 400, "INVALID_BODY")
        self.assertEqual(fb.events, [], "an invalid body reached the bus")
        # The boundaries just inside the rules are accepted.
        self.assert_publish(l.port, event_body("e" * 255), self.auth(), 200, "OK")
        self.assert_publish(l.port, event_body("\u00e9" * 127 + "e"), self.auth(), 200, "OK")
        events = fb.wait_events(2)
        self.assertEqual(events[0][1], b"e" * 255)
        self.assertEqual(events[1][1], ("\u00e9" * 127 + "e").encode())

    def test_authentication_is_checked_before_the_body(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        for body in (b"not json", b"[]", b'{"event":""}', b"\xff"):
            with self.subTest(body=body):
                self.assert_publish(l.port, body, self.auth(harness.new_token()), 403,
                                    "UNAUTHENTICATED")
                self.assert_publish(l.port, body, None, 403, "UNAUTHENTICATED")
                self.assert_publish(l.port, body, "Bearer x", 403, "AUTH_UNRECOGNIZED_SCHEME")
                self.assert_publish(l.port, body, self.auth(), 400, "INVALID_BODY")
        self.assertEqual(fb.events, [])

    def test_body_over_max_body_size_is_413_from_the_headers_alone(self):
        fb = self.fake_bus()
        l = self.listen(fb.path, max_body_size=1024)
        # Only the head is sent, announcing a body far over the limit: the
        # answer must come without the body.
        c = RawClient(l.port)
        c.send(b"POST /event HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + self.token.encode() +
               b"\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n")
        status, headers, body = c.read_response()
        self.assert_answer(status, headers, body, 413, "BODY_TOO_LARGE")
        self.assertEqual(c.closed_by_peer(), b"")
        c.close()
        # A real client with Expect: 100-continue is refused before it sends the body.
        status, ctype, body = curl(l.port, event_body("big", '"' + "x" * 2048 + '"'), self.auth(),
                                   extra=["-H", "Expect: 100-continue", "--expect100-timeout",
                                          "30"])
        self.assertEqual((status, ctype, json.loads(body)),
                         (413, JSON_TYPE, {"code": "BODY_TOO_LARGE"}))
        # One byte over the limit is refused; exactly the limit is accepted.
        at_limit = event_body("big", '"' + "x" * (1024 - len(event_body("big", '""'))) + '"')
        self.assertEqual(len(at_limit), 1024)
        self.assert_publish(l.port, at_limit + " ", self.auth(), 413, "BODY_TOO_LARGE")
        self.assert_publish(l.port, at_limit, self.auth(), 200, "OK")
        self.assertEqual(len(fb.wait_events(1)), 1)
        self.assertIn("body limit 1024 bytes", l.log())

    def test_bodies_over_max_bodies_size_get_503_server_busy_until_held_ones_are_freed(self):
        fb = self.fake_bus()
        l = self.listen(fb.path, max_body_size="64K", max_bodies_size="200K",
                        request_timeout_ms=60000)
        big = 64 * 1024

        def held_bodies():
            return metric(l.port, "evs_listen_body_bytes")

        def start_body(length=big):
            """A publish whose head and first bytes are sent, the rest held back."""
            c = RawClient(l.port)
            c.send(b"POST /event HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " +
                   self.token.encode() + b"\r\nContent-Type: application/json\r\n" +
                   f"Content-Length: {length}\r\n\r\n".encode() + b'{"event":"held","data":"')
            return c

        # Three bodies of 64 KiB in progress hold 192 KiB of the 200 KiB.
        holders = [start_body() for _ in range(3)]
        wait_for(lambda: held_bodies() == 3 * big, what="three bodies to be held")
        # A fourth is refused from its head, before any of its body is read.
        c = start_body()
        status, headers, body = c.read_response()
        self.assert_answer(status, headers, body, 503, "SERVER_BUSY")
        self.assertEqual(headers.get("retry-after"), "1")
        self.assertEqual(headers.get("connection"), "close")
        self.assertEqual(c.closed_by_peer(), b"")
        c.close()
        self.assertEqual(metric(l.port, 'evs_listen_http_rejected_total{code="SERVER_BUSY"}'), 1)
        self.assertEqual(held_bodies(), 3 * big)
        # A small one still fits in what is left.
        self.assert_publish(l.port, event_body("small", "1"), self.auth(), 200, "OK")
        # One holder finishes its publish, another goes away: their shares come back.
        rest = big - len(b'{"event":"held","data":"')
        holders[0].send(b"x" * (rest - 2) + b'"}')
        self.assert_answer(*holders[0].read_response(), 200, "OK")
        holders[1].close()
        wait_for(lambda: held_bodies() == big, what="two bodies to be freed")
        self.assert_publish(l.port, event_body("big", '"' + "y" * (big - 100) + '"'), self.auth(),
                            200, "OK")
        self.assertEqual([t for _, t, _ in fb.wait_events(3)], [b"small", b"held", b"big"])
        holders[2].close()
        wait_for(lambda: held_bodies() == 0, what="every body to be freed")
        for c in holders:
            c.close()

    def test_max_bodies_size_below_max_body_size_stops_start_up_with_exit_2(self):
        d = self.start_listen("--max-body-size", "1M", "--max-bodies-size", "512K",
                              bus=self.bus_path(), wait=False)
        self.assertEqual(d.proc.wait(10 * TIME_SCALE), 2)
        self.assertIn("--max-bodies-size", d.log())

    def test_get_on_event_is_405_with_allow_header(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            with self.subTest(method=method):
                status, headers, body = post(l.port, b"" if method == "GET" else
                                             event_body("a").encode(), self.auth(),
                                             method=method)
                self.assert_answer(status, headers, body, 405, "METHOD_NOT_ALLOWED")
                self.assertEqual(headers.get("allow"), "POST")
        self.assertEqual(fb.events, [])

    def test_other_path_is_404_not_found(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        for method, path in (("POST", "/events"), ("POST", "/"), ("GET", "/"),
                             ("POST", "/event/x"), ("POST", "/EVENT"), ("GET", "/nope")):
            with self.subTest(method=method, path=path):
                status, headers, body = post(l.port, event_body("a"), self.auth(), path=path,
                                             method=method)
                self.assert_answer(status, headers, body, 404, "NOT_FOUND")
        self.assertEqual(fb.events, [])

    def test_head_over_max_header_size_is_431(self):
        fb = self.fake_bus()
        l = self.listen(fb.path, max_header_size=1024)
        start = (b"POST /event HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + self.token.encode() +
                 b"\r\nX-Pad: ")
        end = b"\r\nContent-Length: 0\r\n\r\n"
        for size in (1025, 1024):  # one byte over the limit, then exactly at it
            head = start + b"p" * (size - len(start) - len(end)) + end
            self.assertEqual(len(head), size)
            c = RawClient(l.port)
            c.send(head)
            status, headers, body = c.read_response()
            c.close()
            if size == 1025:
                self.assert_answer(status, headers, body, 431, "HEADERS_TOO_LARGE")
            else:
                # The head fits; the empty body is then judged.
                self.assert_answer(status, headers, body, 400, "INVALID_BODY")
        # A real client with a large header gets the 431 too.
        status, ctype, body = curl(l.port, event_body("a"), self.auth(),
                                   extra=["-H", "X-Pad: " + "p" * 900])
        self.assertEqual((status, ctype, json.loads(body)),
                         (431, JSON_TYPE, {"code": "HEADERS_TOO_LARGE"}))
        self.assertEqual(fb.events, [])


# --- chunked request bodies ----------------------------------------------------------------------

class ChunkedBodyTest(ListenCase):
    """Transfer-Encoding: chunked on POST /event (RFC 9112 section 7.1)."""

    # Data that must arrive with every byte kept: digits beyond a double,
    # escapes, non-ASCII text, and CRLFs inside the value's whitespace.
    DATA = '{"n": 12345678901234567890, "s": "\\u00e9 \u2603 \\"q\\"",\r\n "a": [ 1 ,2 ]}'

    def message(self, event, data_text):
        return (b'{"type":"event","event":"' + event.encode() + b'","data":' +
                data_text.encode() + b"}")

    def assert_refused_and_closed(self, c, status, code):
        got, headers, body = c.read_response()
        self.assert_answer(got, headers, body, status, code)
        self.assertEqual(headers.get("connection"), "close")
        c.closed_by_peer()
        c.close()

    def test_curl_chunked_publish_arrives_byte_exact_at_a_websocket_subscriber(self):
        b, l = self.start_pair()
        small = event_body("curl.chunked", self.DATA)
        # Large enough for curl to send it in several chunks.
        big_data = json.dumps({"blob": "".join(chr(0x41 + i % 26) for i in range(300000))})
        big = event_body("curl.chunked", big_data)

        async def go():
            ws = await harness.ws_subscribe(b.port, self.token, ["curl.chunked"])
            try:
                for body, data_text in ((small, self.DATA), (big, big_data)):
                    path = os.path.join(self.dir, "body.json")
                    with open(path, "w", newline="") as f:
                        f.write(body)
                    out = await asyncio.get_running_loop().run_in_executor(
                        None, lambda: subprocess.run(
                            ["curl", "-sS", "-v", "--max-time", str(20 * TIME_SCALE),
                             "-H", f"Authorization: {self.auth()}",
                             "-H", "Transfer-Encoding: chunked", "--data-binary", "@" + path,
                             f"http://127.0.0.1:{l.port}/event"],
                            capture_output=True, timeout=30 * TIME_SCALE))
                    self.assertEqual(out.returncode, 0, out.stderr)
                    # curl really sent it chunked, and nothing else framed it.
                    self.assertIn(b"> Transfer-Encoding: chunked", out.stderr)
                    self.assertNotIn(b"> Content-Length", out.stderr)
                    self.assertEqual(json.loads(out.stdout), {"code": "OK"})
                    got = await asyncio.wait_for(ws.recv(), 20 * TIME_SCALE)
                    self.assertEqual(got.encode(), self.message("curl.chunked", data_text))
            finally:
                await ws.close()
        harness.run(go())

    def test_chunked_body_with_extensions_and_trailers_arrives_byte_exact_on_the_bus(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        body = event_body("c", self.DATA).encode()
        c = RawClient(l.port)
        c.send(chunked_head(self.token) +
               chunked((body[:5], b";a=b"), (body[5:9], b" ; q=\"x;y\""), body[9:],
                       last=b"000;end\r\n", trailers=b"Expires: never\r\nX-Sum: 3\r\n"))
        status, headers, data = c.read_response()
        self.assert_answer(status, headers, data, 200, "OK")
        self.assertNotIn("connection", headers)
        c.close()
        self.assertEqual(fb.wait_events(1)[0][1:], (b"c", self.message("c", self.DATA)))

    def test_chunked_body_split_over_many_tiny_writes(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        body = event_body("tiny", self.DATA).encode()
        # One chunk per byte of the body, and one TCP write per byte of those.
        request = chunked_head(self.token) + chunked(*(body[i:i + 1] for i in range(len(body))),
                                                     trailers=b"X-Check: 1\r\n")
        c = RawClient(l.port)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(request)):
            c.send(request[i:i + 1])
        self.assert_answer(*c.read_response(), 200, "OK")
        c.close()
        self.assertEqual(fb.wait_events(1)[0][2], self.message("tiny", self.DATA))

    def test_chunked_keep_alive_with_http_client(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        conn = http.client.HTTPConnection("127.0.0.1", l.port, timeout=10 * TIME_SCALE)
        local = None
        try:
            for i in range(3):
                body = event_body("ka", str(i)).encode()
                # An iterable body makes http.client send it chunked.
                conn.request("POST", "/event", body=iter([body[:4], body[4:]]),
                             headers={"Authorization": self.auth()}, encode_chunked=True)
                resp = conn.getresponse()
                self.assertEqual((resp.status, json.loads(resp.read())), (200, {"code": "OK"}))
                self.assertFalse(resp.will_close)
                local = local or conn.sock.getsockname()
                self.assertEqual(conn.sock.getsockname(), local, "http.client had to reconnect")
        finally:
            conn.close()
        self.assertEqual([m for _, _, m in fb.wait_events(3)],
                         [self.message("ka", str(i)) for i in range(3)])

    def test_pipelined_requests_after_chunked_ones_start_right_after_the_trailers(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        c = RawClient(l.port)
        c.send(chunked_head(self.token) +
               chunked(event_body("first"), trailers=b"X-T: 1\r\n") +
               publish_request(self.token, event_body("second")) +
               chunked_request(harness.new_token(), event_body("nope")) +
               b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" +
               chunked_request(self.token, b"[]") +
               chunked_request(self.token, event_body("third"), "Connection: close\r\n"))
        self.assert_answer(*c.read_response(), 200, "OK")
        self.assert_answer(*c.read_response(), 200, "OK")
        self.assert_answer(*c.read_response(), 403, "UNAUTHENTICATED")
        self.assert_answer(*c.read_response(), 200, "OK")
        self.assert_answer(*c.read_response(), 400, "INVALID_BODY")
        self.assert_answer(*c.read_response(), 200, "OK")
        self.assertEqual(c.closed_by_peer(), b"")
        c.close()
        self.assertEqual([t for _, t, _ in fb.wait_events(3)], [b"first", b"second", b"third"])

    def test_chunked_body_over_max_body_size_is_413_while_the_client_is_still_sending(self):
        fb = self.fake_bus()
        l = self.listen(fb.path, max_body_size=1024)
        piece = "x" * 100
        # Ten chunks of 100 bytes are within the limit; the next size line
        # takes it past: the answer comes at once, none of that chunk's data
        # nor the end of the body sent.
        c = RawClient(l.port)
        c.send(chunked_head(self.token) + b"".join(b"64\r\n" + piece.encode() + b"\r\n"
                                                   for _ in range(10)) + b"64\r\n")
        self.assert_refused_and_closed(c, 413, "BODY_TOO_LARGE")
        # One chunk announcing far more than the limit: refused before its data.
        c = RawClient(l.port)
        c.send(chunked_head(self.token) + b"40000000\r\n")
        self.assert_refused_and_closed(c, 413, "BODY_TOO_LARGE")
        self.assertIn("chunked body over the size limit", l.log())
        # Decoded size, not bytes on the wire: exactly the limit is taken,
        # one byte more is not.
        at_limit = event_body("big", '"' + "x" * (1024 - len(event_body("big", '""'))) + '"')
        self.assertEqual(len(at_limit), 1024)
        c = RawClient(l.port)
        c.send(chunked_request(self.token, at_limit, pieces=50))
        self.assert_answer(*c.read_response(), 200, "OK")
        c.send(chunked_request(self.token, at_limit + " ", pieces=50))
        self.assert_refused_and_closed(c, 413, "BODY_TOO_LARGE")
        self.assertEqual(len(fb.wait_events(1)), 1)

    def test_chunked_body_that_never_ends_gets_408_after_request_timeout(self):
        fb = self.fake_bus()
        l = self.listen(fb.path, request_timeout_ms=1000)
        c = RawClient(l.port)
        t0 = time.monotonic()
        c.send(chunked_head(self.token) + chunked(event_body("a"), last=b"5\r\nab")[:-2])
        self.assert_refused_and_closed(c, 408, "REQUEST_TIMEOUT")
        self.assertGreaterEqual(time.monotonic() - t0, 0.99)
        self.assertEqual(fb.events, [])

    def test_credentials_are_judged_from_the_head_before_the_chunked_body(self):
        fb = self.fake_bus()
        l = self.listen(fb.path, max_body_size=1024)
        # No body at all yet: answered from the head, and the connection closes.
        c = RawClient(l.port)
        c.send(chunked_head(harness.new_token()))
        self.assert_refused_and_closed(c, 403, "UNAUTHENTICATED")
        # A body over the limit, or malformed, is not looked at before the credentials.
        for body in (chunked("x" * 2000), b"zz\r\n"):
            with self.subTest(body=body[:10]):
                c = RawClient(l.port)
                c.send(chunked_head(None) + body)
                self.assert_refused_and_closed(c, 403, "UNAUTHENTICATED")
        # A whole request with a bad token: answered, and the connection
        # goes on, as with Content-Length.
        c = RawClient(l.port)
        c.send(chunked_request(harness.new_token(), event_body("a")) +
               chunked_request(self.token, event_body("b")))
        self.assert_answer(*c.read_response(), 403, "UNAUTHENTICATED")
        self.assert_answer(*c.read_response(), 200, "OK")
        c.close()
        self.assertEqual([t for _, t, _ in fb.wait_events(1)], [b"b"])

    def test_100_continue_for_a_chunked_body(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        c = RawClient(l.port)
        c.send(chunked_head(self.token, "Expect: 100-continue\r\n"))
        status, headers, body = c.read_response()
        self.assertEqual((status, body), (100, b""))
        c.send(chunked(event_body("cont")))
        self.assert_answer(*c.read_response(), 200, "OK")
        # A body sent along with the head needs no 100.
        c.send(chunked_request(self.token, event_body("cont2"), "Expect: 100-continue\r\n"))
        self.assert_answer(*c.read_response(), 200, "OK")
        c.close()
        # A bad credential gets its 403 instead of a 100.
        c = RawClient(l.port)
        c.send(chunked_head(harness.new_token(), "Expect: 100-continue\r\n"))
        self.assert_refused_and_closed(c, 403, "UNAUTHENTICATED")
        self.assertEqual([t for _, t, _ in fb.wait_events(2)], [b"cont", b"cont2"])

    def test_content_length_with_transfer_encoding_is_400_and_closes(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        smuggled = publish_request(self.token, event_body("smuggled"))
        for headers in ("Content-Length: 5\r\n", "Content-Length: 0\r\n",
                        "Content-Length: 5\r\nContent-Length: 5\r\n"):
            with self.subTest(headers=headers):
                # Read by Content-Length, the second request would be a
                # separate publish: it must never be seen.
                c = RawClient(l.port)
                c.send(chunked_head(self.token, headers) + b"0\r\n\r\n" + smuggled)
                self.assert_refused_and_closed(c, 400, "BAD_REQUEST")
        # Content-Length before Transfer-Encoding, too.
        c = RawClient(l.port)
        c.send(b"POST /event HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " +
               self.token.encode() + b"\r\nContent-Length: 23\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + chunked(event_body("a")) + smuggled)
        self.assert_refused_and_closed(c, 400, "BAD_REQUEST")
        self.assertIn("both Content-Length and Transfer-Encoding", l.log())
        self.assertEqual(fb.events, [])

    def test_transfer_codings_other_than_chunked_are_refused(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        body = chunked(event_body("a"))
        cases = [
            # chunked last, after a coding this server does not implement: 501
            ("gzip, chunked", "1.1", 501, "UNSUPPORTED_TRANSFER_ENCODING"),
            ("chunked, chunked", "1.1", 501, "UNSUPPORTED_TRANSFER_ENCODING"),
            ("deflate,chunked", "1.1", 501, "UNSUPPORTED_TRANSFER_ENCODING"),
            # chunked not last: the body's end cannot be found (RFC 9112 section 6.3): 400
            ("gzip", "1.1", 400, "BAD_REQUEST"),
            ("chunked, gzip", "1.1", 400, "BAD_REQUEST"),
            ("identity", "1.1", 400, "BAD_REQUEST"),
            ("", "1.1", 400, "BAD_REQUEST"),
            # HTTP/1.0 has no transfer codings (RFC 9112 section 6.1)
            ("chunked", "1.0", 400, "BAD_REQUEST"),
        ]
        for coding, version, status, code in cases:
            with self.subTest(coding=coding, version=version):
                c = RawClient(l.port)
                c.send(chunked_head(self.token, version=version, coding=coding) + body)
                self.assert_refused_and_closed(c, status, code)
        # Codings are case-insensitive: this one is plain chunked.
        c = RawClient(l.port)
        c.send(chunked_head(self.token, coding="Chunked") + body)
        self.assert_answer(*c.read_response(), 200, "OK")
        c.close()
        self.assertEqual(len(fb.wait_events(1)), 1)
        status, text, _ = harness.http_request(l.port, "GET", "/metrics")
        self.assertRegex(text.decode(), r'evs_listen_http_rejected_total\{code='
                         r'"UNSUPPORTED_TRANSFER_ENCODING"\} 3\n')

    def test_malformed_chunk_syntax_is_400_and_closes(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        body = event_body("a").encode()
        cases = {
            "size not hex": b"zz\r\n" + body + b"\r\n0\r\n\r\n",
            "size missing": b"\r\n" + body + b"\r\n0\r\n\r\n",
            "size of 2^63": b"8000000000000000\r\n",
            "size of 2^64 + 13": b"1000000000000000d\r\n",
            "blank after size": b"%x \r\n" % len(body) + body + b"\r\n0\r\n\r\n",
            "chunk longer than its size": b"%x\r\n" % (len(body) - 1) + body + b"\r\n0\r\n\r\n",
            "no CRLF after data": b"%x\r\n" % len(body) + body + b"0\r\n\r\n",
            "bare LF line ends": b"%x\n" % len(body) + body + b"\n0\n\n",
            "bare LF after data": b"%x\r\n" % len(body) + body + b"\n0\r\n\r\n",
            "control character in extension": b"%x;a\x01\r\n" % len(body) + body,
            "size line too long": b"%x;" % len(body) + b"e" * 5000 + b"\r\n",
            "malformed trailer": chunked(body, trailers=b"no colon\r\n"),
        }
        for name, chunks in cases.items():
            with self.subTest(case=name):
                c = RawClient(l.port)
                c.send(chunked_head(self.token) + chunks)
                self.assert_refused_and_closed(c, 400, "BAD_REQUEST")
        self.assertEqual(fb.events, [])
        self.assert_publish(l.port, event_body("after"), self.auth(), 200, "OK")

    def test_trailers_are_bounded_by_max_header_size(self):
        fb = self.fake_bus()
        l = self.listen(fb.path, max_header_size=1024)
        # The trailer section counts from the first trailer byte to the
        # final CRLF: exactly the limit is taken, one byte more is 431.
        for size, status, code in ((1024, 200, "OK"), (1025, 431, "HEADERS_TOO_LARGE")):
            with self.subTest(size=size):
                trailer = b"X-Pad: " + b"p" * (size - 11) + b"\r\n"
                self.assertEqual(len(trailer) + 2, size)
                c = RawClient(l.port)
                c.send(chunked_head(self.token) + chunked(event_body("t"), trailers=trailer))
                self.assert_answer(*c.read_response(), status, code)
                c.close()
        self.assertEqual(len(fb.wait_events(1)), 1)


# --- the event on the bus ------------------------------------------------------------------------

class BusDeliveryTest(ListenCase):

    def test_accepted_event_arrives_on_the_bus_byte_exact(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        datas = [
            '12345678901234567890',
            '0.1000000000000000055511151231257827',
            '-0.0',
            '1E+400',
            '{"big": 12345678901234567890 ,"f":0.1000000000000000055511151231257827}',
            '[ 1 ,\n\t2 ,  {"a" :\r\n [ ] } ]',
            '"h\u00e9llo \u2603 \U0001F600"',
            '"escapes \\u00e9 \\ud83d\\ude00 \\n \\" \\\\ \\/"',
            'null', 'true', 'false', '""', '{}', '[]',
        ]
        for i, data in enumerate(datas):
            with self.subTest(data=data):
                body = event_body("temp", data)
                self.assert_publish(l.port, body.encode(), self.auth(), 200, "OK")
                seq, etype, message = fb.wait_events(i + 1)[i]
                self.assertEqual(etype, b"temp")
                self.assertEqual(message, b'{"type":"event","event":"temp","data":' +
                                 data.encode() + b"}")

    def test_data_with_whitespace_around_members_keeps_the_value_text(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        data = '{ "k" : [ 1.50 , 2e3 ] ,\n  "s" : "a  b" }'
        body = '\n{ "data" :  ' + data + '  ,\t"event" : "t" }\r\n'
        self.assert_publish(l.port, body.encode(), self.auth(), 200, "OK")
        seq, etype, message = fb.wait_events(1)[0]
        self.assertEqual(etype, b"t")
        self.assertEqual(message, b'{"type":"event","event":"t","data":' + data.encode() + b"}")

    def test_frame_type_is_the_decoded_event_type(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        cases = [
            ('"caf\\u00e9/\\"q\\""', 'caf\u00e9/"q"'),
            ('"\\u0041b\\tc"', "Ab\tc"),
            ('"\U0001F600 snow\u2603"', "\U0001F600 snow\u2603"),
            ('"a\\/b\\\\c"', "a/b\\c"),
        ]
        for i, (raw, decoded) in enumerate(cases):
            with self.subTest(event=raw):
                body = '{"event":' + raw + ',"data":1}'
                self.assert_publish(l.port, body.encode(), self.auth(), 200, "OK")
                seq, etype, message = fb.wait_events(i + 1)[i]
                self.assertEqual(etype, decoded.encode())
                self.assertEqual(json.loads(message),
                                 {"type": "event", "event": decoded, "data": 1})

    def test_absent_data_gives_a_message_without_data_member(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        self.assert_publish(l.port, b'{"event":"x"}', self.auth(), 200, "OK")
        self.assert_publish(l.port, b'{"event":"y","data":null}', self.auth(), 200, "OK")
        events = fb.wait_events(2)
        self.assertEqual(events[0][1:], (b"x", b'{"type":"event","event":"x"}'))
        self.assertEqual(events[1][1:], (b"y", b'{"type":"event","event":"y","data":null}'))

    def test_the_200_carries_the_event_id_the_bus_carried_and_the_body_is_unchanged(self):
        fb = self.fake_bus()
        l = self.listen(fb.path, bus_wait_ms=200)
        ids = []
        for i in range(3):
            status, headers, body = post(l.port, event_body("x", str(i)), self.auth())
            self.assertEqual((status, body), (200, b'{"code":"OK"}'))
            self.assertRegex(headers.get("event-id", ""), EVENT_ID_RE)
            ids.append(headers["event-id"])
        events = fb.wait_events(3)
        self.assertEqual(fb.ids[:3], ids)
        # One run, numbered 1, 2, 3: ids of a run sort in the order given.
        runs = {i.split("-")[0] for i in ids}
        self.assertEqual(len(runs), 1)
        self.assertEqual([int(i.split("-")[1], 16) for i in ids], [1, 2, 3])
        self.assertEqual(sorted(ids), ids)

        # An event no broadcast daemon took gets no id, and takes no number.
        fb.close()
        wait_for(lambda: harness.http_get(l.port, "/healthz")[0] == 503, what="the bus to be gone")
        status, headers, _ = post(l.port, event_body("x"), self.auth())
        self.assertEqual(status, 503)
        self.assertNotIn("event-id", headers)
        fb = self.fake_bus()
        wait_for(lambda: harness.http_get(l.port, "/healthz")[0] == 200, what="the bus to be back")
        status, headers, _ = post(l.port, event_body("x"), self.auth())
        self.assertEqual(status, 200)
        self.assertEqual(headers["event-id"], f"{runs.pop()}-{4:016x}")

    def test_a_restarted_listen_daemon_gives_ids_of_a_later_run(self):
        fb = self.fake_bus()
        first = self.listen(fb.path)
        _, h1, _ = post(first.port, event_body("x"), self.auth())
        first.stop()
        self.listens.remove(first)  # stopped on purpose
        second = self.listen(fb.path)
        _, h2, _ = post(second.port, event_body("x"), self.auth())
        self.assertNotEqual(h1["event-id"].split("-")[0], h2["event-id"].split("-")[0])
        self.assertLess(h1["event-id"], h2["event-id"])

    def test_sequence_numbers_are_1_2_3_on_one_connection(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        for i in range(3):
            self.assert_publish(l.port, event_body(f"e{i}", str(i)), self.auth(), 200, "OK")
        events = fb.wait_events(3)
        self.assertEqual([(s, t) for s, t, _ in events], [(1, b"e0"), (2, b"e1"), (3, b"e2")])
        self.assertEqual(fb.connections, 1)

    def test_the_answer_waits_for_the_ack(self):
        fb = self.fake_bus(hold_acks=True)
        l = self.listen(fb.path, bus_ack_timeout_ms=30000)
        c = RawClient(l.port)
        c.send(publish_request(self.token, event_body("held", "[1]")))
        seq, etype, message = fb.wait_events(1)[0]
        self.assertEqual((seq, etype), (1, b"held"))
        # The event is on the bus, unacked: the publisher has no answer yet.
        self.assertFalse(c.readable_within(0.5 * TIME_SCALE), "answered before the ack")
        # The daemon is not blocked meanwhile: other requests are answered.
        status, headers, body = post(l.port, None, path="/healthz", method="GET")
        self.assert_answer(status, headers, body, 200, "OK")
        self.assert_publish(l.port, b"[]", self.auth(), 400, "INVALID_BODY")
        self.assertFalse(c.readable_within(0), "answered before the ack")
        fb.ack(seq)
        status, headers, body = c.read_response()
        self.assert_answer(status, headers, body, 200, "OK")
        c.close()

    def test_acks_complete_pipelined_bus_events_in_order(self):
        # Several publishers in flight at once; a cumulative ack answers them all.
        fb = self.fake_bus(hold_acks=True)
        l = self.listen(fb.path, bus_ack_timeout_ms=30000)
        clients = [RawClient(l.port) for _ in range(3)]
        for i, c in enumerate(clients):
            c.send(publish_request(self.token, event_body(f"p{i}")))
            fb.wait_events(i + 1)
        self.assertEqual([e[0] for e in fb.events], [1, 2, 3])
        fb.ack(2)
        for c in clients[:2]:
            self.assert_answer(*c.read_response(), 200, "OK")
        self.assertFalse(clients[2].readable_within(0.3 * TIME_SCALE))
        fb.ack(3)
        self.assert_answer(*clients[2].read_response(), 200, "OK")
        for c in clients:
            c.close()


# --- 503 paths and health ------------------------------------------------------------------------

class UnavailableTest(ListenCase):

    def test_no_broadcast_daemon_is_503_broadcast_unavailable_after_bus_wait(self):
        l = self.listen(self.bus_path("nobody"), wait_bus=False, bus_wait_ms=300)
        self.assertEqual(harness.http_get(l.port, "/healthz")[0], 503)
        for _ in range(3):
            t0 = time.monotonic()
            status, headers, body = post(l.port, event_body("a"), self.auth())
            elapsed = time.monotonic() - t0
            self.assert_answer(status, headers, body, 503, "BROADCAST_UNAVAILABLE")
            self.assertGreaterEqual(elapsed, 0.29)
            self.assertLess(elapsed, 0.3 + 1.5 * TIME_SCALE)

    def test_publish_waiting_during_an_outage_succeeds_when_a_bus_peer_appears(self):
        path = self.bus_path()
        l = self.listen(path, wait_bus=False, bus_wait_ms=int(15000 * TIME_SCALE),
                        log_level="debug")
        result = {}

        def publisher():
            result["answer"] = post(l.port, event_body("late", '"x"'), self.auth())

        t = threading.Thread(target=publisher, daemon=True)
        t.start()
        # The request is in and waiting for a broadcast daemon.
        wait_metric(l.port, "evs_listen_bus_events_waiting", 1)
        self.assertNotIn("answer", result)
        fb = self.fake_bus()
        t.join(15 * TIME_SCALE)
        self.assertFalse(t.is_alive(), "the publish never got an answer")
        self.assert_answer(*result["answer"], 200, "OK")
        seq, etype, message = fb.wait_events(1)[0]
        self.assertEqual(message, b'{"type":"event","event":"late","data":"x"}')

    def test_bus_connection_dropping_with_an_event_in_flight_is_503(self):
        fb = self.fake_bus(hold_acks=True)
        l = self.listen(fb.path, bus_ack_timeout_ms=30000)
        c = RawClient(l.port)
        c.send(publish_request(self.token, event_body("lost")))
        fb.wait_events(1)
        fb.close()
        status, headers, body = c.read_response()
        self.assert_answer(status, headers, body, 503, "BROADCAST_UNAVAILABLE")
        c.close()
        l.wait_log("connection closed by the broadcast daemon")

    def test_one_of_two_bus_peers_dropping_is_503_even_if_the_other_acked(self):
        a = self.fake_bus("a")
        b = self.fake_bus("b", hold_acks=True)
        l = self.listen([a.path, b.path], bus_ack_timeout_ms=30000)
        self.wait_ready(l.port, a, b)
        c = RawClient(l.port)
        c.send(publish_request(self.token, event_body("half")))
        a.wait_events(1)
        b.wait_events(1)
        b.close()
        self.assert_answer(*c.read_response(), 503, "BROADCAST_UNAVAILABLE")
        c.close()

    def test_peer_that_never_acks_is_503_after_ack_timeout_and_listen_reconnects(self):
        fb = self.fake_bus(hold_acks=True)
        l = self.listen(fb.path, bus_ack_timeout_ms=500)
        t0 = time.monotonic()
        status, headers, body = post(l.port, event_body("slow"), self.auth())
        elapsed = time.monotonic() - t0
        self.assert_answer(status, headers, body, 503, "BROADCAST_UNAVAILABLE")
        self.assertGreaterEqual(elapsed, 0.49)
        self.assertLess(elapsed, 0.5 + 3 * TIME_SCALE)
        l.wait_log("did not ack in time")
        fb.wait_connections(2)
        with fb.lock:
            fb.hold_acks = False
        wait_for(lambda: harness.http_get(l.port, "/healthz")[0] == 200, what="reconnect")
        self.assert_publish(l.port, event_body("again"), self.auth(), 200, "OK")
        seq, etype, _ = fb.wait_events(2)[1]
        # The event that got 503 had gone out: the new connection gets it
        # first, as history (sequence number 1), then the next one.
        self.assertEqual(fb.history, fb.ids[:1])
        self.assertEqual(fb.first_seqs, [1, 1])
        self.assertEqual((seq, etype), (2, b"again"))

    def test_repeated_old_acks_do_not_extend_the_ack_deadline(self):
        fb = self.fake_bus(hold_acks=True)
        l = self.listen(fb.path, bus_ack_timeout_ms=500)
        c = RawClient(l.port)
        c.send(publish_request(self.token, event_body("one")))
        fb.wait_events(1)
        fb.ack(1)
        self.assert_answer(*c.read_response(), 200, "OK")
        c.send(publish_request(self.token, event_body("two")))
        fb.wait_events(2)
        t0 = time.monotonic()
        # The peer keeps repeating the old ack, never acking event 2.
        while not c.readable_within(0.1):
            fb.ack(1)
            if time.monotonic() - t0 > 0.5 + 4 * TIME_SCALE:
                self.fail("old acks kept an unacked event waiting past the ack timeout")
        elapsed = time.monotonic() - t0
        self.assert_answer(*c.read_response(), 503, "BROADCAST_UNAVAILABLE")
        self.assertGreaterEqual(elapsed, 0.45)
        c.close()
        l.wait_log("did not ack in time")

    def test_healthz_is_200_with_a_bus_peer_and_503_without(self):
        l = self.listen(self.bus_path(), wait_bus=False)
        status, headers, body = post(l.port, None, path="/healthz", method="GET")
        self.assert_answer(status, headers, body, 503, "BROADCAST_UNAVAILABLE")
        fb = self.fake_bus()
        wait_for(lambda: harness.http_get(l.port, "/healthz")[0] == 200, what="healthz 200")
        status, headers, body = post(l.port, None, path="/healthz", method="GET")
        self.assert_answer(status, headers, body, 200, "OK")
        fb.close()
        wait_for(lambda: harness.http_get(l.port, "/healthz")[0] == 503, what="healthz 503")
        status, headers, body = post(l.port, None, path="/healthz", method="GET")
        self.assert_answer(status, headers, body, 503, "BROADCAST_UNAVAILABLE")


# --- several bus sockets -------------------------------------------------------------------------

class MultipleBusTest(ListenCase):

    def check_both_receive(self, bus_arg):
        a, b = self.peers
        l = self.listen(bus_arg)
        self.wait_ready(l.port, a, b)
        for i in range(3):
            self.assert_publish(l.port, event_body(f"m{i}", f"[{i}]"), self.auth(), 200, "OK")
        for peer in (a, b):
            events = peer.wait_events(3)
            self.assertEqual([(s, t, m) for s, t, m in events],
                             [(i + 1, f"m{i}".encode(),
                               f'{{"type":"event","event":"m{i}","data":[{i}]}}'.encode())
                              for i in range(3)])

    def test_two_bus_peers_given_with_repeated_flag_both_receive_every_event(self):
        self.peers = (self.fake_bus("a"), self.fake_bus("b"))
        self.check_both_receive([self.peers[0].path, self.peers[1].path])

    def test_two_bus_peers_given_comma_separated_both_receive_every_event(self):
        self.peers = (self.fake_bus("a"), self.fake_bus("b"))
        self.check_both_receive(f"{self.peers[0].path},{self.peers[1].path}")

    def test_two_bus_peers_from_bus_socket_env_both_receive_every_event(self):
        a, b = self.fake_bus("a"), self.fake_bus("b")
        port = harness.free_port()
        argv = [harness.LISTEN_BIN, "--port", str(port), "--bind", "127.0.0.1"]
        d = harness.Daemon(argv, self.env({"BUS_SOCKET": f"{a.path},{b.path}"}),
                           os.path.join(self.dir, "listen-env.log"))
        self.daemons.append(d)
        self.listens.append(d)
        self.wait_ready(port, a, b)
        self.assert_publish(port, event_body("env"), self.auth(), 200, "OK")
        self.assertEqual(a.wait_events(1)[0][1], b"env")
        self.assertEqual(b.wait_events(1)[0][1], b"env")

    def test_ok_only_after_both_bus_peers_acked(self):
        a = self.fake_bus("a", hold_acks=True)
        b = self.fake_bus("b", hold_acks=True)
        l = self.listen([a.path, b.path], bus_ack_timeout_ms=30000)
        self.wait_ready(l.port, a, b)
        c = RawClient(l.port)
        c.send(publish_request(self.token, event_body("two")))
        a.wait_events(1)
        b.wait_events(1)
        self.assertFalse(c.readable_within(0.3 * TIME_SCALE))
        a.ack(1)
        self.assertFalse(c.readable_within(0.5 * TIME_SCALE), "answered before the second ack")
        b.ack(1)
        self.assert_answer(*c.read_response(), 200, "OK")
        c.close()


# --- tokens file ---------------------------------------------------------------------------------

class TokenRotationTest(ListenCase):

    def accepted(self, port, token):
        status, _, _ = post(port, event_body("rot"), self.auth(token))
        return status

    def wait_rotation(self, port, new, old, t0):
        wait_for(lambda: self.accepted(port, new) == 200 and self.accepted(port, old) == 403,
                 timeout=5, what="the new token accepted and the old one rejected")
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 1.0 * TIME_SCALE + 0.3, "token change took too long")

    def test_replaced_tokens_file_takes_effect_within_a_second(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        old, new = self.token, harness.new_token()
        self.assertEqual(self.accepted(l.port, old), 200)
        self.assertEqual(self.accepted(l.port, new), 403)
        t0 = time.monotonic()
        self.write_tokens([new])
        self.wait_rotation(l.port, new, old, t0)
        l.wait_log("reloaded (file changed): 1 tokens")

    def test_in_place_rewrite_of_tokens_file_takes_effect_within_a_second(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        old = self.token
        new = "tok-" + "b" * len(old[4:])  # same length: only the bytes change
        self.assertEqual(len(new), len(old))
        self.assertEqual(self.accepted(l.port, old), 200)
        t0 = time.monotonic()
        with open(self.tokens_path, "w") as f:
            f.write(new + "\n")
        self.wait_rotation(l.port, new, old, t0)

    def test_removing_tokens_file_revokes_every_token(self):
        second = harness.new_token()
        self.write_tokens([self.token, second])
        fb = self.fake_bus()
        l = self.listen(fb.path)
        self.assertEqual(self.accepted(l.port, second), 200)
        t0 = time.monotonic()
        os.unlink(self.tokens_path)
        wait_for(lambda: self.accepted(l.port, self.token) == 403, timeout=5, what="revocation")
        self.assertLess(time.monotonic() - t0, 1.0 * TIME_SCALE + 0.3)
        self.assert_publish(l.port, event_body("a"), self.auth(second), 403, "UNAUTHENTICATED")
        l.wait_log("cannot be read")
        # The file coming back restores them.
        self.write_tokens([second])
        wait_for(lambda: self.accepted(l.port, second) == 200, timeout=5, what="restored token")

    def test_sighup_reloads_the_tokens_file(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        l.signal(signal.SIGHUP)
        l.wait_log("reloaded (SIGHUP): 1 tokens")
        self.assertEqual(self.accepted(l.port, self.token), 200)
        new = harness.new_token()
        self.write_tokens([self.token, new])
        l.signal(signal.SIGHUP)
        l.wait_log("reloaded (SIGHUP): 2 tokens")
        self.assertEqual(self.accepted(l.port, new), 200)
        self.assertEqual(self.accepted(l.port, self.token), 200)

    def test_comments_blank_lines_and_crlf_endings_in_tokens_file(self):
        a, b, c, d = (harness.new_token() for _ in range(4))
        text = (f"# publishers\r\n\r\n   \r\n{a}\r\n\t {b}  \r\n#{c}\r\n# {c}\r\nshort\r\n"
                f"\r\n{d}")  # no newline at the end
        with open(self.tokens_path, "w", newline="") as f:
            f.write(text)
        fb = self.fake_bus()
        l = self.listen(fb.path)
        for token in (a, b, d):
            with self.subTest(token=token):
                self.assert_publish(l.port, event_body("a"), self.auth(token), 200, "OK")
        for token in (c, "#" + c, "short", "publishers", "# " + c):
            with self.subTest(token=token):
                self.assert_publish(l.port, event_body("a"), self.auth(token), 403,
                                    "UNAUTHENTICATED")
        self.assertIn("loaded: 3 tokens", l.log())
        self.assertIn("1 lines ignored, shorter than 16", l.log())

    def test_no_tokens_file_at_all_starts_warns_and_answers_403(self):
        os.unlink(self.tokens_path)
        fb = self.fake_bus()
        l = self.listen(fb.path)
        self.assertRegex(l.log(), r"warn: tokens file \S+ cannot be read")
        for auth in (self.auth(), self.auth(harness.new_token()), None):
            with self.subTest(auth=auth):
                self.assert_publish(l.port, event_body("a"), auth, 403, "UNAUTHENTICATED")
        self.assertEqual(fb.events, [])
        # Creating the file later makes its tokens work without a restart.
        self.write_tokens([self.token])
        wait_for(lambda: self.accepted(l.port, self.token) == 200, timeout=5, what="token")


# --- robustness ----------------------------------------------------------------------------------

class RobustnessTest(ListenCase):

    def assert_publish_works(self, l, fb, n):
        self.assert_publish(l.port, event_body("still", str(n)), self.auth(), 200, "OK")
        self.assertEqual(fb.wait_events(n)[n - 1][1], b"still")

    def test_random_garbage_on_the_http_port_is_400_and_the_daemon_lives(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        rng = random.Random(20240601)
        for i in range(20):
            garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
            # A non-token first byte, so no seed can form a request line by chance.
            c = RawClient(l.port)
            c.send(b"\x00" + garbage + b"\r\n\r\n")
            status, headers, body = c.read_response()
            self.assert_answer(status, headers, body, 400, "BAD_REQUEST")
            c.closed_by_peer()
            c.close()
        # Garbage that never ends a head, then the client vanishes.
        for i in range(5):
            c = RawClient(l.port)
            c.send(bytes(rng.randrange(1, 256) for _ in range(500)).replace(b"\n", b"x"))
            c.close()
        self.assert_publish_works(l, fb, 1)

    def test_bad_request_line_is_400_then_close(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        for line in (b"NOT A REQUEST", b"GET  /event HTTP/1.1", b"GET /event HTTP/1.1 extra",
                     b"GET /event", b"GET /event http/1.1", b"POST\t/event HTTP/1.1",
                     b"GET /ev\x01ent HTTP/1.1"):
            with self.subTest(line=line):
                c = RawClient(l.port)
                c.send(line + b"\r\nHost: x\r\n\r\n")
                status, headers, body = c.read_response()
                self.assert_answer(status, headers, body, 400, "BAD_REQUEST")
                self.assertEqual(headers.get("connection"), "close")
                self.assertEqual(c.closed_by_peer(), b"")
                c.close()
        for header in (b"No colon here", b"Bad Name: x", b" folded: x"):
            with self.subTest(header=header):
                c = RawClient(l.port)
                c.send(b"GET /healthz HTTP/1.1\r\n" + header + b"\r\n\r\n")
                self.assert_answer(*c.read_response(), 400, "BAD_REQUEST")
                self.assertEqual(c.closed_by_peer(), b"")
                c.close()
        self.assert_publish_works(l, fb, 1)

    def test_client_that_sends_nothing_does_not_block_publishes_and_is_closed(self):
        fb = self.fake_bus()
        l = self.listen(fb.path, request_timeout_ms=1000)
        silent = RawClient(l.port)
        self.assert_publish_works(l, fb, 1)
        # Silence is not a request: the connection ends without an answer.
        self.assertEqual(silent.closed_by_peer(timeout=5), b"")
        silent.close()
        self.assert_publish_works(l, fb, 2)

    def test_keep_alive_carries_several_publishes_on_one_connection(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        conn = http.client.HTTPConnection("127.0.0.1", l.port, timeout=10 * TIME_SCALE)
        local = None
        try:
            for i in range(5):
                conn.request("POST", "/event", body=event_body("ka", str(i)),
                             headers={"Authorization": self.auth(),
                                      "Content-Type": "application/json"})
                resp = conn.getresponse()
                body = resp.read()
                self.assert_answer(resp.status, {k.lower(): v for k, v in resp.getheaders()},
                                   body, 200, "OK")
                self.assertFalse(resp.will_close, "the daemon closed a keep-alive connection")
                name = conn.sock.getsockname()
                local = local or name
                self.assertEqual(name, local, "http.client had to reconnect")
            # An error answer keeps the connection too.
            conn.request("POST", "/event", body="[]", headers={"Authorization": self.auth()})
            resp = conn.getresponse()
            self.assertEqual((resp.status, json.loads(resp.read())), (400,
                                                                      {"code": "INVALID_BODY"}))
            self.assertFalse(resp.will_close)
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            self.assertEqual((resp.status, json.loads(resp.read())), (200, {"code": "OK"}))
            self.assertEqual(conn.sock.getsockname(), local)
        finally:
            conn.close()
        events = fb.wait_events(5)
        self.assertEqual([m for _, _, m in events],
                         [f'{{"type":"event","event":"ka","data":{i}}}'.encode()
                          for i in range(5)])

    def test_repeated_authorization_header_is_400_bad_request_and_nothing_is_published(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        other = harness.new_token()
        self.write_tokens([self.token, other])
        wait_for(lambda: post(l.port, event_body("probe"), self.auth(other))[0] == 200,
                 what="the second token to be read")
        fb.wait_events(1)
        body = event_body("twice", '"x"').encode()
        for first, second in ((self.token, self.token), ("wrong-" + other, other),
                              (other, "wrong-" + other)):
            with self.subTest(first=first, second=second):
                c = RawClient(l.port)
                c.send(b"POST /event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       + f"Authorization: Basic {first}\r\nauthorization: Basic {second}\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                status, headers, data = c.read_response()
                self.assert_answer(status, headers, data, 400, "BAD_REQUEST")
                self.assertEqual(headers.get("connection"), "close")
                self.assertEqual(c.closed_by_peer(), b"")
                c.close()
        self.assert_publish_works(l, fb, 2)  # the second event on the bus: none of "twice"

    def test_http_1_0_keep_alive_is_answered_keep_alive_and_serves_the_next_request(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        body = event_body("old", '"1.0"').encode()
        c = RawClient(l.port)
        try:
            c.send(b"POST /event HTTP/1.0\r\nConnection: keep-alive\r\nContent-Type: "
                   b"application/json\r\n" + f"Authorization: {self.auth()}\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            status, headers, data = c.read_response()
            self.assert_answer(status, headers, data, 200, "OK")
            self.assertEqual(headers.get("connection"), "keep-alive")
            c.send(b"GET /healthz HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            status, headers, data = c.read_response()
            self.assert_answer(status, headers, data, 200, "OK")
            self.assertEqual(headers.get("connection"), "keep-alive")
            # Without keep-alive an HTTP/1.0 connection ends after its answer, and says so.
            c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
            status, headers, data = c.read_response()
            self.assert_answer(status, headers, data, 200, "OK")
            self.assertEqual(headers.get("connection"), "close")
            self.assertEqual(c.closed_by_peer(), b"")
        finally:
            c.close()
        # HTTP/1.1 persists by default: its answer carries no Connection field.
        status, headers, data = post(l.port, event_body("new"), self.auth())
        self.assert_answer(status, headers, data, 200, "OK")
        self.assertNotIn("connection", headers)
        self.assertEqual([e[1] for e in fb.wait_events(2)], [b"old", b"new"])

    def test_pipelined_requests_get_their_answers_in_order(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        c = RawClient(l.port)
        c.send(publish_request(self.token, event_body("first")) +
               publish_request(None, event_body("nope")) +
               publish_request(self.token, b"[]") +
               b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" +
               publish_request(self.token, event_body("second")))
        self.assert_answer(*c.read_response(), 200, "OK")
        self.assert_answer(*c.read_response(), 403, "UNAUTHENTICATED")
        self.assert_answer(*c.read_response(), 400, "INVALID_BODY")
        self.assert_answer(*c.read_response(), 200, "OK")
        self.assert_answer(*c.read_response(), 200, "OK")
        c.close()
        self.assertEqual([t for _, t, _ in fb.wait_events(2)], [b"first", b"second"])

    def test_pipelined_publishes_wait_for_their_own_acks(self):
        fb = self.fake_bus(hold_acks=True)
        l = self.listen(fb.path, bus_ack_timeout_ms=30000)
        c = RawClient(l.port)
        c.send(publish_request(self.token, event_body("p1")) +
               publish_request(self.token, event_body("p2")))
        fb.wait_events(1)
        self.assertFalse(c.readable_within(0.3 * TIME_SCALE))
        fb.ack(1)
        self.assert_answer(*c.read_response(), 200, "OK")
        self.assertEqual(fb.wait_events(2)[1][:2], (2, b"p2"))
        fb.ack(2)
        self.assert_answer(*c.read_response(), 200, "OK")
        c.close()

    def test_publisher_leaving_before_the_ack_does_not_disturb_the_daemon(self):
        fb = self.fake_bus(hold_acks=True)
        l = self.listen(fb.path, bus_ack_timeout_ms=30000)
        c = RawClient(l.port)
        c.send(publish_request(self.token, event_body("gone")))
        fb.wait_events(1)
        c.close()
        wait_for(lambda: harness.http_get(l.port, "/healthz")[0] == 200, what="healthz")
        fb.ack(1)  # the ack of an event whose publisher left
        with fb.lock:
            fb.hold_acks = False
        self.assert_publish(l.port, event_body("after"), self.auth(), 200, "OK")
        self.assertEqual(fb.wait_events(2)[1][:2], (2, b"after"))

    def test_publisher_leaving_while_waiting_for_a_bus_peer_does_not_disturb_the_daemon(self):
        path = self.bus_path()
        l = self.listen(path, wait_bus=False, bus_wait_ms=int(1000 * TIME_SCALE),
                        log_level="debug")
        c = RawClient(l.port)
        c.send(publish_request(self.token, event_body("gone")))
        wait_metric(l.port, "evs_listen_bus_events_waiting", 1)
        c.close()
        # Its wait runs out with nobody to answer; a later publish still works.
        fb = self.fake_bus()
        wait_for(lambda: harness.http_get(l.port, "/healthz")[0] == 200, what="healthz")
        self.assert_publish(l.port, event_body("after"), self.auth(), 200, "OK")
        self.assertEqual(fb.wait_events(1)[-1][1], b"after")

    def test_connections_over_max_connections_are_refused_and_publishes_resume(self):
        fb = self.fake_bus()
        l = self.listen(fb.path, max_connections=3, request_timeout_ms=30000,
                        idle_timeout_ms=30000)
        held = [RawClient(l.port) for _ in range(3)]
        extra = RawClient(l.port)
        # Past the cap a connection is closed at once, without an answer.
        self.assertEqual(extra.closed_by_peer(timeout=5), b"")
        extra.close()
        l.wait_log("connections open (limit)")
        for c in held:
            c.close()

        def publish_ok():
            try:
                return post(l.port, event_body("cap"), self.auth())[0] == 200
            except OSError:  # still refused: the daemon has not seen the closes yet
                return False

        wait_for(publish_ok, what="publishes to work once connections are free")
        self.assertEqual(fb.wait_events(1)[0][1], b"cap")

    def slow_send(self, c, data, interval):
        """Sends data a byte at a time, interval seconds apart, until the
        daemon answers. Returns the seconds from the start to the answer."""
        t0 = time.monotonic()
        for byte in data:
            try:
                c.send(bytes([byte]))
            except OSError:
                break
            # Waiting here both paces the client and watches for the answer.
            if c.readable_within(interval):
                break
        else:
            self.fail("the daemon waited for the whole slow request")
        return time.monotonic() - t0

    def test_slow_body_gets_408_after_request_timeout(self):
        fb = self.fake_bus()
        l = self.listen(fb.path, request_timeout_ms=1000)
        body = event_body("slow", '"' + "s" * 60 + '"').encode()
        c = RawClient(l.port)
        head = publish_request(self.token, body)[:-len(body)]
        t0 = time.monotonic()
        c.send(head)
        self.slow_send(c, body, 0.3)
        elapsed = time.monotonic() - t0
        status, headers, data = c.read_response()
        self.assert_answer(status, headers, data, 408, "REQUEST_TIMEOUT")
        self.assertGreaterEqual(elapsed, 0.99)
        self.assertLess(elapsed, 1.0 + 2 * TIME_SCALE)
        c.close()
        self.assertEqual(fb.events, [])
        self.assert_publish_works(l, fb, 1)

    def test_slow_head_gets_408_after_request_timeout(self):
        fb = self.fake_bus()
        l = self.listen(fb.path, request_timeout_ms=1000)
        c = RawClient(l.port)
        request = publish_request(self.token, event_body("slow"))
        elapsed = self.slow_send(c, request, 0.3)
        self.assert_answer(*c.read_response(), 408, "REQUEST_TIMEOUT")
        self.assertGreaterEqual(elapsed, 0.99)
        c.close()
        self.assert_publish_works(l, fb, 1)

    def test_garbage_from_the_bus_peer_is_logged_and_listen_reconnects(self):
        fb = self.fake_bus()
        l = self.listen(fb.path)
        garbage = [
            ("random bytes", b"\x00\x00\x00\x08\xee" + random.Random(7).randbytes(59)),
            ("unknown frame kind", struct.pack(">IBBHQ", 8, 9, 0, 0, 1)),
            ("ack of wrong length", struct.pack(">IBBHI", 4, harness.KIND_ACK, 0, 0, 1)),
            ("oversized length", struct.pack(">IBBH", 0xFFFFFFFF, harness.KIND_EVENT, 0, 0)),
            ("ack never sent", harness.bus_ack(1000)),
            ("hello again", harness.bus_hello()),
            ("nonzero flags", struct.pack(">IBBHQ", 8, harness.KIND_ACK, 1, 0, 0)),
        ]
        published = 0
        for n, (name, data) in enumerate(garbage, start=2):
            with self.subTest(garbage=name):
                drops = l.log().count(f"warn: bus {fb.path}: ")
                fb.send_raw(data)
                wait_for(lambda: l.log().count(f"warn: bus {fb.path}: ") > drops,
                         what=f"listen to drop the bus connection after {name}")
                fb.wait_connections(n)
                wait_for(lambda: harness.http_get(l.port, "/healthz")[0] == 200,
                         what="listen to reconnect")
                published += 1
                self.assert_publish_works(l, fb, published)
                self.assertEqual(fb.first_seqs[-1], 1, "a new connection counts from 1")

    def test_event_frame_from_the_bus_peer_is_a_protocol_error_and_listen_reconnects(self):
        # Only HELLO and ACK may come from a broadcast daemon; a well-formed
        # EVENT frame must end the connection like any other protocol error.
        fb = self.fake_bus()
        l = self.listen(fb.path)
        self.assert_publish_works(l, fb, 1)
        fb.send_raw(harness.bus_event(1, "a", b"b"))
        fb.wait_connections(2)  # listen dropped the connection after an EVENT frame from the peer
        wait_metric(l.port, "evs_listen_bus_reconnects_total", 1, timeout=3)
        wait_for(lambda: harness.http_get(l.port, "/healthz")[0] == 200, what="reconnect")
        self.assert_publish_works(l, fb, 2)

    def test_bus_peer_with_wrong_version_is_refused_and_later_a_good_one_works(self):
        fb = self.fake_bus(send_hello=False)
        l = self.listen(fb.path, wait_bus=False, log_level="debug")
        fb.wait_connections(1)
        fb.send_raw(harness.bus_hello(version=harness.BUS_VERSION + 1))
        wait_for(lambda: "bus " in l.log() and fb.connections >= 2, what="reconnect")
        self.assertRegex(l.log(), r"warn: bus \S+: peer speaks another bus protocol or version")
        self.assertEqual(harness.http_get(l.port, "/healthz")[0], 503)
        self.assert_publish(l.port, event_body("a"), self.auth(), 503, "BROADCAST_UNAVAILABLE")
        self.assertEqual(fb.events, [])
        # A peer that never says HELLO is dropped at the handshake deadline.
        l.wait_log("no handshake from the broadcast daemon in time")
        with fb.lock:
            fb.send_hello = True
        wait_for(lambda: harness.http_get(l.port, "/healthz")[0] == 200, what="good handshake")
        self.assert_publish(l.port, event_body("a"), self.auth(), 200, "OK")


# --- start-up ------------------------------------------------------------------------------------

class StartupTest(unittest.TestCase):

    def run_listen(self, *args, env=None):
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("LISTEN_", "BUS_", "TOKENS_", "HTTPS_", "TLS_", "LOG_",
                                     "MAX_", "REQUEST_", "IDLE_", "BIND_"))}
        base.update(env or {})
        return subprocess.run([harness.LISTEN_BIN, *args], env=base, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=20 * TIME_SCALE)

    def assert_bad_setting(self, out, mention):
        stderr = out.stderr.decode()
        self.assertEqual(out.returncode, 2, stderr)
        self.assertTrue(stderr.endswith("\n"), repr(stderr))
        lines = stderr.splitlines()
        self.assertEqual(len(lines), 1, f"not a one-line reason: {stderr!r}")
        self.assertTrue(lines[0].startswith("event-listen: "), lines[0])
        self.assertIn(mention, lines[0])

    def test_bad_settings_exit_2_with_a_one_line_reason(self):
        cases = [
            (("--bogus",), None, "--bogus"),
            (("--port", "70000"), None, "70000"),
            (("--port", "abc"), None, "abc"),
            (("--port", "-1"), None, "--port"),
            (("--port", "0"), None, "--port"),
            (("--port",), None, "--port"),
            ((), {"LISTEN_PORT": "abc"}, "LISTEN_PORT"),
            ((), {"LISTEN_PORT": "99999"}, "LISTEN_PORT"),
            (("--bus-wait-ms", "-1"), None, "--bus-wait-ms"),
            (("--bus-wait-ms", "soon"), None, "--bus-wait-ms"),
            ((), {"BUS_WAIT_MS": "x"}, "BUS_WAIT_MS"),
            (("--max-body-size", "1Q"), None, "--max-body-size"),
            (("--log-level", "loud"), None, "--log-level"),
        ]
        for args, env, mention in cases:
            with self.subTest(args=args, env=env):
                self.assert_bad_setting(self.run_listen(*args, env=env), mention)

    def test_bad_flag_fails_even_over_a_good_environment_variable(self):
        out = self.run_listen("--port", "abc", env={"LISTEN_PORT": "8080"})
        self.assert_bad_setting(out, "--port")

    def test_help_exits_0_and_prints_every_setting(self):
        for flag in ("--help", "-h"):
            with self.subTest(flag=flag):
                out = self.run_listen(flag)
                self.assertEqual(out.returncode, 0, out.stderr)
                text = out.stdout.decode()
                for name in ("--port", "LISTEN_PORT", "--bus", "BUS_SOCKET", "--bus-wait-ms",
                             "BUS_WAIT_MS", "--tokens", "TOKENS_FILE", "--max-body-size",
                             "--version"):
                    self.assertIn(name, text)

    def test_version_exits_0_and_prints_the_version(self):
        out = self.run_listen("--version")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertRegex(out.stdout.decode(), r"^event-listen \d+\.\d+\.\d+\n$")


if __name__ == "__main__":
    unittest.main()
