"""The Redis engine under faults, through the real daemons, a real
redis-server started here (requirepass, UNIX socket and loopback port) and
real WebSocket clients: Redis killed during a flat-out publish and started
again from its append-only file, a broadcast daemon cut off from Redis for
10 s, entries in the stream that are not ours, and each daemon restarted.

What is asserted each time is the engine's promise: every publish answered
200 reaches every subscriber that was there before it, in order, once, with
the id of its 200; a publish Redis did not confirm is answered 503, never
200.
"""

import asyncio
import http.client
import json
import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib import harness  # noqa: E402
from lib.harness import TIME_SCALE, run, wait_for, ws_subscribe  # noqa: E402
from lib.metrics import metric  # noqa: E402
from lib.relay import TcpRelay  # noqa: E402
from lib.resp import Resp, RespError  # noqa: E402

from test_redis import RedisCase  # noqa: E402
from test_resume import RESUMED, fresh_type, post, receive, subscribe, with_id  # noqa: E402

STREAM = "event-server:events"
META = STREAM + ":meta"
UNAVAILABLE = b'{"code":"BROADCAST_UNAVAILABLE"}'


def id_number(event_id):
    """(epoch, number) of an id as the Redis engine gives them (test_redis
    checks their form; a client would never parse one)."""
    run_text, number = event_id.split("-")
    return run_text, int(number, 16)


async def until(predicate, timeout, what):
    """Polls predicate from a coroutine (the event loop keeps reading the
    sessions meanwhile) until it is true, within timeout * TIME_SCALE."""
    deadline = time.monotonic() + timeout * TIME_SCALE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Publishers:
    """Publisher threads, one keep-alive connection each, posting
    {"event": kind, "data": {"p": p, "n": n}} one after the other (flat out,
    or with pause seconds between two), recording for each publish
    (p, n, status, Event-Id, body, send time, answer time); status 0 is a
    connection that failed."""

    def __init__(self, port, token, kind, count=4, pause=0.0, timeout=60.0):
        self.port, self.token, self.kind, self.pause = port, token, kind, pause
        self.timeout = timeout * TIME_SCALE
        self.records = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._publish, args=(p,), daemon=True)
                        for p in range(count)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(self.timeout + 30 * TIME_SCALE)
            assert not t.is_alive(), "a publisher hangs"

    def _publish(self, p):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        headers = {"Authorization": f"Basic {self.token}", "Content-Type": "application/json"}
        n = 0
        while not self.stopping.is_set():
            n += 1
            body = json.dumps({"event": self.kind, "data": {"p": p, "n": n}}, separators=(",", ":"))
            status, event_id, answer = 0, None, b""
            ts = time.monotonic()
            try:
                conn.request("POST", "/event", body=body, headers=headers)
                resp = conn.getresponse()
                answer = resp.read()
                status, event_id = resp.status, resp.getheader("Event-Id")
                if resp.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException):
                conn.close()
            ta = time.monotonic()
            with self.lock:
                self.records.append((p, n, status, event_id, answer, ts, ta))
            if status == 0:
                time.sleep(0.05)  # the listen daemon is away: no spin on refused connects
            elif self.pause:
                time.sleep(self.pause)  # the pace of a paced publisher, not a wait
        conn.close()

    def all(self):
        with self.lock:
            return list(self.records)

    def count(self, status, sent_after=0.0):
        with self.lock:
            return sum(1 for r in self.records if r[2] == status and r[5] >= sent_after)


class Collector:
    """Every message of a session, read by a task as it comes."""

    def __init__(self, ws):
        self.ws = ws
        self.messages = []
        self.task = asyncio.ensure_future(self._read())

    async def _read(self):
        import websockets
        try:
            async for m in self.ws:
                self.messages.append(m)
        except websockets.exceptions.ConnectionClosed:
            pass

    def ids(self):
        return [json.loads(m).get("id") for m in self.messages]

    async def until_id(self, event_id, timeout=60.0):
        await until(lambda: self.messages and json.loads(self.messages[-1]).get("id") == event_id,
                    timeout, f"the event {event_id} on a session ({len(self.messages)} messages so far)")

    async def close(self):
        await self.ws.close()
        await self.task


