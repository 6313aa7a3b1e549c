"""Several broadcast daemons on one WebSocket port (SO_REUSEPORT), each with
its own bus socket, fed by one listen daemon: every subscriber receives
every event whichever daemon the kernel gave it to, each daemon reports its
own metrics on its admin port, and restarting one daemon affects only its
own subscribers."""

import asyncio
import json
import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import harness  # noqa: E402
from lib.metrics import metric, wait_metric  # noqa: E402
from lib.harness import free_port, publish, run, wait_for, ws_recv_json, ws_subscribe  # noqa: E402

INSTANCES = 3
SUBSCRIBERS = 30


class ScalingCase(harness.ServiceCase):

    def start_instances(self, port):
        daemons = []
        for i in range(INSTANCES):
            admin = free_port()
            d = self.start_broadcast("--reuse-port", "--metrics-port", str(admin), port=port,
                                     bus=os.path.join(self.dir, f"bus-{i}.sock"), name=f"b{i}")
            d.admin = admin
            daemons.append(d)
        return daemons

    def test_subscribers_on_every_instance_all_receive_and_restarting_one_spares_the_others(self):
        port = free_port()
        daemons = self.start_instances(port)
        listen = self.start_listen(bus=[d.bus for d in daemons])
        wait_metric(listen.port, "evs_listen_bus_links_ready", len(daemons))  # every bus reached

        async def scenario():
            subs = [await ws_subscribe(port, self.token, ["news"]) for _ in range(SUBSCRIBERS)]
            counts = [metric(d.admin, "evs_broadcast_sessions_authenticated") for d in daemons]
            # The kernel spreads connections over the daemons: each holds some.
            self.assertEqual(sum(counts), SUBSCRIBERS, counts)
            self.assertTrue(all(c > 0 for c in counts), counts)

            for seq in range(5):
                status, body = await asyncio.to_thread(publish, listen.port, "news", {"seq": seq}, self.token)
                self.assertEqual((status, body), (200, {"code": "OK"}))
            for ws in subs:
                got = [await ws_recv_json(ws) for _ in range(5)]
                self.assertEqual([m["data"]["seq"] for m in got], list(range(5)))

            # Restart the second daemon: its subscribers are closed with 1001,
            # the others keep receiving what is published meanwhile.
            victim = daemons[1]
            victim.signal(signal.SIGTERM)
            await asyncio.to_thread(victim.proc.wait, 15 * harness.TIME_SCALE)
            self.assertEqual(victim.proc.returncode, 0)
            for seq in range(5, 10):
                status, body = await asyncio.to_thread(publish, listen.port, "news", {"seq": seq}, self.token)
                self.assertEqual((status, body), (200, {"code": "OK"}))
            # Each subscriber either had the stopped daemon (its connection
            # ends with 1001) or gets all five events published meanwhile.
            import websockets
            survivors, closed = [], 0
            for ws in subs:
                try:
                    first = await ws_recv_json(ws)
                except websockets.ConnectionClosed:
                    self.assertEqual(ws.close_code, 1001)
                    closed += 1
                    continue
                got = [first] + [await ws_recv_json(ws) for _ in range(4)]
                self.assertEqual([m["data"]["seq"] for m in got], list(range(5, 10)))
                survivors.append(ws)
            self.assertEqual(closed, counts[1])
            self.assertEqual(len(survivors), SUBSCRIBERS - counts[1])

            # The restarted daemon takes subscribers again and gets events.
            victim.stop()
            back = self.start_broadcast("--reuse-port", "--metrics-port", str(victim.admin), port=port,
                                        bus=victim.bus, name="b1-again")
            back.admin = victim.admin
            wait_for(lambda: listen.log().count(f"bus {victim.bus}: reconnected") >= 1,
                     what="listen to reconnect to the restarted daemon")
            extra = []
            while metric(back.admin, "evs_broadcast_sessions_authenticated") == 0:
                extra.append(await ws_subscribe(port, self.token, ["news"]))
                self.assertLess(len(extra), 200, "the restarted daemon got no connection")
            status, body = await asyncio.to_thread(publish, listen.port, "news", {"seq": 10}, self.token)
            self.assertEqual((status, body), (200, {"code": "OK"}))
            for ws in survivors + extra:
                self.assertEqual((await ws_recv_json(ws))["data"]["seq"], 10)
            for ws in survivors + extra:
                await ws.close()

        run(scenario(), timeout=120)
        self.assertTrue(listen.running())


if __name__ == "__main__":
    unittest.main()
