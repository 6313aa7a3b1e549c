"""The soak test with faults on the Redis engine, short form
(tests/soak/soak.py holds the logic; the long form by hand:
tests/soak/soak.py --minutes 10 --redis).

About 40 s of traffic on a redis-server of the test's (requirepass, UNIX
socket, append-only file with appendfsync always): 4 publishers flat out,
58 subscribers (30 steady, 10 reconnecting, 6 slow, 4 stalled, 8 resuming),
the broadcast daemon killed and restarted, the listen daemon killed and
restarted, Redis killed with SIGKILL, left down past the bus wait and
restarted from its append-only file, the broadcast daemon and Redis each
restarted at once after a SIGTERM, the listen daemon restarted with
SIGTERM, the tokens file rewritten. Asserts nothing answered 200 was lost,
duplicated or reordered for any subscriber connected across it, every
resume exact, 503 only around Redis's restarts and during its outage, no
hang, and both daemons back to their idle descriptors and warm memory.
"""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "soak"))

import soak  # noqa: E402


class SoakRedisShort(soak.SoakCase):

    def test_faults_and_redis_restarts_under_load_lose_nothing_answered_200(self):
        self.run_soak(soak.Config.short_redis())


if __name__ == "__main__":
    unittest.main()
