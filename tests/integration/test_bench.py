"""The benchmark's smoke run: the program behind scripts/bench runs a few of
its scenarios for about a second each with few subscribers (--smoke) and
prints its table. Nothing is asserted about speed; only that every accepted
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


class BenchSmokeTest(unittest.TestCase):
    def test_smoke_run_delivers_every_event_once_and_in_order(self):
        with tempfile.TemporaryDirectory(prefix="evs-test-") as tmp:
            results = os.path.join(tmp, "results.jsonl")
            proc = subprocess.run(
                [sys.executable, BENCH, "--smoke", "--no-build", "--build-dir", BUILD_DIR,
                 "--only", ",".join(SCENARIOS), "--results", results],
                capture_output=True, text=True, timeout=300 * harness.TIME_SCALE)
            sys.stderr.write(proc.stderr)
            print(proc.stdout)
            self.assertEqual(proc.returncode, 0, proc.stderr[-4000:])
            with open(results) as f:
                rows = [json.loads(line) for line in f if line.strip()]

        labels = [dict(kv.split("=", 1) for kv in r["label"].split(";")) for r in rows]
        self.assertEqual([m["scenario"] for m in labels], SCENARIOS)
        for row, meta in zip(rows, labels):
            with self.subTest(scenario=meta["scenario"]):
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
                self.assertRegex(proc.stdout, rf"(?m)^{meta['scenario']} +\S.* evs +{subs} ")


if __name__ == "__main__":
    unittest.main()
