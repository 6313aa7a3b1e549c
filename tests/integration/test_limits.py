"""Broadcast daemon limits and hostile WebSocket clients.

Every test starts the real daemons (broadcast and listen) with small limits,
provokes one limit or one protocol violation with a real client (Debian's
python3-websockets, or a raw socket where a violation must be sent), checks
the exact outcome (close code, HTTP status, log line), and then proves that
the daemon still serves others: a fresh subscriber receives a freshly
published event.
"""

import asyncio
import http.client
import json
import os
import secrets
import select
import socket
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib import harness  # noqa: E402
from lib.harness import TIME_SCALE, publish, run, wait_for, ws_connect, ws_recv_json, ws_subscribe  # noqa: E402
from lib.metrics import metric, wait_metric  # noqa: E402
from lib.rawws import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawWS,  # noqa: E402
                       close_payload, encode_frame, handshake_request)

# --- helpers ------------------------------------------------------------------------------------

def fresh_type():
    return "t-" + secrets.token_hex(4)


def closes(port, reason):
    return metric(port, f'evs_broadcast_closes_total{{reason="{reason}"}}')


class KeepAlivePublisher:
    """Publishes over one keep-alive HTTP connection (http.client)."""

    def __init__(self, port, token):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30 * TIME_SCALE)
        self.token = token

    def publish(self, event, data):
        body = json.dumps({"event": event, "data": data})
        self.conn.request("POST", "/event", body=body,
                          headers={"Authorization": f"Basic {self.token}",
                                   "Content-Type": "application/json"})
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read())

    def close(self):
        self.conn.close()


