"""Event ids, history and resume (init "since"), through the real daemons
with real WebSocket clients.

Every accepted event has an id (the publisher's Event-Id header); a session
whose init carried "since" gets it in every event message; a resume from an
id replays, in order and once, the retained events after it, then the live
ones, with no gap or duplicate at the seam, or says resumed:false and why.
"""

import asyncio
import json
import os
import re
import secrets
import signal
import socket
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib import harness  # noqa: E402
from lib.harness import TIME_SCALE, http_request, run, wait_for, ws_connect  # noqa: E402
from lib.metrics import metric  # noqa: E402

ID_RE = re.compile(r"^[0-9a-f]{16}-[0-9a-f]{16}$")
RESUMED = {"type": "init", "code": "OK", "resumed": True}


def fresh_type():
    return "r-" + secrets.token_hex(4)


def not_resumed(reason):
    return {"type": "init", "code": "OK", "resumed": False, "reason": reason}


def post(port, token, event, data):
    """Publishes; returns the Event-Id of the 200."""
    body = json.dumps({"event": event, "data": data}, separators=(",", ":"))
    status, answer, headers = http_request(port, "POST", "/event", body,
                                           {"Authorization": f"Basic {token}"})
    assert (status, answer) == (200, {"code": "OK"}), (status, answer)
    event_id = {k.lower(): v for k, v in headers.items()}.get("event-id", "")
    assert ID_RE.match(event_id), headers
    return event_id


async def init(ws, token, events, **extra):
    msg = {"authentication": f"Basic {token}", "events": events}
    msg.update(extra)
    await ws.send(json.dumps(msg))
    return await asyncio.wait_for(ws.recv(), 10 * TIME_SCALE)  # the reply's text


async def subscribe(port, token, events, **extra):
    """A session and its init reply."""
    ws = await ws_connect(port)
    return ws, await init(ws, token, events, **extra)


async def receive(ws, n, timeout=10.0):
    """The next n messages, as text (the exact bytes matter)."""
    return [await asyncio.wait_for(ws.recv(), timeout * TIME_SCALE) for _ in range(n)]


async def nothing_more(ws, wait=0.3):
    """Asserts that nothing arrives within wait seconds (used only after
    an event that must come next has been awaited by its own id)."""
    try:
        extra = await asyncio.wait_for(ws.recv(), wait * TIME_SCALE)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"unexpected message {extra}")


def with_id(event, event_id, data):
    """The exact text of an event message with its id."""
    return (f'{{"type":"event","event":{json.dumps(event)},"id":"{event_id}",'
            f'"data":{json.dumps(data, separators=(",", ":"))}}}')


class ResumeCase(harness.ServiceCase):

    def pair(self, *broadcast_args):
        return self.start_pair(broadcast_args=list(broadcast_args))

    def publish_all(self, l, kind, values):
        return [post(l.port, self.token, kind, v) for v in values]


