#!/usr/bin/python3
"""Soak test with faults: both real daemons, real clients, loopback, bounded time.

    tests/soak/soak.py --minutes 10          the long form, by hand
    tests/soak/soak.py --minutes 10 --redis  the same on the Redis engine
    tests/integration/test_soak.py           the short form, run by ctest
    tests/integration/test_soak_redis.py     its Redis form, run by ctest

(EVS_LISTEN_BIN / EVS_BROADCAST_BIN name the binaries, as for the
integration tests; EVS_TIME_SCALE stretches every wait for slow builds.)

What runs, for the whole traffic period:
  - publishers (threads of one worker process, http.client keep-alive) post
    {"event": "soak-<t>", "data": {"pub": p, "seq": n}} one after another,
    flat out, recording for each publish its send time, answer time and
    status;
  - subscribers (worker processes, one asyncio loop each) on overlapping
    types: "steady" ones (a small RFC 6455 client on asyncio transports)
    that stay connected and reconnect only when the server goes away,
    "reconnecting" ones (Debian's python3-websockets) that connect, init,
    read for a random fraction of a second and close, again and again, and
    "slow" ones on every type (small receive buffer, reading a few KiB every
    200 ms for 6 s, then reading everything for 1 s) that fall behind until
    the server cuts them off (1013), notice it, and come back, and
    "stalled" ones on every type (small receive buffer) that read nothing at
    all for stall_s after their init (only sending a heartbeat pong each
    second), so that the server cuts them off, then read what is left and
    come back, and "resuming" ones (python3-websockets) whose init carries
    "since" ("now" the first time, then the id of the last event they got)
    and that drop their connection at random, half the time with a close,
    half the time abruptly, and resume at once.
    Each connection records its init-OK time, how and when it ended, and
    every event it received, in order; a resuming subscriber's record spans
    all its connections, from one init to the next resume that is refused.
  - faults, in this order: the broadcast daemon is killed (SIGKILL), left
    down for longer than the listen daemon's bus wait, and restarted on the
    same port and bus socket; the listen daemon is killed and restarted;
    the broadcast daemon is stopped with SIGTERM, left down as after the
    SIGKILL and restarted; it is stopped with SIGTERM again and restarted at
    once (a service manager's restart: publishes during its drain wait for
    the new daemon); the listen daemon is restarted with SIGTERM; the tokens
    file is rewritten several times, atomically (keeping the token in use)
    and in place (truncated and written again with the same tokens, over
    and over for a second).
  - with --redis (Config.redis), the daemons are on the Redis engine, on a
    redis-server the run starts (requirepass, UNIX socket, append-only file
    with appendfsync always), and the faults are: the broadcast daemon
    killed and left down, the listen daemon killed, Redis killed (SIGKILL)
    and left down for longer than the bus wait, then restarted from its
    append-only file, the broadcast daemon stopped with SIGTERM and
    restarted at once, Redis stopped with SIGTERM and restarted at once,
    the listen daemon restarted with SIGTERM, the tokens file rewrites.

Checked at the end (every time is CLOCK_MONOTONIC, shared by all processes):
  - every event answered 200 reached every connection subscribed to its
    type that had its init OK before the publish was sent and was still
    connected after its answer came back, exactly once and in order (per
    publisher by sequence number; across publishers, an event answered
    before another was sent arrives first). When a connection ended is
    judged from what the client can know: a close it started itself (all
    answered events were queued before the server read that close); a 1001
    close from a SIGTERM (events answered before the signal); anything else
    (cut-off, SIGKILL): events answered before the last event it received
    was sent. A resuming subscriber is checked as one connection across all
    its drops and the faults, and every one of its resumes must answer
    resumed:true (the listen daemon's history refills a broadcast daemon
    that restarted), unless both daemons died between the event it resumes
    from and the resume (then UNKNOWN or TOO_OLD, and a new stretch). A stalled subscriber that was cut off (a close 1013, or the
    connection ended and the daemon's log names it a slow consumer) loses
    what came after; one that was not gets everything. Nothing arrives that
    was not published or not subscribed to, and no subscriber is told
    REVOKED (its token never leaves the tokens file).
  - no publish sent after a SIGTERMed broadcast daemon closed its sessions
    (the first 1001 a subscriber saw) is answered 200 before the next daemon
    started: that daemon would have acked an event it delivers to nobody.
  - every publish got an answer within the bus wait plus a margin (no
    hang); a publish made entirely while no broadcast daemon ran got 503;
    503s happen only around broadcast outages and connection errors only
    around listen restarts; no other status (a 403 during a tokens rewrite
    would be a failure). At least one slow and one stalled subscriber was
    cut off.
  - once the clients have left: no session, no backlog, no shared frame
    left in the broadcast daemon; both daemons' open file descriptors
    (/proc/PID/fd) back to what they were idle before the run, and their
    RSS (/proc/PID/status) back within 20% + 8 MiB of the warm figure (the
    largest RSS of the final daemons from their restart to 62% of the run;
    growth over the last 38% would be a leak). RSS is not asserted under
    AddressSanitizer, whose quarantine keeps freed memory; LeakSanitizer
    checks leaks at each clean exit instead;
  - both daemons exit 0 on SIGTERM; no sanitizer report in any log.
  On Redis the same checks, with what a publish needs being Redis instead
  of a broadcast daemon: a publish made entirely while Redis was down got
  503, 503s happen only around Redis's restarts, the drain check does not
  apply (a 200 is Redis's, and the stream keeps the event for the next
  broadcast daemon), and every resume is exact (the stream is the history
  a restarted broadcast daemon loads; nothing is ever lost by a restart).
Printed: events published, deliveries checked, faults injected, largest RSS.
"""

import argparse
import array
import asyncio
import base64
import bisect
import hashlib
import http.client
import json
import multiprocessing
import os
import pickle
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from lib import harness  # noqa: E402
from lib.harness import TIME_SCALE, http_get, wait_for  # noqa: E402
from lib.metrics import metric  # noqa: E402

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
INIT_OK = b'{"type":"init","code":"OK"}'
EVENT_RE = re.compile(rb'\{"type":"event","event":"soak-(\d+)","data":\{"pub":(\d+),"seq":(\d+)(?:,"pad":"x*")?\}\}\Z')
# An event message to a session whose init carried "since": the same with its id.
ID_EVENT_RE = re.compile(rb'\{"type":"event","event":"soak-(\d+)","id":"([0-9A-Za-z._:-]{1,64})",'
                         rb'"data":\{"pub":(\d+),"seq":(\d+)(?:,"pad":"x*")?\}\}\Z')
INIT_NOW = INIT_OK  # the reply to since "now"
INIT_RESUMED = b'{"type":"init","code":"OK","resumed":true}'
INIT_NOT_RESUMED_RE = re.compile(rb'\{"type":"init","code":"OK","resumed":false,"reason":"([A-Z_]+)"\}\Z')
SEQ_BITS, PUB_BITS = 40, 16


def key_of(type_idx, pub, seq):
    return type_idx << (SEQ_BITS + PUB_BITS) | pub << SEQ_BITS | seq


def split_key(key):
    return key >> (SEQ_BITS + PUB_BITS), (key >> SEQ_BITS) & 0xFFFF, key & ((1 << SEQ_BITS) - 1)