class LimitsCase(harness.ServiceCase):

    def assert_still_serving(self, b, l):
        """A fresh subscriber on a fresh type gets a freshly published event."""
        kind = fresh_type()

        async def go():
            ws = await ws_subscribe(b.port, self.token, [kind])
            try:
                status, body = await asyncio.to_thread(publish, l.port, kind, {"alive": kind}, self.token)
                self.assertEqual((status, body), (200, {"code": "OK"}))
                self.assertEqual(await ws_recv_json(ws), {"type": "event", "event": kind, "data": {"alive": kind}})
            finally:
                await ws.close()

        run(go())
        self.assertTrue(b.running(), b.log())
        self.assertTrue(l.running(), l.log())

    def raw_subscriber(self, port, events, rcvbuf=None):
        raw = RawWS(port, rcvbuf=rcvbuf).handshake()
        self.addCleanup(raw.close)
        self.assertEqual(raw.init(self.token, events), {"type": "init", "code": "OK"})
        return raw

    # --- init rate ------------------------------------------------------------------------------

    def test_more_than_32_inits_at_once_close_the_session_with_1008_after_answering_32(self):
        b, l = self.start_pair()
        raw = RawWS(b.port).handshake()
        self.addCleanup(raw.close)
        kinds = [fresh_type() for _ in range(40)]
        raw.send(b"".join(encode_frame(OP_TEXT, json.dumps({"authentication": f"Basic {self.token}",
                                                              "events": [k]}))
                          for k in kinds))
        frames = raw.wait_eof()
        self.assertEqual([f.json() for f in frames if f.opcode == OP_TEXT],
                         [{"type": "init", "code": "OK"}] * 32)
        self.assertEqual([f.close_code for f in frames if f.opcode == OP_CLOSE], [1008])
        self.assertEqual(closes(b.port, "init_rate"), 1)
        self.assertEqual(metric(b.port, "evs_broadcast_subscriptions"), 0)
        self.assert_still_serving(b, l)

    def test_a_1024_type_re_init_holds_each_type_once(self):
        b, l = self.start_pair()
        kinds = [f"type.{i:04d}" for i in range(1024)]

        async def go():
            ws = await ws_subscribe(b.port, self.token, kinds)
            try:
                for events in (kinds, list(reversed(kinds)), kinds[:512] + kinds[:512]):
                    await ws.send(json.dumps({"authentication": f"Basic {self.token}", "events": events}))
                    self.assertEqual(await ws_recv_json(ws), {"type": "init", "code": "OK"})
                    self.assertEqual(metric(b.port, "evs_broadcast_subscriptions"), 1024)
                # One more type passes MAX_SUBSCRIPTIONS; a repeated one does not.
                await ws.send(json.dumps({"authentication": f"Basic {self.token}",
                                          "events": ["type.0001", "type.extra"]}))
                self.assertEqual(await ws_recv_json(ws), {"type": "init", "code": "TOO_MANY_EVENTS"})
                status, body = await asyncio.to_thread(publish, l.port, "type.0007", 7, self.token)
                self.assertEqual((status, body), (200, {"code": "OK"}))
                self.assertEqual(await ws_recv_json(ws), {"type": "event", "event": "type.0007", "data": 7})
            finally:
                await ws.close()
        run(go())

    # --- init timeout ---------------------------------------------------------------------------

    def test_connection_without_init_is_closed_1008_at_init_timeout(self):
        b, l = self.start_pair(broadcast_args=["--init-timeout-ms", "500"])

        async def go():
            ws = await ws_connect(b.port)
            t0 = time.monotonic()
            await asyncio.wait_for(ws.wait_closed(), 5 * TIME_SCALE)
            return ws.close_code, time.monotonic() - t0

        code, elapsed = run(go())
        self.assertEqual(code, 1008)
        self.assertGreaterEqual(elapsed, 0.4)
        b.wait_log("no successful init within 500 ms: closing (1008)")
        self.assertEqual(closes(b.port, "init_timeout"), 1)
        self.assert_still_serving(b, l)

    def test_connection_with_failed_init_is_still_closed_1008_at_init_timeout(self):
        b, l = self.start_pair(broadcast_args=["--init-timeout-ms", "500"])

        async def go():
            ws = await ws_connect(b.port)
            t0 = time.monotonic()
            await ws.send(json.dumps({"authentication": "Basic not-a-valid-token-at-all", "events": ["a"]}))
            reply = await ws_recv_json(ws)
            await asyncio.wait_for(ws.wait_closed(), 5 * TIME_SCALE)
            return reply, ws.close_code, time.monotonic() - t0

        reply, code, elapsed = run(go())
        self.assertEqual(reply, {"type": "init", "code": "UNAUTHENTICATED"})
        self.assertEqual(code, 1008)
        self.assertGreaterEqual(elapsed, 0.4)
        self.assertEqual(closes(b.port, "init_timeout"), 1)
        self.assertEqual(metric(b.port, 'evs_broadcast_inits_total{result="rejected"}'), 1)
        self.assert_still_serving(b, l)

    def test_connection_with_successful_init_outlives_the_init_timeout(self):
        b, l = self.start_pair(broadcast_args=["--init-timeout-ms", "500"])
        kind = fresh_type()

        async def go():
            good = await ws_subscribe(b.port, self.token, [kind])
            # Opened after the good one: once it is closed by the timeout, the
            # good one's own deadline has passed too.
            late = await ws_connect(b.port)
            await asyncio.wait_for(late.wait_closed(), 5 * TIME_SCALE)
            self.assertEqual(late.close_code, 1008)
            self.assertFalse(good.closed)
            status, body = await asyncio.to_thread(publish, l.port, kind, [1, 2], self.token)
            self.assertEqual((status, body), (200, {"code": "OK"}))
            self.assertEqual(await ws_recv_json(good), {"type": "event", "event": kind, "data": [1, 2]})
            self.assertFalse(good.closed)
            await good.close()

        run(go())
        self.assert_still_serving(b, l)

    # --- message size ---------------------------------------------------------------------------

    def test_client_message_over_max_message_size_is_closed_1009(self):
        b, l = self.start_pair(broadcast_args=["--max-message-size", "1024"])

        def init_of_size(n):
            base = {"authentication": f"Basic {self.token}", "events": ["m"], "pad": ""}
            base["pad"] = "x" * (n - len(json.dumps(base)))
            text = json.dumps(base)
            self.assertEqual(len(text), n)
            return text

        async def go():
            ws = await ws_connect(b.port)
            await ws.send(init_of_size(1024))  # exactly at the limit: accepted
            self.assertEqual(await ws_recv_json(ws), {"type": "init", "code": "OK"})
            await ws.send(init_of_size(1025))
            await asyncio.wait_for(ws.wait_closed(), 5 * TIME_SCALE)
            return ws.close_code

        self.assertEqual(run(go()), 1009)
        b.wait_log("closed by the server with 1009 (message too big)")
        self.assertEqual(closes(b.port, "message_too_big"), 1)
        self.assert_still_serving(b, l)

    # --- slow consumer --------------------------------------------------------------------------

    def test_subscriber_that_stops_reading_is_cut_off_while_another_gets_every_event(self):
        close_timeout_ms = 1500
        b, l = self.start_pair(broadcast_args=["--max-backlog", "65536", "--log-level", "debug",
                                               "--close-timeout-ms", str(close_timeout_ms)])
        kind = fresh_type()
        slow = self.raw_subscriber(b.port, [kind], rcvbuf=4096)  # handshake, init, then never reads
        payload = "x" * 4096
        max_events = 4000  # 16 MiB: far past 64 KiB plus any kernel buffering

        # Once the cut-off shows in the log the slow one starts reading, at
        # once and beside the publisher: what the server queued before the
        # cut-off, a close 1013, and then (it never answers the close) the
        # end of the connection after the close timeout. Reading any later
        # would race that timeout, which discards what is still unsent.
        slow_seen = {}

        def drain_slow():
            frames = []
            while True:
                frame = slow.recv_frame(timeout=10)
                if frame is None:
                    break
                frames.append(frame)
                if frame.opcode == OP_CLOSE:
                    break
            slow_seen["frames"] = frames
            if frames and frames[-1].opcode == OP_CLOSE:
                slow_seen["after_close"] = slow.wait_eof(timeout=close_timeout_ms / 1000 + 5)
                slow_seen["eof_at"] = time.monotonic()

        slow_reader = threading.Thread(target=drain_slow)

        def publish_until_cut_off():
            pub = KeepAlivePublisher(l.port, self.token)
            statuses, sent, extra = [], 0, None
            cut_seen = None
            try:
                for i in range(max_events):
                    statuses.append(pub.publish(kind, {"i": i, "p": payload}))
                    sent += 1
                    if extra is None and i % 8 == 7 and "slow consumer" in b.log():
                        cut_seen = time.monotonic()
                        slow_reader.start()
                        extra = 50  # a few more once the slow one is gone
                    if extra is not None:
                        extra -= 1
                        if extra == 0:
                            break
            finally:
                pub.close()
            return statuses, sent, cut_seen

        async def go():
            fast = await ws_subscribe(b.port, self.token, [kind])
            publisher = asyncio.ensure_future(asyncio.to_thread(publish_until_cut_off))
            received = []
            while True:
                try:
                    msg = await asyncio.wait_for(fast.recv(), 0.5 * TIME_SCALE)
                except asyncio.TimeoutError:
                    if publisher.done():
                        break
                    continue
                received.append(json.loads(msg))
            statuses, sent, cut_seen = await publisher
            await fast.close()
            return statuses, sent, received, cut_seen

        statuses, sent, received, cut_seen = run(go(), timeout=120)
        self.assertIn("slow consumer", b.log(), f"no slow-consumer cut-off after {sent} events of 4 KiB")
        self.assertEqual(statuses, [(200, {"code": "OK"})] * sent)
        self.assertEqual(len(received), sent)
        for i, msg in enumerate(received):
            self.assertEqual(msg, {"type": "event", "event": kind, "data": {"i": i, "p": payload}})
        b.wait_log(f"ws 127.0.0.1:{slow.local_port}: slow consumer, over 65536 bytes unsent: closing (1013)")
        self.assertEqual(closes(b.port, "slow_consumer"), 1)

        self.assertIsNotNone(cut_seen)
        slow_reader.join(timeout=(close_timeout_ms / 1000 + 20) * TIME_SCALE)
        self.assertFalse(slow_reader.is_alive(), "the slow subscriber's connection never ended")
        frames = slow_seen["frames"]
        self.assertTrue(frames and frames[-1].opcode == OP_CLOSE, "connection ended without a close frame")
        self.assertEqual(frames[-1].close_code, 1013)
        events = [f.json() for f in frames[:-1] if f.opcode == OP_TEXT]
        self.assertGreater(len(events), 0)
        self.assertLess(len(events), sent)
        self.assertEqual(events, received[:len(events)])
        # What it got before the close is all that was queued for it: the
        # 64 KiB backlog, at most 128 KiB unsent in the kernel and its small
        # receive window; not the megabytes a kernel buffers unasked.
        queued = sum(len(f.payload) for f in frames[:-1])
        self.assertLess(queued, 64 * 1024 + 128 * 1024 + 128 * 1024, f"{len(events)} events were queued")
        self.assertEqual(slow_seen["after_close"], [])
        # Not before the close timeout (counted from when the cut-off was seen in the log).
        self.assertGreater(slow_seen["eof_at"] - cut_seen, close_timeout_ms / 1000 * 0.8)
        b.wait_log(f"ws 127.0.0.1:{slow.local_port}: close not completed in time: dropped")
        self.assert_still_serving(b, l)

    # --- ping -----------------------------------------------------------------------------------

    def test_ping_answering_clients_stay_and_silent_half_open_peer_is_dropped_after_two_intervals(self):
        interval = 0.3
        b, l = self.start_pair(broadcast_args=["--ping-interval-ms", "300"])
        kind = fresh_type()

        async def go():
            ws = await ws_subscribe(b.port, self.token, [kind])  # python-websockets answers pings itself
            answering = await asyncio.to_thread(self.raw_subscriber, b.port, [kind])
            silent = await asyncio.to_thread(self.raw_subscriber, b.port, [kind])
            silent_since = time.monotonic()

            def count_pings(n):
                pings = 0
                while pings < n:
                    frame = answering.recv_frame(timeout=5)
                    self.assertIsNotNone(frame, "ping-answering client was disconnected")
                    self.assertEqual(frame.opcode, OP_PING)
                    answering.send_frame(OP_PONG, frame.payload)
                    pings += 1

            # The silent peer neither reads nor answers; the server counts it when it drops it
            # (that it was this one: its EOF below, while the other two stay).
            def wait_dropped():
                wait_metric(b.port, 'evs_broadcast_closes_total{reason="ping_timeout"}', 1)
                return time.monotonic()

            dropped = asyncio.ensure_future(asyncio.to_thread(wait_dropped))
            await asyncio.to_thread(count_pings, 6)  # six intervals, all answered
            dropped_at = await dropped
            return ws, answering, silent, dropped_at - silent_since

        async def after(ws, answering):
            self.assertFalse(ws.closed)
            status, body = await asyncio.to_thread(publish, l.port, kind, "still here", self.token)
            self.assertEqual((status, body), (200, {"code": "OK"}))
            self.assertEqual(await ws_recv_json(ws), {"type": "event", "event": kind, "data": "still here"})
            frame = await asyncio.to_thread(answering.recv_data_frame, 5, True)
            self.assertIsNotNone(frame)
            self.assertEqual(frame.json(), {"type": "event", "event": kind, "data": "still here"})
            await ws.close()

        async def whole():
            ws, answering, silent, elapsed = await go()
            await after(ws, answering)
            return silent, elapsed

        silent, elapsed = run(whole())
        # First ping at the next tick (within one interval), drop at the tick after.
        self.assertGreaterEqual(elapsed, interval * 0.8)
        self.assertLessEqual(elapsed, 2 * interval + 1.0 * TIME_SCALE)
        frames = silent.wait_eof(timeout=5)
        self.assertTrue(all(f.opcode == OP_PING for f in frames), frames)
        self.assertEqual(closes(b.port, "ping_timeout"), 1)
        self.assert_still_serving(b, l)

    # --- frames ---------------------------------------------------------------------------------

    def test_init_sent_as_binary_message_gets_init_reply_and_subscribes(self):
        b, l = self.start_pair()
        kind = fresh_type()

        async def go():
            ws = await ws_connect(b.port)
            await ws.send(json.dumps({"authentication": f"Basic {self.token}", "events": [kind]}).encode())
            reply = await ws_recv_json(ws)
            status, body = await asyncio.to_thread(publish, l.port, kind, {"bin": True}, self.token)
            event = await ws_recv_json(ws)
            await ws.close()
            return reply, (status, body), event

        reply, result, event = run(go())
        self.assertEqual(reply, {"type": "init", "code": "OK"})
        self.assertEqual(result, (200, {"code": "OK"}))
        self.assertEqual(event, {"type": "event", "event": kind, "data": {"bin": True}})
        self.assert_still_serving(b, l)

    def test_binary_message_that_is_not_utf8_gets_invalid_syntax_and_stays_open(self):
        b, l = self.start_pair()
        raw = RawWS(b.port).handshake()
        self.addCleanup(raw.close)
        raw.send_frame(OP_BINARY, b"\xff\xfe\x00garbage")
        frame = raw.recv_data_frame()
        self.assertIsNotNone(frame)
        self.assertEqual(frame.opcode, OP_TEXT)
        self.assertEqual(frame.json(), {"type": "init", "code": "INVALID_SYNTAX"})
        self.assertEqual(raw.init(self.token, ["x"]), {"type": "init", "code": "OK"})
        self.assert_still_serving(b, l)

    def test_fragmented_init_with_interleaved_ping_is_reassembled_and_answered(self):
        b, l = self.start_pair()
        kind = fresh_type()
        raw = RawWS(b.port).handshake()
        self.addCleanup(raw.close)
        text = json.dumps({"authentication": f"Basic {self.token}", "events": [kind]}).encode()
        a, c = len(text) // 3, 2 * len(text) // 3
        raw.send_frame(OP_TEXT, text[:a], fin=False)
        raw.send_frame(OP_PING, b"mid")  # control frames may come between fragments
        raw.send_frame(OP_CONT, text[a:c], fin=False)
        raw.send_frame(OP_CONT, text[c:], fin=True)
        pong = raw.recv_frame()
        self.assertIsNotNone(pong)
        self.assertEqual((pong.opcode, pong.payload), (OP_PONG, b"mid"))
        reply = raw.recv_frame()
        self.assertIsNotNone(reply)
        self.assertEqual((reply.fin, reply.opcode), (True, OP_TEXT))
        self.assertEqual(reply.json(), {"type": "init", "code": "OK"})
        status, body = publish(l.port, kind, "frag", self.token)
        self.assertEqual((status, body), (200, {"code": "OK"}))
        event = raw.recv_data_frame()
        self.assertEqual(event.json(), {"type": "event", "event": kind, "data": "frag"})
        self.assert_still_serving(b, l)

    def test_unmasked_client_frame_is_closed_1002(self):
        b, l = self.start_pair(broadcast_args=["--close-timeout-ms", "500"])
        raw = RawWS(b.port).handshake()
        self.addCleanup(raw.close)
        raw.send_frame(OP_TEXT, json.dumps({"authentication": f"Basic {self.token}", "events": ["u"]}),
                       mask=False)
        frame = raw.recv_data_frame()
        self.assertIsNotNone(frame, "connection ended without a close frame")
        self.assertEqual(frame.opcode, OP_CLOSE)
        self.assertEqual(frame.close_code, 1002)
        self.assertEqual(raw.wait_eof(timeout=5), [])
        b.wait_log("closed by the server with 1002 (protocol error)")
        self.assert_still_serving(b, l)

    def test_invalid_utf8_in_text_frame_is_closed_1007(self):
        b, l = self.start_pair(broadcast_args=["--close-timeout-ms", "500"])
        raw = RawWS(b.port).handshake()
        self.addCleanup(raw.close)
        raw.send_frame(OP_TEXT, b'{"authentication": "Basic \xff\xfe", "events": ["u"]}')
        frame = raw.recv_data_frame()
        self.assertIsNotNone(frame, "connection ended without a close frame")
        self.assertEqual(frame.opcode, OP_CLOSE, frame)
        self.assertEqual(frame.close_code, 1007)
        self.assertEqual(raw.wait_eof(timeout=5), [])
        self.assert_still_serving(b, l)

    # --- failing the connection (RFC 6455 §7.1.7) -----------------------------------------------
    # A close the server sends because the client broke the protocol (1002, 1007, 1009) ends the
    # TCP connection as soon as the close frame is written: the client is not waited for. These
    # run with a close timeout of 60 s, and each EOF must come within a few seconds.

    FAIL_CLOSE_TIMEOUT_MS = "60000"

    def assert_failed_at_once(self, raw, code):
        """The next frame is a close with code, and the connection ends right after it."""
        t0 = time.monotonic()
        frame = raw.recv_data_frame(timeout=5)
        self.assertIsNotNone(frame, "connection ended without a close frame")
        self.assertEqual((frame.opcode, frame.close_code), (OP_CLOSE, code), frame)
        try:
            rest = raw.wait_eof(timeout=5)
        except socket.timeout:
            self.fail(f"no EOF within {5 * TIME_SCALE:.0f} s of close {code}: the server waits for "
                      "a close frame instead of closing the connection")
        self.assertEqual(rest, [])
        return time.monotonic() - t0

    def test_frame_announcing_2_to_the_62_bytes_gets_1009_then_eof_long_before_the_close_timeout(self):
        b, l = self.start_pair(broadcast_args=["--close-timeout-ms", self.FAIL_CLOSE_TIMEOUT_MS])
        raw = self.raw_subscriber(b.port, [fresh_type()])
        raw.send(struct.pack("!BBQ", 0x80 | OP_TEXT, 0x80 | 127, 1 << 62) + os.urandom(4))
        elapsed = self.assert_failed_at_once(raw, 1009)
        self.assertLess(elapsed, 5 * TIME_SCALE)
        b.wait_log("closed by the server with 1009 (message too big), a frame of "
                   f"{1 << 62} bytes announced")
        self.assertEqual(closes(b.port, "message_too_big"), 1)
        self.assertEqual(metric(b.port, "evs_broadcast_sessions"), 0)
        self.assert_still_serving(b, l)

    def test_control_frame_over_125_bytes_fragmented_or_with_1_byte_close_body_fails_with_1002(self):
        b, l = self.start_pair(broadcast_args=["--close-timeout-ms", self.FAIL_CLOSE_TIMEOUT_MS])
        too_long, fragmented = "control frame over 125 bytes", "fragmented control frame"
        bad = [
            ("ping of 126 bytes", encode_frame(OP_PING, b"p" * 126), too_long),
            ("pong of 200 bytes", encode_frame(OP_PONG, b"q" * 200), too_long),
            ("close of 126 bytes", encode_frame(OP_CLOSE, close_payload(1000, b"r" * 124)), too_long),
            ("ping announcing 2^62 bytes",
             struct.pack("!BBQ", 0x80 | OP_PING, 0x80 | 127, 1 << 62) + os.urandom(4), too_long),
            ("fragmented ping", encode_frame(OP_PING, b"abc", fin=False), fragmented),
            ("fragmented pong", encode_frame(OP_PONG, b"", fin=False), fragmented),
            ("fragmented close", encode_frame(OP_CLOSE, close_payload(1000), fin=False), fragmented),
            ("close with a 1-byte body", encode_frame(OP_CLOSE, b"\x03"),
             "close frame with a 1-byte body"),
        ]
        for name, data, reason in bad:
            with self.subTest(name):
                raw = self.raw_subscriber(b.port, [fresh_type()])
                raw.send(data)
                self.assert_failed_at_once(raw, 1002)
                b.wait_log(f"closed by the server with 1002 ({reason})")
        self.assertEqual(metric(b.port, "evs_broadcast_sessions"), 0)
        self.assert_still_serving(b, l)

    def test_frames_before_a_refused_control_frame_are_answered_first(self):
        b, l = self.start_pair(broadcast_args=["--close-timeout-ms", self.FAIL_CLOSE_TIMEOUT_MS])
        raw = RawWS(b.port).handshake()
        self.addCleanup(raw.close)
        init = json.dumps({"authentication": f"Basic {self.token}", "events": [fresh_type()]})
        # One write: the init, a ping, then a ping too long to be a control frame.
        raw.send(encode_frame(OP_TEXT, init) + encode_frame(OP_PING, b"ok")
                 + encode_frame(OP_PING, b"x" * 126))
        got = []
        while True:
            frame = raw.recv_frame(timeout=5)
            self.assertIsNotNone(frame, f"connection ended without a close frame after {got}")
            got.append(frame)
            if frame.opcode == OP_CLOSE:
                break
        # wslay sends its pong ahead of the init reply (control frames first); both come
        # before the close.
        self.assertCountEqual([(f.opcode, f.payload) for f in got[:-1]],
                              [(OP_TEXT, b'{"type":"init","code":"OK"}'), (OP_PONG, b"ok")])
        self.assertEqual(got[-1].close_code, 1002)
        self.assertEqual(raw.wait_eof(timeout=5), [])
        b.wait_log("closed by the server with 1002 (control frame over 125 bytes)")
        self.assert_still_serving(b, l)

    def test_frames_after_a_client_close_are_ignored_even_one_that_breaks_the_rules(self):
        b, l = self.start_pair(broadcast_args=["--close-timeout-ms", self.FAIL_CLOSE_TIMEOUT_MS])
        raw = self.raw_subscriber(b.port, [fresh_type()])
        # One write: the close, then a fragmented ping (§5.5.1: nothing may follow a close).
        raw.send(encode_frame(OP_CLOSE, close_payload(1000)) + encode_frame(OP_PING, b"x", fin=False))
        echo = raw.recv_frame(timeout=5)
        self.assertIsNotNone(echo, "no close echo")
        self.assertEqual((echo.opcode, echo.close_code), (OP_CLOSE, 1000))
        self.assertEqual(raw.wait_eof(timeout=5), [], "a frame after the close echo")
        self.assert_still_serving(b, l)

    def test_close_codes_invalid_per_rfc_6455_get_1002_and_valid_ones_are_echoed(self):
        b, l = self.start_pair(broadcast_args=["--close-timeout-ms", self.FAIL_CLOSE_TIMEOUT_MS])
        # §7.4.1/§7.4.2: 0-999 unused, 1004-1006 and 1015 never sent, 1016-2999 unassigned,
        # 5000 and up out of range.
        for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535):
            with self.subTest(code=code):
                raw = self.raw_subscriber(b.port, [fresh_type()])
                raw.send_frame(OP_CLOSE, close_payload(code, b"bye"))
                self.assert_failed_at_once(raw, 1002)
        for code in (1000, 1001, 1003, 1008, 1011, 3000, 4999):
            with self.subTest(code=code):
                raw = self.raw_subscriber(b.port, [fresh_type()])
                raw.send_frame(OP_CLOSE, close_payload(code, b"bye"))
                echo = raw.recv_frame(timeout=5)
                self.assertIsNotNone(echo, "no close echo")
                self.assertEqual((echo.opcode, echo.close_code), (OP_CLOSE, code))
                self.assertEqual(raw.wait_eof(timeout=5), [])
        self.assert_still_serving(b, l)

    def test_close_reason_that_is_not_utf8_gets_1007_at_once(self):
        b, l = self.start_pair(broadcast_args=["--close-timeout-ms", self.FAIL_CLOSE_TIMEOUT_MS])
        raw = self.raw_subscriber(b.port, [fresh_type()])
        raw.send_frame(OP_CLOSE, close_payload(1000, b"caf\xc3"))  # cut inside a character
        self.assert_failed_at_once(raw, 1007)
        self.assert_still_serving(b, l)

    def test_close_the_server_starts_for_policy_still_waits_for_the_client_close(self):
        # 1008 is a closing handshake, not a failure: the connection stays open for the
        # client's close frame, and ends once it comes.
        b, l = self.start_pair(broadcast_args=["--close-timeout-ms", self.FAIL_CLOSE_TIMEOUT_MS,
                                               "--init-timeout-ms", "300"])
        raw = RawWS(b.port).handshake()
        self.addCleanup(raw.close)
        frame = raw.recv_data_frame(timeout=5)
        self.assertEqual((frame.opcode, frame.close_code), (OP_CLOSE, 1008), frame)
        with self.assertRaises(socket.timeout, msg="the server did not wait for the client's close"):
            raw.recv_frame(timeout=1)
        raw.send_frame(OP_CLOSE, close_payload(1008))
        self.assertEqual(raw.wait_eof(timeout=5), [])
        self.assert_still_serving(b, l)

    # --- closing --------------------------------------------------------------------------------

    def test_client_close_is_echoed_and_its_subscriptions_end_at_once(self):
        b, l = self.start_pair()
        kind = fresh_type()

        async def go():
            other = await ws_subscribe(b.port, self.token, [kind])
            leaving = await ws_subscribe(b.port, self.token, [kind])
            self.assertEqual(await asyncio.to_thread(metric, b.port, "evs_broadcast_subscriptions"), 2)
            await asyncio.wait_for(leaving.close(code=1000, reason="bye"), 5 * TIME_SCALE)
            echoed = (leaving.close_code, leaving.close_reason)
            self.assertEqual(await asyncio.to_thread(metric, b.port, "evs_broadcast_subscriptions"), 1)
            results = []
            for i in range(3):
                results.append(await asyncio.to_thread(publish, l.port, kind, i, self.token))
            events = [await ws_recv_json(other) for _ in range(3)]
            await other.close()
            return echoed, results, events

        echoed, results, events = run(go())
        self.assertEqual(echoed, (1000, "bye"))
        self.assertEqual(results, [(200, {"code": "OK"})] * 3)
        self.assertEqual(events, [{"type": "event", "event": kind, "data": i} for i in range(3)])
        self.assert_still_serving(b, l)

    def test_raw_client_close_is_echoed_then_connection_ends_without_further_events(self):
        b, l = self.start_pair()
        kind = fresh_type()
        raw = self.raw_subscriber(b.port, [kind, kind + "-2"])
        self.assertEqual(metric(b.port, "evs_broadcast_subscriptions"), 2)
        raw.send_frame(OP_CLOSE, close_payload(1000, b"done"))
        echo = raw.recv_frame()
        self.assertIsNotNone(echo, "no close echo")
        self.assertEqual((echo.opcode, echo.close_code), (OP_CLOSE, 1000))
        # Dropped by the time the echo is out, not when the TCP connection ends.
        self.assertEqual(metric(b.port, "evs_broadcast_subscriptions"), 0)
        status, body = publish(l.port, kind, "after close", self.token)
        self.assertEqual((status, body), (200, {"code": "OK"}))
        self.assertEqual(raw.wait_eof(timeout=5), [])
        self.assert_still_serving(b, l)

    def test_reset_peer_is_dropped_and_publishes_still_succeed(self):
        b, l = self.start_pair()
        kind = fresh_type()
        raw = self.raw_subscriber(b.port, [kind])
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.sock.close()  # RST
        for i in range(5):
            self.assertEqual(publish(l.port, kind, i, self.token), (200, {"code": "OK"}))
        self.assert_still_serving(b, l)

    # --- connection cap -------------------------------------------------------------------------

    def test_sixth_connection_over_max_connections_5_is_closed_at_once_while_five_keep_working(self):
        b, l = self.start_pair(broadcast_args=["--max-connections", "5"])
        kind = fresh_type()

        async def go():
            subs = [await ws_subscribe(b.port, self.token, [kind]) for _ in range(5)]

            def sixth():
                s = socket.create_connection(("127.0.0.1", b.port), timeout=5 * TIME_SCALE)
                try:
                    t0 = time.monotonic()
                    try:
                        s.sendall(handshake_request(host="x"))
                        data = s.recv(4096)
                    except (ConnectionResetError, BrokenPipeError):
                        data = b""
                    except socket.timeout:
                        data = None
                    return data, time.monotonic() - t0
                finally:
                    s.close()

            data, elapsed = await asyncio.to_thread(sixth)
            status, body = await asyncio.to_thread(publish, l.port, kind, "five", self.token)
            events = [await ws_recv_json(ws) for ws in subs]
            for ws in subs[1:]:
                await ws.close()
            await subs[0].close()
            return data, elapsed, (status, body), events

        data, elapsed, result, events = run(go())
        self.assertEqual(data, b"", f"6th connection was served: {data!r}")
        self.assertLess(elapsed, 2 * TIME_SCALE)
        self.assertEqual(result, (200, {"code": "OK"}))
        self.assertEqual(events, [{"type": "event", "event": kind, "data": "five"}] * 5)
        b.wait_log("refused")
        # The five are closed now; a new subscriber gets in once the server has let them go.
        wait_for(lambda: self._can_subscribe(b.port), what="a free connection slot")
        self.assertGreaterEqual(metric(b.port, "evs_broadcast_connections_refused_total"), 1)
        self.assert_still_serving(b, l)

    def test_connections_still_in_handshake_count_toward_max_connections(self):
        b, l = self.start_pair(broadcast_args=["--max-connections", "5"])
        pending = []
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", b.port))
            self.addCleanup(s.close)
            s.sendall(b"GET / HTTP/1.1\r\n")  # a handshake that has only begun
            pending.append(s)
        sixth = socket.create_connection(("127.0.0.1", b.port))
        self.addCleanup(sixth.close)
        sixth.settimeout(5 * TIME_SCALE)
        try:
            data = sixth.recv(4096)
        except ConnectionResetError:
            data = b""
        self.assertEqual(data, b"")
        b.wait_log("refused")
        for s in pending:
            s.close()
        wait_for(lambda: self._can_subscribe(b.port), what="a free connection slot")
        self.assertGreaterEqual(metric(b.port, "evs_broadcast_connections_refused_total"), 1)
        self.assert_still_serving(b, l)

    def _can_subscribe(self, port):
        async def go():
            try:
                ws = await ws_subscribe(port, self.token, ["probe"])
            except Exception:
                return False
            await ws.close()
            return True
        return run(go())

    # --- handshake slowloris --------------------------------------------------------------------

    def test_handshake_sent_one_byte_per_200ms_is_cut_off_by_handshake_timeout(self):
        b, l = self.start_pair(broadcast_args=["--handshake-timeout-ms", "1000"])
        request = handshake_request()
        result = {}

        def slowloris():
            s = socket.create_connection(("127.0.0.1", b.port))
            t0 = time.monotonic()
            sent, answer = 0, b""
            try:
                while sent < len(request) and time.monotonic() - t0 < 20 * TIME_SCALE:
                    try:
                        s.sendall(request[sent:sent + 1])
                    except (BrokenPipeError, ConnectionResetError):
                        break
                    sent += 1
                    time.sleep(0.2)  # the attack itself: one byte per 200 ms
                    readable, _, _ = select.select([s], [], [], 0)
                    if readable:
                        try:
                            chunk = s.recv(4096)
                        except ConnectionResetError:
                            chunk = b""
                        if not chunk:
                            break
                        answer += chunk
                result.update(sent=sent, answer=answer, elapsed=time.monotonic() - t0)
            finally:
                s.close()

        t = threading.Thread(target=slowloris)
        t.start()
        try:
            self.assert_still_serving(b, l)  # served while the slow client trickles
        finally:
            t.join(30 * TIME_SCALE)
        self.assertFalse(t.is_alive())
        self.assertLess(result["sent"], len(request), "the whole handshake trickled in")
        answer = result["answer"]
        self.assertTrue(answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer)
        self.assertGreaterEqual(result["elapsed"], 0.9)
        self.assertLessEqual(result["elapsed"], 1.0 + 2.0 * TIME_SCALE)
        self.assert_still_serving(b, l)


if __name__ == "__main__":
    unittest.main()
