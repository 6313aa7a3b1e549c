"""The credential files as the daemons watch them, end to end.

Both real daemons run on free loopback ports with a tokens file, a roles
file, a JWT secrets file and (for the recheck cost) an EC public key;
subscribers are Debian's python3-websockets, publishers http.client.

What is proven: a tokens, roles or secrets file rewritten in place (truncated,
then written in two steps, with gaps that let the daemons' polls land on the
empty and on the half-written file) is applied only once whole: no live
session is revoked and no publish refused while the same credentials are
rewritten again and again. A FIFO at the tokens path stalls neither daemon:
both keep answering, refuse every Basic credential and say why in their log,
at start and when the FIFO replaces the file. A change to the tokens file
verifies no JWT signature again, a SIGHUP or a secrets-file change verifies
each JWT session once, and removing a secret still revokes the sessions it
signed (counted by evs_broadcast_jwt_verifications_total and
evs_broadcast_recheck_passes_total). The pass is spread over the event loop:
the daemon answers while it runs, and a change during the pass checks again
only the sessions it concerns (evs_broadcast_rechecks_total).
"""

import asyncio
import json
import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib.harness import event_dict, http_get, new_token, run, wait_for  # noqa: E402
from test_auth import (KEYS, ROLES, AuthCase, claims_for,  # noqa: E402
                       expect_auth_close, mint_es256, post_event, recv_json, subscriber)
import test_auth  # noqa: E402
from lib.metrics import scrape  # noqa: E402

OK = (200, {"code": "OK"})


def setUpModule():
    test_auth.setUpModule()  # the key pairs, made once


def tearDownModule():
    test_auth.tearDownModule()


def rewrite_in_place(path, text):
    """What `cat new > path` does, slowed down: the file is truncated, stays
    empty for longer than one poll interval (250 ms), then is written in two
    pieces with a shorter gap between them. The gaps are the fault injected
    (a poll landing on an empty or half-written file), not a wait for the
    daemons."""
    data = text.encode()
    half = len(data) // 2
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        time.sleep(0.3)
        os.write(fd, data[:half])
        time.sleep(0.05)
        os.write(fd, data[half:])
    finally:
        os.close(fd)


