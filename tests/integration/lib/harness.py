"""Shared helpers for the integration tests.

Each test starts the real daemons it needs on free loopback ports inside a
temporary folder, talks to them with independent clients (http.client,
curl, Debian's python3-websockets) and stops them by PID. Nothing is left
running: every daemon is registered with the test case's cleanup.

Waiting is done on conditions (a port that accepts, a log line, a message
that arrives), polled with a deadline, never on a fixed sleep.
"""

import asyncio
import http.client
import json
import re
import os
import secrets
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

LISTEN_BIN = os.environ.get("EVS_LISTEN_BIN", "build/event-listen")
BROADCAST_BIN = os.environ.get("EVS_BROADCAST_BIN", "build/event-broadcast")

# Sanitizer builds are slower; every wait scales with this.
TIME_SCALE = float(os.environ.get("EVS_TIME_SCALE", "1"))

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


def wait_for(predicate, timeout=10.0, interval=0.01, what="condition"):
    """Polls predicate until it returns a true value; returns that value."""
    deadline = time.monotonic() + timeout * TIME_SCALE
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def new_token():
    return "tok-" + secrets.token_hex(16)


def log_report(log):
    """The kind of error report a daemon's log text holds: "sanitizer",
    "valgrind" or None."""
    if any(marker in log for marker in SANITIZER_MARKERS):
        return "sanitizer"
    # Under valgrind --quiet (EVS_*_BIN pointing at a wrapper), any
    # "==PID== " line is an error report.
    if re.search(r"^==\d+== ", log, re.M):
        return "valgrind"
    return None


