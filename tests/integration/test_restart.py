"""Restarting either daemon, and shutting them down.

The two daemons are meant to be restarted independently: a broadcast restart
must never hang a publisher (it waits for the new daemon or gets a clear 503),
a listen restart must not touch subscribers, a live bus socket must never be
stolen by a second broadcast daemon, and SIGTERM closes cleanly.
"""

import asyncio
import json
import os
import secrets
import signal
import socket
import stat
import sys
import threading
import time
import unittest

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib import harness  # noqa: E402
from lib.metrics import wait_metric  # noqa: E402
from lib.rawws import RawWS  # noqa: E402
from lib.harness import (TIME_SCALE, http_get, publish, run, wait_for, ws_recv_json,  # noqa: E402
                     ws_subscribe)

OK = (200, {"code": "OK"})
UNAVAILABLE = (503, {"code": "BROADCAST_UNAVAILABLE"})


def fresh_type():
    return "t-" + secrets.token_hex(4)


class Publisher(threading.Thread):
    """Publishes one event after another (a new HTTP connection each) until
    stopped, recording (status, body, seconds taken) for each, and in spans
    when it was sent and answered. The data is {"i": n}, or {"p": tag, "i": n}
    with a tag."""

    def __init__(self, port, token, kind, tag=None):
        super().__init__(daemon=True)
        self.port, self.token, self.kind, self.tag = port, token, kind, tag
        self.results = []
        self.spans = []
        self.stopping = threading.Event()

    def run(self):
        i = 0
        while not self.stopping.is_set():
            t0 = time.monotonic()
            data = {"i": i} if self.tag is None else {"p": self.tag, "i": i}
            try:
                status, body = publish(self.port, self.kind, data, self.token, timeout=60)
            except OSError as e:
                status, body = "error", repr(e)
            t1 = time.monotonic()
            self.results.append((status, body, t1 - t0))
            self.spans.append((t0, t1))
            i += 1

    def stop(self):
        self.stopping.set()
        self.join(120 * TIME_SCALE)
        if self.is_alive():
            raise AssertionError("a publish hung")
        return self.results


