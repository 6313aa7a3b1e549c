"""The credential files as the daemons watch them, end to end.

Both real daemons run on free loopback ports with a tokens file;
subscribers are Debian's python3-websockets, publishers http.client.

What is proven: a FIFO at the tokens path stalls neither daemon: both keep
answering, refuse every Basic credential and say why in their log, at start
and when the FIFO replaces the file.
"""

import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import http_get, run, wait_for  # noqa: E402
from test_auth import AuthCase, expect_auth_close, post_event, subscriber  # noqa: E402

OK = (200, {"code": "OK"})


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


if __name__ == "__main__":
    unittest.main()
