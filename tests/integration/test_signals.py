"""Signals: SIGTERM drains (subscribers get 1001; an in-flight publish gets
its answer), a second SIGTERM ends the drain at once, SIGHUP reloads the
tokens file.
"""

import asyncio
import json
import os
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib import harness  # noqa: E402
from lib.metrics import metric  # noqa: E402
from lib.rawws import RawWS  # noqa: E402
from lib.harness import (TIME_SCALE, FakeBroadcast, http_get, publish, run, wait_for, ws_connect,  # noqa: E402
                         ws_recv_json, ws_subscribe)
from lib.ops import OK, UNAVAILABLE, OpsCase, fresh_type, has, read_all_until_closed  # noqa: E402


class SignalTest(OpsCase):

    def test_broadcast_sigterm_closes_every_subscriber_1001_serves_no_new_connection_and_exits_0(self):
        close_timeout_ms = int(1500 * TIME_SCALE)
        b, l = self.start_pair(broadcast_args=["--close-timeout-ms", str(close_timeout_ms)])
        kind = fresh_type()
        raw = RawWS(b.port).handshake()  # will not answer the close
        self.addCleanup(raw.close)
        self.assertEqual(raw.init(self.token, [kind]), {"type": "init", "code": "OK"})

        async def go():
            subs = [await ws_subscribe(b.port, self.token, [kind]) for _ in range(3)]
            t0 = time.monotonic()
            b.signal(signal.SIGTERM)
            await asyncio.to_thread(b.wait_log, "closing 4 sessions (1001)")
            # Connections made during the drain are not served.
            probe = socket.create_connection(("127.0.0.1", b.port))
            probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            for ws in subs:
                await asyncio.wait_for(ws.wait_closed(), 10 * TIME_SCALE)
            code, _ = await asyncio.to_thread(self.wait_exit, b, 10)
            elapsed = time.monotonic() - t0
            answer = read_all_until_closed(probe, 5)
            probe.close()
            return [ws.close_code for ws in subs], code, elapsed, answer

        codes, code, elapsed, answer = run(go())
        self.assertEqual(codes, [1001] * 3)
        frame = raw.recv_frame()
        self.assertIsNotNone(frame, "closed without a close frame")
        self.assertEqual((frame.opcode, frame.close_code), (8, 1001))
        self.assertEqual(code, 0, b.log()[-2000:])
        self.assertLessEqual(elapsed, 5 * TIME_SCALE + 1, "over the 5 s shutdown bound")
        self.assertEqual(answer, b"", "a connection made during the drain was served")

    def _listen_with_held_publish(self, *args):
        fake = FakeBroadcast(os.path.join(self.dir, "fake.sock"), hold_acks=True)
        self.addCleanup(fake.close)
        l = self.start_listen(*args, bus=fake.path)
        wait_for(lambda: http_get(l.port, "/healthz")[0] == 200, what="listen to reach the bus")
        result = {}

        def publisher():
            t0 = time.monotonic()
            try:
                result["answer"] = publish(l.port, "held", {"x": 1}, self.token, timeout=60)
            except OSError as e:
                result["answer"] = repr(e)
            result["at"] = time.monotonic() - t0

        t = threading.Thread(target=publisher, daemon=True)
        t.start()
        seq = fake.wait_events(1)[0][0]
        self.assertEqual(metric(l.port, "evs_listen_publishes_in_flight"), 1)
        l.signal(signal.SIGTERM)
        l.wait_log("finishing requests in progress")
        probe = socket.create_connection(("127.0.0.1", l.port))
        self.addCleanup(probe.close)
        probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        return fake, l, seq, t, result, probe

    def test_listen_sigterm_answers_in_flight_publish_acked_after_the_signal_with_200_and_exits_0(self):
        fake, l, seq, t, result, probe = self._listen_with_held_publish()
        self.assertTrue(l.running(), "exited with a publish in flight")
        self.assertNotIn("answer", result)
        fake.ack(seq)
        t.join(10 * TIME_SCALE)
        self.assertEqual(result.get("answer"), OK)
        code, _ = self.wait_exit(l, 10)
        self.assertEqual(code, 0, l.log()[-2000:])
        self.assertEqual(read_all_until_closed(probe, 5), b"",
                         "a connection made during the drain was served")

    def test_listen_sigterm_answers_in_flight_publish_never_acked_with_503_and_exits_0(self):
        ack_timeout_ms = int(1500 * TIME_SCALE)
        fake, l, seq, t, result, probe = self._listen_with_held_publish(
            "--bus-ack-timeout-ms", str(ack_timeout_ms))
        t.join(20 * TIME_SCALE)
        self.assertEqual(result.get("answer"), UNAVAILABLE)
        self.assertLessEqual(result["at"], ack_timeout_ms / 1000 + 2 * TIME_SCALE)
        code, _ = self.wait_exit(l, 10)
        self.assertEqual(code, 0, l.log()[-2000:])
        self.assertEqual(read_all_until_closed(probe, 5), b"")

    def test_listen_sigterm_answers_publish_waiting_for_a_broadcast_daemon_with_503_and_exits_0(self):
        wait_ms = int(2000 * TIME_SCALE)
        l = self.start_listen("--bus-wait-ms", str(wait_ms), "--log-level", "debug",
                              bus=os.path.join(self.dir, "nobody.sock"))
        result = {}
        t = threading.Thread(target=lambda: result.setdefault(
            "answer", publish(l.port, "waiting-for-bus", 1, self.token, timeout=60)), daemon=True)
        t.start()
        wait_for(lambda: metric(l.port, "evs_listen_bus_events_waiting") == 1,
                 what="the publish to wait for a broadcast daemon")
        l.signal(signal.SIGTERM)
        t.join(20 * TIME_SCALE)
        self.assertEqual(result.get("answer"), UNAVAILABLE)
        code, _ = self.wait_exit(l, 10)
        self.assertEqual(code, 0, l.log()[-2000:])

    # The listen daemon gives requests in progress 10 s after SIGTERM (listen/main.c,
    # SHUTDOWN_GRACE_MS), while a publish may wait BUS_WAIT_MS for a broadcast daemon and
    # BUS_ACK_TIMEOUT_MS for an ack, both allowed up to an hour. A publish still waiting
    # when the grace ends must get its answer (503) too, not a closed connection.

    def _answer_within_grace(self, l, result, t):
        t0 = time.monotonic()
        l.signal(signal.SIGTERM)
        code, _ = self.wait_exit(l, 15)
        t.join(5 * TIME_SCALE)
        self.assertEqual(result.get("answer"), UNAVAILABLE,
                         f"answered {result.get('answer')!r} {time.monotonic() - t0:.1f} s after SIGTERM")
        self.assertEqual(code, 0, l.log()[-2000:])

    def _publish_in_thread(self, port, kind):
        result = {}

        def publisher():
            try:
                result["answer"] = publish(port, kind, 1, self.token, timeout=60)
            except OSError as e:
                result["answer"] = repr(e)

        t = threading.Thread(target=publisher, daemon=True)
        t.start()
        return result, t

    def test_listen_sigterm_answers_a_publish_waiting_longer_than_the_shutdown_grace_with_503(self):
        l = self.start_listen("--bus-wait-ms", "60000", bus=os.path.join(self.dir, "nobody.sock"))
        result, t = self._publish_in_thread(l.port, "waits-long")
        wait_for(lambda: metric(l.port, "evs_listen_bus_events_waiting") == 1,
                 what="the publish to wait for a broadcast daemon")
        self._answer_within_grace(l, result, t)

    def test_listen_sigterm_answers_a_publish_unacked_longer_than_the_shutdown_grace_with_503(self):
        fake = FakeBroadcast(os.path.join(self.dir, "fake.sock"), hold_acks=True)
        self.addCleanup(fake.close)
        l = self.start_listen("--bus-ack-timeout-ms", "60000", bus=fake.path)
        wait_for(lambda: http_get(l.port, "/healthz")[0] == 200, what="listen to reach the bus")
        result, t = self._publish_in_thread(l.port, "unacked-long")
        fake.wait_events(1)
        self._answer_within_grace(l, result, t)

    def test_sigint_stops_both_daemons_like_sigterm_with_stopping_and_exit_0(self):
        notify_b, notify_l = self.notify_socket("notify-b"), self.notify_socket("notify-l")
        b = self.start_broadcast(env=self.notify_env(notify_b))
        l = self.start_listen(bus=b.bus, env=self.notify_env(notify_l))
        wait_for(lambda: http_get(l.port, "/healthz")[0] == 200, what="listen to reach the bus")
        for d, notify in ((l, notify_l), (b, notify_b)):
            with self.subTest(d.argv[0]):
                d.signal(signal.SIGINT)
                notify.wait(has("STOPPING", "1"), what="STOPPING=1 after SIGINT")
                code, _ = self.wait_exit(d, 10)
                self.assertEqual(code, 0, d.log()[-2000:])

    def test_second_sigterm_ends_a_listen_drain_at_once(self):
        fake, l, seq, t, result, probe = self._listen_with_held_publish()
        t0 = time.monotonic()
        l.signal(signal.SIGTERM)
        code, _ = self.wait_exit(l, 5)
        self.assertLess(time.monotonic() - t0, 2 * TIME_SCALE)
        self.assertIn("second stop signal: exiting now", l.log())
        self.assertEqual(code, 0, l.log()[-2000:])
        t.join(5 * TIME_SCALE)
        self.assertFalse(t.is_alive(), "the publisher was left hanging")

    def test_second_sigterm_ends_a_broadcast_drain_at_once(self):
        b = self.start_broadcast("--close-timeout-ms", "60000")
        raw = RawWS(b.port).handshake()  # never answers the close
        self.addCleanup(raw.close)
        self.assertEqual(raw.init(self.token, [fresh_type()]), {"type": "init", "code": "OK"})
        b.signal(signal.SIGTERM)
        b.wait_log("closing 1 sessions (1001)")
        t0 = time.monotonic()
        b.signal(signal.SIGTERM)
        code, _ = self.wait_exit(b, 5)
        self.assertLess(time.monotonic() - t0, 2 * TIME_SCALE)
        self.assertIn("second stop signal: exiting now", b.log())
        self.assertEqual(code, 0, b.log()[-2000:])

    def test_broadcast_sighup_reloads_tokens_file(self):
        b = self.start_broadcast()
        new = harness.new_token()
        self.rewrite_tokens_in_place([new])
        b.signal(signal.SIGHUP)
        b.wait_log(f"tokens file {self.tokens_path} reloaded (SIGHUP): 1 tokens")

        async def go():
            ws = await ws_subscribe(b.port, new, [fresh_type()])  # raises unless init OK
            await ws.close()
            ws = await ws_connect(b.port)
            await ws.send(json.dumps({"authentication": f"Basic {self.token}", "events": ["a"]}))
            reply = await ws_recv_json(ws)
            await ws.close()
            return reply

        self.assertEqual(run(go()), {"type": "init", "code": "UNAUTHENTICATED"})
        # SIGHUP re-reads even an unchanged file (the file watcher would not).
        b.signal(signal.SIGHUP)
        wait_for(lambda: b.log().count("reloaded (SIGHUP)") == 2, what="a second SIGHUP reload")

    def test_listen_sighup_reloads_tokens_file(self):
        b, l = self.start_pair()
        new = harness.new_token()
        self.rewrite_tokens_in_place([new])
        l.signal(signal.SIGHUP)
        l.wait_log(f"tokens file {self.tokens_path} reloaded (SIGHUP): 1 tokens")
        self.assertEqual(publish(l.port, fresh_type(), 1, new), OK)
        self.assertEqual(publish(l.port, fresh_type(), 1, self.token), (403, {"code": "UNAUTHENTICATED"}))
        l.signal(signal.SIGHUP)
        wait_for(lambda: l.log().count("reloaded (SIGHUP)") == 2, what="a second SIGHUP reload")


if __name__ == "__main__":
    unittest.main()