class ResumeTest(ResumeCase):

    def test_ids_reach_the_sessions_that_asked_and_the_others_get_todays_bytes(self):
        b, l = self.pair()
        kind = fresh_type()

        async def go():
            plain, r1 = await subscribe(b.port, self.token, [kind])
            ided, r2 = await subscribe(b.port, self.token, [kind], since="now")
            self.assertEqual(json.loads(r1), {"type": "init", "code": "OK"})
            self.assertEqual(json.loads(r2), {"type": "init", "code": "OK"})
            event_id = post(l.port, self.token, kind, {"n": 1})
            self.assertEqual(await receive(plain, 1), [harness.event_text(kind, '{"n":1}')])
            self.assertEqual(await receive(ided, 1), [with_id(kind, event_id, {"n": 1})])
            await plain.close()
            await ided.close()
        run(go())

    def test_resume_after_a_dropped_connection_replays_what_it_missed_once_in_order_then_live(self):
        b, l = self.pair()
        kind, other = fresh_type(), fresh_type()

        async def go():
            ws, reply = await subscribe(b.port, self.token, [kind], since="now")
            self.assertEqual(json.loads(reply), {"type": "init", "code": "OK"})
            ids = self.publish_all(l, kind, [1, 2])
            got = [json.loads(m) for m in await receive(ws, 2)]
            self.assertEqual([m["id"] for m in got], ids)
            await ws.close()  # the connection drops
            # Meanwhile: more of its type, and of another type it never asked for.
            missed = []
            for n in range(3, 8):
                missed.append((post(l.port, self.token, kind, n), n))
                post(l.port, self.token, other, n)
            ws, reply = await subscribe(b.port, self.token, [kind], since=got[-1]["id"])
            self.assertEqual(json.loads(reply), RESUMED)
            self.assertEqual(await receive(ws, len(missed)), [with_id(kind, i, n) for i, n in missed])
            live = post(l.port, self.token, kind, 8)
            self.assertEqual(await receive(ws, 1), [with_id(kind, live, 8)])
            await nothing_more(ws)
            await ws.close()
        run(go())
        self.assertEqual(metric(b.port, 'evs_broadcast_resumes_total{result="resumed"}'), 1)
        self.assertGreaterEqual(metric(b.port, "evs_broadcast_replayed_events_total"), 5)

    def test_resume_from_oldest_replays_every_retained_event_of_the_types(self):
        b, l = self.pair()
        kind = fresh_type()
        ids = self.publish_all(l, kind, ["a", "b", "c"])

        async def go():
            ws, reply = await subscribe(b.port, self.token, [kind], since="oldest")
            self.assertEqual(json.loads(reply), RESUMED)
            self.assertEqual(await receive(ws, 3), [with_id(kind, i, v) for i, v in zip(ids, "abc")])
            await ws.close()
        run(go())

    def test_the_seam_under_a_publisher_running_flat_out_has_no_gap_and_no_duplicate(self):
        b, l = self.pair()
        kind, other = fresh_type(), fresh_type()
        total = 1500
        stop = threading.Event()
        errors = []

        def publisher():
            try:
                for n in range(total):
                    post(l.port, self.token, kind, n)
                    if n % 3 == 0:
                        post(l.port, self.token, other, n)
            except Exception as e:  # reported below
                errors.append(e)
            finally:
                stop.set()

        async def go():
            seen = []
            ws, _ = await subscribe(b.port, self.token, [kind], since="now")
            thread = threading.Thread(target=publisher)
            thread.start()
            try:
                # Three drops, each while the publisher runs, each resumed from
                # the last id received.
                for _ in range(3):
                    for m in await receive(ws, 100, timeout=30):
                        seen.append(json.loads(m))
                    await ws.close()
                    ws, reply = await subscribe(b.port, self.token, [kind], since=seen[-1]["id"])
                    self.assertEqual(json.loads(reply), RESUMED)
                while not seen or seen[-1]["data"] != total - 1:
                    seen.append(json.loads(await asyncio.wait_for(ws.recv(), 30 * TIME_SCALE)))
                await ws.close()
            finally:
                await asyncio.to_thread(thread.join)
            return seen

        seen = run(go(), timeout=180)
        self.assertEqual(errors, [])
        first = seen[0]["data"]
        self.assertEqual([m["data"] for m in seen], list(range(first, total)))
        self.assertEqual(len({m["id"] for m in seen}), len(seen))
        self.assertEqual([m["id"] for m in seen], sorted(m["id"] for m in seen))

    def test_types_already_held_are_not_replayed_and_the_new_ones_are(self):
        b, l = self.pair()
        held, added = fresh_type(), fresh_type()

        async def go():
            ws, _ = await subscribe(b.port, self.token, [held], since="now")
            h1 = post(l.port, self.token, held, 1)
            a1 = post(l.port, self.token, added, 1)
            self.assertEqual(await receive(ws, 1), [with_id(held, h1, 1)])
            # A later init on the same session adds a type and resumes it.
            self.assertEqual(json.loads(await init(ws, self.token, [held, added], since="oldest")), RESUMED)
            self.assertEqual(await receive(ws, 1), [with_id(added, a1, 1)])
            h2 = post(l.port, self.token, held, 2)
            a2 = post(l.port, self.token, added, 2)
            self.assertEqual(await receive(ws, 2), [with_id(held, h2, 2), with_id(added, a2, 2)])
            await nothing_more(ws)
            await ws.close()
        run(go())


