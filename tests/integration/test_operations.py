"""Operating the daemons: what a service manager and a monitoring
system see.

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
- Signals: SIGTERM drains (subscribers get 1001; an in-flight publish gets its
  answer), SIGHUP reloads the tokens file.
- GET /healthz and GET /metrics, the latter checked by a strict parser of the
  Prometheus text format and by counters that must move by exact amounts.
"""

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib import harness  # noqa: E402
from lib.metrics import MetricsFormatError, metric, parse_metrics, scrape  # noqa: E402
from lib.rawws import RawWS, handshake_request  # noqa: E402
from lib.harness import (BROADCAST_BIN, LISTEN_BIN, TIME_SCALE, FakeBroadcast, event_dict, free_port,  # noqa: E402
                     http_get, http_request, port_accepts, publish, run, wait_for,
                     ws_connect, ws_recv_json, ws_subscribe)

OK = (200, {"code": "OK"})
UNAVAILABLE = (503, {"code": "BROADCAST_UNAVAILABLE"})

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"

# Variables a service manager sets; a daemon only sees them when a test sets them.
SERVICE_MANAGER_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
SANITIZER_VARS = ("ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS")


def fresh_type(prefix="ops"):
    return f"{prefix}-{secrets.token_hex(4)}"


# --- sd_notify ------------------------------------------------------------------------------------

class NotifySocket:
    """The service manager's end of NOTIFY_SOCKET: a datagram socket whose
    messages ("KEY=value" lines) are recorded with their arrival time."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.05)
        self.messages = []  # (monotonic time, {key: value}, raw text)
        self.cond = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopping:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic()
            text = data.decode("utf-8", "replace")
            fields = {}
            for line in text.split("\n"):
                if line:
                    key, _, value = line.partition("=")
                    fields[key] = value
            with self.cond:
                self.messages.append((now, fields, text))
                self.cond.notify_all()

    def count(self):
        with self.cond:
            return len(self.messages)

    def wait(self, predicate, start=0, timeout=10.0, what="a notify message"):
        """Index of the first message from start on whose fields satisfy predicate."""
        def find():
            for i in range(start, len(self.messages)):
                if predicate(self.messages[i][1]):
                    return i + 1  # true even for index 0
            return 0

        with self.cond:
            found = self.cond.wait_for(find, timeout * TIME_SCALE)
            if not found:
                got = [m[2] for m in self.messages[start:]][-10:]
                raise AssertionError(f"timed out waiting for {what}; got {got}")
            return found - 1

    def fields(self, i):
        with self.cond:
            return self.messages[i][1]

    def time(self, i):
        with self.cond:
            return self.messages[i][0]

    def all(self):
        with self.cond:
            return [m[1] for m in self.messages]

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


def has(key, value=None):
    return lambda f: key in f and (value is None or f[key] == value)


def status_only(f):
    return set(f) == {"STATUS"}


def read_all_until_closed(sock, timeout):
    """Reads until the peer closes (EOF or reset); returns what arrived."""
    sock.settimeout(timeout * TIME_SCALE)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


# --- daemons launched with inherited sockets -------------------------------------------------------

# Puts the given descriptors at 3, 4, ... (LISTEN_FDS_START), sets LISTEN_FDS and
# LISTEN_PID to its own pid, and execs the rest of its arguments: what PID 1
# does for a .socket unit. Python rather than sh: dash cannot redirect fds > 9.
FD_PASSER = r"""
import fcntl, os, sys
sep = sys.argv.index("--")
fds = [int(a) for a in sys.argv[1:sep]]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
for n, fd in enumerate(high):
    os.dup2(fd, 3 + n)
for fd in set(fds + high):
    if fd >= 3 + len(fds):
        os.close(fd)