class Config:
    """Sizes and timings of one run. Times are seconds of real time; waits
    that depend on the daemons' speed are multiplied by TIME_SCALE."""

    def __init__(self, seconds, steady, reconnecting, slow, stalled=0, resuming=0, publishers=4,
                 types=12, sub_procs=2, rewrites=3, redis=False):
        self.seconds = seconds
        self.redis = redis  # the Redis engine (a redis-server of the test's, append-only file on)
        # On Redis, publishes go on at full rate while no broadcast daemon runs, and the stream
        # (trimmed to the listen daemons' HISTORY_SIZE) must still hold the resumers' ids when
        # the next one loads it: room for a few outages' worth of events.
        self.history_size = 30000 if redis else None
        self.steady, self.reconnecting, self.slow, self.stalled = steady, reconnecting, slow, stalled
        self.resuming = resuming
        self.publishers = publishers
        self.types = types
        self.sub_procs = sub_procs
        self.rewrites = rewrites
        self.bus_wait_ms = int(1000 * TIME_SCALE)
        self.max_backlog = 128 * 1024
        self.close_timeout_ms = int(2000 * TIME_SCALE)
        self.ping_interval_ms = int(5000 * TIME_SCALE)
        self.stall_s = 12.0  # a stalled subscriber reads nothing for this long, then catches up
        self.margin = 2.0 * TIME_SCALE  # on top of the bus wait, for "no hang"
        self.seed = 7

    @classmethod
    def short(cls):
        return cls(seconds=45, steady=40, reconnecting=12, slow=8, stalled=4, resuming=8, rewrites=2)

    @classmethod
    def short_redis(cls):
        return cls(seconds=40, steady=30, reconnecting=10, slow=6, stalled=4, resuming=8, rewrites=2,
                   redis=True)

    @classmethod
    def long(cls, minutes, subscribers=200, redis=False):
        steady = int(subscribers * 0.6)
        slow = max(2, subscribers // 10)
        stalled = max(2, subscribers // 20)
        resuming = max(2, subscribers // 10)
        return cls(seconds=int(minutes * 60), steady=steady,
                   reconnecting=subscribers - steady - slow - stalled - resuming, slow=slow,
                   stalled=stalled, resuming=resuming, types=16, rewrites=max(3, int(minutes)),
                   redis=redis)


# --- process figures ----------------------------------------------------------------------------

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def stable_fd_count(pid):
    """The descriptor count once it holds still for three reads in a row
    (connections that just closed take a moment to be let go)."""
    seen = []

    def settled():
        seen.append(fd_count(pid))
        return len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3]
    wait_for(settled, timeout=10, interval=0.1, what=f"fd count of {pid} to settle")
    return seen[-1]


def is_asan_binary(path):
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


# --- publishers (a worker process, one thread each) ---------------------------------------------

class PublishLog:
    """What one publisher did: arrays indexed by seq - 1."""

    def __init__(self):
        self.ts = array.array("d")
        self.ta = array.array("d")
        self.status = array.array("h")
        self.type = array.array("h")
        self.odd = []  # (seq, status, body) answers that are neither 200 OK nor 503 BROADCAST_UNAVAILABLE


def publisher_thread(pub, port, token, cfg, stop, log):
    rng = random.Random(cfg.seed * 1000 + pub)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=cfg.bus_wait_ms / 1000 + 30 * TIME_SCALE)
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
    seq = 0
    while not stop.is_set():
        seq += 1
        t = rng.randrange(cfg.types)
        data = '{"pub":%d,"seq":%d' % (pub, seq)
        if seq % 50 == 0:
            data += ',"pad":"' + "x" * 4000 + '"'
        body = '{"event":"soak-%d","data":%s}}' % (t, data)
        status = 0
        ts = time.monotonic()
        try:
            conn.request("POST", "/event", body=body, headers=headers)
            resp = conn.getresponse()
            answer = resp.read()
            status = resp.status
            if resp.will_close:
                conn.close()
        except (OSError, http.client.HTTPException):
            conn.close()
        ta = time.monotonic()
        log.ts.append(ts)
        log.ta.append(ta)
        log.status.append(status)
        log.type.append(t)
        if status and (status, answer) not in ((200, b'{"code":"OK"}'), (503, b'{"code":"BROADCAST_UNAVAILABLE"}')):
            log.odd.append((seq, status, answer[:200]))
        if status == 0:
            time.sleep(0.02)  # the listen daemon is away: do not spin on refused connects
    conn.close()


def publisher_worker(cfg, port, token, stop, out_path):
    logs = [PublishLog() for _ in range(cfg.publishers)]
    threads = [threading.Thread(target=publisher_thread, args=(p, port, token, cfg, stop, logs[p]))
               for p in range(cfg.publishers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(out_path, "wb") as f:
        pickle.dump([(l.ts, l.ta, l.status, l.type, l.odd) for l in logs], f)


# --- subscribers (worker processes, one asyncio loop each) ---------------------------------------

class ConnRecord:
    """One subscriber connection, from its init OK to its end."""

    __slots__ = ("sub", "kind", "types", "port", "t_start", "t_init", "t_end", "end", "code",
                 "received", "problems", "last_id", "t_last")

    def __init__(self, sub, kind, types, port=None):
        self.sub, self.kind, self.types, self.port = sub, kind, types, port
        self.t_start = time.monotonic()  # connected, init not yet sent
        self.t_init = None   # init OK received
        self.t_end = None    # client close started, close frame seen, or connection lost
        self.end = None      # "client" | "server" (a close frame came) | "lost" | "abandoned"
                             # (a stalled one given up at the end of the run, still behind)
        self.code = None     # close code received
        self.received = array.array("Q")
        self.problems = []
        self.last_id = None  # a resuming subscriber's: the id of the last event it received
        self.t_last = None   # and when it came

    def text(self, payload):
        m = EVENT_RE.match(payload)
        if m:
            t = int(m[1])
            if self.t_init is None:
                self.problems.append("event before the init reply")
            if t not in self.types:
                self.problems.append(f"event of type soak-{t}, not subscribed ({self.types})")
            self.received.append(key_of(t, int(m[2]), int(m[3])))
        elif payload == INIT_OK and self.t_init is None:
            self.t_init = time.monotonic()
        elif payload.startswith(b'{"type":"auth"'):
            # REVOKED or TOKEN_EXPIRED: the token in use never leaves the tokens file, and an
            # in-place rewrite of it with the same tokens must not withdraw it either.
            self.problems.append(f"told {payload[:80]!r}: its credential was withdrawn")
        else:
            self.problems.append(f"unexpected message {payload[:120]!r}")

    def state(self):
        return (self.sub, self.kind, self.types, self.port, self.t_start, self.t_init, self.t_end,
                self.end, self.code, self.received, self.problems)


def mask_frame(opcode, payload):
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes((key * (n // 4 + 1))[:n], "big")).to_bytes(n, "big") if n else b""
    return head + key + masked


class RawSubscriber(asyncio.Protocol):
    """A minimal RFC 6455 client: handshake (accept key checked), one masked
    init, then frames: text recorded, pings answered, close answered."""

    def __init__(self, rec, token, slow):
        self.rec, self.slow = rec, slow
        self.fast = False
        self.key = base64.b64encode(os.urandom(16))
        self.init = json.dumps({"authentication": f"Basic {token}",
                                "events": [f"soak-{t}" for t in rec.types]}).encode()
        self.buf = bytearray()
        self.handshaken = False
        self.closing = False  # we sent a close
        self.stalled = False  # a stalled subscriber that has not caught up yet
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        self.ended = loop.create_future()
        self.tr = None

    def connection_made(self, transport):
        self.tr = transport
        transport.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        b"Sec-WebSocket-Key: " + self.key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")

    def data_received(self, data):
        if self.slow and not self.fast and self.rec.t_init is not None:
            self.tr.pause_reading()  # one read per tick (see slow_ticker)
        self.buf += data
        if not self.handshaken:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            del self.buf[:end + 4]
            expected = base64.b64encode(hashlib.sha1(self.key + WS_GUID).digest()).decode()
            headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in head[1:] if ":" in l)}
            if not head[0].startswith("HTTP/1.1 101") or headers.get("sec-websocket-accept") != expected:
                self.rec.problems.append(f"handshake refused: {head[0]!r}")
                self.tr.abort()
                return
            self.handshaken = True
            self.tr.write(mask_frame(OP_TEXT, self.init))
        self.parse()

    def parse(self):
        buf, off, n = self.buf, 0, len(self.buf)
        rec = self.rec
        while n - off >= 2:
            b0, b1 = buf[off], buf[off + 1]
            length, pos = b1 & 0x7F, off + 2
            if length == 126:
                if n - off < 4:
                    break
                length, pos = int.from_bytes(buf[off + 2:off + 4], "big"), off + 4
            elif length == 127:
                if n - off < 10:
                    break
                length, pos = int.from_bytes(buf[off + 2:off + 10], "big"), off + 10
            if n - pos < length:
                break
            payload = bytes(buf[pos:pos + length])
            off = pos + length
            opcode = b0 & 0x0F
            if b1 & 0x80 or not b0 & 0x80 or b0 & 0x70:
                rec.problems.append(f"bad server frame header {b0:#x} {b1:#x}")
            if opcode == OP_TEXT:
                was_ready = rec.t_init is not None
                rec.text(payload)
                if not was_ready and rec.t_init is not None and not self.ready.done():
                    self.ready.set_result(True)
            elif opcode == OP_PING:
                if not self.closing:
                    self.tr.write(mask_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                rec.code = code
                if not self.closing:
                    rec.t_end, rec.end = time.monotonic(), "server"
                    self.tr.write(mask_frame(OP_CLOSE, payload[:2]))
                # (when we had started the close, the end stays ours whatever code crossed it)
                self.closing = True
                self.tr.close()
                break
            elif opcode != OP_PONG:
                rec.problems.append(f"unexpected opcode {opcode}")
        del buf[:off]

    def client_close(self):
        self.rec.t_end, self.rec.end = time.monotonic(), "client"
        self.closing = True
        self.tr.write(mask_frame(OP_CLOSE, struct.pack("!H", 1000)))

    def connection_lost(self, exc):
        if self.rec.end is None:
            self.rec.t_end, self.rec.end = time.monotonic(), "lost"
        if not self.ended.done():
            self.ended.set_result(True)
        if not self.ready.done():
            self.ready.set_result(False)


class SubscriberWorker:
    def __init__(self, cfg, port, token, specs, stop, seed):
        self.cfg, self.port, self.token, self.specs, self.stop = cfg, port, token, specs, stop
        self.rng = random.Random(seed)
        self.records = []
        self.connect_failures = 0
        self.resumes = []  # (sub, t, since, answer, when since came) of every init with since an id

    async def main(self):
        loop = asyncio.get_running_loop()
        self.stopping = loop.create_future()
        waiter = loop.run_in_executor(None, self.stop.wait)
        waiter.add_done_callback(lambda _: self.stopping.done() or self.stopping.set_result(True))
        tasks = []
        for sub, kind, types in self.specs:
            if kind == "reconnect":
                tasks.append(asyncio.ensure_future(self.reconnecting(sub, types)))
            elif kind == "resume":
                tasks.append(asyncio.ensure_future(self.resuming(sub, types)))
            else:
                tasks.append(asyncio.ensure_future(self.raw_loop(sub, kind, types)))
        await asyncio.gather(*tasks)

    async def raw_loop(self, sub, kind, types):
        while not self.stopping.done():
            ok = await self.raw_connection(sub, kind, types)
            if not ok and not self.stopping.done():
                self.connect_failures += 1
                await asyncio.sleep(0.05)  # the broadcast daemon is away: retry soon, not in a spin

    async def raw_connection(self, sub, kind, types):
        loop = asyncio.get_running_loop()
        slow, stalled = kind == "slow", kind == "stalled"
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if slow or stalled:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", self.port))
            rec = ConnRecord(sub, kind, types, sock.getsockname()[1])
            proto = RawSubscriber(rec, self.token, slow)
            tr, _ = await loop.create_connection(lambda: proto, sock=sock)
        except OSError:
            sock.close()
            return False
        done, _ = await asyncio.wait([proto.ready, self.stopping], timeout=10 * TIME_SCALE,
                                     return_when=asyncio.FIRST_COMPLETED)
        if not proto.ready.done() or not proto.ready.result():
            tr.abort()
            if not proto.ready.done() and not self.stopping.done():
                rec.problems.append("no init reply within 10 s")
            if rec.problems:
                self.records.append(rec.state())
            return False
        ticker = (asyncio.ensure_future(self.slow_ticker(tr, proto)) if slow
                  else asyncio.ensure_future(self.stall(tr, proto)) if stalled else None)
        await asyncio.wait([proto.ended, self.stopping], return_when=asyncio.FIRST_COMPLETED)
        if ticker:
            ticker.cancel()
        if not proto.ended.done():
            if slow or stalled and proto.stalled:
                rec.t_end, rec.end = time.monotonic(), "abandoned" if stalled else "client"
                tr.abort()  # behind by up to the backlog: no point in a close handshake
            else:
                if not proto.closing:
                    proto.client_close()
                await asyncio.wait([proto.ended], timeout=self.cfg.close_timeout_ms / 1000 + 10 * TIME_SCALE)
                if not proto.ended.done():
                    rec.problems.append("the server did not answer a close")
                    tr.abort()
        self.records.append(rec.state())
        return True

    async def slow_ticker(self, tr, proto):
        """Slow phases of 6 s (one read of a few KiB per 200 ms, far below the event rate) and
        short fast phases. A cut-off is only seen once the bytes queued before it are read,
        so the fast phases make a slow reader notice, and come back for another round."""
        while not proto.ended.done():
            until = time.monotonic() + 6.0
            while time.monotonic() < until and not proto.ended.done():
                await asyncio.sleep(0.2)  # the slow reader's pace
                tr.resume_reading()
            proto.fast = True
            tr.resume_reading()
            await asyncio.sleep(1.0)
            proto.fast = False

    async def stall(self, tr, proto):
        """Reads nothing at all for stall_s: the server sees a subscriber that has stopped and
        cuts it off (1013) once its backlog is full. Meanwhile it sends an unsolicited pong every
        second (a heartbeat, RFC 6455 §5.5.3), so that it is not dropped for missing the
        server's pings first. Then it reads everything: the events queued before the cut-off,
        and the close, or the end of the connection when the server gave up on the close
        handshake; or, when it was not cut off, every event, for 2 s more before it closes."""
        proto.stalled = True
        tr.pause_reading()
        until = time.monotonic() + self.cfg.stall_s
        while time.monotonic() < until and not proto.ended.done():
            tr.write(mask_frame(OP_PONG, b""))
            await asyncio.sleep(1.0)  # the heartbeat's pace
        proto.stalled = False
        tr.resume_reading()
        await asyncio.wait([proto.ended], timeout=2.0)
        if not proto.ended.done():
            proto.client_close()

    async def reconnecting(self, sub, types):
        import websockets
        url = f"ws://127.0.0.1:{self.port}/"
        init = json.dumps({"authentication": f"Basic {self.token}", "events": [f"soak-{t}" for t in types]})
        while not self.stopping.done():
            try:
                ws = await websockets.connect(url, ping_interval=None, max_queue=None, max_size=1 << 24,
                                              open_timeout=10 * TIME_SCALE, close_timeout=10 * TIME_SCALE)
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException):
                self.connect_failures += 1
                await asyncio.sleep(0.05)
                continue
            rec = ConnRecord(sub, "reconnect", types)
            try:
                await ws.send(init)
                reply = await asyncio.wait_for(ws.recv(), 10 * TIME_SCALE)
            except (asyncio.TimeoutError, websockets.exceptions.ConnectionClosed):
                await ws.close()
                continue
            rec.text(reply.encode())
            if rec.t_init is None:
                self.records.append(rec.state())
                await ws.close()
                continue
            reader = asyncio.ensure_future(self.ws_reader(ws, rec))
            life = self.rng.uniform(0.2, 1.5)
            await asyncio.wait([reader, self.stopping], timeout=life, return_when=asyncio.FIRST_COMPLETED)
            if not reader.done():
                rec.t_end, rec.end = time.monotonic(), "client"
                await ws.close()
                await asyncio.wait([reader], timeout=10 * TIME_SCALE)
                if not reader.done():
                    rec.problems.append("reader still running after the close")
                    reader.cancel()
                rec.code = ws.close_code
            self.records.append(rec.state())

    async def resuming(self, sub, types):
        """A subscriber that drops its connection at random (half the time a close, half the
        time an abrupt end) and comes back with "since" the last id it received: its record
        spans every connection from one init to the next resume that is refused, so the
        checks see one subscriber that must have received every event of its types once,
        in order, across the drops and the faults."""
        import websockets
        url = f"ws://127.0.0.1:{self.port}/"
        events = [f"soak-{t}" for t in types]
        rec, last_id, t_last = None, None, None
        while not self.stopping.done():
            try:
                ws = await websockets.connect(url, ping_interval=None, max_queue=None, max_size=1 << 24,
                                              open_timeout=10 * TIME_SCALE, close_timeout=10 * TIME_SCALE)
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException):
                self.connect_failures += 1
                await asyncio.sleep(0.05)
                continue
            since = last_id or "now"
            try:
                await ws.send(json.dumps({"authentication": f"Basic {self.token}", "events": events,
                                          "since": since}))
                # A resume may wait for a restarted daemon's history (at most 10 s).
                reply = (await asyncio.wait_for(ws.recv(), 15 * TIME_SCALE)).encode()
            except (asyncio.TimeoutError, websockets.exceptions.ConnectionClosed):
                await ws.close()
                continue
            t_reply = time.monotonic()
            refused = INIT_NOT_RESUMED_RE.match(reply)
            if last_id:
                self.resumes.append((sub, t_reply, last_id, refused[1].decode() if refused else
                                     "resumed" if reply == INIT_RESUMED else reply[:80].decode("utf-8", "replace"),
                                     t_last))
            if rec is None or refused or reply not in (INIT_RESUMED, INIT_NOW):
                # A new stretch: from this init on, everything must arrive.
                if rec is not None:
                    self.records.append(rec.state())
                rec = ConnRecord(sub, "resume", types)
                if reply not in (INIT_RESUMED, INIT_NOW) and not refused:
                    rec.problems.append(f"init reply {reply[:80]!r}")
                    self.records.append(rec.state())
                    rec = None
                    await ws.close()
                    continue
                rec.t_init = t_reply
            rec.end = rec.code = rec.t_end = None
            reader = asyncio.ensure_future(self.id_reader(ws, rec))
            life = self.rng.uniform(0.2, 1.5)
            await asyncio.wait([reader, self.stopping], timeout=life, return_when=asyncio.FIRST_COMPLETED)
            if not reader.done():
                rec.t_end = time.monotonic()
                if self.stopping.done() or self.rng.random() < 0.5:
                    rec.end = "client"
                    await ws.close()
                else:
                    rec.end = "dropped"  # the connection just ends: no close handshake
                    ws.transport.abort()
                await asyncio.wait([reader], timeout=10 * TIME_SCALE)
                if not reader.done():
                    rec.problems.append("reader still running after the close")
                    reader.cancel()
                rec.code = ws.close_code
            if rec.last_id:
                last_id, t_last = rec.last_id, rec.t_last
        if rec is not None:
            self.records.append(rec.state())

    async def id_reader(self, ws, rec):
        import websockets
        try:
            async for msg in ws:
                payload = msg.encode() if isinstance(msg, str) else msg
                m = ID_EVENT_RE.match(payload)
                if not m:
                    rec.problems.append(f"unexpected message {payload[:120]!r}")
                    continue
                t = int(m[1])
                if t not in rec.types:
                    rec.problems.append(f"event of type soak-{t}, not subscribed ({rec.types})")
                rec.received.append(key_of(t, int(m[3]), int(m[4])))
                rec.last_id = m[2].decode()
                rec.t_last = time.monotonic()
        except websockets.exceptions.ConnectionClosed:
            pass
        if rec.end is None:
            rec.t_end = time.monotonic()
            rec.code = ws.close_code
            rec.end = "server" if ws.close_code not in (None, 1006) else "lost"

    async def ws_reader(self, ws, rec):
        import websockets
        try:
            async for msg in ws:
                rec.text(msg.encode() if isinstance(msg, str) else msg)
        except websockets.exceptions.ConnectionClosed:
            pass
        if rec.end is None:
            rec.t_end = time.monotonic()
            rec.code = ws.close_code
            rec.end = "server" if ws.close_code not in (None, 1006) else "lost"
        else:
            rec.code = ws.close_code


def subscriber_worker(cfg, port, token, specs, stop, out_path, seed):
    w = SubscriberWorker(cfg, port, token, specs, stop, seed)
    asyncio.run(w.main())
    with open(out_path, "wb") as f:
        pickle.dump({"records": w.records, "connect_failures": w.connect_failures,
                     "resumes": w.resumes}, f)


# --- the run ------------------------------------------------------------------------------------

class Fault:
    def __init__(self, what, t_signal, outage=False, at_once=False):
        self.what = what
        self.outage = outage      # what publishes need (the broadcast daemon, or Redis) left down
                                  # for longer than the bus wait
        self.at_once = at_once    # restarted at once (a service manager's restart)
        self.t_signal = t_signal  # signal sent / file replaced
        self.t_dead = None        # the process was seen gone
        self.t_restart = None     # the new process was started
        self.t_ready = None       # the new process serves


class Soak:
    """One soak run inside a harness.ServiceCase (for its daemons, tokens
    file and log checks)."""

    def __init__(self, case, cfg):
        self.case, self.cfg = case, cfg
        self.faults = []
        self.rss_max = {"broadcast": 0, "listen": 0}
        self.generation = 0
        self.problems = []
        # What a publish needs for its 200: a broadcast daemon's ack on the UNIX bus, Redis's on
        # the Redis engine (where a broadcast daemon's absence is no outage for publishers).
        self.publishes_need = "redis" if cfg.redis else "broadcast"

    def problem(self, text):
        self.problems.append(text)

    # daemons ---------------------------------------------------------------------------------

    def redis_args(self):
        if not self.cfg.redis:
            return []
        return ["--redis-url", self.r.url, "--redis-password-file", self.r.password_file,
                "--history-size", str(self.cfg.history_size)]

    def broadcast_args(self):
        c = self.cfg
        return ["--max-backlog", str(c.max_backlog), "--close-timeout-ms", str(c.close_timeout_ms),
                "--ping-interval-ms", str(c.ping_interval_ms), *self.redis_args()]

    def listen_args(self):
        return ["--bus-wait-ms", str(self.cfg.bus_wait_ms), *self.redis_args()]

    def start_broadcast(self, port=None, bus=None):
        self.generation += 1
        # On Redis the bus socket is not made: the daemon serves once its port accepts.
        d = self.case.start_broadcast(*self.broadcast_args(), port=port, bus=bus,
                                      name=f"broadcast-g{self.generation}", wait=not self.cfg.redis)
        if self.cfg.redis:
            wait_for(lambda: harness.port_accepts(d.port) or not d.running(), what="broadcast daemon")
            self.case.assertTrue(d.running(), d.log())
        return d

    def start_listen(self, port=None):
        self.generation += 1
        return self.case.start_listen(*self.listen_args(), bus=self.b.bus, port=port,
                                      name=f"listen-g{self.generation}")

    def wait_bus(self):
        wait_for(lambda: http_get(self.l.port, "/healthz")[0] == 200, timeout=15, what="listen to reach the bus")

    def sample_rss(self):
        while not self.sampling_done.wait(0.5):
            sample = [round(time.monotonic() - self.t0, 1)]
            for name in ("broadcast", "listen"):
                d = getattr(self, name[0])
                try:
                    rss = rss_kib(d.pid)
                except (OSError, AssertionError):
                    rss = None  # between a kill and a restart
                else:
                    self.rss_max[name] = max(self.rss_max[name], rss)
                sample.append(rss)
            self.rss_timeline.append(tuple(sample))

    def restart(self, which, sig, outage=True):
        """Stops a daemon with sig and starts it again. outage: the broadcast daemon or Redis
        is left down for longer than the bus wait first (when publishes need it, they meet
        the outage: 503)."""
        old = {"broadcast": self.b, "listen": self.l, "redis": getattr(self, "r", None)}[which]
        outage = outage and which in ("broadcast", "redis")
        fault = Fault(f"{which} {signal.Signals(sig).name}", time.monotonic(),
                      outage=outage and which == self.publishes_need, at_once=not outage)
        self.faults.append(fault)
        code = old.stop(sig, timeout=30)
        fault.t_dead = time.monotonic()
        expected = -signal.SIGKILL if sig == signal.SIGKILL else 0
        if which == "redis" and sig == signal.SIGTERM:
            expected = 0  # redis-server exits 0 once it has flushed its append-only file
        if code != expected:
            self.problem(f"{fault.what}: exit status {code}, expected {expected}")
        if outage:
            # Down for longer than the bus wait, so that publishes meet the outage.
            # (publishers that met the drop all start their next publish together and wait a
            # whole bus wait: 2.5 waits leave room for one publish to start and end inside)
            time.sleep(self.cfg.bus_wait_ms / 1000 * 2.5 + 0.5)
        fault.t_restart = time.monotonic()
        if which == "redis":
            self.r = self.case.restart_redis(old)
            self.wait_bus()
        elif which == "broadcast":
            self.b = self.start_broadcast(port=old.port, bus=old.bus)
            self.wait_bus()
        else:
            fault.t_restart = time.monotonic()
            self.l = self.start_listen(port=old.port)
            self.wait_bus()
        fault.t_ready = time.monotonic()

    def rewrite_tokens(self, n):
        others = [harness.new_token() for _ in range(n % 3 + 1)]
        self.case.write_tokens(others[:1] + [self.case.token] + others[1:])
        f = Fault("tokens file rewritten", time.monotonic())
        f.t_ready = f.t_signal
        self.faults.append(f)

    def rewrite_tokens_in_place(self):
        """The tokens file written over in place with the tokens it holds (an editor that
        writes in place, `cat tokens.new > tokens`): truncated, then written, again and again
        for a second, so that the daemons' polls meet it empty or half written."""
        path = self.case.tokens_path
        with open(path) as f:
            content = f.read()
        fault = Fault("tokens file rewritten in place", time.monotonic())
        while time.monotonic() < fault.t_signal + 1.0:
            with open(path, "w") as f:
                f.write(content)
        fault.t_ready = time.monotonic()
        self.faults.append(fault)

    # the run -------------------------------------------------------------------------------------

    def specs(self):
        """(sub id, kind, types) for every subscriber; every type has steady subscribers."""
        c, rng = self.cfg, random.Random(self.cfg.seed)
        out = []
        for i in range(c.steady):
            types = {i % c.types, (i * 7 + 3) % c.types}
            if i % 3 == 0:
                types.add(rng.randrange(c.types))
            out.append((len(out), "steady", tuple(sorted(types))))
        for i in range(c.reconnecting):
            out.append((len(out), "reconnect", tuple(sorted(rng.sample(range(c.types), rng.randint(1, 3))))))
        for i in range(c.slow):
            out.append((len(out), "slow", tuple(range(c.types))))  # every type: the most traffic
        for i in range(c.stalled):
            out.append((len(out), "stalled", tuple(range(c.types))))
        for i in range(c.resuming):
            out.append((len(out), "resume", tuple(sorted(rng.sample(range(c.types), rng.randint(1, 3))))))
        return out

    def run(self):
        c = self.cfg
        ctx = multiprocessing.get_context("fork")
        if c.redis:
            self.r = self.case.start_redis(aof=True)
        self.b = self.start_broadcast()
        self.l = self.start_listen()
        self.wait_bus()
        asan = is_asan_binary(harness.BROADCAST_BIN)

        # Idle figures, after one warm-up delivery.
        warm = harness.publish(self.l.port, "soak-warm", {"warm": 1}, self.case.token)
        self.case.assertEqual(warm, (200, {"code": "OK"}))
        idle_fds = {"broadcast": stable_fd_count(self.b.pid), "listen": stable_fd_count(self.l.pid)}
        idle_rss = {"broadcast": rss_kib(self.b.pid), "listen": rss_kib(self.l.pid)}

        work = os.path.join(self.case.dir, "soak")
        os.makedirs(work)
        pub_stop, sub_stop = ctx.Event(), ctx.Event()
        specs = self.specs()
        sub_procs = []
        for k in range(c.sub_procs):
            mine = specs[k::c.sub_procs]
            p = ctx.Process(target=subscriber_worker,
                            args=(c, self.b.port, self.case.token, mine, sub_stop,
                                  os.path.join(work, f"sub-{k}.pkl"), c.seed + k), daemon=True)
            p.start()
            sub_procs.append(p)
        # Publishing starts once the steady subscribers are in (not a requirement of the checks,
        # which use each connection's own init time, but it makes the figures larger).
        wait_for(lambda: metric(self.b.port, "evs_broadcast_sessions_authenticated") >= c.steady,
                 timeout=30, what="steady subscribers to connect")
        pub = ctx.Process(target=publisher_worker,
                          args=(c, self.l.port, self.case.token, pub_stop, os.path.join(work, "pub.pkl")),
                          daemon=True)
        t0 = time.monotonic()
        pub.start()
        self.sampling_done = threading.Event()
        self.t0, self.rss_timeline = t0, []
        sampler = threading.Thread(target=self.sample_rss, daemon=True)
        sampler.start()

        # The timeline: faults in the first half, then the final daemons run on under load.
        D = c.seconds
        if c.redis:
            # Redis killed (what it confirmed is in its append-only file) and left down, then
            # stopped cleanly and restarted at once; the daemons' faults as on the UNIX bus.
            plan = [(0.08, lambda: self.restart("broadcast", signal.SIGKILL)),
                    (0.16, lambda: self.restart("listen", signal.SIGKILL)),
                    (0.24, lambda: self.restart("redis", signal.SIGKILL)),
                    (0.34, lambda: self.restart("broadcast", signal.SIGTERM, outage=False)),
                    (0.42, lambda: self.restart("redis", signal.SIGTERM, outage=False)),
                    (0.50, lambda: self.restart("listen", signal.SIGTERM)),
                    (0.62, "baseline")]
        else:
            plan = [(0.10, lambda: self.restart("broadcast", signal.SIGKILL)),
                    (0.20, lambda: self.restart("listen", signal.SIGKILL)),
                    (0.30, lambda: self.restart("broadcast", signal.SIGTERM)),
                    (0.40, lambda: self.restart("broadcast", signal.SIGTERM, outage=False)),
                    (0.50, lambda: self.restart("listen", signal.SIGTERM)),
                    (0.62, "baseline")]
        for i in range(c.rewrites):
            plan.append((0.18 + 0.8 * i / c.rewrites, lambda i=i: self.rewrite_tokens(i)))
            plan.append((0.24 + 0.7 * i / c.rewrites, self.rewrite_tokens_in_place))
        plan.sort(key=lambda p: p[0])
        warm_rss = None
        for at, action in plan:
            delay = t0 + at * D - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the run itself: traffic flows meanwhile
            if action == "baseline":
                # The warm figure: the largest RSS of the final daemons since their restart,
                # their working set under this load (later growth would be a leak).
                since = max(f.t_ready for f in self.faults
                            if f.what.split()[0] in ("broadcast", "listen", "redis"))
                warm_rss = {}
                for k, name in enumerate(("broadcast", "listen")):
                    seen = [smp[k + 1] for smp in self.rss_timeline
                            if smp[0] >= since - self.t0 and smp[k + 1] is not None]
                    warm_rss[name] = max(seen + [rss_kib(getattr(self, name[0]).pid)])
            else:
                action()
        delay = t0 + D - time.monotonic()
        if delay > 0:
            time.sleep(delay)

        # Publishers stop first, then subscribers close.
        pub_stop.set()
        pub.join(60 * TIME_SCALE)
        self.case.assertEqual(pub.exitcode, 0, "publisher worker failed or hung")
        t_pub_end = time.monotonic()
        sub_stop.set()
        for p in sub_procs:
            p.join(120 * TIME_SCALE)
            self.case.assertEqual(p.exitcode, 0, "subscriber worker failed or hung")
        self.sampling_done.set()
        sampler.join()

        # Clients gone: the daemons are back to idle.
        wait_for(lambda: metric(self.b.port, "evs_broadcast_sessions") == 0, timeout=30,
                 what="every session to end")
        for name in ("broadcast", "listen"):
            d = getattr(self, name[0])
            wait_for(lambda: fd_count(d.pid) <= idle_fds[name], timeout=30,
                     what=f"{name} fds back to {idle_fds[name]} (now {fd_count(d.pid)})")
        end_fds = {"broadcast": fd_count(self.b.pid), "listen": fd_count(self.l.pid)}
        end_rss = {"broadcast": rss_kib(self.b.pid), "listen": rss_kib(self.l.pid)}
        backlog = metric(self.b.port, "evs_broadcast_backlog_bytes")
        frames = metric(self.b.port, "evs_broadcast_shared_frame_bytes")
        history = metric(self.b.port, "evs_broadcast_history_frame_bytes")

        with open(os.path.join(work, "pub.pkl"), "rb") as f:
            pubs = pickle.load(f)
        records, connect_failures, resumes = [], 0, []
        for k in range(c.sub_procs):
            with open(os.path.join(work, f"sub-{k}.pkl"), "rb") as f:
                r = pickle.load(f)
            records += r["records"]
            connect_failures += r["connect_failures"]
            resumes += r["resumes"]

        broadcast_logs = [d.log() for d in self.case.daemons if "broadcast" in d.argv[0]]
        slow_cuts = sum(log.count("slow consumer, over") for log in broadcast_logs)
        cut_ports = {int(p) for log in broadcast_logs
                     for p in re.findall(r"ws 127\.0\.0\.1:(\d+): slow consumer, over", log)}
        figures = self.check(pubs, records, cut_ports)
        figures.update(self.check_resumes(resumes, records))

        # Clean exits (LeakSanitizer runs at exit in the sanitizer build).
        for d in (self.l, self.b, *([self.r] if c.redis else [])):
            code = d.stop(signal.SIGTERM, timeout=30)
            if code != 0:
                self.problem(f"{d.argv[0]} exited {code} on SIGTERM")

        figures.update(
            seconds=round(t_pub_end - t0, 1), idle_fds=idle_fds, end_fds=end_fds, idle_rss_kib=idle_rss,
            warm_rss_kib=warm_rss, end_rss_kib=end_rss, largest_rss_kib=self.rss_max,
            slow_consumer_cutoffs=slow_cuts, connect_retries=connect_failures,
            faults=[f.what for f in self.faults])
        self.print_figures(figures)

        # Final assertions.
        # The frames still alive are exactly the history's.
        if backlog != 0 or frames != history:
            self.problem(f"after the clients left: backlog {backlog} bytes, shared frames {frames} bytes "
                         f"(the history's {history} bytes)")
        if slow_cuts == 0 and c.slow:
            self.problem("no slow subscriber was ever cut off (1013)")
        if figures["stalled_cutoffs"] == 0 and c.stalled:
            self.problem("no stalled subscriber was ever cut off (1013)")
        for name in ("broadcast", "listen"):
            if end_fds[name] > idle_fds[name]:
                self.problem(f"{name}: {end_fds[name]} fds open after the run, {idle_fds[name]} idle before")
            limit = warm_rss[name] * 1.2 + 8 * 1024
            if not asan and end_rss[name] > limit:
                self.problem(f"{name}: RSS {end_rss[name]} KiB after the run, over {limit:.0f} KiB "
                             f"(warm {warm_rss[name]} KiB + 20% + 8 MiB)")
        if self.problems:
            shown = "\n  ".join(self.problems[:40])
            raise AssertionError(f"{len(self.problems)} problems:\n  {shown}")
        return figures

    # checking --------------------------------------------------------------------------------

    def check(self, pubs, records, cut_ports):
        c = self.cfg
        limit = c.bus_wait_ms / 1000 + c.margin
        b_faults = [f for f in self.faults if f.what.startswith("broadcast")]
        l_faults = [f for f in self.faults if f.what.startswith("listen")]
        need_faults = [f for f in self.faults if f.what.startswith(self.publishes_need)]
        sigterms = sorted(f.t_signal for f in b_faults if f.what.endswith("SIGTERM"))
        # A killed daemon may still serve for a moment after the signal is sent: what counts is
        # that its death (between the signal and the moment it was seen dead) overlaps the
        # connection.
        sigkills = sorted((f.t_signal, f.t_dead) for f in b_faults if f.what.endswith("SIGKILL"))

        def near(faults, ts, ta, after):
            return any(ts <= f.t_ready + after and ta >= f.t_signal for f in faults)

        # Publishes: answers, no hang, 503 only around outages of what publishes need.
        by_type = [[] for _ in range(c.types)]  # (ts, ta, key) of every 200
        counts = {200: 0, 503: 0, 0: 0}
        outage_503 = [0] * len(need_faults)
        for p, (ts_a, ta_a, st_a, ty_a, odd) in enumerate(pubs):
            for seq, status, body in odd[:3]:
                self.problem(f"publisher {p} seq {seq}: answered {status} {body!r}")
            if len(odd) > 3:
                self.problem(f"publisher {p}: {len(odd)} answers neither 200 nor 503 in all")
            for i in range(len(ts_a)):
                ts, ta, status = ts_a[i], ta_a[i], st_a[i]
                counts[status] = counts.get(status, 0) + 1
                if ta - ts > limit:
                    self.problem(f"publisher {p} seq {i + 1}: answer after {ta - ts:.2f} s (limit {limit:.2f} s)")
                if status == 200:
                    by_type[ty_a[i]].append((ts, ta, key_of(ty_a[i], p, i + 1)))
                elif status == 503:
                    if not near(need_faults, ts, ta, limit):
                        self.problem(f"publisher {p} seq {i + 1}: 503 at {ts - self.faults[0].t_signal:+.2f} s "
                                     f"from the first fault, outside any {self.publishes_need} outage")
                elif status == 0:
                    if not near(l_faults, ts, ta, 0.5 * TIME_SCALE):
                        self.problem(f"publisher {p} seq {i + 1}: connection error outside a listen restart")
                for k, f in enumerate(need_faults):
                    if ts >= f.t_dead and ta <= f.t_restart:
                        if status == 503:
                            outage_503[k] += 1
                        else:
                            self.problem(f"publisher {p} seq {i + 1}: {status} while {f.what.split()[0]} "
                                         f"was down")
        for k, f in enumerate(need_faults):
            if f.outage and outage_503[k] == 0:
                self.problem(f"{f.what}: no publish met the outage with a 503")
        for lst in by_type:
            lst.sort()
        type_ts = [[x[0] for x in lst] for lst in by_type]

        # Publish times by key, for order checks.
        def times(key):
            _, p, seq = split_key(key)
            if p >= len(pubs) or not 1 <= seq <= len(pubs[p][0]):
                return None
            return pubs[p][0][seq - 1], pubs[p][1][seq - 1], pubs[p][2][seq - 1], pubs[p][3][seq - 1]

        # On Redis a 200 is Redis's, and a broadcast daemon reads the event from the stream a
        # moment later: a close (the client's, or a 1001) covers the events answered at least
        # read_lag before it, and none answered just before or while Redis was away (those are
        # read once the broadcast daemon's reader is back, after its reconnect backoff).
        read_lag = 2.0 * TIME_SCALE
        r_faults = [f for f in self.faults if f.what.startswith("redis")]

        def read_by(t):
            t -= read_lag
            for f in r_faults:
                if f.t_signal - read_lag <= t <= f.t_ready + read_lag:
                    t = f.t_signal - read_lag
            return t

        checked = delivered = stalled_cuts = 0
        ends = {}
        for (sub, kind, types, port, t_start, t_init, t_end, end, code, received, problems) in records:
            label = f"subscriber {sub} ({kind}, types {types})"
            for text in problems[:3]:
                self.problem(f"{label}: {text}")
            if t_init is None:
                continue
            delivered += len(received)
            ends[(kind, end, code)] = ends.get((kind, end, code), 0) + 1
            # Order, once, only published events of subscribed types.
            last_seq = {}
            max_ts = 0.0
            last_ts = t_init
            bad = 0
            for key in received:
                t, p, seq = split_key(key)
                info = times(key)
                if info is None or info[3] != t:
                    self.problem(f"{label}: received {split_key(key)}, which was not published as such")
                    bad += 1
                    continue
                ts, ta, status, _ = info
                if seq <= last_seq.get(p, 0):
                    self.problem(f"{label}: publisher {p} seq {seq} after seq {last_seq[p]} (duplicate or out of order)")
                    bad += 1
                last_seq[p] = seq
                if status == 200 and ta < max_ts:
                    self.problem(f"{label}: publisher {p} seq {seq} (answered before another event was sent) "
                                 f"arrived after that event")
                    bad += 1
                max_ts = max(max_ts, ts)
                last_ts = ts
                if bad > 5:
                    break
            # Until when it was surely still subscribed, as the client can tell.
            if kind == "stalled" and (end == "server" and code == 1013 or end == "lost" and (
                    port in cut_ports or any(t_start <= f.t_dead and f.t_signal <= t_end for f in b_faults))):
                # Cut off while it read nothing (its close frame, queued behind its backlog, is
                # gone when it comes back after the close timeout), or its daemon went away
                # meanwhile: what came is what was queued before, the rest an expected loss.
                until = last_ts
                stalled_cuts += code == 1013 or port in cut_ports
            elif kind == "stalled" and end == "abandoned":
                until = last_ts  # the run ended while it was still behind
            elif kind == "resume" and not (end == "client" and code in (1000, 1001)):
                # A stretch of resumes that ended with a refused resume (a problem of its own,
                # see check_resumes): what it received until its last event is checked.
                until = last_ts
            elif end == "client" and kind != "slow" and code in (1000, 1001):
                # Its own close: every event answered before it started was queued before the
                # server read that close. If a 1001 crossed it, the server's close came first:
                # events answered before the SIGTERM were queued before that.
                before = [t for t in sigterms if t_init <= t <= t_end] if code == 1001 else []
                until = before[-1] if before else t_end
            elif kind == "slow" or end in ("lost", "client") or (end == "server" and code != 1001):
                until = last_ts
                if kind != "slow" and end == "client" and code not in (None, 1006):
                    self.problem(f"{label}: its close was crossed by a close {code} from the server")
                elif kind != "slow":
                    if end == "lost" and not any(t_start <= dead and sent <= t_end
                                                 for sent, dead in sigkills):
                        self.problem(f"{label}: connection lost at {t_end - self.t0:.3f} s (init OK at "
                                     f"{t_init - self.t0:.3f} s) without a broadcast SIGKILL; faults at "
                                     + ", ".join(f"{f.what} {f.t_signal - self.t0:.3f} s" for f in b_faults))
                    elif end == "server":
                        self.problem(f"{label}: closed by the server with {code}")
            elif end == "server":  # 1001
                before = [t for t in sigterms if t <= t_end]
                if not before:
                    self.problem(f"{label}: closed 1001 without a SIGTERM")
                    continue
                until = before[-1]
            if c.redis and until > last_ts:
                until = max(last_ts, read_by(until))
            have = set(received)
            missing = 0
            for t in types:
                lst, tss = by_type[t], type_ts[t]
                lo = bisect.bisect_right(tss, t_init)
                hi = bisect.bisect_left(tss, until)
                for ts, ta, key in lst[lo:hi]:
                    if ta < until:
                        checked += 1
                        if key not in have:
                            missing += 1
                            if missing <= 3:
                                self.problem(f"{label}: missing {split_key(key)} sent {ts - t_init:.3f} s "
                                             f"after its init, answered {until - ta:.3f} s before its end ({end} {code})")
            if missing > 3:
                self.problem(f"{label}: {missing} events missing in all")

        # A stopping broadcast daemon closes its sessions (1001) at the signal: from then on an
        # event it acked would reach nobody. So no publish sent after the first 1001 came may be
        # answered 200 before the next daemon started; it must wait for that one (or get 503).
        # (On Redis a 200 is Redis's: the stream holds the event for the next daemon.)
        drain_200 = 0
        for f in b_faults:
            if not f.what.endswith("SIGTERM") or c.redis:
                continue
            closes = [r[6] for r in records if r[7] == "server" and r[8] == 1001 and r[6] is not None
                      and f.t_signal <= r[6] <= f.t_dead]
            if not closes:
                self.problem(f"{f.what} at {f.t_signal - self.t0:.1f} s: no subscriber saw its 1001")
                continue
            t_stop, wrong = min(closes), 0
            for p, (ts_a, ta_a, st_a, ty_a, odd) in enumerate(pubs):
                for i in range(len(ts_a)):
                    if st_a[i] == 200 and ts_a[i] > t_stop and ta_a[i] < f.t_restart:
                        wrong += 1
                        if wrong <= 3:
                            self.problem(f"publisher {p} seq {i + 1}: sent {ts_a[i] - t_stop:.3f} s into the "
                                         f"drain of {f.what} and answered 200 before the next daemon started "
                                         f"(acked by a daemon delivering to nobody)")
            if wrong > 3:
                self.problem(f"{f.what}: {wrong} publishes answered 200 during its drain")
            drain_200 += wrong
        published = sum(len(p[0]) for p in pubs)
        return {"events_published": published, "answered_200": counts.get(200, 0),
                "answered_503": counts.get(503, 0), "connection_errors": counts.get(0, 0),
                "connections": sum(1 for r in records if r[5] is not None),
                "stalled_cutoffs": stalled_cuts, "drain_200": drain_200,
                "deliveries_received": delivered, "deliveries_checked": checked,
                "connection_ends": {f"{k[0]}/{k[1]}/{k[2]}": v for k, v in sorted(ends.items(), key=str)},
                "faults_injected": len(self.faults)}

    def check_resumes(self, resumes, records):
        """Every resume of a resuming subscriber must have been exact (resumed:true): with
        the listen daemon's history a broadcast daemon that restarted holds the events, and
        the broadcast daemon's history spans a restart of the listen daemon. The one
        exception: both daemons died between the event it resumes from and the resume, so
        nobody holds that event any more; then the answer must be UNKNOWN or TOO_OLD, and
        the subscriber's next stretch starts there. Its records (one per stretch) were
        checked with the others: complete and in order. On Redis there is no exception: the
        stream, kept by Redis across its own restarts (append-only file), is the history that
        a broadcast daemon loads when it starts, whichever daemons died."""
        answers = {}
        deaths = {w: [f.t_dead for f in self.faults if f.what.startswith(w)]
                  for w in ("broadcast", "listen")}
        for sub, t, since, answer, t_since in resumes:
            both_lost = not self.cfg.redis and all(any(t_since <= dead <= t for dead in deaths[w])
                                                   for w in deaths)
            if answer != "resumed" and both_lost and answer in ("UNKNOWN", "TOO_OLD"):
                answer += " (both daemons died since)"
            elif answer != "resumed":
                self.problem(f"subscriber {sub} (resume): since {since} (received at "
                             f"{t_since - self.t0:.3f} s) answered {answer} at {t - self.t0:.3f} s, "
                             f"not resumed")
            answers[answer] = answers.get(answer, 0) + 1
        stretches = [r for r in records if r[1] == "resume" and r[5] is not None]
        if self.cfg.resuming and not resumes:
            self.problem("no resuming subscriber ever resumed")
        return {"resumes": len(resumes), "resume_answers": answers, "resume_stretches": len(stretches),
                "resumed_events": sum(len(r[9]) for r in stretches)}

    def print_figures(self, fig):
        lines = [
            "== soak figures",
            f"  traffic: {fig['seconds']} s on the {'Redis' if self.cfg.redis else 'UNIX socket'} bus, "
            f"{self.cfg.publishers} publishers, "
            f"{self.cfg.steady + self.cfg.reconnecting + self.cfg.slow + self.cfg.stalled + self.cfg.resuming} subscribers "
            f"({self.cfg.steady} steady, {self.cfg.reconnecting} reconnecting, {self.cfg.slow} slow, "
            f"{self.cfg.stalled} stalled, {self.cfg.resuming} resuming)",
            f"  events published: {fig['events_published']} (200: {fig['answered_200']}, "
            f"503: {fig['answered_503']}, connection errors: {fig['connection_errors']})",
            f"  deliveries checked: {fig['deliveries_checked']} (received in all: {fig['deliveries_received']}, "
            f"over {fig['connections']} connections)",
            f"  connection ends (kind/end/code): {fig['connection_ends']}",
            f"  slow-consumer cut-offs: {fig['slow_consumer_cutoffs']} (of stalled subscribers: "
            f"{fig['stalled_cutoffs']}); connect retries: {fig['connect_retries']}",
            f"  publishes answered 200 during a broadcast drain: {fig['drain_200']}",
            f"  resumes: {fig['resumes']} {fig['resume_answers']}; {self.cfg.resuming} resuming subscribers "
            f"in {fig['resume_stretches']} stretches, {fig['resumed_events']} events received by them, "
            f"each checked complete and in order",
            f"  faults injected: {fig['faults_injected']}: "
            + ", ".join(f"{f.what}{' (restarted at once)' if f.at_once else ''}"
                        f" at {f.t_signal - self.t0:.1f} s" for f in self.faults),
            f"  largest RSS (KiB): {fig['largest_rss_kib']}",
            f"  RSS (KiB) idle before: {fig['idle_rss_kib']}, warm: {fig['warm_rss_kib']}, after: {fig['end_rss_kib']}",
            f"  fds idle before: {fig['idle_fds']}, after: {fig['end_fds']}",
            "  RSS timeline (s, broadcast KiB, listen KiB): "
            + " ".join(f"{t}:{b}/{l}" for t, b, l in self.rss_timeline[::max(1, len(self.rss_timeline) // 24)]),
            f"  problems: {len(self.problems)}",
        ]
        print("\n".join(lines), file=sys.stderr, flush=True)


class SoakCase(harness.ServiceCase):
    config = None  # set by the caller

    def run_soak(self, cfg):
        return Soak(self, cfg).run()


class LongSoak(SoakCase):
    def test_soak(self):
        self.run_soak(self.config)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--redis", action="store_true",
                        help="the Redis engine: a redis-server of its own (append-only file on), "
                             "killed and restarted among the faults")
    args = parser.parse_args()
    cfg = Config.long(args.minutes, args.subscribers, redis=args.redis)
    cfg.publishers = args.publishers
    LongSoak.config = cfg
    suite = unittest.TestSuite([LongSoak("test_soak")])
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
