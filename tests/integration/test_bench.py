"""The benchmark's smoke run: the program behind scripts/bench runs a few of
its scenarios for about a second each with few subscribers (--smoke) and
prints its table, on the UNIX bus and on the Redis engine (a redis-server of
its own). Nothing is asserted about speed; only that every accepted
event reached every subscriber once and in order, that no publish failed and
that no server failed (exited, did not stop cleanly, or logged a sanitizer
report)."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

from lib import harness

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "tests", "bench", "bench.py")
BUILD_DIR = os.environ.get("EVS_BUILD_DIR", "build")

# Publishing flat out; 50 events/s to subscribers; publishers held back by
# the slowest subscriber; two broadcast daemons sharing the port; WSS; a
# resume storm after a broadcast restart.
SCENARIOS = ["1a", "2a", "2c", "3a", "7a", "8"]


# The Redis engine: fan-out on one machine, and delivery from one machine's
# listen daemon to another's broadcast daemon.
REDIS_SCENARIOS = ["2a", "10"]


class BenchSmokeTest(unittest.TestCase):
    def smoke_run(self, target, scenarios):
        """Runs the bench program with --smoke on target for scenarios and
        checks every row's deliveries and its line in the table."""
        with tempfile.TemporaryDirectory(prefix="evs-test-") as tmp:
            results = os.path.join(tmp, "results.jsonl")
            proc = subprocess.run(
                [sys.executable, BENCH, "--smoke", "--no-build", "--build-dir", BUILD_DIR,
                 "--servers", target, "--only", ",".join(scenarios), "--results", results],
                capture_output=True, text=True, timeout=300 * harness.TIME_SCALE)
            sys.stderr.write(proc.stderr)
            print(proc.stdout)
            self.assertEqual(proc.returncode, 0, proc.stderr[-4000:])
            with open(results) as f:
                rows = [json.loads(line) for line in f if line.strip()]

        labels = [dict(kv.split("=", 1) for kv in r["label"].split(";")) for r in rows]
        self.assertEqual([m["scenario"] for m in labels], scenarios)
        for row, meta in zip(rows, labels):
            with self.subTest(scenario=meta["scenario"]):
                self.assertEqual(meta["target"], target)
                self.assertNotIn("skipped", meta)
                self.assertEqual(row["server_errors"], [])
                self.assertGreater(row["pub_ok"], 0)
                self.assertEqual(row["pub_ok"], row["published"], "publishes not answered 200")
                self.assertEqual(row["pub_errors"], 0)
                self.assertEqual(row["subs_ok"], row["subs"])
                self.assertEqual(row["subs_failed"], 0, row["first_error"])
                for zero in ("lost", "reordered", "duplicates", "unparsed", "closed_by_server",
                             "dropped"):
                    self.assertEqual(row[zero], 0, zero)
                self.assertTrue(row["drained"])
                self.assertEqual(row["received"], row["subs_ok"] * row["expected_per_sub"])
                if meta["scenario"] == "8":
                    # Every resumer had the whole replay; the others lost nothing meanwhile.
                    self.assertEqual(row["caught_up_subs"], row["subs_ok"])
                    self.assertEqual(row["live_lost"], 0)
                    self.assertEqual(row["live_subs_ok"] * 10, row["subs_ok"])
                    self.assertTrue(row["history_loaded"])
                # The table has the scenario's row.
                subs = row["subs_ok"] or "-"
                self.assertRegex(proc.stdout,
                                 rf"(?m)^{meta['scenario']} +\S.* {target} +{subs} ")
        return rows

    def test_smoke_run_delivers_every_event_once_and_in_order(self):
        self.smoke_run("evs", SCENARIOS)

    def test_smoke_run_on_redis_delivers_across_machines(self):
        rows = self.smoke_run("evs-redis", REDIS_SCENARIOS)
        # The run's redis-server was measured with the daemons: two of them in
        # 2a, four (two machines) in 10, then Redis.
        for row, daemons in zip(rows, (2, 4)):
            pids = [pid for pid, _ in row["srv_cpu_by_pid"]]
            self.assertEqual(len(pids), daemons + 1)
            self.assertEqual(pids[-1], row["redis_pid"])


if __name__ == "__main__":
    unittest.main()