class Daemon:
    """A daemon process with its stderr captured to a file."""

    def __init__(self, argv, env, log_path):
        self.argv = argv
        self.log_path = log_path
        self.log_file = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log_file, stderr=self.log_file,
                                     stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, text, timeout=10.0):
        return wait_for(lambda: text in self.log(), timeout, what=f"log line {text!r} in {self.argv[0]}")

    def running(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.running():
            os.kill(self.pid, sig)

    def stop(self, sig=None, timeout=15.0):
        """Stops the daemon (SIGTERM unless sig is given); returns its exit code."""
        if sig is None:  # the method signal() hides the module in the class body
            sig = signal.SIGTERM
        if self.running():
            os.kill(self.pid, sig)
            try:
                self.proc.wait(timeout * TIME_SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.argv[0]} did not stop within {timeout}s of {sig}")
        self.log_file.close()
        return self.proc.returncode

    def assert_clean_log(self, case):
        log = self.log()
        kind = log_report(log)
        case.assertIsNone(kind, f"{kind} report in {self.argv[0]} log:\n{log[-4000:]}")


class ServiceCase(unittest.TestCase):
    """Base class: a temp folder with a tokens file, and daemon starters."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="evs-test-")
        self.dir = self.tmp.name
        self.token = new_token()
        self.tokens_path = os.path.join(self.dir, "tokens")
        self.write_tokens([self.token])
        self.daemons = []
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        for d in reversed(self.daemons):
            if d.running():
                d.stop(signal.SIGKILL)
        for d in self.daemons:
            d.assert_clean_log(self)
        self.tmp.cleanup()

    def write_tokens(self, tokens, path=None):
        path = path or self.tokens_path
        tmp = path + ".new"
        with open(tmp, "w") as f:
            f.write("".join(t + "\n" for t in tokens))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def env(self, extra=None):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LISTEN_", "BROADCAST_", "BUS_", "TOKENS_", "HTTPS_", "TLS_"))}
        env["TOKENS_FILE"] = self.tokens_path
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        if extra:
            env.update(extra)
        return env

    def start_broadcast(self, *args, port=None, bus=None, env=None, wait=True, name="broadcast"):
        port = port or free_port()
        bus = bus or os.path.join(self.dir, f"{name}-{port}.sock")
        argv = [BROADCAST_BIN, "--port", str(port), "--bind", "127.0.0.1", "--bus", bus, *args]
        d = Daemon(argv, self.env(env), os.path.join(self.dir, f"{name}-{port}.log"))
        d.port, d.bus = port, bus
        self.daemons.append(d)
        if wait:
            wait_for(lambda: port_accepts(port) and os.path.exists(bus) or not d.running(),
                     what="broadcast daemon to listen")
            self.assertTrue(d.running(), d.log())
        return d

    def start_listen(self, *args, bus, port=None, env=None, wait=True, name="listen"):
        port = port or free_port()
        buses = bus if isinstance(bus, (list, tuple)) else [bus]
        argv = [LISTEN_BIN, "--port", str(port), "--bind", "127.0.0.1"]
        for b in buses:
            argv += ["--bus", b]
        argv += list(args)
        d = Daemon(argv, self.env(env), os.path.join(self.dir, f"{name}-{port}.log"))
        d.port = port
        self.daemons.append(d)
        if wait:
            wait_for(lambda: port_accepts(port) or not d.running(), what="listen daemon to listen")
            self.assertTrue(d.running(), d.log())
        return d

    def start_redis(self, password="redis-test-password-long-enough", name="redis", aof=False):
        """Debian's redis-server on a UNIX socket and a loopback port, with
        requirepass, in a folder of its own; returns once its log says it
        accepts connections. d.url is the unix: REDIS_URL, d.tcp_url the
        redis:// one, d.password_file a file holding the password (mode
        0600). Without aof nothing is kept (a restart starts empty); with
        it, the append-only file with appendfsync always: what Redis
        confirmed is on disk before its reply, so it survives a SIGKILL.
        restart_redis starts it again on the same socket, port and folder."""
        port = free_port()
        sock = os.path.join(self.dir, f"{name}.sock")
        data = os.path.join(self.dir, f"{name}-data")
        os.makedirs(data, exist_ok=True)
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if aof else ["--appendonly", "no"]
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--unixsocket", sock,
                "--unixsocketperm", "700", "--requirepass", password, "--save", "",
                *persistence, "--dir", data]
        d = Daemon(argv, self.env(), os.path.join(self.dir, f"{name}.log"))
        d.url, d.tcp_url, d.port, d.sock = f"unix:{sock}", f"redis://127.0.0.1:{port}", port, sock
        d.password, d.aof, d.starts, d.log_base = password, aof, 1, d.log_path
        d.password_file = os.path.join(self.dir, f"{name}.password")
        with open(d.password_file, "w") as f:
            f.write(password + "\n")
        os.chmod(d.password_file, 0o600)
        self.daemons.append(d)
        d.wait_log("Ready to accept connections")
        return d

    def restart_redis(self, old):
        """The redis-server of start_redis started again, once old has
        exited, on the same socket, port and folder (with aof, it loads what
        it had); returns the new one once it accepts connections."""
        self.assertFalse(old.running(), "restart_redis: the old redis-server still runs")
        d = Daemon(old.argv, self.env(), f"{old.log_base}.{old.starts + 1}")
        for attr in ("url", "tcp_url", "port", "sock", "password", "aof", "password_file", "log_base"):
            setattr(d, attr, getattr(old, attr))
        d.starts = old.starts + 1
        self.daemons.append(d)
        d.wait_log("Ready to accept connections", timeout=30)
        return d

    def start_pair(self, broadcast_args=(), listen_args=()):
        """Both daemons, with the listen daemon connected to the bus."""
        b = self.start_broadcast(*broadcast_args)
        l = self.start_listen(*listen_args, bus=b.bus)
        wait_for(lambda: http_get(l.port, "/healthz")[0] == 200, what="listen to reach the bus")
        return b, l


# --- HTTP ---------------------------------------------------------------------------------------

def http_request(port, method, path, body=None, headers=None, timeout=30.0, host="127.0.0.1"):
    """Returns (status, parsed JSON body or raw text, response headers)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout * TIME_SCALE)
    try:
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = data
        return resp.status, parsed, dict(resp.getheaders())
    finally:
        conn.close()


def http_get(port, path, host="127.0.0.1"):
    try:
        status, body, _ = http_request(port, "GET", path, timeout=5, host=host)
        return status, body
    except OSError:
        return 0, None


def publish(port, event, data=None, token=None, raw=None, scheme="Basic", timeout=30.0):
    """POST /event; returns (status, body)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"{scheme} {token}"
    if raw is None:
        payload = {"event": event}
        if data is not None:
            payload["data"] = data
        raw = json.dumps(payload)
    status, body, _ = http_request(port, "POST", "/event", raw, headers, timeout)
    return status, body


# --- what a subscriber receives for a publish ------------------------------------------------------

def event_text(event, data_text=None):
    """The exact subscriber message text the contract promises for a publish
    of event with data given as its JSON text (None: no data)."""
    msg = '{"type":"event","event":' + json.dumps(event)
    if data_text is not None:
        msg += ',"data":' + data_text
    return msg + "}"


def event_dict(event, data):
    """The subscriber message for a publish of event with data, parsed."""
    return {"type": "event", "event": event, "data": data}


# --- WebSocket ----------------------------------------------------------------------------------

def run(coro, timeout=60.0):
    """Runs a coroutine to completion with an overall deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout * TIME_SCALE))


async def ws_connect(port, **kwargs):
    import websockets
    kwargs.setdefault("max_size", 64 * 1024 * 1024)
    kwargs.setdefault("ping_interval", None)
    return await websockets.connect(f"ws://127.0.0.1:{port}/", **kwargs)