class RedisFaultCase(RedisCase):

    def check_delivery(self, label, messages, records, kind, end_id):
        """messages (the texts a session with "since" got, up to end_id, the
        sentinel published last) against the publishers' records: every
        publish answered 200 is there once, with its id; anything else there
        was published (a publish answered 503 may have reached Redis before
        it was lost) and came once; ids increase, each publisher's events
        come in its order, and an event answered before another was sent
        comes before it."""
        by_key = {(r[0], r[1]): r for r in records}
        answered = {k: r for k, r in by_key.items() if r[2] == 200}
        got = [json.loads(m) for m in messages]
        ends = [i for i, m in enumerate(got) if m.get("id") == end_id]
        self.assertEqual(len(ends), 1, f"{label}: the sentinel {end_id} came {len(ends)} times")
        problems, seen, last = [], set(), None
        last_n, max_ts = {}, 0.0
        for m in got[:ends[0]]:
            if m.get("type") != "event" or m.get("event") != kind or not isinstance(m.get("data"), dict):
                problems.append(f"unexpected message {m}")
                continue
            key = (m["data"].get("p"), m["data"].get("n"))
            r = by_key.get(key)
            if r is None:
                problems.append(f"{key} was never published")
                continue
            if key in seen:
                problems.append(f"{key} came twice")
            seen.add(key)
            if r[2] == 200 and m["id"] != r[3]:
                problems.append(f"{key} came with id {m['id']}, its 200 said {r[3]}")
            if last is not None and id_number(m["id"]) <= id_number(last):
                problems.append(f"{key}: id {m['id']} after {last}")
            last = m["id"]
            if key[1] <= last_n.get(key[0], 0):
                problems.append(f"{key} after n {last_n[key[0]]} of its publisher")
            last_n[key[0]] = key[1]
            if r[2] == 200 and r[6] < max_ts:
                problems.append(f"{key} answered before an event that came earlier was sent")
            max_ts = max(max_ts, r[5])
        missing = sorted(set(answered) - seen)
        if missing:
            problems.append(f"{len(missing)} events answered 200 never came: {missing[:5]}")
        self.assertEqual(problems[:10], [], f"{label}: {len(problems)} problems")
        return len(seen)

    def check_stream(self, redis, min_entries):
        """The stream as the listen daemons left it: entries "<n>-1" with n
        one after the other, each of ours, all under one epoch."""
        with Resp(redis) as r:
            entries = r.command("XRANGE", STREAM, "-", "+")
        self.assertGreaterEqual(len(entries), min_entries)
        numbers = [int(e[0].split(b"-")[0]) for e in entries]
        self.assertEqual([e[0].split(b"-")[1] for e in entries], [b"1"] * len(entries))
        self.assertEqual(numbers, list(range(numbers[0], numbers[0] + len(numbers))))
        self.assertEqual({e[1][0] for e in entries}, {b"e"})
        self.assertEqual(len({e[1][1] for e in entries}), 1, "more than one epoch")
        return numbers


