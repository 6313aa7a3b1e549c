"""The subscriber side of the public contract, end to end.

Both real daemons run on free loopback ports; subscribers are Debian's
python3-websockets (or a raw socket where the opening handshake itself is
under test) and events are published with http.client. What is proven here
is the subscribe side of the public contract and its init protocol:
every init code, the connection left open after an error, additive inits,
routing by type, nothing before the init OK, the event message byte-exact
with the publisher's data text, order, the handshake answers and token
rotation for subscribers.
"""

import asyncio
import base64
import hashlib
import http.client
import json
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib.harness import TIME_SCALE, ServiceCase, event_text, http_request, new_token, run, ws_connect, ws_subscribe  # noqa: E402
from lib.rawws import OP_TEXT, SAMPLE_KEY, WS_GUID, RawWS, encode_frame, handshake_request  # noqa: E402

RFC_SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


# --- helpers only these tests need ----------------------------------------------------------------

def event_body(event, data_text=None):
    """A publish body with data spliced in as raw JSON text (None: no data)."""
    body = '{"event":' + json.dumps(event)
    if data_text is not None:
        body += ',"data":' + data_text
    return body + "}"


class Publisher:
    """POST /event over one keep-alive http.client connection."""

    def __init__(self, port, token):
        self.port = port
        self.token = token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30 * TIME_SCALE)

    def post_raw(self, body):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.conn.request("POST", "/event", body=body,
                          headers={"Content-Type": "application/json",
                                   "Authorization": f"Basic {self.token}"})
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read())

    def post(self, event, data_text=None):
        status, body = self.post_raw(event_body(event, data_text))
        if (status, body) != (200, {"code": "OK"}):
            raise AssertionError(f"publish of {event!r} answered {status} {body}")

    def close(self):
        self.conn.close()


def init_text(token, events, scheme="Basic"):
    return json.dumps({"authentication": f"{scheme} {token}", "events": events})


async def recv_text(ws, timeout=10.0):
    msg = await asyncio.wait_for(ws.recv(), timeout * TIME_SCALE)
    if not isinstance(msg, str):
        raise AssertionError(f"expected a text message, got binary {msg[:80]!r}")
    return msg


async def init_reply(ws, message, timeout=10.0):
    await ws.send(message)
    return json.loads(await recv_text(ws, timeout))


def read_http_response(sock, timeout=10.0):
    """Reads one HTTP response from a raw socket: (status, headers dict with
    lower-case names, body bytes, bytes that followed the response)."""
    sock.settimeout(timeout * TIME_SCALE)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before the response head: {buf!r}")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length], rest[length:]


def raw_exchange(port, request):
    with socket.create_connection(("127.0.0.1", port), timeout=10 * TIME_SCALE) as sock:
        sock.sendall(request)
        return read_http_response(sock)


# --- tests ----------------------------------------------------------------------------------------

