"""What a monitoring system sees: GET /healthz, and GET /metrics checked by a
strict parser of the Prometheus text format (lib/metrics.py, itself tested
here) and by counters that must move by exact amounts.
"""

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib.metrics import MetricsFormatError, metric, parse_metrics, scrape  # noqa: E402
from lib.rawws import handshake_request  # noqa: E402
from lib.harness import (BROADCAST_BIN, LISTEN_BIN, TIME_SCALE, FakeBroadcast, event_dict,  # noqa: E402
                         free_port, http_get, http_request, publish, run, wait_for, ws_connect,
                         ws_recv_json, ws_subscribe)
from lib.ops import OK, UNAVAILABLE, OpsCase, fresh_type, read_all_until_closed  # noqa: E402


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
