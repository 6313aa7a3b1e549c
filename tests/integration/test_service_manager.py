"""The daemons under a service manager.

- sd_notify: the test binds its own NOTIFY_SOCKET (an AF_UNIX datagram
  socket, as systemd does) and reads READY=1, STATUS=, WATCHDOG=1,
  RELOADING=1 and STOPPING=1 from the real daemons.
- Socket activation with Debian's systemd-socket-activate: the daemons serve
  on inherited sockets (named bus and ws for event-broadcast, http for
  event-listen), and a broadcast restart under a kept bus socket loses no
  publish. systemd-socket-activate execs the daemon in its own process on the
  first connection and keeps nothing once it exits, so the kept sockets are
  held by the test (in the role of a .socket unit) and passed through a new
  systemd-socket-activate for every start (it passes LISTEN_FDS through).
"""

import asyncio
import os
import signal
import socket
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib.metrics import metric, scrape  # noqa: E402
from lib.harness import (BROADCAST_BIN, LISTEN_BIN, TIME_SCALE, FakeBroadcast, event_dict,  # noqa: E402
                         free_port, http_get, port_accepts, publish, run, wait_for, ws_connect,
                         ws_recv_json, ws_subscribe)
from lib.ops import OK, UNAVAILABLE, OpsCase, fresh_type, has, status_only  # noqa: E402


