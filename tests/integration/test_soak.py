"""The soak test with faults, short form (tests/soak/soak.py holds the logic
and runs the long form by hand: tests/soak/soak.py --minutes 10).

About 45 s of traffic: 4 publishers flat out, 72 subscribers (40 steady,
12 reconnecting all the time, 8 slow readers and 4 stalled ones that get
cut off, 8 that drop and resume from their last id), the broadcast daemon killed and restarted, the listen daemon
killed and restarted, the broadcast daemon stopped with SIGTERM twice (once
left down, once restarted at once), the listen daemon restarted with
SIGTERM, the tokens file rewritten twice atomically and twice in place.
Asserts nothing answered 200 was lost, duplicated or reordered for any
subscriber connected across it (a resuming one across all its drops, every
resume exact), nothing answered 200 during a broadcast
drain, no REVOKED, no hang, 503 during the outages, and both daemons back
to their idle descriptors and warm memory afterwards.
"""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "soak"))

import soak  # noqa: E402


class SoakShort(soak.SoakCase):

    def test_faults_under_load_lose_nothing_answered_200_and_leave_no_leak(self):
        self.run_soak(soak.Config.short())


if __name__ == "__main__":
    unittest.main()