class ResumeRefusedTest(ResumeCase):

    def test_too_old_once_the_history_passed_its_count(self):
        b, l = self.pair("--history-size", "5")
        kind = fresh_type()
        ids = self.publish_all(l, kind, list(range(10)))  # 5..9 retained

        async def go():
            # Each round publishes one more event, so the oldest retained goes.
            for since, want in ((ids[6], RESUMED), (ids[5], not_resumed("TOO_OLD")),
                                (ids[0], not_resumed("TOO_OLD"))):
                ws, reply = await subscribe(b.port, self.token, [kind], since=since)
                self.assertEqual(json.loads(reply), want, since)
                if want == RESUMED:
                    self.assertEqual(await receive(ws, 3), [with_id(kind, i, n) for n, i in enumerate(ids) if n > 6])
                # Either way the session is subscribed to the live events.
                live = post(l.port, self.token, kind, "live")
                got = json.loads((await receive(ws, 1))[0])
                self.assertEqual((got["id"], got["data"]), (live, "live"))
                await ws.close()
        run(go())
        self.assertEqual(metric(b.port, 'evs_broadcast_history_evictions_total{bound="size"}'), 5 + 3)
        self.assertEqual(metric(b.port, "evs_broadcast_history_events"), 5)

    def test_too_old_once_the_history_passed_its_bytes(self):
        b, l = self.pair("--history-bytes", "8K")
        kind = fresh_type()
        ids = self.publish_all(l, kind, ["x" * 2000 for _ in range(10)])

        async def go():
            ws, reply = await subscribe(b.port, self.token, [kind], since=ids[0])
            self.assertEqual(json.loads(reply), not_resumed("TOO_OLD"))
            await ws.close()
            ws, reply = await subscribe(b.port, self.token, [kind], since=ids[-2])
            self.assertEqual(json.loads(reply), RESUMED)
            self.assertEqual(json.loads((await receive(ws, 1))[0])["id"], ids[-1])
            await ws.close()
        run(go())
        self.assertGreater(metric(b.port, 'evs_broadcast_history_evictions_total{bound="bytes"}'), 0)
        self.assertLessEqual(metric(b.port, "evs_broadcast_history_bytes"), 8 * 1024)

    def test_too_old_once_the_history_passed_its_age(self):
        b, l = self.pair("--history-ttl-s", "1")
        kind = fresh_type()
        old = post(l.port, self.token, kind, 1)
        wait_for(lambda: metric(b.port, "evs_broadcast_history_events") == 0, timeout=10,
                 what="the event to pass its age")
        self.assertEqual(metric(b.port, 'evs_broadcast_history_evictions_total{bound="ttl"}'), 1)

        async def go():
            ws, reply = await subscribe(b.port, self.token, [kind], since=old)
            self.assertEqual(json.loads(reply), not_resumed("TOO_OLD"))
            await ws.close()
        run(go())

    def test_unknown_for_ids_this_history_never_had(self):
        b, l = self.pair()
        kind = fresh_type()
        real = post(l.port, self.token, kind, 1)
        run_part, number = real.split("-")
        future = f"{run_part}-{int(number, 16) + 1000:016x}"

        async def go():
            for since in ("0000000000000001-0000000000000001", future, "hello", "A.b_c:d-e"):
                ws, reply = await subscribe(b.port, self.token, [kind], since=since)
                self.assertEqual(json.loads(reply), not_resumed("UNKNOWN"), since)
                await ws.close()
        run(go())
        self.assertEqual(metric(b.port, 'evs_broadcast_resumes_total{result="unknown"}'), 4)

    def test_disabled_when_history_is_off_and_ids_still_arrive(self):
        b, l = self.pair("--history-size", "0")
        kind = fresh_type()
        old = post(l.port, self.token, kind, 1)

        async def go():
            for since in (old, "oldest"):
                ws, reply = await subscribe(b.port, self.token, [kind], since=since)
                self.assertEqual(json.loads(reply), not_resumed("DISABLED"))
                live = post(l.port, self.token, kind, 2)
                self.assertEqual(await receive(ws, 1), [with_id(kind, live, 2)])
                await ws.close()
        run(go())

    def test_invalid_since_is_refused_and_subscribes_to_nothing(self):
        b, l = self.pair()
        kind, later = fresh_type(), fresh_type()

        async def go():
            ws = await ws_connect(b.port)
            for since in (7, "", "x" * 65, "a/b", "caf\u00e9", None, ["oldest"], {"id": 1}):
                reply = json.loads(await init(ws, self.token, [kind], since=since))
                self.assertEqual(reply, {"type": "init", "code": "INVALID_SINCE"}, repr(since))
            # 64 characters is the longest id: well-formed, unknown.
            reply = json.loads(await init(ws, self.token, [later], since="x" * 64))
            self.assertEqual(reply, not_resumed("UNKNOWN"))
            post(l.port, self.token, kind, "never")
            live = post(l.port, self.token, later, "yes")
            self.assertEqual(await receive(ws, 1), [with_id(later, live, "yes")])
            await nothing_more(ws)
            await ws.close()
        run(go())

    def test_replay_honours_the_credential_rights(self):
        allowed, forbidden = "ok." + secrets.token_hex(3), "no." + secrets.token_hex(3)
        roles = os.path.join(self.dir, "roles")
        with open(roles, "w") as f:
            f.write("reader  subscribe  ok.*\n")
        os.chmod(roles, 0o600)
        limited = harness.new_token()
        self.write_tokens([self.token, f"{limited} reader"])
        b, l = self.start_pair(broadcast_args=["--roles", roles], listen_args=["--roles", roles])
        self.publish_all(l, forbidden, [1])
        ok = post(l.port, self.token, allowed, 1)

        async def go():
            ws, reply = await subscribe(b.port, limited, [allowed, forbidden], since="oldest")
            self.assertEqual(json.loads(reply), {"type": "init", "code": "FORBIDDEN"})
            reply = await init(ws, limited, [allowed], since="oldest")
            self.assertEqual(json.loads(reply), RESUMED)
            self.assertEqual(await receive(ws, 1), [with_id(allowed, ok, 1)])
            await nothing_more(ws)
            await ws.close()
        run(go())