class SubscribeTest(ServiceCase):

    def pair(self, broadcast_args=(), listen_args=()):
        b, l = self.start_pair(broadcast_args, listen_args)
        self.publisher = Publisher(l.port, self.token)
        self.addCleanup(self.publisher.close)
        return b, l

    async def pub(self, event, data_text=None):
        await asyncio.to_thread(self.publisher.post, event, data_text)

    async def pub_raw(self, body):
        return await asyncio.to_thread(self.publisher.post_raw, body)

    async def assert_next(self, ws, expected, timeout=10.0):
        self.assertEqual(await recv_text(ws, timeout), expected)

    async def assert_good_init_after_error(self, ws, label):
        """The connection survived the error: a good init now works on it,
        and the failed init subscribed to nothing (it named type C)."""
        self.assertEqual(await init_reply(ws, init_text(self.token, ["A"])),
                         {"type": "init", "code": "OK"}, label)
        await self.pub("C", '"must not arrive"')
        await self.pub("A", f'"marker after {label}"')
        await self.assert_next(ws, event_text("A", f'"marker after {label}"'))

    # -- init codes --

    def check_init_error_cases(self, cases, b):
        async def go():
            for label, message, code in cases:
                with self.subTest(label):
                    ws = await ws_connect(b.port)
                    try:
                        self.assertEqual(await init_reply(ws, message),
                                         {"type": "init", "code": code}, label)
                        await self.assert_good_init_after_error(ws, label)
                    finally:
                        await ws.close()
        run(go())
        self.assertTrue(b.running())

    def test_init_that_is_not_json_is_invalid_syntax_and_connection_stays_open(self):
        b, _ = self.pair()
        good = init_text(self.token, ["C"])
        cases = [
            ("plain text", "hello", "INVALID_SYNTAX"),
            ("empty message", "", "INVALID_SYNTAX"),
            ("truncated object", '{"events": ["C"]', "INVALID_SYNTAX"),
            ("trailing garbage", good + " x", "INVALID_SYNTAX"),
            ("single quotes", "{'events': ['C']}", "INVALID_SYNTAX"),
            ("binary message, not UTF-8", b"\xff\xfe\xfd", "INVALID_SYNTAX"),
            ("binary message, JSON with a non-UTF-8 byte",
             good.replace('"C"', '"C\xff"').encode("latin-1"), "INVALID_SYNTAX"),
        ]
        self.check_init_error_cases(cases, b)

    def test_init_without_events_array_or_with_bad_entries_is_invalid_events_missing(self):
        b, _ = self.pair()
        auth = f"Basic {self.token}"

        def m(obj):
            return json.dumps(obj)
        cases = [
            ("no events", m({"authentication": auth}), "INVALID_EVENTS_MISSING"),
            ("events is a string", m({"authentication": auth, "events": "C"}), "INVALID_EVENTS_MISSING"),
            ("events is an object", m({"authentication": auth, "events": {"0": "C"}}),
             "INVALID_EVENTS_MISSING"),
            ("events is null", m({"authentication": auth, "events": None}), "INVALID_EVENTS_MISSING"),
            ("events is a number", m({"authentication": auth, "events": 5}), "INVALID_EVENTS_MISSING"),
            ("entry is a number", m({"authentication": auth, "events": ["C", 1]}), "INVALID_EVENTS_MISSING"),
            ("entry is null", m({"authentication": auth, "events": ["C", None]}), "INVALID_EVENTS_MISSING"),
            ("entry is an array", m({"authentication": auth, "events": [["C"]]}), "INVALID_EVENTS_MISSING"),
            ("entry is an empty string", m({"authentication": auth, "events": [""]}),
             "INVALID_EVENTS_MISSING"),
            ("empty string after a good entry", m({"authentication": auth, "events": ["C", ""]}),
             "INVALID_EVENTS_MISSING"),
            ("top level is an array", m(["C"]), "INVALID_EVENTS_MISSING"),
        ]
        self.check_init_error_cases(cases, b)

    def test_init_with_unknown_scheme_is_auth_unrecognized_scheme(self):
        b, _ = self.pair()
        cases = [
            ("Bearer", init_text(self.token, ["C"], scheme="Bearer"), "AUTH_UNRECOGNIZED_SCHEME"),
            ("Digest", init_text(self.token, ["C"], scheme="Digest"), "AUTH_UNRECOGNIZED_SCHEME"),
        ]
        self.check_init_error_cases(cases, b)

    def test_init_without_or_with_wrong_token_is_unauthenticated(self):
        b, _ = self.pair()
        cases = [
            ("no authentication", json.dumps({"events": ["C"]}), "UNAUTHENTICATED"),
            ("wrong token", init_text(new_token(), ["C"]), "UNAUTHENTICATED"),
            ("token with one character changed",
             init_text(self.token[:-1] + ("0" if self.token[-1] != "0" else "1"), ["C"]),
             "UNAUTHENTICATED"),
            ("scheme without token", json.dumps({"authentication": "Basic", "events": ["C"]}),
             "UNAUTHENTICATED"),
            ("authentication not a string", json.dumps({"authentication": 5, "events": ["C"]}),
             "UNAUTHENTICATED"),
        ]
        self.check_init_error_cases(cases, b)

    def test_good_init_is_ok_and_scheme_is_case_insensitive(self):
        b, _ = self.pair()

        async def go():
            for scheme in ("Basic", "basic", "BASIC"):
                ws = await ws_connect(b.port)
                try:
                    self.assertEqual(await init_reply(ws, init_text(self.token, ["A"], scheme)),
                                     {"type": "init", "code": "OK"}, scheme)
                    await self.pub("A", json.dumps(scheme))
                    await self.assert_next(ws, event_text("A", json.dumps(scheme)))
                finally:
                    await ws.close()
        run(go())

    def test_every_error_in_turn_on_one_connection_then_ok(self):
        b, _ = self.pair()

        async def go():
            ws = await ws_connect(b.port)
            try:
                for message, code in [
                    ("nope", "INVALID_SYNTAX"),
                    (json.dumps({"authentication": f"Basic {self.token}"}), "INVALID_EVENTS_MISSING"),
                    (init_text(self.token, ["C"], scheme="Bearer"), "AUTH_UNRECOGNIZED_SCHEME"),
                    (init_text(new_token(), ["C"]), "UNAUTHENTICATED"),
                ]:
                    self.assertEqual(await init_reply(ws, message), {"type": "init", "code": code})
                await self.assert_good_init_after_error(ws, "four errors")
            finally:
                await ws.close()
        run(go())

    # -- routing --

    def test_subscribed_types_a_and_b_are_delivered_and_c_is_not(self):
        b, _ = self.pair()

        async def go():
            ws = await ws_subscribe(b.port, self.token, ["A", "B"])
            try:
                await self.pub("A", '"a1"')
                await self.pub("B", '"b1"')
                await self.pub("C", '"c1"')
                await self.pub("B", '"b2"')
                await self.pub("C", '"c2"')
                await self.pub("A", '"marker"')
                for expected in [event_text("A", '"a1"'), event_text("B", '"b1"'),
                                 event_text("B", '"b2"'), event_text("A", '"marker"')]:
                    await self.assert_next(ws, expected)
            finally:
                await ws.close()
        run(go())

    def test_event_types_match_exactly_not_by_prefix_or_case(self):
        b, _ = self.pair()

        async def go():
            ws = await ws_subscribe(b.port, self.token, ["order"])
            try:
                for other in ("orders", "orde", "Order", "ORDER", "order "):
                    await self.pub(other, '"wrong"')
                await self.pub("order", '"right"')
                await self.assert_next(ws, event_text("order", '"right"'))
            finally:
                await ws.close()
        run(go())

    def test_unicode_escaped_and_255_byte_types_route_by_their_decoded_text(self):
        b, _ = self.pair()
        long_type = "t" * 252 + "漢"  # 255 bytes of UTF-8
        self.assertEqual(len(long_type.encode("utf-8")), 255)

        async def go():
            # The init names the types with JSON escapes; the publishes
            # name them raw (and the other way round): both sides decode.
            ws = await ws_connect(b.port)
            try:
                init = ('{"authentication":"Basic ' + self.token + '","events":'
                        '["caf\\u00e9","q\\"b\\\\s","\\ud83d\\ude00",' + json.dumps(long_type) + ']}')
                self.assertEqual(await init_reply(ws, init), {"type": "init", "code": "OK"})
                status, body = await self.pub_raw('{"event":"café","data":1}')
                self.assertEqual((status, body), (200, {"code": "OK"}))
                await self.assert_next(ws, '{"type":"event","event":"café","data":1}')
                status, body = await self.pub_raw('{"event":"q\\"b\\\\s","data":2}')
                self.assertEqual((status, body), (200, {"code": "OK"}))
                await self.assert_next(ws, '{"type":"event","event":"q\\"b\\\\s","data":2}')
                status, body = await self.pub_raw('{"event":"😀","data":3}')
                self.assertEqual((status, body), (200, {"code": "OK"}))
                await self.assert_next(ws, '{"type":"event","event":"😀","data":3}')
                status, body = await self.pub_raw('{"event":"\\u00e9","data":4}')  # not subscribed
                self.assertEqual((status, body), (200, {"code": "OK"}))
                await self.pub(long_type, "5")
                await self.assert_next(ws, event_text(long_type, "5").replace(
                    json.dumps(long_type), '"' + long_type + '"'))
            finally:
                await ws.close()
        run(go())

    def test_later_init_adds_types_without_duplicates(self):
        b, _ = self.pair()

        async def go():
            ws = await ws_subscribe(b.port, self.token, ["A"])
            try:
                await self.pub("B", '"b before"')
                self.assertEqual(await init_reply(ws, init_text(self.token, ["A", "B"])),
                                 {"type": "init", "code": "OK"})
                self.assertEqual(await init_reply(ws, init_text(self.token, ["A", "A"])),
                                 {"type": "init", "code": "OK"})
                expected = []
                for i in range(3):
                    await self.pub("A", str(i))
                    expected.append(event_text("A", str(i)))
                await self.pub("B", '"b after"')
                expected.append(event_text("B", '"b after"'))
                await self.pub("C", '"c"')
                await self.pub("A", '"marker"')
                expected.append(event_text("A", '"marker"'))
                for e in expected:
                    await self.assert_next(ws, e)
            finally:
                await ws.close()
        run(go())

    def test_nothing_is_delivered_before_the_init_ok(self):
        b, _ = self.pair()

        async def go():
            ws = await ws_connect(b.port)
            failed = await ws_connect(b.port)
            try:
                # A failed init (wrong token) for A must not subscribe either.
                self.assertEqual(await init_reply(failed, init_text(new_token(), ["A"])),
                                 {"type": "init", "code": "UNAUTHENTICATED"})
                for i in range(5):
                    await self.pub("A", f'"before {i}"')
                self.assertEqual(await init_reply(ws, init_text(self.token, ["A"])),
                                 {"type": "init", "code": "OK"})
                await self.pub("A", '"marker"')
                await self.assert_next(ws, event_text("A", '"marker"'))
                # The failed connection is still open and subscribed to nothing.
                self.assertEqual(await init_reply(failed, init_text(self.token, ["B"])),
                                 {"type": "init", "code": "OK"})
                await self.pub("B", '"b marker"')
                await self.assert_next(failed, event_text("B", '"b marker"'))
            finally:
                await ws.close()
                await failed.close()
        run(go())

    # -- the event message --

    def test_event_message_is_byte_exact_for_every_json_kind_and_unicode(self):
        b, _ = self.pair()
        data_texts = [
            ("object with inner blanks", '{"k" : "v",  "n":[1, 2.50, {"x":null}], "e":{}}'),
            ("array", '[1,"two",3.0,[],{},true,false,null]'),
            ("string", '"a string with \\"quotes\\", \\\\ and \\/"'),
            ("big integer", "12345678901234567890"),
            ("long fraction", "0.1000000000000000055511151231257827"),
            ("negative exponent", "-1.5E+300"),
            ("zero", "0"),
            ("true", "true"),
            ("false", "false"),
            ("null", "null"),
            ("emoji and CJK raw", '"😀 🎉 漢字 中文 日本語 한국어 é"'),
            ("escapes kept as written", '"\\u00e9\\ud83d\\ude00\\u6f22\\n\\t\\r\\b\\f\\u0000"'),
            ("unicode in object keys", '{"ключ":"значение","键":["值",{"🔑":1}]}'),
            ("absent data", None),
        ]

        async def go():
            ws = await ws_subscribe(b.port, self.token, ["A"])
            try:
                for label, text in data_texts:
                    with self.subTest(label):
                        await self.pub("A", text)
                        got = await recv_text(ws)
                        self.assertEqual(got.encode("utf-8"), event_text("A", text).encode("utf-8"))
                # data before event in the body: the message still has event then data.
                status, body = await self.pub_raw('{"data":[3, 2,1],"event":"A"}')
                self.assertEqual((status, body), (200, {"code": "OK"}))
                await self.assert_next(ws, '{"type":"event","event":"A","data":[3, 2,1]}')
            finally:
                await ws.close()
        run(go())

    def check_large_payload(self, size):
        b, _ = self.pair(listen_args=("--max-body-size", "4M"))
        # A JSON string of exactly `size` bytes of text, with multi-byte
        # characters and escapes spread through it, padded with "x".
        unit = r'abcdefghijklmnopqrstuvwxyz0123456789 \u00e9\u6f22 é漢😀 \"\\\n-'
        unit_len = len(unit.encode("utf-8"))
        inner = unit * ((size - 2) // unit_len)
        inner += "x" * (size - 2 - len(inner.encode("utf-8")))
        text = '"' + inner + '"'
        json.loads(text)  # the test's own payload must be valid JSON
        self.assertEqual(len(text.encode("utf-8")), size)
        expected = event_text("big", text)

        async def go():
            ws = await ws_subscribe(b.port, self.token, ["big"])
            try:
                await self.pub("big", text)
                await self.pub("big", '"after"')
                got = await recv_text(ws, timeout=30)
                self.assertEqual(len(got.encode("utf-8")), len(expected.encode("utf-8")))
                self.assertTrue(got == expected, "large payload differs from what was published")
                await self.assert_next(ws, event_text("big", '"after"'))
            finally:
                await ws.close()
        run(go())

    def test_64_kib_payload_arrives_byte_exact(self):
        self.check_large_payload(64 * 1024)

    def test_1_mib_payload_arrives_byte_exact(self):
        self.check_large_payload(1024 * 1024)

    def test_events_published_one_after_another_arrive_in_order(self):
        b, _ = self.pair()
        n = 300

        async def go():
            ws = await ws_subscribe(b.port, self.token, ["A", "B"])
            try:
                async def reader():
                    return [await recv_text(ws) for _ in range(n)]
                task = asyncio.create_task(reader())
                expected = []
                for i in range(n):
                    t = "A" if i % 3 else "B"
                    await self.pub(t, json.dumps({"seq": i}))
                    expected.append(event_text(t, json.dumps({"seq": i})))
                self.assertEqual(await task, expected)
            finally:
                await ws.close()
        run(go())

    # -- HTTP answers and the opening handshake --

    def test_plain_get_is_426_upgrade_required_and_healthz_is_200(self):
        b, _ = self.pair()
        status, body, headers = http_request(b.port, "GET", "/")
        self.assertEqual(status, 426)
        self.assertEqual(body, {"code": "UPGRADE_REQUIRED"})
        self.assertEqual(headers.get("Content-Type"), "application/json")
        status, body, _ = http_request(b.port, "GET", "/some/path?x=1")
        self.assertEqual((status, body), (426, {"code": "UPGRADE_REQUIRED"}))
        status, body, headers = http_request(b.port, "GET", "/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(body, {"code": "OK"})
        self.assertEqual(headers.get("Content-Type"), "application/json")

    def test_bad_handshakes_get_400_with_a_json_reason(self):
        b, _ = self.pair()
        p = b.port
        cases = [
            ("version 8", handshake_request(path="/chat", version="8"), "Version"),
            ("version missing", handshake_request(path="/chat", version=None), "Version"),
            ("key missing", handshake_request(path="/chat", key=None), "Sec-WebSocket-Key"),
            ("key is base64 of 14 bytes", handshake_request(path="/chat", key=base64.b64encode(b"14 bytes here!").decode()),
             "Sec-WebSocket-Key"),
            ("key is base64 of 17 bytes", handshake_request(path="/chat", key=base64.b64encode(b"x" * 17).decode()),
             "Sec-WebSocket-Key"),
            ("key is not base64", handshake_request(path="/chat", key="!!!!not*base64*at*all!=="), "Sec-WebSocket-Key"),
            ("POST with Upgrade", handshake_request(path="/chat", method="POST", extra="Content-Length: 0\r\n"), "GET"),
        ]
        for label, request, reason_word in cases:
            with self.subTest(label):
                status, headers, body, _ = raw_exchange(p, request)
                self.assertEqual(status, 400, body)
                self.assertEqual(headers.get("content-type"), "application/json")
                parsed = json.loads(body)
                self.assertEqual(parsed.get("code"), "BAD_HANDSHAKE", parsed)
                self.assertIsInstance(parsed.get("reason"), str)
                self.assertIn(reason_word, parsed["reason"])
                if reason_word == "Version":
                    self.assertEqual(headers.get("sec-websocket-version"), "13")
        self.assertTrue(b.running())

        async def still_serves():
            ws = await ws_subscribe(p, self.token, ["A"])
            await self.pub("A", "1")
            await self.assert_next(ws, event_text("A", "1"))
            await ws.close()
        run(still_serves())

    def test_handshake_accept_key_is_rfc_6455_sample(self):
        b, _ = self.pair()
        # The test's own arithmetic first: RFC 6455 §1.3's worked example.
        self.assertEqual(base64.b64encode(hashlib.sha1((SAMPLE_KEY + WS_GUID).encode()).digest()).decode(),
                         RFC_SAMPLE_ACCEPT)
        with socket.create_connection(("127.0.0.1", b.port), timeout=10 * TIME_SCALE) as sock:
            sock.sendall(handshake_request(path="/chat"))
            status, headers, _, _ = read_http_response(sock)
        self.assertEqual(status, 101)
        self.assertEqual(headers.get("upgrade", "").lower(), "websocket")
        self.assertEqual(headers.get("connection", "").lower(), "upgrade")
        self.assertEqual(headers.get("sec-websocket-accept"), RFC_SAMPLE_ACCEPT)

        key = base64.b64encode(os.urandom(16)).decode()
        with socket.create_connection(("127.0.0.1", b.port), timeout=10 * TIME_SCALE) as sock:
            sock.sendall(handshake_request(path="/chat", key=key))
            status, headers, _, _ = read_http_response(sock)
        self.assertEqual(status, 101)
        self.assertEqual(headers.get("sec-websocket-accept"),
                         base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode())

    def test_handshake_variants_clients_send_are_accepted_on_any_path(self):
        b, _ = self.pair()
        p = b.port
        base = handshake_request(path="/chat")
        variants = [
            ("Connection: keep-alive, Upgrade", base.replace(b"Connection: Upgrade",
                                                             b"Connection: keep-alive, Upgrade")),
            ("lower-case names, mixed-case values",
             base.replace(b"Upgrade: websocket", b"upgrade: WebSocket")
                 .replace(b"Connection: Upgrade", b"connection: upgrade")
                 .replace(b"Sec-WebSocket-Key", b"sec-websocket-key")),
            ("path with a query", base.replace(b"/chat", b"/any/path?x=1")),
            ("blanks around the key", base.replace(b"Key: " + SAMPLE_KEY.encode(),
                                                   b"Key:   " + SAMPLE_KEY.encode() + b"  ")),
        ]
        for label, request in variants:
            with self.subTest(label):
                status, headers, _, _ = raw_exchange(p, request)
                self.assertEqual(status, 101)
                self.assertEqual(headers.get("sec-websocket-accept"), RFC_SAMPLE_ACCEPT)
        status, headers, body, _ = raw_exchange(p, base.replace(b"HTTP/1.1", b"HTTP/1.0"))
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(body).get("code"), "BAD_HANDSHAKE")

    def test_handshake_and_init_sent_one_byte_per_segment_work(self):
        b, _ = self.pair()
        request = handshake_request(path="/chat") + encode_frame(OP_TEXT, init_text(self.token, ["A"]))
        with socket.create_connection(("127.0.0.1", b.port), timeout=10 * TIME_SCALE) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(len(request)):
                sock.sendall(request[i:i + 1])
                time.sleep(0.0005)  # creates the situation: one byte per TCP segment
            status, _, _, pending = read_http_response(sock)
            self.assertEqual(status, 101)
            frames = RawWS(sock=sock, pending=pending)
            f = frames.recv_frame()
            self.assertEqual((f.fin, f.opcode, f.payload), (True, OP_TEXT, b'{"type":"init","code":"OK"}'))
            self.publisher.post("A", "[1]")
            f = frames.recv_frame()
            self.assertEqual((f.fin, f.opcode, f.payload), (True, OP_TEXT, event_text("A", "[1]").encode()))

    def test_init_frame_pipelined_with_the_handshake_works(self):
        b, _ = self.pair()
        with socket.create_connection(("127.0.0.1", b.port), timeout=10 * TIME_SCALE) as sock:
            sock.sendall(handshake_request(path="/chat") + encode_frame(OP_TEXT, init_text(self.token, ["A"])))
            status, headers, _, pending = read_http_response(sock)
            self.assertEqual(status, 101)
            self.assertEqual(headers.get("sec-websocket-accept"), RFC_SAMPLE_ACCEPT)
            frames = RawWS(sock=sock, pending=pending)
            f = frames.recv_frame()
            self.assertEqual((f.fin, f.opcode, f.payload), (True, OP_TEXT, b'{"type":"init","code":"OK"}'))
            self.publisher.post("A", '{"pipelined":true}')
            f = frames.recv_frame()
            self.assertEqual((f.fin, f.opcode, f.payload), (True, OP_TEXT, event_text("A", '{"pipelined":true}').encode()))

    # -- tokens --

    def test_rotated_token_works_for_a_new_init_within_a_second(self):
        b, l = self.pair()
        old, fresh = self.token, new_token()

        async def init_code(token):
            ws = await ws_connect(b.port)
            try:
                return (await init_reply(ws, init_text(token, ["A"])))["code"]
            finally:
                await ws.close()

        async def go():
            self.assertEqual(await init_code(old), "OK")
            self.assertEqual(await init_code(fresh), "UNAUTHENTICATED")
            self.write_tokens([fresh])
            written = time.monotonic()
            deadline = written + 1.0 * TIME_SCALE
            while await init_code(fresh) != "OK":
                self.assertLess(time.monotonic(), deadline, "new token not accepted within a second")
            # The old token is gone from the same file version.
            self.assertEqual(await init_code(old), "UNAUTHENTICATED")
            # A subscriber using the new token receives events.
            ws = await ws_subscribe(b.port, fresh, ["A"])
            try:
                self.publisher.token = fresh
                # The listen daemon reloads on its own schedule; wait for it
                # by publishing until accepted.
                deadline = time.monotonic() + 2.0 * TIME_SCALE
                while True:
                    status, body = await self.pub_raw(event_body("A", '"rotated"'))
                    if status == 200:
                        break
                    self.assertEqual((status, body), (403, {"code": "UNAUTHENTICATED"}))
                    self.assertLess(time.monotonic(), deadline, "listen daemon kept the old token")
                await self.assert_next(ws, event_text("A", '"rotated"'))
            finally:
                await ws.close()
        run(go())


if __name__ == "__main__":
    unittest.main()