class RedisKilledTest(RedisFaultCase):

    def test_redis_killed_during_a_flat_out_publish_loses_no_200_and_answers_503_or_waits(self):
        redis = self.start_redis(aof=True)
        wait_ms = int(4000 * TIME_SCALE)
        b, l = self.machine(redis, "one", listen_args=["--bus-wait-ms", str(wait_ms)])
        kind = fresh_type()
        times = {}

        async def go():
            ws, reply = await subscribe(b.port, self.token, [kind], since="now")
            self.assertEqual(json.loads(reply), {"type": "init", "code": "OK"})
            session = Collector(ws)
            pubs = Publishers(l.port, self.token, kind, count=4).start()
            try:
                await until(lambda: pubs.count(200) >= 200, 60, "200 publishes answered 200")
                times["kill"] = time.monotonic()
                self.assertEqual(await asyncio.to_thread(redis.stop, signal.SIGKILL), -signal.SIGKILL)
                times["dead"] = time.monotonic()
                # Down until every publisher has met the outage's end: waited the
                # whole BUS_WAIT_MS, 503.
                await until(lambda: pubs.count(503, sent_after=times["kill"]) >= 4,
                            wait_ms / 1000 + 60, "503s while Redis is down")
                times["restart"] = time.monotonic()
                back = await asyncio.to_thread(self.restart_redis, redis)
                times["back"] = time.monotonic()
                await until(lambda: pubs.count(200, sent_after=times["back"]) >= 200, 60,
                            "200 publishes answered 200 after the restart")
            finally:
                await asyncio.to_thread(pubs.stop)
            end = await asyncio.to_thread(post, l.port, self.token, kind, "end")
            await session.until_id(end)
            await session.close()
            return back, pubs.all(), session.messages, end

        back, records, messages, end = run(go(), timeout=300)
        delivered = self.check_delivery("the session", messages, records, kind, end)
        self._check_outage(b, back, records, times, wait_ms, delivered)

    def _check_outage(self, b, back, records, times, wait_ms, delivered):
        statuses = {}
        for p, n, status, event_id, body, ts, ta in records:
            statuses[status] = statuses.get(status, 0) + 1
            self.assertIn((status, body if status != 200 else b'{"code":"OK"}'),
                          ((200, b'{"code":"OK"}'), (503, UNAVAILABLE)), f"publish {p}/{n}")
            self.assertLess(ta - ts, wait_ms / 1000 + 10 * TIME_SCALE, f"publish {p}/{n} hung")
            if ts >= times["dead"] and ta <= times["restart"]:
                self.assertEqual(status, 503, f"publish {p}/{n} made while Redis was down")
        during = [r for r in records if times["kill"] <= r[5] < times["back"]]
        self.assertTrue(any(r[2] == 503 for r in during), "no publish met the outage with a 503")
        self.assertTrue(any(r[2] == 200 for r in during),
                        "no publish sent while Redis was down waited for it and succeeded")
        # Redis came back with its stream: read on from where it was, not reset.
        self.assertEqual(metric(b.port, "evs_broadcast_redis_resets_total"), 0)
        self.assertGreaterEqual(metric(b.port, "evs_broadcast_redis_reconnects_total"), 1)
        self.assertGreaterEqual(delivered, statuses[200])
        self.check_stream(back, 1)