class InPlaceRewriteTest(AuthCase):

    def test_credential_files_rewritten_in_place_revoke_no_session_and_refuse_no_publish(self):
        reader = new_token()
        tokens_text = f"{self.token}\n{reader} orders-reader\n"
        with open(self.tokens_path, "w") as f:
            f.write(tokens_text)
        self.write_secrets(self.secret1)
        secrets_text = self.secret1 + "\n"
        self.pair(roles=True)
        jwt = self.bearer(exp_in=3600)
        credentials = [f"Basic {self.token}", f"Basic {self.token}", f"Basic {reader}", jwt,
                       self.bearer(roles=["orders-reader"])]
        # The log line each daemon writes when it applies each file again.
        applied = {
            self.tokens_path: f"tokens file {self.tokens_path} reloaded (file changed): 2 tokens",
            self.roles_path: f"roles file {self.roles_path} reloaded: 5 roles",
            self.secrets_path: f"JWT secrets file {self.secrets_path} reloaded: 1 secrets",
        }
        rewrites = [(self.tokens_path, tokens_text), (self.roles_path, ROLES),
                    (self.secrets_path, secrets_text)] * 3
        answers = []
        stop = threading.Event()

        def publish_all_along():
            n = 0
            while not stop.is_set():
                auth = f"Basic {self.token}" if n % 2 == 0 else jwt
                body = json.dumps({"event": "orders.created", "data": {"n": n}})
                answers.append((n, post_event(self.l.port, "orders.created", auth, body)))
                n += 1

        def rewrite_all():
            for path, text in rewrites:
                count = {d: d.log().count(applied[path]) for d in (self.b, self.l)}
                rewrite_in_place(path, text)
                for d in (self.b, self.l):
                    wait_for(lambda: d.log().count(applied[path]) > count[d], 5,
                             what=f"{path} applied again by {d.argv[0]}")

        async def read_until_marker(ws):
            got = []
            while True:
                msg = await recv_json(ws, 20)
                got.append(msg)
                if msg.get("type") != "event" or msg["data"].get("marker"):
                    return got

        async def go():
            sockets = [await subscriber(self.b.port, c, ["orders.created"]) for c in credentials]
            try:
                readers = [asyncio.ensure_future(read_until_marker(ws)) for ws in sockets]
                publisher = asyncio.ensure_future(asyncio.to_thread(publish_all_along))
                try:
                    await asyncio.to_thread(rewrite_all)
                finally:
                    stop.set()
                    await publisher
                marker = json.dumps({"event": "orders.created", "data": {"marker": True}})
                self.assertEqual(await asyncio.to_thread(post_event, self.l.port, "orders.created",
                                                         f"Basic {self.token}", marker), OK)
                return await asyncio.gather(*readers)
            finally:
                for ws in sockets:
                    await ws.close()

        received = run(go(), timeout=120)
        refused = [(n, a) for n, a in answers if a != OK]
        self.assertEqual(refused, [], "publishes refused while the files were rewritten")
        self.assertGreater(len(answers), 20)
        expected = [event_dict("orders.created", {"n": n}) for n, _ in answers]
        expected.append(event_dict("orders.created", {"marker": True}))
        for credential, got in zip(credentials, received):
            with self.subTest(credential=credential[:24]):
                self.assertEqual([m for m in got if m.get("type") != "event"], [],
                                 "the session was told something else than events")
                self.assertEqual(got, expected)
        for d in (self.b, self.l):
            self.assertNotIn("cannot be read", d.log())
            self.assertNotIn("holds no usable token", d.log())


class FifoTest(AuthCase):

    def assert_serving_and_refusing(self, reason):
        for d in (self.b, self.l):
            d.wait_log(f"tokens file {self.tokens_path} cannot be read ({reason})")
        self.assertEqual(http_get(self.b.port, "/healthz"), (200, {"code": "OK"}))
        self.assertEqual(http_get(self.l.port, "/healthz"), (200, {"code": "OK"}))
        self.assertEqual(post_event(self.l.port, "orders.created", f"Basic {self.token}"),
                         (403, {"code": "UNAUTHENTICATED"}))

    def test_fifo_replacing_the_tokens_file_is_refused_and_both_daemons_keep_serving(self):
        self.pair()

        async def go():
            ws = await subscriber(self.b.port, f"Basic {self.token}", ["orders.created"])
            try:
                fifo = self.tokens_path + ".fifo"
                os.mkfifo(fifo, 0o600)
                os.replace(fifo, self.tokens_path)
                # Unreadable revokes, as documented: the notice proves the
                # change was handled, and the daemon did not stall on it.
                await expect_auth_close(ws, "REVOKED", timeout=5)
            finally:
                await ws.close()
        run(go())
        self.assert_serving_and_refusing("not a regular file: a FIFO")
        # A SIGHUP reads it on demand: no stall either.
        for d in (self.b, self.l):
            d.signal(signal.SIGHUP)
        self.assertEqual(http_get(self.b.port, "/healthz"), (200, {"code": "OK"}))
        self.assertEqual(http_get(self.l.port, "/healthz"), (200, {"code": "OK"}))
        # A regular file in its place brings the tokens back.
        self.write_tokens([self.token])
        wait_for(lambda: post_event(self.l.port, "orders.created", f"Basic {self.token}") == OK,
                 5, 0.05, "the token to be accepted again")

    def test_daemons_start_and_serve_with_a_fifo_at_the_tokens_path(self):
        os.unlink(self.tokens_path)
        os.mkfifo(self.tokens_path, 0o600)
        self.pair()
        self.assert_serving_and_refusing("not a regular file: a FIFO")