os.environ["LISTEN_FDS"] = str(len(fds))
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ.pop("LISTEN_FDNAMES", None)
os.execvp(sys.argv[sep + 1], sys.argv[sep + 1:])
"""


class PassingDaemon(harness.Daemon):
    """harness.Daemon whose process inherits some descriptors (pass_fds)."""

    def __init__(self, argv, env, log_path, pass_fds):
        self.argv = argv
        self.log_path = log_path
        self.log_file = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log_file, stderr=self.log_file,
                                     stdin=subprocess.DEVNULL, pass_fds=pass_fds)
        self.pid = self.proc.pid


class OpsCase(harness.ServiceCase):

    def env(self, extra=None):
        env = super().env(extra)
        for key in SERVICE_MANAGER_VARS:
            if not (extra and key in extra):
                env.pop(key, None)
        return env

    def notify_socket(self, name="notify"):
        n = NotifySocket(os.path.join(self.dir, f"{name}.sock"))
        self.addCleanup(n.close)
        return n

    def notify_env(self, notify, watchdog_usec=None):
        env = {"NOTIFY_SOCKET": notify.path}
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        return env

    def passenv_args(self):
        """systemd-socket-activate hands its child a bare environment: pass
        the sanitizer settings on with -E."""
        env = self.env()
        return [f"-E{k}={env[k]}" for k in SANITIZER_VARS if k in env]

    def socket_activate(self, argv, name, pass_fds=()):
        self.assertTrue(os.access(SOCKET_ACTIVATE, os.X_OK),
                        "systemd-socket-activate (Debian package systemd) is needed")
        log = os.path.join(self.dir, f"{name}.log")
        if pass_fds:
            full = [sys.executable, "-c", FD_PASSER, *map(str, pass_fds), "--",
                    SOCKET_ACTIVATE, *argv]
            d = PassingDaemon(full, self.env(), log, pass_fds)
        else:
            d = harness.Daemon([SOCKET_ACTIVATE, *argv], self.env(), log)
        self.daemons.append(d)
        return d

    def wait_exit(self, d, timeout):
        """Waits for d to exit by itself; returns (exit code, seconds waited)."""
        t0 = time.monotonic()
        try:
            d.proc.wait(timeout * TIME_SCALE)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{d.argv[0]} did not exit within {timeout}s:\n{d.log()[-3000:]}")
        return d.stop(), time.monotonic() - t0

    def rewrite_tokens_in_place(self, tokens):
        """Rewrites the tokens file in place with the same size, then puts its
        mtime back. (The daemons' file watcher also compares the ctime, which
        no call can put back, so it may notice the change as well; the tests
        wait for the reload whose logged reason is SIGHUP.)"""
        st = os.stat(self.tokens_path)
        data = "".join(t + "\n" for t in tokens).encode()
        self.assertEqual(len(data), st.st_size, "tokens of the same length keep the size")
        fd = os.open(self.tokens_path, os.O_WRONLY)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.utime(self.tokens_path, ns=(st.st_atime_ns, st.st_mtime_ns))


# =================================================================================================

class MetricsParserTest(unittest.TestCase):
    """The checker itself must be able to fail."""

    GOOD = ("# HELP a_total things\n# TYPE a_total counter\na_total{code=\"x\\\"y\"} 3\n"
            "# HELP h latency\n# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"1\"} 2\n"
            "h_bucket{le=\"+Inf\"} 2\nh_sum 0.3\nh_count 2\n")

    def test_prometheus_checker_accepts_valid_text_and_rejects_each_format_error(self):
        m = parse_metrics(self.GOOD)
        self.assertEqual(m.value("a_total", code='x"y'), 3)
        self.assertEqual(m.value("h_count"), 2)
        bad = {
            "no HELP": "# TYPE a counter\na 1\n",
            "no TYPE": "# HELP a x\na 1\n",
            "TYPE after sample": "# HELP a x\na 1\n# TYPE a counter\n",
            "bad name": "# HELP 1a x\n# TYPE 1a counter\n1a 1\n",
            "bad value": "# HELP a x\n# TYPE a gauge\na 1_0\n",
            "bad label escape": "# HELP a x\n# TYPE a gauge\na{l=\"\\x\"} 1\n",
            "unterminated label": "# HELP a x\n# TYPE a gauge\na{l=\"x} 1\n",
            "repeated sample": "# HELP a x\n# TYPE a gauge\na 1\na 2\n",
            "split family": ("# HELP a x\n# TYPE a gauge\n# HELP b x\n# TYPE b gauge\n"
                             "a{l=\"1\"} 1\nb 1\na{l=\"2\"} 1\n"),
            "negative counter": "# HELP a x\n# TYPE a counter\na -1\n",
            "not cumulative": self.GOOD.replace('h_bucket{le="1"} 2', 'h_bucket{le="1"} 0'),
            "no +Inf": self.GOOD.replace('h_bucket{le="+Inf"} 2\n', ""),
            "+Inf != count": self.GOOD.replace("h_count 2", "h_count 3"),
            "no newline at end": self.GOOD[:-1],
        }
        for what, text in bad.items():
            with self.subTest(what):
                with self.assertRaises(MetricsFormatError):
                    parse_metrics(text)


# =================================================================================================

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


# =================================================================================================

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


# =================================================================================================

class HealthTest(OpsCase):

    def test_listen_healthz_is_503_without_broadcast_and_200_with_one(self):
        bus = os.path.join(self.dir, "bus.sock")
        l = self.start_listen(bus=bus)
        self.assertEqual(http_get(l.port, "/healthz"), UNAVAILABLE)
        b = self.start_broadcast(bus=bus)
        wait_for(lambda: http_get(l.port, "/healthz") == OK, what="healthz 200 once connected")
        self.assertEqual(b.stop(), 0)
        wait_for(lambda: http_get(l.port, "/healthz") == UNAVAILABLE, what="healthz 503 once gone")

    def test_broadcast_healthz_is_200(self):
        b = self.start_broadcast()
        self.assertEqual(http_get(b.port, "/healthz"), OK)


# =================================================================================================

class MetricsTest(OpsCase):

    def test_both_daemons_expose_valid_prometheus_text_with_the_documented_families(self):
        b, l = self.start_pair()
        families = {
            l.port: {"evs_listen_publishes_total": "counter",
                     "evs_listen_http_rejected_total": "counter",
                     "evs_listen_publishes_in_flight": "gauge",
                     "evs_listen_publish_duration_seconds": "histogram",
                     "evs_listen_connections": "gauge",
                     "evs_listen_bus_links": "gauge",
                     "evs_listen_bus_links_ready": "gauge",
                     "evs_listen_bus_reconnects_total": "counter",
                     "evs_listen_bus_events_in_flight": "gauge",
                     "evs_listen_bus_events_waiting": "gauge"},
            b.port: {"evs_broadcast_sessions": "gauge",
                     "evs_broadcast_sessions_authenticated": "gauge",
                     "evs_broadcast_subscriptions": "gauge",
                     "evs_broadcast_inits_total": "counter",
                     "evs_broadcast_events_total": "counter",
                     "evs_broadcast_deliveries_total": "counter",
                     "evs_broadcast_delivered_bytes_total": "counter",
                     "evs_broadcast_closes_total": "counter",
                     "evs_broadcast_backlog_bytes": "gauge",
                     "evs_broadcast_bus_peers": "gauge"},
        }
        for port, expected in families.items():
            with self.subTest(port=port):
                m = scrape(port)
                for name, kind in expected.items():
                    self.assertIn(name, m.families)
                    self.assertEqual(m.type_of(name), kind)

    def test_counters_move_by_exactly_the_known_sequence_on_both_daemons(self):
        b, l = self.start_pair(listen_args=["--max-body-size", "1024"])
        routed, unrouted, other = fresh_type("routed"), fresh_type("unrouted"), fresh_type("other")
        subscribers, good = 3, 4
        lb, bb = scrape(l.port), scrape(b.port)

        async def go():
            subs = [await ws_subscribe(b.port, self.token, [routed, other]) for _ in range(subscribers)]
            rejected = await ws_connect(b.port)
            await rejected.send(json.dumps({"authentication": "Basic nobody-has-this-token",
                                            "events": [routed]}))
            self.assertEqual(await ws_recv_json(rejected), {"type": "init", "code": "UNAUTHENTICATED"})

            def sequence():
                for n in range(good):
                    self.assertEqual(publish(l.port, routed, {"n": n}, self.token), OK)
                self.assertEqual(publish(l.port, unrouted, 1, self.token), OK)
                for token in (None, "wrong-token-0123456789abcdef", ""):
                    self.assertEqual(publish(l.port, routed, 1, token), (403, {"code": "UNAUTHENTICATED"}))
                self.assertEqual(publish(l.port, routed, 1, self.token, scheme="Digest"),
                                 (403, {"code": "AUTH_UNRECOGNIZED_SCHEME"}))
                for raw in ("not json", '{"event": ""}'):
                    self.assertEqual(publish(l.port, None, token=self.token, raw=raw),
                                     (400, {"code": "INVALID_BODY"}))
                big = json.dumps({"event": routed, "data": "x" * 2000})
                self.assertEqual(publish(l.port, None, token=self.token, raw=big),
                                 (413, {"code": "BODY_TOO_LARGE"}))

            await asyncio.to_thread(sequence)
            sizes = 0
            for ws in subs:
                for n in range(good):
                    text = await asyncio.wait_for(ws.recv(), 10 * TIME_SCALE)
                    self.assertEqual(json.loads(text), event_dict(routed, {"n": n}))
                    payload = len(text.encode())
                    sizes += payload + (2 if payload < 126 else 4)  # the frame's header
            la, ba = scrape(l.port), scrape(b.port)
            for ws in subs + [rejected]:
                await ws.close()
            return la, ba, sizes

        la, ba, frame_bytes = run(go())

        def moved(before, after, name, **labels):
            return after.value(name, **labels) - before.value(name, **labels)

        publish_answers = good + 1 + 3 + 1 + 2
        for name, labels, delta in [
            ("evs_listen_publishes_total", {"code": "OK"}, good + 1),
            ("evs_listen_publishes_total", {"code": "UNAUTHENTICATED"}, 3),
            ("evs_listen_publishes_total", {"code": "AUTH_UNRECOGNIZED_SCHEME"}, 1),
            ("evs_listen_publishes_total", {"code": "INVALID_BODY"}, 2),
            ("evs_listen_publishes_total", {"code": "FORBIDDEN"}, 0),
            ("evs_listen_publishes_total", {"code": "BROADCAST_UNAVAILABLE"}, 0),
            ("evs_listen_http_rejected_total", {"code": "BODY_TOO_LARGE"}, 1),
            ("evs_listen_http_rejected_total", {"code": "BAD_REQUEST"}, 0),
            ("evs_listen_publish_duration_seconds_count", {}, publish_answers),
            ("evs_listen_publish_duration_seconds_bucket", {"le": "+Inf"}, publish_answers),
            # every request above on its own connection, and the second scrape
            ("evs_listen_connections_accepted_total", {}, publish_answers + 1 + 1),
            ("evs_listen_bus_reconnects_total", {}, 0),
            ("evs_listen_publishes_in_flight", {}, 0),
        ]:
            with self.subTest(name=name, labels=labels):
                self.assertEqual(moved(lb, la, name, **labels), delta)
        self.assertGreater(moved(lb, la, "evs_listen_publish_duration_seconds_sum"), 0)
        self.assertEqual(la.value("evs_listen_bus_links_ready"), 1)

        for name, labels, delta in [
            ("evs_broadcast_sessions", {}, subscribers + 1),
            ("evs_broadcast_sessions_authenticated", {}, subscribers),
            ("evs_broadcast_sessions_opened_total", {}, subscribers + 1),
            ("evs_broadcast_subscriptions", {}, 2 * subscribers),
            ("evs_broadcast_event_types", {}, 2),
            ("evs_broadcast_inits_total", {"result": "ok"}, subscribers),
            ("evs_broadcast_inits_total", {"result": "rejected"}, 1),
            ("evs_broadcast_events_total", {}, good + 1),
            ("evs_broadcast_events_unrouted_total", {}, 1),
            ("evs_broadcast_deliveries_total", {}, good * subscribers),
            ("evs_broadcast_delivered_bytes_total", {}, frame_bytes),
            ("evs_broadcast_closes_total", {"reason": "slow_consumer"}, 0),
            ("evs_broadcast_closes_total", {"reason": "init_timeout"}, 0),
        ]:
            with self.subTest(name=name, labels=labels):
                self.assertEqual(moved(bb, ba, name, **labels), delta)
        self.assertEqual(ba.value("evs_broadcast_bus_peers"), 1)
        self.assertEqual(ba.value("evs_broadcast_backlog_bytes"), 0)

        # Closed sessions leave the gauges where they were.
        wait_for(lambda: scrape(b.port).value("evs_broadcast_sessions") == bb.value("evs_broadcast_sessions"),
                 what="sessions gauge back down")
        end = scrape(b.port)
        for name in ("evs_broadcast_sessions_authenticated", "evs_broadcast_subscriptions",
                     "evs_broadcast_event_types"):
            self.assertEqual(end.value(name), bb.value(name), name)

    def test_broadcast_close_counters_count_init_timeouts_and_oversized_messages(self):
        init_timeout_ms = int(300 * TIME_SCALE)
        b = self.start_broadcast("--init-timeout-ms", str(init_timeout_ms), "--max-message-size", "256")
        before = scrape(b.port)

        async def go():
            silent = await ws_connect(b.port)
            await asyncio.wait_for(silent.wait_closed(), 10 * TIME_SCALE)
            chatty = await ws_connect(b.port)
            await chatty.send("x" * 1000)
            await asyncio.wait_for(chatty.wait_closed(), 10 * TIME_SCALE)
            return silent.close_code, chatty.close_code

        self.assertEqual(run(go()), (1008, 1009))
        after = scrape(b.port)
        for reason, delta in (("init_timeout", 1), ("message_too_big", 1), ("slow_consumer", 0),
                              ("ping_timeout", 0), ("revoked", 0), ("token_expired", 0)):
            with self.subTest(reason):
                self.assertEqual(after.value("evs_broadcast_closes_total", reason=reason)
                                 - before.value("evs_broadcast_closes_total", reason=reason), delta)

    def test_listen_in_flight_and_waiting_gauges_follow_the_bus(self):
        fake = FakeBroadcast(os.path.join(self.dir, "fake.sock"), hold_acks=True)
        self.addCleanup(fake.close)
        l = self.start_listen(bus=fake.path)
        wait_for(lambda: http_get(l.port, "/healthz")[0] == 200, what="listen to reach the bus")
        results = []
        threads = [threading.Thread(target=lambda: results.append(
            publish(l.port, "held", 1, self.token)), daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        events = fake.wait_events(2)
        m = scrape(l.port)
        self.assertEqual(m.value("evs_listen_publishes_in_flight"), 2)
        self.assertEqual(m.value("evs_listen_bus_events_in_flight"), 2)
        self.assertEqual(m.value("evs_listen_bus_events_waiting"), 0)
        self.assertEqual(m.value("evs_listen_bus_links"), 1)
        self.assertEqual(m.value("evs_listen_bus_links_ready"), 1)
        fake.ack(max(seq for seq, _, _ in events))
        for t in threads:
            t.join(10 * TIME_SCALE)
        self.assertEqual(results, [OK, OK])
        m = scrape(l.port)
        self.assertEqual(m.value("evs_listen_publishes_in_flight"), 0)
        self.assertEqual(m.value("evs_listen_bus_events_in_flight"), 0)

        # With the bus gone, publishes wait: the waiting gauge counts them.
        fake.close()
        wait_for(lambda: http_get(l.port, "/healthz")[0] == 503, what="listen to see the bus gone")

        def waiting_publish():
            try:
                publish(l.port, "waits", 1, self.token, timeout=60)
            except OSError:
                pass  # the daemon is killed at the end of the test while this one waits

        t = threading.Thread(target=waiting_publish, daemon=True)
        t.start()
        wait_for(lambda: metric(l.port, "evs_listen_bus_events_waiting") == 1, what="waiting gauge 1")
        m = scrape(l.port)
        self.assertEqual(m.value("evs_listen_bus_links_ready"), 0)
        self.assertEqual(m.value("evs_listen_publishes_in_flight"), 1)

    def test_bus_peer_gauge_and_reconnect_counter_follow_restarts(self):
        b, l = self.start_pair()
        self.assertEqual(metric(b.port, "evs_broadcast_bus_peers"), 1)
        self.assertEqual(metric(l.port, "evs_listen_bus_reconnects_total"), 0)
        self.assertEqual(b.stop(), 0)
        wait_for(lambda: http_get(l.port, "/healthz")[0] == 503, what="listen to see the bus gone")
        self.assertEqual(metric(l.port, "evs_listen_bus_links_ready"), 0)
        b2 = self.start_broadcast(bus=b.bus, name="broadcast-2")
        wait_for(lambda: http_get(l.port, "/healthz")[0] == 200, what="listen to reconnect")
        self.assertEqual(metric(l.port, "evs_listen_bus_reconnects_total"), 1)
        self.assertEqual(metric(l.port, "evs_listen_bus_links_ready"), 1)
        self.assertEqual(metric(b2.port, "evs_broadcast_bus_peers"), 1)
        self.assertEqual(l.stop(), 0)
        wait_for(lambda: metric(b2.port, "evs_broadcast_bus_peers") == 0, what="bus peers 0")

    def test_metrics_token_guards_metrics_but_not_healthz(self):
        secret = "metrics-" + secrets.token_hex(8)
        b, l = self.start_pair(broadcast_args=["--metrics-token", secret],
                               listen_args=["--metrics-token", secret])
        for port in (l.port, b.port):
            with self.subTest(port=port):
                for auth in (None, "Bearer wrong", f"Basic {secret}", f"Bearer {self.token}",
                             f"Bearer {secret}x"):
                    headers = {"Authorization": auth} if auth else {}
                    status, body, _ = http_request(port, "GET", "/metrics", headers=headers)
                    self.assertEqual((status, body), (403, {"code": "UNAUTHENTICATED"}), auth)
                scrape(port, token=secret)  # 200 and valid
                self.assertEqual(http_get(port, "/healthz"), OK)

    def test_repeated_authorization_on_metrics_and_websocket_handshake_is_400_bad_request(self):
        secret = "metrics-" + secrets.token_hex(8)
        b, l = self.start_pair(broadcast_args=["--metrics-token", secret],
                               listen_args=["--metrics-token", secret])
        twice = f"Authorization: Bearer {secret}\r\nAuthorization: Bearer {secret}\r\n"
        handshake = handshake_request(host="x").decode()[:-2]  # the header lines go on
        for port, head in ((l.port, "GET /metrics HTTP/1.1\r\nHost: x\r\n"),
                           (b.port, "GET /metrics HTTP/1.1\r\nHost: x\r\n"), (b.port, handshake)):
            with self.subTest(port=port, request=head.split("\r\n")[0]):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10 * TIME_SCALE)
                sock.sendall((head + twice + "\r\n").encode())
                answer = read_all_until_closed(sock, 10)
                sock.close()
                head_text, _, body = answer.partition(b"\r\n\r\n")
                self.assertTrue(head_text.startswith(b"HTTP/1.1 400 "), answer)
                self.assertIn(b"\r\nContent-Type: application/json", head_text)
                self.assertEqual(json.loads(body), {"code": "BAD_REQUEST"})
                scrape(port, token=secret)  # once is fine

    def write_secret_file(self, path, text):
        tmp = path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def metrics_status(self, port, token=None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return http_request(port, "GET", "/metrics", headers=headers)[0]

    def test_metrics_token_file_guards_metrics_is_reread_on_sighup_and_never_falls_open(self):
        path = os.path.join(self.dir, "metrics-token")
        first, second = ("metrics-" + secrets.token_hex(8) for _ in range(2))
        self.write_secret_file(path, first + "\n")
        b = self.start_broadcast("--metrics-token-file", path)
        l = self.start_listen(bus=b.bus, env={"METRICS_TOKEN_FILE": path})
        wait_for(lambda: http_get(l.port, "/healthz")[0] == 200, what="listen to reach the bus")
        for d in (l, b):
            with open(f"/proc/{d.pid}/cmdline", "rb") as f:
                self.assertNotIn(first.encode(), f.read())
            self.assertEqual(self.metrics_status(d.port), 403)
            self.assertEqual(self.metrics_status(d.port, first + "x"), 403)
            scrape(d.port, token=first)
            self.assertEqual(http_get(d.port, "/healthz"), OK)
        # A new token (CRLF-ended this time) is read on SIGHUP.
        self.write_secret_file(path, second + "\r\n")
        for d in (l, b):
            d.signal(signal.SIGHUP)
            wait_for(lambda: self.metrics_status(d.port, second) == 200, what="the new token")
            self.assertEqual(self.metrics_status(d.port, first), 403)
        # A file that becomes unusable keeps the last token: the metrics stay guarded.
        self.write_secret_file(path, "")
        for d in (l, b):
            d.signal(signal.SIGHUP)
            d.wait_log(f"metrics token file {path} (SIGHUP): is empty; keeping the previous token")
            self.assertEqual(self.metrics_status(d.port), 403)
            scrape(d.port, token=second)

    def test_help_of_both_daemons_offers_the_metrics_token_file_over_the_flag(self):
        for binary in (LISTEN_BIN, BROADCAST_BIN):
            with self.subTest(program=os.path.basename(binary)):
                out = subprocess.run([binary, "--help"], env=self.env(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     timeout=20 * TIME_SCALE)
                self.assertEqual(out.returncode, 0, out.stderr)
                text = out.stdout.decode()
                for name in ("--metrics-token-file", "METRICS_TOKEN_FILE", "--metrics-token ",
                             "prefer --metrics-token-file"):
                    self.assertIn(name, text)

    def test_unusable_metrics_token_file_or_both_settings_stop_start_up_with_exit_2(self):
        good = os.path.join(self.dir, "good")
        self.write_secret_file(good, "metrics-" + secrets.token_hex(8) + "\n")
        files = {"empty": " \n", "two": "one\ntwo\n"}
        for name, text in files.items():
            self.write_secret_file(os.path.join(self.dir, name), text)
        cases = [
            (["--metrics-token-file", os.path.join(self.dir, "empty")], None, "is empty"),
            (["--metrics-token-file", os.path.join(self.dir, "two")], None,
             "holds more than one line"),
            (["--metrics-token-file", os.path.join(self.dir, "missing")], None,
             "No such file or directory"),
            (["--metrics-token-file", self.dir], None, "is not a regular file"),
            ([], {"METRICS_TOKEN_FILE": os.path.join(self.dir, "empty")}, "is empty"),
            (["--metrics-token", "inline-token"], {"METRICS_TOKEN_FILE": good}, "both set"),
            ([], {"METRICS_TOKEN": "inline-token", "METRICS_TOKEN_FILE": good}, "both set"),
        ]
        for binary in (LISTEN_BIN, BROADCAST_BIN):
            program = os.path.basename(binary)
            for args, env, mention in cases:
                with self.subTest(program=program, args=args, env=env):
                    argv = [binary, "--port", str(free_port()), "--bind", "127.0.0.1", "--bus",
                            os.path.join(self.dir, "bus.sock"), *args]
                    out = subprocess.run(argv, env=self.env(env), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         timeout=20 * TIME_SCALE)
                    stderr = out.stderr.decode()
                    self.assertEqual(out.returncode, 2, stderr)
                    lines = stderr.splitlines()
                    self.assertEqual(len(lines), 1, f"not a one-line reason: {stderr!r}")
                    self.assertTrue(lines[0].startswith(f"{program}: "), lines[0])
                    self.assertIn(mention, lines[0])


if __name__ == "__main__":
    unittest.main()