class RedisCutOffTest(RedisFaultCase):

    def test_a_broadcast_daemon_cut_off_from_redis_for_10_s_catches_up_in_order_once(self):
        redis = self.start_redis()
        relay = TcpRelay(redis.port)
        self.addCleanup(relay.close)
        cut_off, _ = self.machine(redis, "cut", url=f"redis://127.0.0.1:{relay.port}")
        direct, l = self.machine(redis, "direct")
        kind = fresh_type()

        async def go():
            sessions = []
            for b in (cut_off, direct):
                ws, reply = await subscribe(b.port, self.token, [kind], since="now")
                self.assertEqual(json.loads(reply), {"type": "init", "code": "OK"})
                sessions.append(Collector(ws))
            far, near = sessions
            # Paced (about 200 a second each) so that the stream, trimmed to
            # HISTORY_SIZE entries, still holds what the cut-off daemon missed.
            pubs = Publishers(l.port, self.token, kind, count=2, pause=0.005).start()
            try:
                await until(lambda: len(far.messages) >= 50, 60, "events through the relay")
                failures = metric(cut_off.port, "evs_broadcast_redis_failures_total")
                relay.cut()
                await until(lambda: metric(cut_off.port, "evs_broadcast_bus_peers") == 0, 30,
                            "the cut-off daemon to lose Redis")
                published = pubs.count(200)
                await asyncio.sleep(10)  # the scenario: 10 s without Redis, events published meanwhile
                # It was cut off for all that time: it tried again and was refused, and
                # the other daemon's session is ahead by what was published meanwhile.
                self.assertEqual(metric(cut_off.port, "evs_broadcast_bus_peers"), 0)
                self.assertGreaterEqual(metric(cut_off.port, "evs_broadcast_redis_failures_total"),
                                        failures + 2)
                self.assertGreater(pubs.count(200), published + 100)
                self.assertGreater(len(near.messages), len(far.messages) + 100)
                accepted = relay.accepted
                relay.restore()
                await until(lambda: metric(cut_off.port, "evs_broadcast_bus_peers") == 1, 30,
                            "the cut-off daemon to read the stream again")
                self.assertGreater(relay.accepted, accepted)
                back = time.monotonic()
                await until(lambda: pubs.count(200, sent_after=back) >= 100, 60, "publishes after")
            finally:
                await asyncio.to_thread(pubs.stop)
            end = await asyncio.to_thread(post, l.port, self.token, kind, "end")
            for s in sessions:
                await s.until_id(end)
                await s.close()
            return pubs.all(), far.messages, near.messages

        records, far, near = run(go(), timeout=300)
        self.assertEqual({r[2] for r in records}, {200})
        end = json.loads(near[-1])["id"]
        self.check_delivery("the cut-off daemon's session", far, records, kind, end)
        self.check_delivery("the other daemon's session", near, records, kind, end)
        self.assertEqual(far, near)
        self.assertGreaterEqual(metric(cut_off.port, "evs_broadcast_redis_reconnects_total"), 1)
        self.assertEqual(metric(cut_off.port, "evs_broadcast_redis_resets_total"), 0)


def message(kind, data):
    return json.dumps({"type": "event", "event": kind, "data": data}, separators=(",", ":"))