class ResumeAcrossDaemonsTest(ResumeCase):

    def test_exact_after_the_listen_daemon_restarts(self):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with self.subTest(signal=sig.name):
                b, l = self.pair()
                kind = fresh_type()

                async def go():
                    ws, _ = await subscribe(b.port, self.token, [kind], since="now")
                    ids = self.publish_all(l, kind, [1, 2])
                    last = json.loads((await receive(ws, 2))[-1])["id"]
                    self.assertEqual(last, ids[-1])
                    await ws.close()
                    return last

                last = run(go())
                l.stop(sig)
                l2 = self.start_listen(bus=b.bus)
                wait_for(lambda: harness.http_get(l2.port, "/healthz")[0] == 200, what="the new listen daemon")
                after = self.publish_all(l2, kind, [3, 4])
                self.assertNotEqual(after[0].split("-")[0], last.split("-")[0], "a new run")

                async def resume():
                    ws, reply = await subscribe(b.port, self.token, [kind], since=last)
                    self.assertEqual(json.loads(reply), RESUMED)
                    self.assertEqual(await receive(ws, 2), [with_id(kind, i, n) for i, n in zip(after, (3, 4))])
                    await ws.close()
                run(resume())

    def restart_broadcast(self, b, sig):
        """Stops b with sig and starts a broadcast daemon in its place (same
        port, same bus path)."""
        b.stop(sig)
        return self.start_broadcast(port=b.port, bus=b.bus, name="again")

    def test_exact_after_a_broadcast_daemon_restarts(self):
        # The listen daemon sends a broadcast daemon that connects the events
        # it retains, then SYNC: the new one holds the old one's history.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with self.subTest(signal=sig.name):
                b, l = self.pair()
                kind, other = fresh_type(), fresh_type()

                async def first():
                    ws, _ = await subscribe(b.port, self.token, [kind], since="now")
                    seen = self.publish_all(l, kind, [1, 2])
                    self.assertEqual([json.loads(m)["id"] for m in await receive(ws, 2)], seen)
                    await ws.close()
                    return seen[-1]

                last = run(first())
                missed = [post(l.port, self.token, kind, 3), post(l.port, self.token, other, "x"),
                          post(l.port, self.token, kind, 4)]
                b2 = self.restart_broadcast(b, sig)

                async def resume():
                    # Whether the history has arrived yet or not: a resume
                    # that comes first waits for it.
                    ws, reply = await subscribe(b2.port, self.token, [kind], since=last)
                    self.assertEqual(json.loads(reply), RESUMED)
                    self.assertEqual(await receive(ws, 2),
                                     [with_id(kind, missed[0], 3), with_id(kind, missed[2], 4)])
                    live = post(l.port, self.token, kind, 5)
                    self.assertEqual(await receive(ws, 1), [with_id(kind, live, 5)])
                    await nothing_more(ws)
                    await ws.close()
                run(resume())
                wait_for(lambda: metric(b2.port, "evs_broadcast_history_loaded_total") == 5,
                         what="the five retained events loaded")
                self.assertEqual(metric(l.port, "evs_listen_history_events"), 6)
                self.assertGreaterEqual(metric(l.port, "evs_listen_history_sent_total"), 5)

    def test_a_resume_that_comes_before_the_history_waits_for_it(self):
        b, l = self.pair()
        kind = fresh_type()
        since = post(l.port, self.token, kind, 1)
        missed = self.publish_all(l, kind, [2, 3])
        os.kill(l.pid, signal.SIGSTOP)  # the listen daemon cannot reconnect yet
        self.addCleanup(lambda: l.signal(signal.SIGCONT))
        b2 = self.restart_broadcast(b, signal.SIGKILL)

        async def go():
            # A session that came before the history gets none of it live.
            plain, reply = await subscribe(b2.port, self.token, [kind])
            self.assertEqual(json.loads(reply), {"type": "init", "code": "OK"})
            ws = await ws_connect(b2.port)
            await ws.send(json.dumps({"authentication": f"Basic {self.token}", "events": [kind],
                                      "since": since}))
            wait_for(lambda: metric(b2.port, "evs_broadcast_resumes_held_total") == 1,
                     what="the resume to be held")
            os.kill(l.pid, signal.SIGCONT)
            self.assertEqual(json.loads(await asyncio.wait_for(ws.recv(), 10 * TIME_SCALE)), RESUMED)
            self.assertEqual(await receive(ws, 2), [with_id(kind, i, n) for i, n in zip(missed, (2, 3))])
            live = post(l.port, self.token, kind, 4)
            self.assertEqual(await receive(ws, 1), [with_id(kind, live, 4)])
            self.assertEqual(await receive(plain, 1), [harness.event_text(kind, "4")])
            await nothing_more(ws)
            await nothing_more(plain, 0.1)
            await ws.close()
            await plain.close()
        run(go())
        self.assertEqual(metric(b2.port, "evs_broadcast_history_loaded_total"), 3)
        self.assertEqual(metric(b2.port, 'evs_broadcast_resumes_total{result="resumed"}'), 1)

    def test_unknown_once_both_daemons_restarted(self):
        b, l = self.pair()
        kind = fresh_type()
        old = post(l.port, self.token, kind, 1)
        l.stop(signal.SIGKILL)
        b2 = self.restart_broadcast(b, signal.SIGKILL)
        l2 = self.start_listen(bus=b2.bus, name="listen-again")
        wait_for(lambda: harness.http_get(l2.port, "/healthz")[0] == 200, what="the new listen daemon")

        async def go():
            ws, reply = await subscribe(b2.port, self.token, [kind], since=old)
            self.assertEqual(json.loads(reply), not_resumed("UNKNOWN"))
            live = post(l2.port, self.token, kind, 2)
            self.assertEqual(await receive(ws, 1), [with_id(kind, live, 2)])
            await ws.close()
        run(go())

    def test_too_old_after_a_broadcast_restart_when_the_listen_daemon_keeps_no_history(self):
        b, l = self.start_pair(listen_args=["--history-size", "0"])
        kind = fresh_type()
        old = post(l.port, self.token, kind, 1)
        post(l.port, self.token, kind, 2)
        b2 = self.restart_broadcast(b, signal.SIGTERM)
        wait_for(lambda: metric(b2.port, "evs_broadcast_bus_peers") == 1, what="the listen daemon back")

        async def go():
            # SYNC told the new daemon the run and its last number, not the
            # events: the id is this history's, and older than what it holds.
            ws, reply = await subscribe(b2.port, self.token, [kind], since=old)
            self.assertEqual(json.loads(reply), not_resumed("TOO_OLD"))
            await ws.close()
        run(go())
        self.assertEqual(metric(l.port, "evs_listen_history_events"), 0)

    def test_a_listen_daemon_that_sends_no_sync_does_not_hold_resumes(self):
        # One that keeps no history to send (an older version) goes straight
        # to its events: the first of them counts as its SYNC.
        b = self.start_broadcast()
        kind = fresh_type()
        bus = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(bus.close)
        bus.connect(b.bus)
        bus.sendall(harness.bus_hello())
        message = harness.event_text(kind, "1").encode()
        bus.sendall(harness.bus_event(1, kind, message, run=0x1234, number=1))
        wait_for(lambda: metric(b.port, "evs_broadcast_events_total") == 1, what="the event")

        async def go():
            ws, reply = await subscribe(b.port, self.token, [kind], since=harness.event_id(0x99, 5))
            self.assertEqual(json.loads(reply), not_resumed("UNKNOWN"))
            await ws.close()
        run(go())
        self.assertEqual(metric(b.port, "evs_broadcast_resumes_held_total"), 0)

    def test_a_broadcast_daemon_that_lost_its_bus_connection_catches_up_in_order(self):
        # b2 stops answering: the listen daemon drops it after the ack timeout
        # and publishes to b1 alone; when b2 answers again it is sent the
        # history, and its sessions get what they missed, once, in order.
        b1 = self.start_broadcast(name="b1")
        b2 = self.start_broadcast(name="b2")
        l = self.start_listen("--bus-ack-timeout-ms", "500", bus=[b1.bus, b2.bus])
        wait_for(lambda: harness.http_get(l.port, "/healthz")[0] == 200
                 and metric(l.port, "evs_listen_bus_links_ready") == 2, what="both bus links")
        kind = fresh_type()

        async def go():
            s1, _ = await subscribe(b1.port, self.token, [kind])
            s2, _ = await subscribe(b2.port, self.token, [kind])
            post(l.port, self.token, kind, 1)
            os.kill(b2.pid, signal.SIGSTOP)
            self.addCleanup(lambda: b2.signal(signal.SIGCONT))
            status, _ = harness.publish(l.port, kind, 2, token=self.token)
            self.assertEqual(status, 503)  # b2 never acked it; b1 delivers it
            wait_for(lambda: metric(l.port, "evs_listen_bus_links_ready") == 1, what="b2's link dropped")
            self.publish_all(l, kind, [3, 4])
            os.kill(b2.pid, signal.SIGCONT)
            wait_for(lambda: metric(l.port, "evs_listen_bus_links_ready") == 2, what="b2 back")
            post(l.port, self.token, kind, 5)
            want = [harness.event_text(kind, str(n)) for n in range(1, 6)]
            self.assertEqual(await receive(s1, 5), want)
            self.assertEqual(await receive(s2, 5), want)
            await nothing_more(s2)
            await s1.close()
            await s2.close()
        run(go())
        self.assertGreaterEqual(metric(b2.port, "evs_broadcast_bus_history_frames_total"), 4)

    def test_two_broadcast_daemons_on_one_port_resume_on_either(self):
        port = harness.free_port()
        daemons = []
        for name in ("b1", "b2"):
            admin = harness.free_port()
            d = self.start_broadcast("--reuse-port", "--metrics-port", str(admin), port=port, name=name)
            d.admin = admin
            daemons.append(d)
        b1, b2 = daemons
        l = self.start_listen(bus=[b1.bus, b2.bus])
        wait_for(lambda: metric(b1.admin, "evs_broadcast_bus_peers") == 1
                 and metric(b2.admin, "evs_broadcast_bus_peers") == 1, what="both bus links")
        kind = fresh_type()
        ids = self.publish_all(l, kind, list(range(6)))
        wait_for(lambda: metric(b1.admin, "evs_broadcast_history_events") == 6
                 and metric(b2.admin, "evs_broadcast_history_events") == 6, what="both histories")

        def served(d):
            return metric(d.admin, 'evs_broadcast_resumes_total{result="resumed"}')

        async def go():
            # Whichever daemon the kernel picks for each connection, a resume
            # from any id replays exactly what followed it; each id at least
            # once, and on until both daemons have served (the kernel's pick is
            # a hash: 60 connections all to one daemon would be 1 in 2^59).
            for attempt in range(60):
                k = attempt % 6
                ws, reply = await subscribe(port, self.token, [kind], since=ids[k])
                self.assertEqual(json.loads(reply), RESUMED)
                got = await receive(ws, 5 - k)
                self.assertEqual(got, [with_id(kind, i, n) for n, i in enumerate(ids) if n > k])
                await nothing_more(ws, 0.1)
                await ws.close()
                if attempt >= 5 and served(b1) > 0 and served(b2) > 0:
                    break
        run(go())
        self.assertGreater(served(b1), 0)
        self.assertGreater(served(b2), 0)

    def test_two_listen_daemons_at_once_never_resume_with_a_gap(self):
        b = self.start_broadcast()
        l1 = self.start_listen(bus=b.bus, name="l1")
        l2 = self.start_listen(bus=b.bus, name="l2")
        wait_for(lambda: metric(b.port, "evs_broadcast_bus_peers") == 2, what="both listen daemons")
        kind = fresh_type()
        ids = [post(l.port, self.token, kind, n) for n, l in enumerate([l1, l2, l1, l2])]

        async def go():
            # Their events may reach another broadcast daemon in another order:
            # a resume from among them cannot be promised exact.
            ws, reply = await subscribe(b.port, self.token, [kind], since=ids[1])
            self.assertEqual(json.loads(reply), not_resumed("UNKNOWN"))
            await ws.close()
        run(go())


if __name__ == "__main__":
    unittest.main()