async def ws_subscribe(port, token, events, **kwargs):
    """Connects and sends an init; returns the socket once the init is OK."""
    ws = await ws_connect(port, **kwargs)
    await ws.send(json.dumps({"authentication": f"Basic {token}", "events": events}))
    reply = json.loads(await asyncio.wait_for(ws.recv(), 10 * TIME_SCALE))
    if reply != {"type": "init", "code": "OK"}:
        await ws.close()
        raise AssertionError(f"init failed: {reply}")
    return ws


async def ws_recv_json(ws, timeout=10.0):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout * TIME_SCALE))


# --- a bus peer standing in for a broadcast daemon ----------------------------------------------

BUS_MAGIC = 0x45565342
BUS_VERSION = 2
KIND_HELLO, KIND_EVENT, KIND_ACK, KIND_HISTORY, KIND_SYNC = 1, 2, 3, 4, 5


def bus_hello(version=BUS_VERSION):
    return struct.pack(">IBBHIHH", 8, KIND_HELLO, 0, 0, BUS_MAGIC, version, 0)


def bus_event(seq, event_type, message, run=1, number=None):
    """An EVENT frame (common/bus/bus_codec.h); its id is run and number
    (seq unless given)."""
    t = event_type.encode() if isinstance(event_type, str) else event_type
    body = struct.pack(">QQQB", seq, run, seq if number is None else number, len(t)) + t + message
    return struct.pack(">IBBH", len(body), KIND_EVENT, 0, 0) + body


def event_id(run, number):
    """The text of an id the listen daemon gives (common/bus/event_id.h)."""
    return f"{run:016x}-{number:016x}"


def bus_ack(seq):
    return struct.pack(">IBBHQ", 8, KIND_ACK, 0, 0, seq)


class FakeBroadcast:
    """A UNIX-socket server speaking the bus protocol, for testing the listen
    daemon alone. It records every event and acks it, unless told to hold
    acks (hold_acks) or to misbehave."""

    def __init__(self, path, hold_acks=False, send_hello=True):
        self.path = path
        self.hold_acks = hold_acks
        self.send_hello = send_hello
        self.events = []        # (seq, type bytes, message bytes)
        self.ids = []           # the id text of each of them
        self.history = []       # the id text of each HISTORY frame (sent before SYNC)
        self.syncs = []         # the (run, number) of each SYNC frame
        self.first_seqs = []    # the first sequence number of each connection
        self.connections = 0
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.conns = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(16)
        self.stopping = False
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while not self.stopping:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.conns.append(conn)
                self.cond.notify_all()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _recv_exact(self, conn, n):
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _serve(self, conn):
        try:
            header = self._recv_exact(conn, 8)
            body_len, kind = struct.unpack(">IB", header[:5])
            hello = self._recv_exact(conn, body_len)
            if kind != KIND_HELLO or struct.unpack(">IH", hello[:6]) != (BUS_MAGIC, BUS_VERSION):
                conn.close()
                return
            if self.send_hello:
                conn.sendall(bus_hello())
            first = True
            while True:
                header = self._recv_exact(conn, 8)
                body_len, kind = struct.unpack(">IB", header[:5])
                body = self._recv_exact(conn, body_len)
                if kind == KIND_SYNC:
                    with self.lock:
                        self.syncs.append(struct.unpack(">QQ", body))
                        self.cond.notify_all()
                    continue
                seq, run, number, tlen = struct.unpack(">QQQB", body[:25])
                with self.lock:
                    if first:
                        self.first_seqs.append(seq)
                        first = False
                    if kind == KIND_HISTORY:
                        self.history.append(event_id(run, number))
                    else:
                        self.events.append((seq, body[25:25 + tlen], body[25 + tlen:]))
                        self.ids.append(event_id(run, number))
                    self.cond.notify_all()
                    hold = self.hold_acks
                if not hold:
                    conn.sendall(bus_ack(seq))
        except (EOFError, OSError):
            pass

    def wait_events(self, n, timeout=10.0):
        with self.lock:
            ok = self.cond.wait_for(lambda: len(self.events) >= n, timeout * TIME_SCALE)
        if not ok:
            raise AssertionError(f"bus peer got {len(self.events)} events, expected {n}")
        return list(self.events)

    def wait_connections(self, n, timeout=10.0):
        with self.lock:
            ok = self.cond.wait_for(lambda: self.connections >= n, timeout * TIME_SCALE)
        if not ok:
            raise AssertionError(f"bus peer saw {self.connections} connections, expected {n}")

    def send_raw(self, data):
        """Sends bytes on every open connection (for garbage tests)."""
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.sendall(data)
            except OSError:
                pass

    def ack(self, seq):
        self.send_raw(bus_ack(seq))

    def close(self):
        self.stopping = True
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self.server.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