class ForeignEntriesTest(RedisFaultCase):
    """Entries in the stream that the listen daemons did not write: the
    broadcast daemons skip and count them, deliver exactly the real events
    around them, and keep reading."""

    def top_plus(self, r):
        """An entry id just after the stream's last one, in the same
        millisecond part: "<n>-<s+1>", never a form of ours ("<n>-1")
        and before the next id a listen daemon gives ("<n+1>-1")."""
        top = r.command("XREVRANGE", STREAM, "+", "-", "COUNT", "1")[0][0]
        ms, seq = top.split(b"-")
        return b"%s-%d" % (ms, int(seq) + 1)

    def reserved(self, r):
        """An entry id of our form, its number taken from the listen daemons'
        counter as their script would: what a writer with our id form but
        other contents would do."""
        return b"%d-1" % r.command("HINCRBY", META, "seq", 1)

    def foreign_entries(self, kind, epoch):
        """(how its id is made, fields) of each entry not ours, and what it
        breaks. A real event message is in most of them, so that one taken
        for ours would reach the subscribers and be seen."""
        msg = message(kind, "foreign").encode()
        e = epoch.encode()
        return [
            ("wrong id form", self.top_plus, [b"e", e, b"t", kind, b"m", msg]),
            ("other fields", self.top_plus, [b"x", b"y"]),
            ("other fields, our id form", self.reserved, [b"name", b"value", b"other", b"value"]),
            ("m missing", self.reserved, [b"e", e, b"t", kind]),
            ("t and m missing", self.reserved, [b"e", e]),
            ("epoch not hex", self.reserved, [b"e", b"zzzzzzzzzzzzzzzz", b"t", kind, b"m", msg]),
            ("epoch 0", self.reserved, [b"e", b"0" * 16, b"t", kind, b"m", msg]),
            ("epoch of 15 digits", self.reserved, [b"e", e[:15], b"t", kind, b"m", msg]),
            ("epoch of 17 digits", self.reserved, [b"e", e + b"0", b"t", kind, b"m", msg]),
            ("huge epoch", self.reserved, [b"e", b"a" * (1 << 20), b"t", kind, b"m", msg]),
            ("fields in another order", self.reserved, [b"t", kind, b"e", e, b"m", msg]),
            ("field names in capitals", self.reserved, [b"E", e, b"T", kind, b"M", msg]),
            ("a field more", self.reserved, [b"e", e, b"t", kind, b"m", msg, b"x", b"y"]),
            ("a huge field more", self.reserved, [b"e", e, b"t", kind, b"m", msg, b"x", b"x" * (2 << 20)]),
            ("empty type", self.reserved, [b"e", e, b"t", b"", b"m", message("", "foreign").encode()]),
            ("type of 256 bytes", self.reserved, [b"e", e, b"t", b"k" * 256, b"m", message("k" * 256, 1).encode()]),
            ("m not an event message", self.reserved, [b"e", e, b"t", kind, b"m", b'{"code":"OK"}']),
            ("m empty", self.reserved, [b"e", e, b"t", kind, b"m", b""]),
            ("m a huge text", self.reserved, [b"e", e, b"t", kind, b"m", b"x" * (4 << 20)]),
            ("m binary junk", self.reserved, [b"e", e, b"t", kind, b"m", b"\x00\xff\xfe\x80" * 64]),
            ("m cut in the event's name", self.reserved, [b"e", e, b"t", kind, b"m", msg[:27]]),
            ("binary junk everywhere", self.top_plus, [b"\x00\xff", b"\x80\x00e", b"\x1b[2J", bytes(range(256))]),
            ("binary junk, our id form", self.reserved, [b"e\x00", e, b"t", kind, b"m\xff", msg]),
            ("a thousand fields", self.top_plus, [b"f%d" % i for i in range(2000)]),
        ]

    def test_entries_not_ours_are_skipped_counted_and_only_the_real_events_delivered(self):
        redis = self.start_redis()
        b, l = self.machine(redis, "one")
        kind = fresh_type()

        async def go():
            ided, reply = await subscribe(b.port, self.token, [kind], since="now")
            self.assertEqual(json.loads(reply), {"type": "init", "code": "OK"})
            plain = await ws_subscribe(b.port, self.token, [kind])
            sessions = [Collector(ided), Collector(plain)]
            ids = [post(l.port, self.token, kind, 0)]
            epoch = ids[0].split("-")[0]
            entries = self.foreign_entries(kind, epoch)
            with Resp(redis) as r:
                for n, (what, make_id, fields) in enumerate(entries, 1):
                    r.command("XADD", STREAM, make_id(r), *fields)
                    ids.append(post(l.port, self.token, kind, n))
            await sessions[0].until_id(ids[-1])
            await until(lambda: len(sessions[1].messages) == len(ids), 60, "the events on the plain session")
            self.assertEqual(sessions[0].messages, [with_id(kind, i, n) for n, i in enumerate(ids)])
            self.assertEqual(sessions[1].messages, [harness.event_text(kind, str(n)) for n in range(len(ids))])
            # The event after them all comes next: nothing else was queued before it.
            last = post(l.port, self.token, kind, "last")
            for s in sessions:
                await until(lambda: len(s.messages) == len(ids) + 1, 60, "the last event")
                await s.close()
            self.assertEqual(json.loads(sessions[0].messages[-1])["id"], last)
            return len(entries)

        foreign = run(go(), timeout=180)
        self.assertTrue(b.running())
        self.assertEqual(metric(b.port, "evs_broadcast_redis_skipped_total"), foreign)
        self.assertEqual(metric(b.port, "evs_broadcast_redis_entries_total"), foreign + 2)
        self.assertEqual(metric(b.port, "evs_broadcast_redis_errors_total"), 0)
        self.assertEqual(metric(b.port, "evs_broadcast_redis_reconnects_total"), 0)
        self.assertIn("is not an event of ours: skipped", b.log())

    def test_a_broadcast_daemon_started_after_foreign_entries_loads_only_the_real_events(self):
        redis = self.start_redis()
        b, l = self.machine(redis, "one")
        kind = fresh_type()
        ids = [post(l.port, self.token, kind, 0)]
        entries = self.foreign_entries(kind, ids[0].split("-")[0])
        with Resp(redis) as r:
            for n, (what, make_id, fields) in enumerate(entries, 1):
                r.command("XADD", STREAM, make_id(r), *fields)
                ids.append(post(l.port, self.token, kind, n))
        later, _ = self.machine(redis, "later")

        async def go():
            ws, reply = await subscribe(later.port, self.token, [kind], since="oldest")
            self.assertEqual(json.loads(reply), RESUMED)
            self.assertEqual(await receive(ws, len(ids)), [with_id(kind, i, n) for n, i in enumerate(ids)])
            last = post(l.port, self.token, kind, "last")
            self.assertEqual(await receive(ws, 1), [with_id(kind, last, "last")])
            await ws.close()
        run(go(), timeout=120)
        self.assertTrue(later.running())
        self.assertEqual(metric(later.port, "evs_broadcast_redis_skipped_total"), len(entries))
        self.assertEqual(metric(later.port, "evs_broadcast_redis_errors_total"), 0)

    def test_an_entry_larger_than_a_reply_may_be_is_skipped_not_read_again_and_again(self):
        # One value over what the reader takes in a reply (65 MiB, bus/redis_reply.h): the
        # connection drops rather than hold it; the events after it must still come.
        redis = self.start_redis()
        b, l = self.machine(redis, "one")
        kind = fresh_type()

        async def go():
            ws, _ = await subscribe(b.port, self.token, [kind], since="now")
            first = post(l.port, self.token, kind, 1)
            with Resp(redis) as r:
                r.command("XADD", STREAM, self.top_plus(r), "x", b"y" * ((65 << 20) + 1))
            second = post(l.port, self.token, kind, 2)
            self.assertEqual(await receive(ws, 2, timeout=60), [with_id(kind, first, 1),
                                                                 with_id(kind, second, 2)])
            await ws.close()
        run(go(), timeout=120)
        self.assertTrue(b.running())
        self.assertEqual(metric(b.port, "evs_broadcast_redis_skipped_total"), 1)
        self.assertEqual(metric(b.port, "evs_broadcast_redis_oversized_total"), 1)

    def test_an_entry_whose_id_redis_chose_does_not_stop_the_publishes(self):
        # XADD with "*": an id from Redis's clock, larger than every "<n>-1"
        # the listen daemons gave so far.
        redis = self.start_redis()
        b, l = self.machine(redis, "one")
        kind = fresh_type()

        async def go():
            ws, _ = await subscribe(b.port, self.token, [kind], since="now")
            first = post(l.port, self.token, kind, 1)
            with Resp(redis) as r:
                r.command("XADD", STREAM, "*", "e", first.split("-")[0], "t", kind, "m",
                          message(kind, "foreign"))
            status, body, headers = harness.http_request(
                l.port, "POST", "/event", json.dumps({"event": kind, "data": 2}),
                {"Authorization": f"Basic {self.token}"})
            self.assertEqual((status, body), (200, {"code": "OK"}), "the publish after the entry")
            second = headers["Event-Id"]
            self.assertGreater(id_number(second), id_number(first))
            third = post(l.port, self.token, kind, 3)
            self.assertEqual(await receive(ws, 3), [with_id(kind, first, 1), with_id(kind, second, 2),
                                                    with_id(kind, third, 3)])
            await ws.close()
        run(go())
        self.assertEqual(metric(b.port, "evs_broadcast_redis_skipped_total"), 1)