class RecheckCostTest(AuthCase):
    """A credential change re-checks only the sessions it can affect, once,
    in batches."""

    ES256_SESSIONS = 300
    HS256_SESSIONS = 5

    def counters(self):
        m = scrape(self.b.port)
        return (m.value("evs_broadcast_jwt_verifications_total"),
                m.value("evs_broadcast_recheck_passes_total"))

    def wait_passes(self, passes):
        """Waits until `passes` recheck passes have finished; returns the
        counters then."""
        def finished():
            verified, done = self.counters()
            return (verified, done) if done >= passes else None
        return wait_for(finished, 30, 0.02, f"recheck pass {passes} to finish")

    async def open_sessions(self, credentials):
        limit = asyncio.Semaphore(50)

        async def open_one(auth):
            async with limit:
                return await subscriber(self.b.port, auth, ["orders.created"])
        return await asyncio.gather(*(open_one(a) for a in credentials))

    async def all_receive(self, sockets, n):
        body = json.dumps({"event": "orders.created", "data": {"n": n}})
        self.assertEqual(await asyncio.to_thread(post_event, self.l.port, "orders.created",
                                                 f"Basic {self.token}", body), OK)
        for msg in await asyncio.gather(*(recv_json(ws, 30) for ws in sockets)):
            self.assertEqual(msg, event_dict("orders.created", {"n": n}))

    def test_tokens_change_verifies_no_jwt_and_sighup_or_secrets_change_one_per_jwt_session(self):
        self.write_secrets(self.secret1, self.secret2)
        self.pair(public_keys=[KEYS["ec_pub"]])
        es256 = ["Bearer " + mint_es256(KEYS["ec"], claims_for(sub=f"s{i}"))
                 for i in range(self.ES256_SESSIONS)]
        hs256 = [self.bearer(secret=self.secret1, sub=f"h{i}") for i in range(self.HS256_SESSIONS)]
        jwt_sessions = self.ES256_SESSIONS + self.HS256_SESSIONS

        async def go():
            stay = await self.open_sessions(es256 + [f"Basic {self.token}"])
            doomed = await self.open_sessions(hs256)
            try:
                verified, passes = self.counters()
                self.assertEqual(verified, jwt_sessions, "one verification per init")

                # touch: the tokens file changed, and no JWT depends on it.
                os.utime(self.tokens_path)
                now_verified, _ = await asyncio.to_thread(self.wait_passes, passes + 1)
                self.assertEqual(now_verified - verified, 0,
                                 "JWT signatures verified again for a tokens-file change")
                await self.all_receive(stay + doomed, 1)

                # SIGHUP: every file and key read again, one change: each JWT
                # session is verified once more.
                self.b.signal(signal.SIGHUP)
                after_sighup, _ = await asyncio.to_thread(self.wait_passes, passes + 2)
                self.assertEqual(after_sighup - now_verified, jwt_sessions,
                                 "JWT signatures verified for one SIGHUP")
                await self.all_receive(stay + doomed, 2)

                # A secret removed: each JWT session verified once, the sessions
                # it signed revoked, the others stay.
                self.write_secrets(self.secret2)
                for ws in doomed:
                    await expect_auth_close(ws, "REVOKED", timeout=10)
                after_removal, _ = await asyncio.to_thread(self.wait_passes, passes + 3)
                self.assertEqual(after_removal - after_sighup, jwt_sessions,
                                 "JWT signatures verified for one secrets-file change")
                await self.all_receive(stay, 3)
            finally:
                for ws in stay + doomed:
                    await ws.close()
        run(go(), timeout=180)

    def test_listen_counts_the_jwt_signatures_it_checks_and_a_cached_token_costs_none(self):
        self.pair()
        token = self.bearer(sub="publisher")

        def verified():
            return scrape(self.l.port).value("evs_listen_jwt_verifications_total")

        before = verified()
        self.assertEqual(post_event(self.l.port, "orders.created", token), OK)
        self.assertEqual(verified(), before + 1)
        self.assertEqual(post_event(self.l.port, "orders.created", token), OK)  # cached
        self.assertEqual(verified(), before + 1)
        self.assertEqual(post_event(self.l.port, "orders.created", self.bearer(sub="other")), OK)
        self.assertEqual(verified(), before + 2)

    def test_a_recheck_pass_runs_in_batches_and_the_daemon_answers_while_it_runs(self):
        self.pair(secrets_file=False, public_keys=[KEYS["ec_pub"]])
        es256 = ["Bearer " + mint_es256(KEYS["ec"], claims_for(sub=f"s{i}"))
                 for i in range(self.ES256_SESSIONS)]

        def scrape_until_finished(passes):
            """Scrapes /metrics back to back until `passes` recheck passes
            have finished; returns what each answer showed."""
            seen = []

            def finished():
                seen.append(self.counters())
                return seen[-1][1] >= passes
            wait_for(finished, 30, 0, f"recheck pass {passes} to finish")
            return seen

        async def go():
            sessions = await self.open_sessions(es256)
            try:
                verified, passes = self.counters()
                self.b.signal(signal.SIGHUP)
                seen = await asyncio.to_thread(scrape_until_finished, passes + 1)
                during = [v - verified for v, done in seen
                          if done == passes and 0 < v - verified < self.ES256_SESSIONS]
                self.assertTrue(during, "no /metrics answer while the pass ran: "
                                f"{[(v - verified, done - passes) for v, done in seen]}")
                self.assertEqual(seen[-1], (verified + self.ES256_SESSIONS, passes + 1))
                await self.all_receive(sessions, 1)
            finally:
                for ws in sessions:
                    await ws.close()
        run(go(), timeout=180)

    def test_a_change_during_a_pass_rechecks_only_the_sessions_it_concerns(self):
        """SIGHUP, then a tokens-file change while the pass is under way:
        the pass starts again, but each JWT session is still checked once
        (the tokens file does not concern it) and the Basic one at most
        twice, rather than every session checked again."""
        es256_sessions = 600
        self.pair(secrets_file=False, public_keys=[KEYS["ec_pub"]])
        es256 = ["Bearer " + mint_es256(KEYS["ec"], claims_for(sub=f"s{i}"))
                 for i in range(es256_sessions)]
        sessions_n = es256_sessions + 1

        def rechecks():
            m = scrape(self.b.port)
            return (m.value("evs_broadcast_rechecks_total"),
                    m.value("evs_broadcast_recheck_passes_total"))

        async def go():
            sessions = await self.open_sessions(es256 + [f"Basic {self.token}"])
            try:
                checked, passes = rechecks()
                self.b.signal(signal.SIGHUP)

                def under_way():
                    now_checked, now_passes = rechecks()
                    if now_passes > passes:
                        raise AssertionError("the pass ended before it was seen under way")
                    return now_checked - checked >= 2
                await asyncio.to_thread(wait_for, under_way, 30, 0, "the pass to be under way")
                os.utime(self.tokens_path)
                await asyncio.to_thread(
                    self.b.wait_log, f"tokens file {self.tokens_path} reloaded (file changed)", 30)
                await asyncio.to_thread(self.wait_passes, passes + 1)
                await self.all_receive(sessions, 1)  # a few loop passes later
                now_checked, now_passes = rechecks()
                self.assertEqual(now_passes - passes, 1,
                                 "the tokens-file change came after the pass: a longer pass "
                                 "(more sessions) is needed for this test")
                self.assertLessEqual(now_checked - checked, sessions_n + 1,
                                     f"{sessions_n} sessions, checked again")
                self.assertGreaterEqual(now_checked - checked, sessions_n)
            finally:
                for ws in sessions:
                    await ws.close()
        run(go(), timeout=300)


if __name__ == "__main__":
    unittest.main()
