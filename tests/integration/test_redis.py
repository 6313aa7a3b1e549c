"""The Redis engine (REDIS_URL), through the real daemons, a real
redis-server started here (requirepass, UNIX socket and loopback port) and
real WebSocket clients: two listen and two broadcast daemons on one Redis
stand for two machines.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib import harness  # noqa: E402
from lib.harness import TIME_SCALE, http_request, run, wait_for, ws_connect  # noqa: E402
from lib.metrics import metric  # noqa: E402

from test_resume import (RESUMED, fresh_type, nothing_more, post, receive, subscribe,  # noqa: E402
                         with_id)


# The README's ACL for the daemons' Redis user (its keys: the stream's).
ACL_RULES = ("resetkeys ~event-server:* resetchannels -@all +auth +select +ping +eval +evalsha "
             "+xadd +xrange +xrevrange +xread +xinfo|stream +hexists +hget +hset +hincrby +time "
             "+wait")


class RedisCase(harness.ServiceCase):

    def redis_args(self, redis, url=None):
        return ["--redis-url", url or redis.url, "--redis-password-file", redis.password_file]

    def machine(self, redis, name, url=None, listen_args=(), broadcast_args=()):
        """One "machine": a broadcast and a listen daemon on the Redis stream."""
        b = self.start_broadcast(*self.redis_args(redis, url), *broadcast_args, name=f"b-{name}",
                                 bus=os.path.join(self.dir, f"unused-{name}.sock"), wait=False)
        wait_for(lambda: harness.port_accepts(b.port) or not b.running(), what="broadcast daemon")
        self.assertTrue(b.running(), b.log())
        wait_for(lambda: metric(b.port, "evs_broadcast_bus_peers") == 1, what="reading the stream")
        l = self.start_listen(*self.redis_args(redis, url), *listen_args, bus=b.bus,
                              name=f"l-{name}")
        wait_for(lambda: harness.http_get(l.port, "/healthz")[0] == 200, what="listen on Redis")
        return b, l


class RedisTest(RedisCase):

    def test_two_machines_deliver_every_event_with_the_same_ids(self):
        redis = self.start_redis()
        b1, l1 = self.machine(redis, "one")
        b2, l2 = self.machine(redis, "two", url=redis.tcp_url)
        kind = fresh_type()

        async def go():
            s1, _ = await subscribe(b1.port, self.token, [kind], since="now")
            s2, _ = await subscribe(b2.port, self.token, [kind], since="now")
            ids = [post(l.port, self.token, kind, n) for n, l in enumerate([l1, l2, l1, l2])]
            want = [with_id(kind, i, n) for n, i in enumerate(ids)]
            self.assertEqual(await receive(s1, 4), want)
            self.assertEqual(await receive(s2, 4), want)
            # One epoch, numbers one after the other, whichever listen daemon took it.
            runs = {i.split("-")[0] for i in ids}
            numbers = [int(i.split("-")[1], 16) for i in ids]
            self.assertEqual(len(runs), 1)
            self.assertEqual(numbers, list(range(numbers[0], numbers[0] + 4)))
            await s1.close()
            await s2.close()
        run(go())

    def test_a_resume_on_the_other_machine_is_exact(self):
        redis = self.start_redis()
        b1, l1 = self.machine(redis, "one")
        b2, l2 = self.machine(redis, "two")
        kind = fresh_type()

        async def go():
            ws, _ = await subscribe(b1.port, self.token, [kind], since="now")
            first = post(l1.port, self.token, kind, 1)
            self.assertEqual(await receive(ws, 1), [with_id(kind, first, 1)])
            await ws.close()
            missed = [post(l2.port, self.token, kind, n) for n in (2, 3)]
            wait_for(lambda: metric(b2.port, "evs_broadcast_history_events") >= 3,
                     what="the other machine's history")
            ws, reply = await subscribe(b2.port, self.token, [kind], since=first)
            self.assertEqual(json.loads(reply), RESUMED)
            self.assertEqual(await receive(ws, 2), [with_id(kind, i, n) for i, n in zip(missed, (2, 3))])
            await ws.close()
        run(go())

    def test_a_broadcast_daemon_started_later_resumes_exactly_from_the_stream(self):
        redis = self.start_redis()
        b1, l1 = self.machine(redis, "one")
        kind, other = fresh_type(), fresh_type()

        async def go():
            ids = [post(l1.port, self.token, k, n) for n, k in enumerate([kind, other, kind, kind])]
            # A new machine: its history is the stream's, loaded at its start.
            b2, _ = self.machine(redis, "two")
            ws, reply = await subscribe(b2.port, self.token, [kind], since=ids[0])
            self.assertEqual(json.loads(reply), RESUMED)
            self.assertEqual(metric(b2.port, "evs_broadcast_history_loaded_total"), 4)
            later = post(l1.port, self.token, kind, 4)
            self.assertEqual(await receive(ws, 3), [with_id(kind, ids[2], 2), with_id(kind, ids[3], 3),
                                                    with_id(kind, later, 4)])
            await ws.close()
        run(go())

    def test_a_redis_user_limited_to_the_stream_is_enough(self):
        """The ACL of README's "Several machines": nothing but the stream's
        keys and the commands the daemons send, for both of them."""
        redis = self.start_redis()
        rules = ACL_RULES.replace("event-server:*", "evs-acl:*").split()
        subprocess.run(["redis-cli", "-s", redis.sock, "--no-auth-warning", "-a",
                        open(redis.password_file).read().strip(), "ACL", "SETUSER", "evs", "on",
                        ">user-password-long-enough", *rules], check=True, capture_output=True)
        user_password = os.path.join(self.dir, "user.password")
        with open(user_password, "w") as f:
            f.write("user-password-long-enough\n")
        os.chmod(user_password, 0o600)
        redis.password_file = user_password
        url = f"redis://evs@127.0.0.1:{redis.port}"
        stream = ["--redis-stream", "evs-acl:events"]
        b1, l1 = self.machine(redis, "one", url=url, listen_args=stream, broadcast_args=stream)
        kind = fresh_type()

        async def go():
            ids = [post(l1.port, self.token, kind, n) for n in range(3)]
            b2, _ = self.machine(redis, "two", url=url, listen_args=stream, broadcast_args=stream)
            ws, reply = await subscribe(b2.port, self.token, [kind], since=ids[0])
            self.assertEqual(json.loads(reply), RESUMED)
            self.assertEqual(await receive(ws, 2), [with_id(kind, i, n) for n, i in
                                                    enumerate(ids) if n])
            await ws.close()
            self.assertEqual(metric(b2.port, "evs_broadcast_redis_errors_total"), 0)
        run(go())
        self.assertEqual(metric(l1.port, "evs_listen_redis_refused_total"), 0)

    def test_an_init_before_the_stream_is_read_waits_and_then_misses_nothing(self):
        redis = self.start_redis()
        b1, l1 = self.machine(redis, "one")
        kind = fresh_type()

        async def go():
            os.kill(redis.pid, signal.SIGSTOP)  # a new daemon cannot read where the stream ends
            try:
                b2 = self.start_broadcast(*self.redis_args(redis), name="b-two",
                                          bus=os.path.join(self.dir, "unused-two.sock"), wait=False)
                wait_for(lambda: harness.port_accepts(b2.port), what="the new broadcast daemon")
                ws = await ws_connect(b2.port)
                await ws.send(json.dumps({"authentication": f"Basic {self.token}",
                                          "events": [kind]}))
                # Not subscribed yet: an event answered now could still be read as history.
                await nothing_more(ws, 1.0)
            finally:
                os.kill(redis.pid, signal.SIGCONT)
            self.assertEqual(json.loads(await asyncio.wait_for(ws.recv(), 10 * TIME_SCALE)),
                             {"type": "init", "code": "OK"})
            first = post(l1.port, self.token, kind, 1)
            self.assertTrue(first)
            self.assertEqual(await receive(ws, 1),
                             [f'{{"type":"event","event":{json.dumps(kind)},"data":1}}'])
            await ws.close()
        run(go())

    def test_redis_down_is_503_never_200_and_delivery_resumes_when_it_is_back(self):
        redis = self.start_redis()
        b, l = self.machine(redis, "one", listen_args=["--bus-wait-ms", "500"])
        kind = fresh_type()

        async def go():
            ws, _ = await subscribe(b.port, self.token, [kind])
            post(l.port, self.token, kind, 1)
            self.assertEqual(await receive(ws, 1), [harness.event_text(kind, "1")])
            redis.stop(signal.SIGKILL)
            wait_for(lambda: harness.http_get(l.port, "/healthz")[0] == 503, what="healthz 503")
            status, body = harness.publish(l.port, kind, 2, token=self.token)
            self.assertEqual((status, body), (503, {"code": "BROADCAST_UNAVAILABLE"}))
            # Back, without its data: a new stream, which the broadcast daemon
            # finds and reads from its start.
            back = harness.Daemon(redis.argv, self.env(), redis.log_path + ".again")
            self.daemons.append(back)
            back.wait_log("Ready to accept connections")
            wait_for(lambda: harness.http_get(l.port, "/healthz")[0] == 200, what="healthz 200")
            post(l.port, self.token, kind, 3)
            self.assertEqual(await receive(ws, 1, timeout=20), [harness.event_text(kind, "3")])
            await ws.close()
        run(go())
        self.assertGreaterEqual(metric(b.port, "evs_broadcast_redis_resets_total"), 1)
        self.assertGreaterEqual(metric(l.port, "evs_listen_publishes_total{code=\"BROADCAST_UNAVAILABLE\"}"), 1)

    def test_bad_redis_settings_stop_the_start_with_exit_2(self):
        redis = self.start_redis()
        for binary, name in ((harness.LISTEN_BIN, "listen"), (harness.BROADCAST_BIN, "broadcast")):
            for args, reason in ((["--redis-url", "http://u:secret@h"], "REDIS_URL"),
                                 (["--redis-url", redis.url, "--redis-password-file",
                                   os.path.join(self.dir, "nope")], "REDIS_PASSWORD_FILE"),
                                 (["--redis-url", redis.url, "--redis-stream", "a b"], "REDIS_STREAM"),
                                 (["--redis-url", redis.url, "--redis-stream", "x" * 201],
                                  "REDIS_STREAM")):
                with self.subTest(daemon=name, reason=reason):
                    d = harness.Daemon([binary, "--port", str(harness.free_port()), *args],
                                       self.env(), os.path.join(self.dir, f"bad-{name}.log"))
                    self.assertEqual(d.proc.wait(10 * TIME_SCALE), 2)
                    d.log_file.close()
                    self.assertIn(reason, d.log())
                    self.assertNotIn("secret", d.log())


if __name__ == "__main__":
    unittest.main()