class RedisIdleTest(RedisFaultCase):

    def test_an_idle_stream_is_no_error_and_the_next_event_comes(self):
        redis = self.start_redis()
        b, l = self.machine(redis, "one")
        kind = fresh_type()
        # Nothing published: the first XREAD reply is its BLOCK running out (*-1, a nil).
        wait_for(lambda: metric(b.port, "evs_broadcast_redis_reads_total") >= 1, timeout=30,
                 what="an XREAD that ran out")
        self.assertEqual(metric(b.port, "evs_broadcast_redis_errors_total"), 0)
        self.assertNotIn("a reply of another shape", b.log())

        async def go():
            ws, _ = await subscribe(b.port, self.token, [kind], since="now")
            event_id = post(l.port, self.token, kind, 1)
            self.assertEqual(await receive(ws, 1), [with_id(kind, event_id, 1)])
            await ws.close()
        run(go())


class RedisRestartTest(RedisFaultCase):

    def test_a_listen_daemon_restarted_publishes_again_and_its_ids_go_on_in_order(self):
        redis = self.start_redis()
        b, l = self.machine(redis, "one")
        kind = fresh_type()
        self.listen = l

        async def go():
            ws, _ = await subscribe(b.port, self.token, [kind], since="now")
            session = Collector(ws)
            pubs = Publishers(l.port, self.token, kind, count=2).start()
            try:
                await until(lambda: pubs.count(200) >= 100, 60, "publishes before the restarts")
                for n, sig in enumerate((signal.SIGTERM, signal.SIGKILL)):
                    old = self.listen
                    code = await asyncio.to_thread(old.stop, sig)
                    self.assertEqual(code, 0 if sig == signal.SIGTERM else -signal.SIGKILL, old.log())
                    restarted = time.monotonic()
                    self.listen = await asyncio.to_thread(
                        self.start_listen, *self.redis_args(redis), bus=b.bus, port=old.port,
                        name=f"l-again-{n}")
                    await until(lambda: pubs.count(200, sent_after=restarted) >= 100, 60,
                                f"publishes after the {signal.Signals(sig).name} restart")
            finally:
                await asyncio.to_thread(pubs.stop)
            end = await asyncio.to_thread(post, self.listen.port, self.token, kind, "end")
            await session.until_id(end)
            await session.close()
            return pubs.all(), session.messages, end

        records, messages, end = run(go(), timeout=240)
        # Publishes that met a restart failed to connect (0) or were answered; none hung.
        self.assertLessEqual({r[2] for r in records}, {200, 0})
        self.check_delivery("the session", messages, records, kind, end)
        numbers = self.check_stream(redis, 301)
        self.assertEqual(id_number(end)[1], numbers[-1])

    def test_a_broadcast_daemon_restarted_takes_its_sessions_back_and_a_resume_is_exact(self):
        redis = self.start_redis()
        b, l = self.machine(redis, "one")
        kind = fresh_type()

        async def go():
            nonlocal b
            ws, reply = await subscribe(b.port, self.token, [kind], since="now")
            self.assertEqual(json.loads(reply), {"type": "init", "code": "OK"})
            ids = [post(l.port, self.token, kind, n) for n in range(2)]
            self.assertEqual(await receive(ws, 2), [with_id(kind, i, n) for n, i in enumerate(ids)])
            for round_, sig in enumerate((signal.SIGTERM, signal.SIGKILL)):
                last = ids[-1]
                self.assertEqual(b.stop(sig), 0 if sig == signal.SIGTERM else -signal.SIGKILL)
                await ws.wait_closed()
                self.assertEqual(ws.close_code, 1001 if sig == signal.SIGTERM else 1006)
                # While it is away the stream takes the events: the publishers get 200.
                missed = [post(l.port, self.token, kind, 10 * round_ + n) for n in range(10, 13)]
                b = self.start_broadcast(*self.redis_args(redis), port=b.port, bus=b.bus,
                                         name=f"b-again-{round_}", wait=False)
                wait_for(lambda: harness.port_accepts(b.port) or not b.running(), what="the new daemon")
                # The session comes back at once, from the last id it had.
                ws, reply = await subscribe(b.port, self.token, [kind], since=last)
                self.assertEqual(json.loads(reply), RESUMED, f"resume after a {signal.Signals(sig).name}")
                live = post(l.port, self.token, kind, "live")
                ids = missed + [live]
                self.assertEqual(await receive(ws, 4),
                                 [with_id(kind, i, n) for n, i in zip(
                                     [10 * round_ + n for n in range(10, 13)] + ["live"], ids)])
            await ws.close()
        run(go(), timeout=120)


if __name__ == "__main__":
    unittest.main()