class RestartCase(harness.ServiceCase):

    def subscribe_and_receive(self, b, l, kind=None, data="hello"):
        """A new subscriber on b gets an event published through l."""
        kind = kind or fresh_type()

        async def go():
            ws = await ws_subscribe(b.port, self.token, [kind])
            try:
                result = await asyncio.to_thread(publish, l.port, kind, data, self.token)
                self.assertEqual(result, OK)
                self.assertEqual(await ws_recv_json(ws), {"type": "event", "event": kind, "data": data})
            finally:
                await ws.close()

        run(go())

    def wait_bus_ready(self, l):
        wait_for(lambda: http_get(l.port, "/healthz")[0] == 200, what="listen daemon to reach the bus")

    # --- broadcast restart ----------------------------------------------------------------------

    def _restart_broadcast(self, sig):
        bus_wait_ms = int(2500 * TIME_SCALE)
        limit = bus_wait_ms / 1000 + 2 * TIME_SCALE  # never hang: at most the wait, plus slack
        b, l = self.start_pair(listen_args=["--bus-wait-ms", str(bus_wait_ms), "--log-level", "debug"])
        self.subscribe_and_receive(b, l)

        stream = Publisher(l.port, self.token, fresh_type())
        stream.start()
        wait_for(lambda: len(stream.results) >= 5, what="publishes before the restart")

        code = b.stop(sig, timeout=10)
        if sig == signal.SIGTERM:
            self.assertEqual(code, 0, b.log())
            self.assertFalse(os.path.exists(b.bus), "SIGTERM left the bus socket behind")
        else:
            self.assertEqual(code, -signal.SIGKILL)
            self.assertTrue(stat.S_ISSOCK(os.lstat(b.bus).st_mode), "expected a stale socket file")
        wait_for(lambda: http_get(l.port, "/healthz") == UNAVAILABLE, what="listen to see the bus gone")

        # Nothing is up for longer than the wait: this publish must wait, then 503.
        t0 = time.monotonic()
        self.assertEqual(publish(l.port, "gap-lost", "lost", self.token, timeout=60), UNAVAILABLE)
        waited = time.monotonic() - t0
        self.assertGreaterEqual(waited, bus_wait_ms / 1000 * 0.9)
        self.assertLessEqual(waited, limit)

        # This one starts in the gap; the new daemon comes up while it waits.
        waiting = {}

        def publish_in_gap():
            t = time.monotonic()
            waiting["result"] = publish(l.port, kept_type, "kept", self.token, timeout=60)
            waiting["elapsed"] = time.monotonic() - t

        # Its length marks its debug log line: the stream's publishes wait in the gap as well, so
        # the waiting-events gauge cannot tell this one has arrived.
        kept_type = "gap-kept-" + "k" * 40
        waiter = threading.Thread(target=publish_in_gap)
        waiter.start()
        l.wait_log(f"event type of {len(kept_type)} bytes")  # it is waiting in the listen daemon
        b2 = self.start_broadcast(port=b.port, bus=b.bus, name="broadcast-new")
        waiter.join(60 * TIME_SCALE)
        self.assertFalse(waiter.is_alive(), "a publish in the gap hung")
        self.assertEqual(waiting["result"], OK, l.log()[-2000:])
        self.assertLessEqual(waiting["elapsed"], limit)

        self.wait_bus_ready(l)
        self.subscribe_and_receive(b2, l, data="after the restart")
        results = stream.stop()

        self.assertTrue(l.running(), "the listen daemon stopped")
        self.assertIn("reconnected", l.log())
        for status, body, elapsed in results:
            self.assertIn((status, body), (OK, UNAVAILABLE))
            self.assertLessEqual(elapsed, limit)
        self.assertEqual(results[-1][:2], OK)
        b2.assert_clean_log(self)

    def test_broadcast_sigterm_restart_gap_publishes_wait_or_503_then_resume_without_listen_restart(self):
        self._restart_broadcast(signal.SIGTERM)

    def test_broadcast_sigkill_restart_replaces_stale_socket_and_publishes_resume(self):
        self._restart_broadcast(signal.SIGKILL)

    def test_second_broadcast_on_live_bus_socket_exits_1_and_first_keeps_working(self):
        b, l = self.start_pair()
        inode = os.stat(b.bus).st_ino
        second = self.start_broadcast(bus=b.bus, wait=False, name="broadcast-second")
        wait_for(lambda: not second.running(), what="the second broadcast daemon to exit")
        self.assertEqual(second.stop(), 1, second.log())
        self.assertIn(f"{b.bus} is in use by another process", second.log())
        self.assertEqual(os.stat(b.bus).st_ino, inode, "the bus socket file was replaced")
        self.assertFalse(harness.port_accepts(second.port), "the second daemon left a listener behind")
        self.assertTrue(b.running())
        self.subscribe_and_receive(b, l)
        # A listen daemon started now reaches the first daemon through the same path.
        l2 = self.start_listen(bus=b.bus, name="listen-late")
        self.wait_bus_ready(l2)
        self.subscribe_and_receive(b, l2)

    # --- listen restart -------------------------------------------------------------------------

    def test_listen_restart_keeps_subscribers_connected_and_they_receive_through_new_listen(self):
        b, l = self.start_pair()
        kind = fresh_type()

        async def go():
            subs = [await ws_subscribe(b.port, self.token, [kind]) for _ in range(3)]
            self.assertEqual(await asyncio.to_thread(publish, l.port, kind, "before", self.token), OK)
            for ws in subs:
                self.assertEqual(await ws_recv_json(ws), {"type": "event", "event": kind, "data": "before"})

            code = await asyncio.to_thread(l.stop)
            self.assertEqual(code, 0)
            await asyncio.to_thread(wait_metric, b.port, "evs_broadcast_bus_peers", 0)
            l2 = await asyncio.to_thread(self.start_listen, bus=b.bus, port=l.port, name="listen-new")
            await asyncio.to_thread(self.wait_bus_ready, l2)

            for ws in subs:
                self.assertFalse(ws.closed)
            self.assertEqual(await asyncio.to_thread(publish, l2.port, kind, "after", self.token), OK)
            for ws in subs:
                self.assertEqual(await ws_recv_json(ws), {"type": "event", "event": kind, "data": "after"})
            for ws in subs:
                await ws.close()

        run(go())
        self.assertTrue(b.running())

    # --- SIGTERM --------------------------------------------------------------------------------

    def test_broadcast_sigterm_closes_subscribers_1001_and_exits_0(self):
        b, l = self.start_pair()
        kind = fresh_type()

        async def go():
            subs = [await ws_subscribe(b.port, self.token, [kind]) for _ in range(3)]
            unsubscribed = await harness.ws_connect(b.port)  # no init yet
            t0 = time.monotonic()
            b.signal(signal.SIGTERM)
            for ws in subs + [unsubscribed]:
                await asyncio.wait_for(ws.wait_closed(), 10 * TIME_SCALE)
            codes = [ws.close_code for ws in subs + [unsubscribed]]
            await asyncio.to_thread(b.proc.wait, 10 * TIME_SCALE)  # signalled once: a second would cut the drain short
            code = b.stop()  # not running any more: collects the exit code
            return codes, code, time.monotonic() - t0

        codes, code, elapsed = run(go())
        self.assertEqual(codes, [1001] * 4)
        self.assertEqual(code, 0, b.log())
        self.assertLess(elapsed, 3 * TIME_SCALE)
        self.assertFalse(os.path.exists(b.bus))

    def test_broadcast_sigterm_with_unresponsive_subscriber_still_exits_0_within_seconds(self):
        b, l = self.start_pair(broadcast_args=["--close-timeout-ms", "500"])
        # A subscriber that completed the handshake and then never reads or answers.
        s = RawWS(b.port).handshake()  # checks the 101 and its Sec-WebSocket-Accept
        self.addCleanup(s.close)
        t0 = time.monotonic()
        code = b.stop(signal.SIGTERM, timeout=10)
        elapsed = time.monotonic() - t0
        self.assertEqual(code, 0, b.log())
        self.assertLess(elapsed, 7 * TIME_SCALE)

    def test_publish_during_a_broadcast_drain_is_not_acked_by_it_but_waits_for_the_next_daemon(self):
        # A stopping broadcast daemon closes every session at once, so an event it took from
        # the bus during its drain would reach nobody: it must not be answered 200.
        close_timeout_ms = int(3000 * TIME_SCALE)
        b = self.start_broadcast("--close-timeout-ms", str(close_timeout_ms))
        l = self.start_listen("--bus-wait-ms", str(int(30000 * TIME_SCALE)), bus=b.bus)
        self.wait_bus_ready(l)
        kind = fresh_type()
        # A subscriber that never answers the close holds the drain open for the close timeout.
        holder = RawWS(b.port).handshake()  # checks the 101 and its Sec-WebSocket-Accept
        self.addCleanup(holder.close)

        async def go():
            fast = await ws_subscribe(b.port, self.token, [kind])
            got_before = []

            async def read_all(ws, into):
                try:
                    async for msg in ws:
                        into.append(json.loads(msg))
                except websockets.exceptions.ConnectionClosed:
                    pass

            reader = asyncio.ensure_future(read_all(fast, got_before))
            pubs = [Publisher(l.port, self.token, kind, tag=p) for p in range(3)]
            for p in pubs:
                p.start()
            await asyncio.to_thread(wait_for, lambda: sum(len(p.results) for p in pubs) >= 30,
                                    what="publishes before the signal")
            b.signal(signal.SIGTERM)
            await asyncio.wait_for(reader, 10 * TIME_SCALE)
            t_closed = time.monotonic()  # the 1001 has come: the daemon is stopping
            self.assertEqual(fast.close_code, 1001)
            await asyncio.to_thread(b.proc.wait, 10 * TIME_SCALE)  # the drain, held by the holder
            t_exited = time.monotonic()
            self.assertEqual(b.stop(), 0, b.log()[-2000:])
            self.assertGreater(t_exited - t_closed, close_timeout_ms / 1000 * 0.5, "the drain was not held open")

            t_next = time.monotonic()
            b2 = await asyncio.to_thread(self.start_broadcast, port=b.port, bus=b.bus, name="broadcast-next")
            after = await ws_subscribe(b2.port, self.token, [kind])
            t_after = time.monotonic()
            got_after = []
            reader = asyncio.ensure_future(read_all(after, got_after))
            await asyncio.to_thread(wait_for, lambda: all(any(t0 > t_after for t0, _ in p.spans) for p in pubs)
                                    and sum(1 for p in pubs for t0, _ in p.spans if t0 > t_after) >= 30,
                                    what="publishes through the next daemon")
            for p in pubs:
                await asyncio.to_thread(p.stop)
            # Everything answered 200 since it subscribed reaches it.
            expected = {(p.tag, i) for p in pubs for i, ((status, _, _), (t0, _)) in
                        enumerate(zip(p.results, p.spans)) if status == 200 and t0 > t_after}
            deadline = time.monotonic() + 10 * TIME_SCALE
            while not expected <= {(m["data"]["p"], m["data"]["i"]) for m in got_after}:
                self.assertLess(time.monotonic(), deadline, "publishes answered 200 did not reach the "
                                "subscriber of the next daemon")
                await asyncio.sleep(0.05)
            await after.close()
            await reader
            return pubs, got_before, t_closed, t_exited, t_next

        pubs, got_before, t_closed, t_exited, t_next = run(go(), timeout=120)
        received_before = {(m["data"]["p"], m["data"]["i"]) for m in got_before}
        during = acked_unseen = waited = 0
        for p in pubs:
            for i, ((status, body, _), (t0, t1)) in enumerate(zip(p.results, p.spans)):
                self.assertIn((status, body), (OK, UNAVAILABLE), f"publisher {p.tag} #{i}")
                if t0 < t_exited and t1 > t_closed:
                    during += 1  # in progress during the drain
                if status == 200 and t1 < t_next and (p.tag, i) not in received_before:
                    acked_unseen += 1  # answered while only the stopping daemon was there
                if status == 200 and t0 < t_exited and t1 > t_next:
                    waited += 1  # sent before the stopping daemon was gone, taken by the next one
        self.assertGreater(during, 0, "no publish was in progress during the drain")
        self.assertEqual(acked_unseen, 0, f"{acked_unseen} publishes answered 200 during the drain reached "
                         f"no subscriber ({during} in progress during it)")
        self.assertGreater(waited, 0, "no publish sent during the drain waited for the next daemon")

    def test_listen_sigterm_exits_0_with_idle_keepalive_connection_open(self):
        b, l = self.start_pair()
        idle = socket.create_connection(("127.0.0.1", l.port))
        self.addCleanup(idle.close)
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        idle.settimeout(5 * TIME_SCALE)
        self.assertTrue(idle.recv(4096).startswith(b"HTTP/1.1 200 "))
        t0 = time.monotonic()
        code = l.stop(signal.SIGTERM, timeout=10)
        self.assertEqual(code, 0, l.log())
        self.assertLess(time.monotonic() - t0, 3 * TIME_SCALE)
        self.assertTrue(b.running())

    # --- several listen daemons -----------------------------------------------------------------

    def test_two_listen_daemons_on_one_broadcast_both_reach_the_subscriber(self):
        b, l1 = self.start_pair()
        l2 = self.start_listen(bus=b.bus, name="listen-two")
        self.wait_bus_ready(l2)
        kind = fresh_type()

        async def go():
            ws = await ws_subscribe(b.port, self.token, [kind])
            for i in range(10):
                via = l1 if i % 2 == 0 else l2
                self.assertEqual(await asyncio.to_thread(publish, via.port, kind, {"i": i, "via": via.port},
                                                         self.token), OK)
            got = [await ws_recv_json(ws) for _ in range(10)]
            await ws.close()
            return got

        got = run(go())
        self.assertEqual(got, [{"type": "event", "event": kind,
                                "data": {"i": i, "via": (l1 if i % 2 == 0 else l2).port}} for i in range(10)])
        # Concurrent publishers on both: every event arrives, each listen daemon's in its order.
        kind2 = fresh_type()

        async def concurrent():
            ws = await ws_subscribe(b.port, self.token, [kind2])

            def burst(via, tag):
                return [publish(via.port, kind2, {"tag": tag, "n": n}, self.token) for n in range(50)]

            r1, r2 = await asyncio.gather(asyncio.to_thread(burst, l1, "a"), asyncio.to_thread(burst, l2, "b"))
            got = [await ws_recv_json(ws) for _ in range(100)]
            await ws.close()
            return r1 + r2, got

        results, got = run(concurrent())
        self.assertEqual(results, [OK] * 100)
        for tag in ("a", "b"):
            self.assertEqual([m["data"]["n"] for m in got if m["data"]["tag"] == tag], list(range(50)))


if __name__ == "__main__":
    unittest.main()
