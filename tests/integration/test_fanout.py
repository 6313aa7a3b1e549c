"""Fan-out, end to end: many WebSocket subscribers, one publisher.

Both real daemons run on free loopback ports; subscribers are Debian's
python3-websockets, all in one asyncio loop; events are published with
http.client over one keep-alive connection from a worker thread while the
subscribers read. What is proven here is the fan-out: every subscriber
of a type gets every event of it, in order, and nothing else; subscribers
that leave do not disturb the others; and a publisher's 200 means every
subscriber that had its init OK before the publish gets the event.
"""

import asyncio
import http.client
import json
import os
import socket
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib.harness import TIME_SCALE, ServiceCase, event_text, run, ws_subscribe  # noqa: E402


# --- helpers only these tests need ----------------------------------------------------------------

class Publisher:
    """POST /event over one keep-alive http.client connection."""

    def __init__(self, port, token):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30 * TIME_SCALE)
        self.token = token
        self.connects = 0

    def post(self, event, data_text):
        body = ('{"event":' + json.dumps(event) + ',"data":' + data_text + "}").encode()
        if self.conn.sock is None:
            self.connects += 1
        self.conn.request("POST", "/event", body=body,
                          headers={"Content-Type": "application/json",
                                   "Authorization": f"Basic {self.token}"})
        resp = self.conn.getresponse()
        answer = (resp.status, json.loads(resp.read()))
        if answer != (200, {"code": "OK"}):
            raise AssertionError(f"publish of {event!r} {data_text!r} answered {answer}")
        if resp.will_close:
            raise AssertionError("the listen daemon closed the keep-alive connection")

    def close(self):
        self.conn.close()


async def recv_text(ws, timeout=10.0):
    msg = await asyncio.wait_for(ws.recv(), timeout * TIME_SCALE)
    if not isinstance(msg, str):
        raise AssertionError(f"expected a text message, got binary {msg[:80]!r}")
    return msg


async def read_n(ws, n, timeout=30.0):
    """The next n messages; each must come within timeout of the previous one."""
    return [await recv_text(ws, timeout) for _ in range(n)]


async def subscribe_many(port, token, types_per_subscriber, batch=50):
    """Opens one subscriber per entry (its list of types), batch at a time."""
    out = []
    for i in range(0, len(types_per_subscriber), batch):
        chunk = types_per_subscriber[i:i + batch]
        out += await asyncio.gather(*(ws_subscribe(port, token, t) for t in chunk))
    return out


async def close_all(sockets):
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


def reset_connection(ws):
    """Drops a websockets client connection with a TCP reset (SO_LINGER 0)."""
    sock = ws.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.transport.abort()


# --- tests ----------------------------------------------------------------------------------------