class NotifyTest(OpsCase):
    """sd_notify messages, read from a NOTIFY_SOCKET bound by the test."""

    def test_broadcast_sends_ready_once_serving_with_a_status_line(self):
        notify = self.notify_socket()
        b = self.start_broadcast(env=self.notify_env(notify), wait=False)
        i = notify.wait(has("READY", "1"), what="READY=1 from event-broadcast")
        # At the moment READY arrives, both sockets serve.
        self.assertTrue(port_accepts(b.port), "READY=1 before the WebSocket port accepts")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(b.bus)  # raises when the bus socket does not accept yet
        self.assertEqual(http_get(b.port, "/healthz"), OK)
        self.assertEqual(notify.fields(i),
                         {"READY": "1", "STATUS": "0 sessions (0 subscribed), 0 events, 0 deliveries"})
        self.assertEqual(i, 0, f"messages before READY: {notify.all()[:i]}")
        # Once: a second READY only follows a reload.
        l = self.start_listen(bus=b.bus)
        wait_for(lambda: http_get(l.port, "/healthz")[0] == 200, what="listen to reach the bus")
        self.assertEqual(publish(l.port, fresh_type(), 1, self.token), OK)
        self.assertEqual(sum("READY" in f for f in notify.all()), 1, notify.all())
        self.assertFalse(any("WATCHDOG" in f for f in notify.all()), "WATCHDOG=1 without WATCHDOG_USEC")

    def test_listen_sends_ready_after_reaching_the_broadcast_daemon_so_an_unwaited_publish_is_accepted(self):
        b = self.start_broadcast()
        notify = self.notify_socket()
        # --bus-wait-ms 0: a publish that finds no connected broadcast daemon gets 503 at once.
        l = self.start_listen("--bus-wait-ms", "0", bus=b.bus, env=self.notify_env(notify), wait=False)
        i = notify.wait(has("READY", "1"), what="READY=1 from event-listen")
        self.assertTrue(port_accepts(l.port), "READY=1 before the HTTP port accepts")
        self.assertEqual(publish(l.port, fresh_type(), {"first": True}, self.token), OK,
                         "READY=1 came before the bus was connected")
        self.assertEqual(notify.fields(i), {
            "READY": "1",
            "STATUS": "1/1 broadcast daemons connected, 0 publishes in flight, 0 accepted"})

    def test_listen_without_broadcast_is_ready_after_its_first_bus_attempt_failed(self):
        notify = self.notify_socket()
        bus = os.path.join(self.dir, "nobody.sock")
        l = self.start_listen(bus=bus, env=self.notify_env(notify), wait=False)
        i = notify.wait(has("READY", "1"), what="READY=1 from event-listen")
        log_at_ready = l.log()
        self.assertTrue(port_accepts(l.port), "READY=1 before the HTTP port accepts")
        self.assertIn(f"bus {bus}: ", log_at_ready, "READY=1 before the bus socket was tried")
        self.assertEqual(http_get(l.port, "/healthz"), UNAVAILABLE)
        self.assertEqual(notify.fields(i), {
            "READY": "1",
            "STATUS": "0/1 broadcast daemons connected, 0 publishes in flight, 0 accepted"})

    def _watchdog_pings(self, start, args=(), **kwargs):
        notify = self.notify_socket()
        d = start(*args, env=self.notify_env(notify, watchdog_usec=400000), **kwargs)
        ready = notify.wait(has("READY", "1"), what="READY=1")
        d.wait_log("systemd watchdog: pinging every 200 ms")
        pings, i = [], ready
        while len(pings) < 10:
            i = notify.wait(has("WATCHDOG", "1"), start=i + 1, timeout=5, what="WATCHDOG=1")
            pings.append(i)
        times = [notify.time(p) for p in pings]
        gaps = [b - a for a, b in zip(times, times[1:])]
        mean = sum(gaps) / len(gaps)
        self.assertGreaterEqual(mean, 0.15, gaps)
        self.assertLessEqual(mean, 0.3 * TIME_SCALE, gaps)
        self.assertLess(max(gaps), 0.4 * TIME_SCALE, f"a gap over WATCHDOG_USEC: {gaps}")
        for p in pings:
            self.assertEqual(set(notify.fields(p)), {"WATCHDOG", "STATUS"}, notify.fields(p))
        self.assertEqual(sum("READY" in f for f in notify.all()), 1)
        return d, notify

    def test_broadcast_pings_watchdog_at_half_watchdog_usec(self):
        self._watchdog_pings(self.start_broadcast)

    def test_listen_pings_watchdog_at_half_watchdog_usec(self):
        fake = FakeBroadcast(os.path.join(self.dir, "fake.sock"))
        self.addCleanup(fake.close)
        self._watchdog_pings(self.start_listen, bus=fake.path)

    def test_broadcast_status_follows_sessions_events_and_deliveries(self):
        notify = self.notify_socket()
        b = self.start_broadcast(env=self.notify_env(notify, watchdog_usec=400000))
        l = self.start_listen(bus=b.bus)
        wait_for(lambda: http_get(l.port, "/healthz")[0] == 200, what="listen to reach the bus")
        kind = fresh_type()

        def status_is(text):
            return lambda f: f.get("STATUS") == text

        async def go():
            first = await ws_subscribe(b.port, self.token, [kind])
            second = await ws_subscribe(b.port, self.token, [kind])
            unsubscribed = await ws_connect(b.port)  # a session without an init
            mark = notify.count()
            await asyncio.to_thread(notify.wait, status_is(
                "3 sessions (2 subscribed), 0 events, 0 deliveries"), mark)
            self.assertEqual(await asyncio.to_thread(publish, l.port, kind, "x", self.token), OK)
            for ws in (first, second):
                self.assertEqual(await ws_recv_json(ws), event_dict(kind, "x"))
            mark = notify.count()
            await asyncio.to_thread(notify.wait, status_is(
                "3 sessions (2 subscribed), 1 events, 2 deliveries"), mark)
            await second.close()
            await unsubscribed.close()
            mark = notify.count()
            await asyncio.to_thread(notify.wait, status_is(
                "1 sessions (1 subscribed), 1 events, 2 deliveries"), mark)
            await first.close()

        run(go())

    def test_listen_status_follows_publishes_in_flight_and_accepted(self):
        fake = FakeBroadcast(os.path.join(self.dir, "fake.sock"), hold_acks=True)
        self.addCleanup(fake.close)
        notify = self.notify_socket()
        l = self.start_listen(bus=fake.path, env=self.notify_env(notify, watchdog_usec=400000))
        notify.wait(has("READY", "1"), what="READY=1")
        result = {}
        t = threading.Thread(target=lambda: result.setdefault(
            "r", publish(l.port, "held", 1, self.token)), daemon=True)
        t.start()
        seq = fake.wait_events(1)[0][0]
        mark = notify.count()
        notify.wait(lambda f: f.get("STATUS") ==
                    "1/1 broadcast daemons connected, 1 publishes in flight, 0 accepted", mark)
        fake.ack(seq)
        t.join(10 * TIME_SCALE)
        self.assertEqual(result.get("r"), OK)
        mark = notify.count()
        notify.wait(lambda f: f.get("STATUS") ==
                    "1/1 broadcast daemons connected, 0 publishes in flight, 1 accepted", mark)

    def test_status_alone_is_resent_every_five_seconds_without_watchdog(self):
        notify_b = self.notify_socket("notify-b")
        notify_l = self.notify_socket("notify-l")
        b = self.start_broadcast(env=self.notify_env(notify_b))
        self.start_listen(bus=b.bus, env=self.notify_env(notify_l))
        for notify, name in ((notify_b, "event-broadcast"), (notify_l, "event-listen")):
            with self.subTest(name):
                ready = notify.wait(has("READY", "1"), what=f"READY=1 from {name}")
                i = notify.wait(lambda f: "READY" not in f, start=ready + 1, timeout=8,
                                what=f"a STATUS line from {name}")
                self.assertTrue(status_only(notify.fields(i)), notify.fields(i))
                gap = notify.time(i) - notify.time(ready)
                self.assertGreaterEqual(gap, 4.0, "STATUS resent sooner than every 5 s")
                self.assertLessEqual(gap, 5.0 + 1.0 * TIME_SCALE)
                self.assertFalse(any("WATCHDOG" in f for f in notify.all()))

    def _reload_and_stop(self, d, notify):
        notify.wait(has("READY", "1"), what="READY=1")
        mark = notify.count()
        d.signal(signal.SIGHUP)
        d.wait_log("reloaded (SIGHUP)")
        reloading = notify.wait(has("RELOADING", "1"), mark, what="RELOADING=1 after SIGHUP")
        ready = notify.wait(has("READY", "1"), reloading + 1, what="READY=1 after RELOADING=1")
        self.assertNotIn("READY", notify.fields(reloading))
        self.assertIn("STATUS", notify.fields(ready))
        self.assertFalse(any("READY" in notify.fields(j) or "RELOADING" in notify.fields(j)
                             for j in range(mark, reloading)), notify.all()[mark:])
        mark = notify.count()
        d.signal(signal.SIGTERM)
        stopping = notify.wait(has("STOPPING", "1"), mark, what="STOPPING=1 after SIGTERM")
        code, _ = self.wait_exit(d, 10)
        self.assertEqual(code, 0, d.log()[-2000:])
        self.assertFalse(any("READY" in f for f in notify.all()[stopping:]), "READY=1 after STOPPING=1")

    def test_broadcast_sighup_sends_reloading_then_ready_and_sigterm_sends_stopping(self):
        notify = self.notify_socket()
        b = self.start_broadcast(env=self.notify_env(notify))
        self._reload_and_stop(b, notify)

    def test_listen_sighup_sends_reloading_then_ready_and_sigterm_sends_stopping(self):
        b = self.start_broadcast()
        notify = self.notify_socket()
        l = self.start_listen(bus=b.bus, env=self.notify_env(notify))
        self._reload_and_stop(l, notify)


# =================================================================================================

class SocketActivationTest(OpsCase):
    """Real socket activation through systemd-socket-activate."""

    def test_broadcast_serves_on_inherited_bus_and_ws_sockets(self):
        bus = os.path.join(self.dir, "activated-bus.sock")
        port = free_port()
        own_port, own_bus = free_port(), os.path.join(self.dir, "own-bus.sock")
        b = self.socket_activate(
            ["-l", bus, "-l", f"127.0.0.1:{port}", "--fdname=bus:ws", *self.passenv_args(),
             BROADCAST_BIN, "--port", str(own_port), "--bind", "127.0.0.1", "--bus", own_bus,
             "--tokens", self.tokens_path], "broadcast-activated")
        b.wait_log(f"Listening on 127.0.0.1:{port}")
        b.wait_log(f"Listening on {bus}")
        kind = fresh_type()

        async def go():
            # The first connection launches the daemon, which serves it from the inherited socket.
            ws = await ws_subscribe(port, self.token, [kind])
            l = await asyncio.to_thread(self.start_listen, bus=bus)
            await asyncio.to_thread(wait_for, lambda: http_get(l.port, "/healthz")[0] == 200,
                                    what="listen to reach the inherited bus socket")
            self.assertEqual(await asyncio.to_thread(publish, l.port, kind, [1, 2], self.token), OK)
            self.assertEqual(await ws_recv_json(ws), event_dict(kind, [1, 2]))
            await ws.close()

        run(go())
        log = b.log()
        self.assertIn("using the socket 'bus' passed by the service manager", log)
        self.assertIn("using the socket 'ws' passed by the service manager", log)
        self.assertFalse(port_accepts(own_port), "bound its own port as well")
        self.assertFalse(os.path.exists(own_bus), "created its own bus socket as well")
        self.assertEqual(http_get(port, "/healthz"), OK)
        self.assertEqual(scrape(port).value("evs_broadcast_bus_peers"), 1)
        self.assertEqual(b.stop(), 0, log[-2000:])
        self.assertTrue(os.path.exists(bus), "removed the socket file of the service manager")

    def test_listen_serves_on_inherited_http_socket_and_answers_the_connection_that_launched_it(self):
        broadcast = self.start_broadcast()
        port, own_port = free_port(), free_port()
        l = self.socket_activate(
            ["-l", f"127.0.0.1:{port}", "--fdname=http", *self.passenv_args(),
             LISTEN_BIN, "--port", str(own_port), "--bind", "127.0.0.1", "--bus", broadcast.bus,
             "--tokens", self.tokens_path], "listen-activated")
        l.wait_log(f"Listening on 127.0.0.1:{port}")
        kind = fresh_type()

        async def go():
            ws = await ws_subscribe(broadcast.port, self.token, [kind])
            # This publish's connection launches the daemon; it waits for the bus, then 200.
            self.assertEqual(await asyncio.to_thread(publish, port, kind, "launched", self.token), OK)
            self.assertEqual(await ws_recv_json(ws), event_dict(kind, "launched"))
            await ws.close()

        run(go())
        self.assertIn("using the socket 'http' passed by the service manager", l.log())
        self.assertFalse(port_accepts(own_port), "bound its own port as well")
        self.assertEqual(http_get(port, "/healthz"), OK)
        self.assertEqual(l.stop(), 0, l.log()[-2000:])

    def test_broadcast_restart_under_kept_bus_socket_loses_no_publish(self):
        # The test plays the .socket unit: it holds the bus socket and the ws
        # port across restarts of the daemon.
        bus = os.path.join(self.dir, "kept-bus.sock")
        kept_bus = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(kept_bus.close)
        kept_bus.bind(bus)
        kept_bus.listen(64)
        kept_ws = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(kept_ws.close)
        kept_ws.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        kept_ws.bind(("127.0.0.1", 0))
        kept_ws.listen(64)
        port = kept_ws.getsockname()[1]
        own_port, own_bus = free_port(), os.path.join(self.dir, "own-bus.sock")

        def start_service(n):
            return self.socket_activate(
                ["--fdname=bus:ws", *self.passenv_args(), BROADCAST_BIN, "--port", str(own_port),
                 "--bind", "127.0.0.1", "--bus", own_bus, "--tokens", self.tokens_path],
                f"broadcast-{n}", pass_fds=(kept_bus.fileno(), kept_ws.fileno()))

        gap_publishes = 5
        wait_ms = int(30000 * TIME_SCALE)
        b1 = start_service(1)
        l = self.start_listen("--bus-wait-ms", str(wait_ms), "--bus-ack-timeout-ms", str(wait_ms),
                              bus=bus)
        # The listen daemon's connection is what launches the first daemon.
        wait_for(lambda: http_get(l.port, "/healthz")[0] == 200, what="the first broadcast daemon")
        kind = fresh_type()
        results = {}

        def publish_in_gap(n):
            results[n] = publish(l.port, kind, {"n": n}, self.token, timeout=60)

        async def go():
            before = await ws_subscribe(port, self.token, [kind])
            self.assertEqual(await asyncio.to_thread(publish, l.port, kind, {"n": 0}, self.token), OK)
            self.assertEqual(await ws_recv_json(before), event_dict(kind, {"n": 0}))

            # Stop (the first half of a restart).
            code = await asyncio.to_thread(b1.stop)
            self.assertEqual(code, 0, b1.log()[-2000:])
            await asyncio.wait_for(before.wait_closed(), 10 * TIME_SCALE)
            self.assertEqual(before.close_code, 1001)
            await asyncio.to_thread(wait_for, lambda: http_get(l.port, "/healthz") == UNAVAILABLE,
                                    what="listen to see the broadcast daemon gone")
            log_mark = len(l.log())

            # Publishes and a subscriber arriving while no broadcast daemon runs.
            threads = [threading.Thread(target=publish_in_gap, args=(n,), daemon=True)
                       for n in range(1, gap_publishes + 1)]
            for t in threads:
                t.start()
            during = asyncio.ensure_future(ws_subscribe(port, self.token, [kind],
                                                        open_timeout=60 * TIME_SCALE))
            await asyncio.to_thread(
                wait_for, lambda: metric(l.port, "evs_listen_bus_events_waiting") == gap_publishes,
                what="the publishes to wait in the listen daemon")
            self.assertEqual(results, {}, "a publish was answered while no broadcast daemon ran")
            self.assertFalse(during.done(), "a subscriber was served while no broadcast daemon ran")

            # Start (the second half): launched by the connections waiting in the kept sockets.
            b2 = await asyncio.to_thread(start_service, 2)
            for t in threads:
                await asyncio.to_thread(t.join, 60 * TIME_SCALE)
                self.assertFalse(t.is_alive(), "a publish hung")
            self.assertEqual(results, {n: OK for n in range(1, gap_publishes + 1)}, l.log()[-3000:])
            during = await during

            after = await ws_subscribe(port, self.token, [kind])
            self.assertEqual(await asyncio.to_thread(publish, l.port, kind, {"n": 99}, self.token), OK)
            self.assertEqual(await ws_recv_json(after), event_dict(kind, {"n": 99}))
            # The subscriber that connected in the gap may have caught some of the
            # queued events (it was served when the new daemon started), each once.
            seen = []
            while True:
                message = await ws_recv_json(during)
                self.assertEqual(message["event"], kind)
                seen.append(message["data"]["n"])
                if seen[-1] == 99:
                    break
            self.assertEqual(len(seen), len(set(seen)))
            self.assertLessEqual(set(seen), set(range(1, gap_publishes + 1)) | {99})
            for ws in (during, after):
                await ws.close()
            return b2, log_mark

        b2, log_mark = run(go())
        self.assertIn("using the socket 'bus' passed by the service manager", b2.log())
        self.assertIn("using the socket 'ws' passed by the service manager", b2.log())
        self.assertFalse(os.path.exists(own_bus))
        # Every event handed over once, to the new daemon: the gap's and the last one.
        self.assertEqual(scrape(port).value("evs_broadcast_events_total"), gap_publishes + 1)
        self.assertEqual(metric(l.port, "evs_listen_publishes_total", code="BROADCAST_UNAVAILABLE"), 0)
        self.assertEqual(metric(l.port, "evs_listen_publishes_total", code="OK"), gap_publishes + 2)
        self.assertNotIn("refused", l.log()[log_mark:].lower(),
                         "a reconnect was refused: the kept socket was not used")
        self.assertEqual(b2.stop(), 0, b2.log()[-2000:])
        self.assertTrue(l.running())


if __name__ == "__main__":
    unittest.main()