class FanoutTest(ServiceCase):

    def pair(self, broadcast_args=(), listen_args=()):
        b, l = self.start_pair(broadcast_args, listen_args)
        self.publisher = Publisher(l.port, self.token)
        self.addCleanup(self.publisher.close)
        return b, l

    async def pub(self, event, data_text):
        await asyncio.to_thread(self.publisher.post, event, data_text)

    async def pub_many(self, events):
        """Publishes (event, data_text) pairs one after another, from a thread."""
        def work():
            for event, data_text in events:
                self.publisher.post(event, data_text)
        await asyncio.to_thread(work)

    def test_two_subscribers_of_one_type_both_receive(self):
        b, _ = self.pair()

        async def go():
            subs = await subscribe_many(b.port, self.token, [["A"], ["A"]])
            try:
                events = [("A", json.dumps({"n": i})) for i in range(5)]
                await self.pub_many(events)
                expected = [event_text(e, d) for e, d in events]
                for ws in subs:
                    self.assertEqual(await read_n(ws, len(expected)), expected)
            finally:
                await close_all(subs)
        run(go())

    def test_200_subscribers_each_receive_all_1000_events_in_order(self):
        b, _ = self.pair()
        n_subs, n_events = 200, 1000

        async def go():
            subs = await subscribe_many(b.port, self.token, [["seq"]] * n_subs)
            try:
                events = [("seq", str(i)) for i in range(n_events)]
                readers = [asyncio.create_task(read_n(ws, n_events, timeout=60)) for ws in subs]
                await self.pub_many(events)
                results = await asyncio.gather(*readers)
                expected = [event_text("seq", str(i)) for i in range(n_events)]
                for i, got in enumerate(results):
                    if got != expected:
                        seqs = [json.loads(m).get("data") for m in got]
                        self.fail(f"subscriber {i} got {len(got)} events out of order or wrong; "
                                  f"first mismatch at {next(k for k in range(len(got)) if got[k] != expected[k])}: "
                                  f"{seqs[:20]}...")
            finally:
                await close_all(subs)
        run(go(), timeout=240)
        # All 1,000 publishes went over one keep-alive connection.
        self.assertEqual(self.publisher.connects, 1)

    def test_subscriber_that_leaves_does_not_disturb_the_others(self):
        b, _ = self.pair()

        async def go():
            subs = await subscribe_many(b.port, self.token, [["A"]] * 6)
            stayers, closer, resetter, silent_resetter = subs[:3], subs[3], subs[4], subs[5]
            try:
                readers = [asyncio.create_task(read_n(ws, 60)) for ws in stayers]
                await self.pub_many([("A", str(i)) for i in range(20)])
                # One leaves with a clean close handshake.
                await closer.close()
                self.assertEqual(closer.close_code, 1000)
                await self.pub_many([("A", str(i)) for i in range(20, 30)])
                # One is reset after reading what it was sent; one is reset
                # with unread events still queued for it.
                self.assertEqual(await read_n(resetter, 30),
                                 [event_text("A", str(i)) for i in range(30)])
                reset_connection(resetter)
                reset_connection(silent_resetter)
                await self.pub_many([("A", str(i)) for i in range(30, 60)])
                expected = [event_text("A", str(i)) for i in range(60)]
                for got in await asyncio.gather(*readers):
                    self.assertEqual(got, expected)
                # The broadcast daemon is alive and takes new subscribers.
                self.assertTrue(b.running())
                late = await ws_subscribe(b.port, self.token, ["A"])
                await self.pub("A", '"late"')
                self.assertEqual(await recv_text(late), event_text("A", '"late"'))
                for ws in stayers:
                    self.assertEqual(await recv_text(ws), event_text("A", '"late"'))
                await late.close()
            finally:
                await close_all(subs)
        run(go())

    def test_mixed_subscriptions_each_get_exactly_their_types(self):
        b, _ = self.pair()
        groups = [("A",)] * 50 + [("B",)] * 50 + [("A", "B")] * 50

        async def go():
            # Each subscriber also has a private marker type, so that the end
            # of its stream is known without waiting for silence: anything
            # wrongly delivered before the marker shows up in its list.
            subs = await subscribe_many(b.port, self.token,
                                        [list(g) + [f"end-{i}"] for i, g in enumerate(groups)])
            try:
                sequence = []
                pattern = ["A", "B", "C", "A", "A", "C", "B", "B", "A", "C"]
                for i in range(60):
                    sequence.append((pattern[i % len(pattern)], json.dumps({"n": i})))

                async def reader(i, ws):
                    out = []
                    marker = event_text(f"end-{i}", "null")
                    while True:
                        msg = await recv_text(ws, 30)
                        if msg == marker:
                            return out
                        out.append(msg)

                readers = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(subs)]
                await self.pub_many(sequence + [(f"end-{i}", "null") for i in range(len(subs))])
                results = await asyncio.gather(*readers)
                for i, (group, got) in enumerate(zip(groups, results)):
                    expected = [event_text(e, d) for e, d in sequence if e in group]
                    self.assertEqual(got, expected, f"subscriber {i} on {group}")
            finally:
                await close_all(subs)
        run(go(), timeout=120)

    def test_publish_ok_means_every_subscriber_with_init_ok_gets_the_event(self):
        """Subscribers join one by one while a publisher publishes without
        pause. Every event whose POST was sent after a subscriber saw its
        init OK must reach that subscriber, and each subscriber's stream is
        an unbroken, in-order run of the publisher's sequence."""
        b, _ = self.pair()
        n_subs = 40
        sent_at = []          # sent_at[i]: monotonic time POST i was sent
        stop = threading.Event()
        errors = []

        def publisher():
            i = 0
            try:
                while not stop.is_set() or i < 20:
                    sent_at.append(time.monotonic())
                    self.publisher.post("live", str(i))
                    i += 1
                sent_at.append(time.monotonic())
                self.publisher.post("live", '"end"')
            except Exception as e:  # reported by the test below
                errors.append(e)

        async def go():
            subs, ok_at, readers = [], [], []

            async def reader(ws):
                out = []
                while True:
                    data = json.loads(await recv_text(ws, 30))["data"]
                    if data == "end":
                        return out
                    out.append(data)

            pub_task = asyncio.create_task(asyncio.to_thread(publisher))
            try:
                for _ in range(n_subs):
                    ws = await ws_subscribe(b.port, self.token, ["live"])
                    ok_at.append(time.monotonic())
                    subs.append(ws)
                    readers.append(asyncio.create_task(reader(ws)))
                    # Let a few events go by between two joins.
                    target = len(sent_at) + 3
                    while len(sent_at) < target and not errors:
                        await asyncio.sleep(0.001)
                stop.set()
                await pub_task
                self.assertEqual(errors, [])
                results = await asyncio.gather(*readers)
            finally:
                stop.set()
                await close_all(subs)
            n_events = len(sent_at) - 1
            for k, (t_ok, got) in enumerate(zip(ok_at, results)):
                required = [i for i in range(n_events) if sent_at[i] > t_ok]
                self.assertTrue(required, f"the publisher stopped before subscriber {k} joined")
                self.assertTrue(got, f"subscriber {k} received nothing")
                self.assertEqual(got, list(range(got[0], n_events)),
                                 f"subscriber {k}: not an unbroken in-order run")
                self.assertLessEqual(got[0], required[0],
                                     f"subscriber {k} missed events published after its init OK")
        run(go(), timeout=120)


if __name__ == "__main__":
    unittest.main()
