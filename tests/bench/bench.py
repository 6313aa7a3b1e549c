#!/usr/bin/python3
"""The benchmark: starts event-server on loopback in a temporary
folder, drives it with the load tool (tests/bench/, built by CMake into
BUILD/bench/loadgen) and prints one table row per scenario:

  1a/1b  publish flat out, no subscribers, 1 and 32 keep-alive connections
  2a/2b  1,000 subscribers of one type at 50 and 200 events/s
  2c     1,000 subscribers, the highest sustained rate: 16 publishers flat out,
         but never more than 32 events ahead of the slowest subscriber
  3a/3b  10,000 subscribers at 5 and 10 events/s, over 2 broadcast daemons
  4      100,000 idle subscribers over several broadcast daemons
         (SO_REUSEPORT, one bus socket each): RSS per connection and the
         time one event takes to reach all of them
  5      4 KiB payloads, 1,000 subscribers at 50 events/s
  6      one 1 MiB event to 10,000 subscribers that read 4 KiB/s each
         (SO_RCVBUF 4 KiB), held for a while: peak RSS growth
  7a-7c  2a-2c over WSS (the broadcast daemon with --tls; publishing stays HTTP)
  8      a resume storm: 1,000 events published, the broadcast daemon killed
         and restarted (the listen daemon sends it its history), then 10,000
         subscribers resume from before those events at once, while 1,000
         others get 50 events/s: the time until every resumer has had its
         1,000 events, and the others' latency meanwhile
  9      a full history: 12,000 events of 8 KiB published, against the default
         bounds (10,000 events, 64 MiB): what each daemon's history holds and
         how much its RSS grew
  10     two machines: published on one, 1,000 subscribers on the other at 50
         events/s. Each machine is a loopback address (127.0.0.2, 127.0.0.3)
         with its own listen and broadcast daemons (nchan: its own nginx), all
         on one Redis: needs a Redis server (evs-redis, nchan-redis)

Rates are offered by 16 keep-alive publishers (one request in flight on
each); a server that answers too slowly to take the rate gets a note.
Every row is a fresh set of servers. Server CPU is utime+stime of every
server process (/proc/PID/stat) over publishing and delivery only; RSS is the
sum of their VmRSS from /proc/PID/status once the subscribers are connected,
and their peak (VmHWM, reset through /proc/PID/clear_refs at that moment)
over publishing and delivery.

  scripts/bench                 every scenario, full length (about 2 minutes)
  scripts/bench --quick         every scenario, short (under 2 minutes)
  scripts/bench --smoke         every scenario for about a second, with a tenth of
                                the subscribers (scenario 4: 1,000): a check that
                                every event arrives, not a measurement
  scripts/bench --vs nchan      the same against nginx + nchan with 1 and with 2
                                workers, three runs each, servers taking turns;
                                medians and our/nchan ratios (under 10 minutes)
  scripts/bench --vs nchan-redis
                                across machines: scenarios 1a, 1b, 2a and 10 on the
                                UNIX bus (evs), on the Redis engine (evs-redis) and
                                on nginx + nchan with its Redis store (nchan-redis,
                                2 workers per nginx), three runs each, servers
                                taking turns; medians, ours-Redis / nchan-Redis and
                                Redis / UNIX ratios (about 2 minutes)

Redis, for evs-redis and nchan-redis: Debian's redis-server, a private one per
run on a free loopback port with a password (requirepass; REDIS_PASSWORD_FILE for
event-server, redis://:password@ in nchan_redis_server), no persistence, stopped
by PID with the run's servers. Both servers use it over TCP, as from other
machines; its CPU is counted with theirs (and shown apart in the notes).

Options: --only 1a,2b,4  run only these scenarios;  --servers evs,nchan-2w  run only
against these (evs, evs-redis, nchan-1w, nchan-2w, nchan-redis);  --repeat N  runs
per scenario and server (the table shows medians; default 1, and 3 with --vs);
--broadcasts N  broadcast daemons sharing the WebSocket port (default 1, and 2 for
scenario 3; scenario 4 starts as many as it needs);  --idle-subs N  subscribers of
scenario 4;  --build-dir DIR  (default build/);  --no-build  use DIR as it is (no
package check, no build);  --results FILE  keep the JSON lines;  --keep  keep the
temporary folder (configurations, logs). Scenario 10 runs only where a server is on
Redis; scenarios 8 and 9 only on the UNIX bus.

Each JSON line of the results is the load tool's, plus "server_errors": what
went wrong with a server of that run (it exited before being stopped, did not
exit cleanly when stopped, or its log holds a sanitizer report); empty when
nothing did.
"""

import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PROG = "scripts/bench"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from lib import harness, metrics  # noqa: E402  (daemon processes, free ports, tokens, waiting)

ALL_SCENARIOS = ["1a", "1b", "2a", "2b", "2c", "3a", "3b", "4", "5", "6", "7a", "7b", "7c", "8",
                 "9", "10"]
# What --vs nchan-redis runs: publishing, fan-out, and delivery across machines.
REDIS_SCENARIOS = ["1a", "1b", "2a", "10"]
TARGETS = ["evs", "evs-redis", "nchan-1w", "nchan-2w", "nchan-redis"]
VS_TARGETS = {"nchan": ["evs", "nchan-1w", "nchan-2w"],
              "nchan-redis": ["evs", "evs-redis", "nchan-redis"]}
REDIS_TARGETS = {"evs-redis", "nchan-redis"}
# nchan-redis: one worker per core of a 2-core machine, as many processes as
# event-server's one listen and one broadcast daemon per machine.
NCHAN_REDIS_WORKERS = 2
NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"
REDIS_SERVER = "/usr/bin/redis-server"


class Usage(Exception):
    """A bad command line: the message goes to stderr, the exit status is 2."""


def parse_args(argv):
    o = {"quick": False, "smoke": False, "vs": "", "only": "", "servers": "", "idle_subs": "",
         "broadcasts": "", "repeat": "", "build_dir": os.path.join(ROOT, "build"), "results": "",
         "keep": False, "build": True}
    valued = {"--vs": "vs", "--only": "only", "--servers": "servers", "--idle-subs": "idle_subs",
              "--broadcasts": "broadcasts", "--repeat": "repeat", "--build-dir": "build_dir",
              "--results": "results"}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--quick":
            o["quick"] = True
        elif arg == "--smoke":
            o["smoke"] = True
        elif arg == "--keep":
            o["keep"] = True
        elif arg == "--no-build":
            o["build"] = False
        elif arg in ("-h", "--help"):
            print(__doc__.strip("\n"))
            sys.exit(0)
        elif arg.startswith("--vs="):
            o["vs"] = arg[len("--vs="):]
        elif arg in valued:
            if not args:
                raise Usage(f"{arg} needs a value (see --help)")
            o[valued[arg]] = args.pop(0)
        else:
            raise Usage(f"unknown option {arg} (see --help)")
    if o["vs"] and o["vs"] not in VS_TARGETS:
        raise Usage("--vs takes nchan or nchan-redis")
    o["targets"] = VS_TARGETS.get(o["vs"], ["evs"])
    if o["servers"]:
        o["targets"] = o["servers"].split(",")
        if any(t not in TARGETS for t in o["targets"]):
            raise Usage(f"--servers takes {', '.join(TARGETS)}")
    if o["repeat"] and not re.fullmatch(r"[1-9]", o["repeat"]):
        raise Usage("--repeat takes 1 to 9")
    # The ratios are medians of three runs side by side.
    o["repeat"] = int(o["repeat"] or
                      (3 if o["vs"] or any(t.startswith("nchan") for t in o["targets"]) else 1))
    if o["broadcasts"] and not re.fullmatch(r"[1-9]", o["broadcasts"]):
        raise Usage("--broadcasts takes 1 to 9")
    if o["idle_subs"] and not re.fullmatch(r"[1-9][0-9]*", o["idle_subs"]):
        raise Usage("--idle-subs takes a positive number")
    if o["only"]:
        o["scenarios"] = o["only"].split(",")
        for s in o["scenarios"]:
            if s not in ALL_SCENARIOS:
                raise Usage(f"no scenario {s}")
    elif o["vs"] == "nchan-redis":
        o["scenarios"] = list(REDIS_SCENARIOS)
    else:
        # Two machines need a bus that joins them.
        o["scenarios"] = [s for s in ALL_SCENARIOS
                          if s != "10" or REDIS_TARGETS.intersection(o["targets"])]
    return o


class Fatal(Exception):
    """Stops the benchmark: the message goes to stderr, the exit status is 1."""


def installed(package):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True,
                       text=True)
    return "install ok installed" in r.stdout


def install_nchan():
    """Debian starts a freshly installed nginx on port 80 where an init system
    runs; a temporary policy-rc.d (Debian's mechanism for this) prevents that,
    so that the only nginx running is the one the benchmark starts, by PID."""
    missing = [p for p in ("nginx", "libnginx-mod-nchan") if not installed(p)]
    if not missing:
        return
    if os.getuid() != 0:
        raise Fatal(f"missing packages: {' '.join(missing)}; install them as root")
    print(f"installing: {' '.join(missing)}", file=sys.stderr)
    policy = "/usr/sbin/policy-rc.d"
    own_policy = not os.path.lexists(policy)
    if own_policy:
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        ok = (subprocess.run(["apt-get", "update", "-qq"], env=env).returncode == 0 and
              subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                              *missing], env=env, stdout=subprocess.DEVNULL).returncode == 0)
    finally:
        if own_policy:
            os.unlink(policy)
    if not ok:
        raise Fatal(f"could not install {' '.join(missing)}")


def within(seconds, predicate):
    """predicate's first true value within seconds (scaled like the tests), else None."""
    try:
        return harness.wait_for(predicate, seconds, interval=0.05)
    except AssertionError:
        return None


def children_of(parent):
    """The PIDs of parent's children, from /proc."""
    kids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the command name: state, then the parent's PID (proc(5)).
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == parent:
            kids.append(int(name))
    return sorted(kids)


class Bench:
    def __init__(self, o, work):
        self.o = o
        self.work = work
        self.started = []  # every server process still to be stopped
        self.own = []      # the processes started for the current run
        self.server_pids = []  # the processes a run measures (nginx: its workers too)
        self.nchan_idle_done = None
        build = o["build_dir"]
        self.loadgen = os.path.join(build, "bench", "loadgen")
        self.listen_bin = os.path.join(build, "event-listen")
        self.broadcast_bin = os.path.join(build, "event-broadcast")

        if o["smoke"]:
            self.d_pub, self.d_rate, self.d_max, self.d_10k, self.hold, idle_default = (
                "1", "1", "1", "1", "1", 1000)
        elif o["quick"]:
            self.d_pub, self.d_rate, self.d_max, self.d_10k, self.hold, idle_default = (
                "1.5", "2", "1.5", "3", "3", 20000)
        elif o["repeat"] > 1:
            # Shorter runs when each is repeated, so that --vs nchan stays under 10 minutes.
            self.d_pub, self.d_rate, self.d_max, self.d_10k, self.hold, idle_default = (
                "1.5", "2", "1.5", "2.5", "4", 100000)
        else:
            self.d_pub, self.d_rate, self.d_max, self.d_10k, self.hold, idle_default = (
                "5", "6", "5", "6", "8", 100000)
        # --smoke: a tenth of the subscribers of each scenario.
        self.k1, self.k10 = (100, 1000) if o["smoke"] else (1000, 10000)
        self.idle = int(o["idle_subs"] or idle_default)
        # One process may open at most this many files (the hard limit here).
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        self.file_limit = 1048576 if hard == resource.RLIM_INFINITY else hard
        self.per_process = self.file_limit * 8 // 10  # subscribers one daemon or worker is given

        self.token = harness.new_token()
        self.tokens = os.path.join(work, "tokens")
        fd = os.open(self.tokens, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.token + "\n")
        self.cert, self.key = os.path.join(work, "cert.crt"), os.path.join(work, "cert.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                        "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
                        self.key, "-out", self.cert], stderr=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, check=True)
        os.chmod(self.key, 0o600)
        self.results = o["results"] or os.path.join(work, "results.jsonl")
        open(self.results, "w").close()
        # Redis's password: in a file for event-server, in nchan's URL; never on a command line.
        self.redis = None  # the current run's redis-server
        self.redis_password = harness.new_token()
        self.redis_password_file = os.path.join(work, "redis.password")
        fd = os.open(self.redis_password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.redis_password + "\n")

    # --- servers ------------------------------------------------------------------------------

    def free_ports(self):
        self.sub_port = harness.free_port()
        taken = {self.sub_port}
        for name in ("pub_port", "wss_port", "redis_port"):
            port = harness.free_port()
            while port in taken:
                port = harness.free_port()
            taken.add(port)
            setattr(self, name, port)

    def start_process(self, log, argv):
        """Starts argv with its output appended to log; it is stopped by PID."""
        offset = os.path.getsize(log) if os.path.exists(log) else 0
        d = harness.Daemon(argv, None, log)
        d.log_offset = offset  # this run's part of the log starts here
        self.started.append(d)
        self.own.append(d)
        return d

    def fail_start(self, what):
        print(f"{PROG}: {what}; the logs say:", file=sys.stderr, flush=True)
        logs = sorted(os.path.join(self.work, f) for f in os.listdir(self.work)
                      if f.endswith(".log"))
        if logs:
            subprocess.run(["tail", "-5", *logs], stdout=sys.stderr)
        raise Fatal(None)

    @staticmethod
    def machine_hosts(machines):
        """The loopback address of each "machine": 127.0.0.1 alone, or from 127.0.0.2 on."""
        return ["127.0.0.1"] if machines == 1 else [f"127.0.0.{2 + m}" for m in range(machines)]

    def start_redis(self):
        """The run's private redis-server: loopback TCP, as the machines would reach it,
        with a password and no persistence; one of the run's servers (stopped by PID)."""
        w = os.path.join(self.work, "redis")
        os.makedirs(w, exist_ok=True)
        conf = os.path.join(w, "redis.conf")
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"# Written by scripts/bench: a private Redis for one run.\n"
                    f"port {self.redis_port}\nbind 127.0.0.1\nrequirepass {self.redis_password}\n"
                    f'save ""\nappendonly no\ndir {w}\nlogfile ""\ndaemonize no\n')
        self.redis = self.start_process(os.path.join(self.work, "redis.log"), [REDIS_SERVER, conf])
        d = self.redis
        if not within(5, lambda: harness.port_accepts(self.redis_port) or not d.running()) or \
                not d.running():
            self.fail_start("redis-server did not start")

    def start_evs(self, n, tls, redis=False, machines=1):
        """On each of machines loopback addresses, n broadcast daemons sharing
        the WebSocket port and one listen daemon: joined by bus sockets, or
        with redis, every daemon of every machine by the stream of the run's
        redis-server (whose PID is measured last)."""
        self.free_ports()
        self.server_pids, self.own, self.redis = [], [], None
        hosts = self.machine_hosts(machines)
        if machines > 1 and not redis:
            raise Fatal("the UNIX bus joins the daemons of one machine")
        if redis:
            self.start_redis()
        for m, host in enumerate(hosts):
            self.start_evs_machine(n, tls, redis, host, "" if machines == 1 else f"-{chr(97 + m)}")
        # Publishers to the first machine, subscribers to the last.
        self.pub_host, self.sub_host = hosts[0], hosts[-1]
        if redis:
            self.server_pids.append(self.redis.pid)
            self.processes = (f"{n} broadcast + 1 listen + redis" if machines == 1 else
                              f"{machines} x ({n} broadcast + 1 listen) + redis")
        else:
            self.processes = f"{n} broadcast + 1 listen"

    def start_evs_machine(self, n, tls, redis, host, suffix):
        tls_args = ["--tls", "--cert", self.cert, "--key", self.key] if tls else []
        reuse = ["--reuse-port"] if n > 1 else []
        redis_args = ["--redis-url", f"redis://127.0.0.1:{self.redis_port}",
                      "--redis-password-file", self.redis_password_file] if redis else []
        buses, metrics_ports, daemons = [], [], []
        for i in range(1, n + 1):
            if redis:
                # The stream needs no socket; its reader's state is in each daemon's metrics.
                bus_args = []
                metrics_ports.append(harness.free_port() if n > 1 else self.sub_port)
                if n > 1:
                    bus_args = ["--metrics-port", str(metrics_ports[-1])]
            else:
                bus = os.path.join(self.work, f"bus{suffix}-{i}.sock")
                if os.path.lexists(bus):
                    os.unlink(bus)
                bus_args = ["--bus", bus]
                buses += ["--bus", bus]
            d = self.start_process(os.path.join(self.work, f"broadcast{suffix}-{i}.log"), [
                self.broadcast_bin, "--port", str(self.sub_port), "--bind", host, *reuse,
                "--tokens", self.tokens, *bus_args, *redis_args, "--log-level", "warn",
                "--handshake-timeout-ms", "60000", "--init-timeout-ms", "60000", *tls_args])
            self.server_pids.append(d.pid)
            daemons.append(d)
        for i, d in enumerate(daemons, 1):
            if redis:
                port = metrics_ports[i - 1]
                up = within(10, lambda: self.evs_metric(port, "evs_broadcast_bus_peers", host) == 1
                            or not d.running())
            else:
                bus = os.path.join(self.work, f"bus{suffix}-{i}.sock")
                up = within(5, lambda: os.path.exists(bus) or not d.running())
            if not up or not d.running():
                self.fail_start(f"event-broadcast {i} on {host} did not start"
                                f"{' reading the Redis stream' if redis else ''}")
        d = self.start_process(os.path.join(self.work, f"listen{suffix}.log"), [
            self.listen_bin, "--port", str(self.pub_port), "--bind", host,
            "--tokens", self.tokens, *buses, *redis_args, "--max-body-size", "2M",
            "--log-level", "warn"])
        self.server_pids.append(d.pid)
        links = 1 if redis else n
        ready = None

        def connected():
            nonlocal ready
            try:
                ready = metrics.metric(self.pub_port, "evs_listen_bus_links_ready", host=host)
            except (AssertionError, OSError):  # not listening yet, or no sample
                ready = None
            return ready == links
        if not within(10, connected):
            what = "Redis" if redis else f"its {n} broadcast daemon(s)"
            self.fail_start(f"event-listen on {host} did not connect to {what} "
                            f"(ready: {'none' if ready is None else f'{ready:g}'})")

    def write_nginx_conf(self, name, host, workers, redis):
        """nginx's prefix folder name/ and its configuration: nchan on host,
        with the memory store or, with redis, the run's redis-server."""
        w = os.path.join(self.work, name)
        os.makedirs(os.path.join(w, "tmp"), exist_ok=True)
        upstream = store = ""
        if redis:
            upstream = f"""\
  upstream bench_redis {{
    nchan_redis_server redis://:{self.redis_password}@127.0.0.1:{self.redis_port};
  }}
"""
            store = "\n      nchan_redis_pass bench_redis;"
        conf = os.path.join(w, "nginx.conf")
        # It may hold Redis's password.
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"""\
# Written by scripts/bench: nchan on {host}, {"Redis" if redis else "memory"} store.
load_module {NCHAN_MODULE};
worker_processes {workers};
worker_rlimit_nofile {self.file_limit};
daemon off;
master_process on;
pid {w}/nginx.pid;
error_log {self.work}/{name}.log warn;
events {{
  worker_connections {self.file_limit - 1000};
}}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {w}/tmp/body;
  proxy_temp_path {w}/tmp/proxy;
  fastcgi_temp_path {w}/tmp/fastcgi;
  uwsgi_temp_path {w}/tmp/uwsgi;
  scgi_temp_path {w}/tmp/scgi;
  nchan_max_reserved_memory 512M;
{upstream}  server {{
    listen {host}:{self.pub_port} reuseport;
    client_max_body_size 4m;
    client_body_buffer_size 2m;
    location ~ ^/pub/(\\w+)$ {{
      nchan_publisher;
      nchan_channel_id $1;
      nchan_message_buffer_length 1000;
      nchan_message_timeout 60s;{store}
    }}
  }}
  server {{
    listen {host}:{self.sub_port} reuseport;
    listen {host}:{self.wss_port} ssl reuseport;
    ssl_certificate {self.cert};
    ssl_certificate_key {self.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location ~ ^/sub/(\\w+)$ {{
      nchan_subscriber websocket;
      nchan_channel_id $1;
      nchan_subscriber_first_message newest;{store}
    }}
  }}
}}
""")
        return conf

    def start_nchan(self, workers, redis=False, machines=1):
        """On each of machines loopback addresses an nginx with workers
        workers: the memory store, or with redis all on the run's
        redis-server (whose PID is measured last)."""
        self.free_ports()
        self.server_pids, self.own, self.redis = [], [], None
        hosts = self.machine_hosts(machines)
        if redis:
            self.start_redis()
        for m, host in enumerate(hosts):
            name = "nginx" if machines == 1 else f"nginx-{chr(97 + m)}"
            conf = self.write_nginx_conf(name, host, workers, redis)
            log = os.path.join(self.work, f"{name}.log")
            d = self.start_process(log, ["nginx", "-p", os.path.join(self.work, name), "-c", conf,
                                         "-e", log])
            self.server_pids.append(d.pid)

            def up():
                if not d.running():
                    return True
                kids = children_of(d.pid)
                # Channel info: with Redis, answered once a worker has it.
                status = harness.http_get(self.pub_port, "/pub/probe", host)[0]
                return len(kids) >= workers and (status in (200, 404) if redis else status != 0)
            if not within(10, up) or not d.running():
                self.fail_start(f"nginx on {host} did not start")
            self.server_pids += children_of(d.pid)
        self.pub_host, self.sub_host = hosts[0], hosts[-1]
        if redis:
            self.server_pids.append(self.redis.pid)
            self.processes = (f"{workers} workers + master + redis" if machines == 1 else
                              f"{machines} x ({workers} workers + master) + redis")
        else:
            self.processes = f"{workers} workers + master"

    def stop_servers(self, processes):
        """Stops processes (SIGTERM, then waits, the last started first); returns
        what went wrong with them."""
        errors = []
        for d in reversed(processes):
            name = os.path.basename(d.argv[0])
            exited_before = not d.running()
            try:
                code = d.stop()
            except AssertionError as e:
                errors.append(f"{name} {d.pid}: {e}")
                code = d.proc.returncode
            if exited_before:
                errors.append(f"{name} {d.pid} had exited (status {code})")
            elif code != 0:
                errors.append(f"{name} {d.pid} exited with status {code} when stopped")
            with open(d.log_path, "rb") as f:
                f.seek(getattr(d, "log_offset", 0))
                report = harness.log_report(f.read().decode("utf-8", "replace"))
            if report:
                errors.append(f"{name} {d.pid}: {report} report in {os.path.basename(d.log_path)}")
            self.started.remove(d)
        return errors

    def stop_all(self):
        self.stop_servers(list(self.started))

    # --- scenarios ----------------------------------------------------------------------------

    def scenario_setup(self, sid):
        """The load tool's options, broadcast daemons (event-server, per
        machine), least workers (nchan), TLS, a reason not to run and the
        machines, for scenario sid."""
        b = self.o["broadcasts"]
        n_broadcast, min_workers, tls, skip, machines = int(b or 1), 1, False, "", 1
        k1, k10 = str(self.k1), str(self.k10)
        if sid == "1a":
            args = ["--subs", "0", "--pubs", "1", "--duration", self.d_pub]
        elif sid == "1b":
            args = ["--subs", "0", "--pubs", "32", "--duration", self.d_pub]
        elif sid in ("2a", "7a", "10"):
            args = ["--subs", k1, "--pubs", "16", "--rate", "50", "--duration", self.d_rate]
            if sid == "10":
                machines = 2
        elif sid in ("2b", "7b"):
            args = ["--subs", k1, "--pubs", "16", "--rate", "200", "--duration", self.d_rate]
        elif sid in ("2c", "7c"):
            args = ["--subs", k1, "--pubs", "16", "--window", "32", "--duration", self.d_max]
        elif sid in ("3a", "3b"):
            # One broadcast daemon per core: the unit of scale (nchan gets 1 and 2 workers).
            n_broadcast = int(b or 2)
            args = ["--subs", k10, "--pubs", "16", "--rate", "5" if sid == "3a" else "10",
                    "--duration", self.d_10k]
        elif sid == "4":
            args = ["--subs", str(self.idle), "--pubs", "1", "--count", "1", "--duration", "30",
                    "--drain", "30", "--connect-timeout", "180"]
            n_broadcast = (self.idle + self.per_process - 1) // self.per_process
            min_workers = n_broadcast
            if self.idle > self.per_process * 60:
                skip = f"{self.idle} subscribers would need over 60 processes here"
        elif sid == "5":
            args = ["--subs", k1, "--pubs", "16", "--rate", "50", "--payload", "4096",
                    "--duration", self.d_rate]
        else:  # 6
            args = ["--subs", k10, "--pubs", "1", "--count", "1", "--payload", "1048576",
                    "--slow-bps", "4096", "--rcvbuf", "4096", "--drain", self.hold]
        # Fewer TLS handshakes at once: each costs the load tool milliseconds of CPU.
        if sid.startswith("7"):
            tls = True
            args += ["--connect-window", "64"]
        return args, n_broadcast, min_workers, tls, skip, machines

    def record(self, line):
        with open(self.results, "a") as f:
            f.write(line + "\n")

    def record_skip(self, label, why):
        self.record(json.dumps({"label": f"{label};skipped={why}"}, separators=(",", ":")))

    def run_scenario(self, target, sid, run):
        """Runs scenario sid against target (evs, nchan-1w, nchan-2w) as run
        number run; appends its JSON line to the results."""
        if sid == "8":
            return self.run_resume_storm(target, run)
        if sid == "9":
            return self.run_history_memory(target, run)
        args, n_broadcast, min_workers, tls, skip, machines = self.scenario_setup(sid)
        label = f"target={target};scenario={sid};run={run}"
        redis = target in REDIS_TARGETS
        if machines > 1 and not redis:
            skip = ("the UNIX bus joins the daemons of one machine" if target == "evs" else
                    "nchan's memory store is one server's")
        if skip:
            self.record_skip(label, skip)
            return
        if target.startswith("evs"):
            self.start_evs(n_broadcast, tls, redis, machines)
            args += ["--proto", "evs", "--sub-port", str(self.sub_port), "--pub-port",
                     str(self.pub_port), "--token", self.token]
        else:
            workers = max(NCHAN_REDIS_WORKERS if redis else int(target[len("nchan-"):-1]),
                          min_workers)
            if sid == "4" and self.nchan_idle_done == (run, workers, redis):
                self.record(json.dumps({"label": f"{label};same_as=nchan run with {workers} "
                                                 f"workers"}, separators=(",", ":")))
                return
            if sid == "4":
                self.nchan_idle_done = (run, workers, redis)
            self.start_nchan(workers, redis, machines)
            args += ["--proto", "nchan", "--sub-port",
                     str(self.wss_port if tls else self.sub_port), "--pub-port",
                     str(self.pub_port), "--sub-path", f"/sub/b{sid}", "--pub-path", f"/pub/b{sid}"]
        label += f";processes={self.processes}"
        args += ["--host", self.sub_host, "--pub-host", self.pub_host]
        if tls:
            args.append("--tls")
        for pid in self.server_pids:
            args += ["--server-pid", str(pid)]
        note = ""
        if sid == "4" and not self.o["idle_subs"] and (self.o["quick"] or self.o["smoke"]):
            mode = "--smoke" if self.o["smoke"] else "--quick"
            note = f";note=scaled down to {self.idle} for {mode}"
        if sid == "4" and self.o["idle_subs"]:
            note = f";note=--idle-subs {self.idle}"
        if sid == "6":
            note = f";hold={self.hold}"

        print(f"  {target:<11} {sid:<3} run {run}/{self.o['repeat']} ...", end="",
              file=sys.stderr, flush=True)
        line, failed = self.load_tool(args, label + note)
        if failed:
            print(" load tool failed", file=sys.stderr)
        else:
            print(" done", file=sys.stderr)
        extra = None
        if self.redis and not failed:
            # Its share, as a figure of its own: medians of runs are taken figure by figure.
            by_pid = dict(json.loads(line).get("srv_cpu_by_pid", []))
            extra = {"redis_pid": self.redis.pid, "redis_cpu_s": by_pid.get(self.redis.pid, -1.0)}
        self.finish_run(label, line, failed, extra)

    def load_tool(self, args, label, wait=True):
        """Runs the load tool; returns its JSON line and whether it failed
        (wait=False: returns a function that waits for both)."""
        def option(name, default):
            return float(args[args.index(name) + 1]) if name in args else default
        # The load tool bounds each of its phases; this bounds the load tool.
        limit = (option("--connect-timeout", 120) + option("--duration", 5) +
                 option("--drain", 10) + 120) * harness.TIME_SCALE
        log = open(os.path.join(self.work, "loadgen.log"), "ab")
        proc = subprocess.Popen([self.loadgen, "run", *args, "--label", label],
                                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)

        def finish():
            try:
                out, _ = proc.communicate(timeout=limit)
                line, failed = out.decode().rstrip("\n"), proc.returncode != 0
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                log.write(f"{PROG}: the load tool did not finish within {limit:.0f} s\n".encode())
                line, failed = "", True
            log.close()
            return line, failed or not line.endswith("}")
        return finish() if wait else finish

    def finish_run(self, label, line, failed, extra=None):
        """Stops the run's servers and records its line (with extra fields)."""
        # A server that died under load is a finding, not a detail.
        for d in self.own:
            if not d.running():
                print(f"  warning: server process {d.pid} had exited", file=sys.stderr)
        errors = self.stop_servers(self.own)
        self.own = []
        for e in errors:
            print(f"  warning: {e}", file=sys.stderr)
        if failed:
            self.record_skip(label, "the load tool failed (see loadgen.log)")
        else:
            extra = dict(extra or {}, server_errors=errors)
            self.record(line[:-1] + "," + json.dumps(extra, separators=(",", ":"))[1:])

    def publish_one(self, event, data):
        """Publishes one event; returns its Event-Id."""
        body = json.dumps({"event": event, "data": data}, separators=(",", ":"))
        status, answer, headers = harness.http_request(
            self.pub_port, "POST", "/event", body, {"Authorization": f"Basic {self.token}"})
        if status != 200:
            raise Fatal(f"publishing {event} was answered {status} {answer}")
        return {k.lower(): v for k, v in headers.items()}["event-id"]

    def evs_metric(self, port, name, host="127.0.0.1"):
        try:
            return metrics.metric(port, name, host=host)
        except (AssertionError, OSError):
            return None

    def restart_broadcast(self):
        """Kills the one broadcast daemon (SIGKILL) and starts it again, same
        port, same bus socket; returns once the listen daemon is back on it."""
        old = next(d for d in self.own if os.path.basename(d.argv[0]) == "event-broadcast")
        old.stop(signal.SIGKILL)
        self.started.remove(old)
        self.own.remove(old)
        d = self.start_process(old.log_path, old.argv)
        self.server_pids = [d.pid if pid == old.pid else pid for pid in self.server_pids]
        if not within(10, lambda: self.evs_metric(self.pub_port, "evs_listen_bus_links_ready") == 1):
            self.fail_start("event-listen did not reconnect to the restarted broadcast daemon")
        return d

    def run_resume_storm(self, target, run):
        """Scenario 8 (see the top of this file)."""
        label = f"target={target};scenario=8;run={run}"
        if target == "evs-redis":
            self.record_skip(label, "a broadcast daemon on Redis does not read back its history yet")
            return
        if target != "evs":
            self.record_skip(label, "nchan replays without telling a lost id from a kept one")
            return
        resumers, replay, live = self.k10, self.k10 // 10, self.k1
        live_s = "3" if self.o["smoke"] else "15"
        print(f"  {target:<11} 8   run {run}/{self.o['repeat']} ...", end="", file=sys.stderr,
              flush=True)
        self.start_evs(1, False)
        label += ";processes=1 broadcast + 1 listen"
        common = ["--proto", "evs", "--sub-port", str(self.sub_port), "--pub-port",
                  str(self.pub_port), "--token", self.token]
        since = self.publish_one("storm", {"before": True})
        line, failed = self.load_tool([*common, "--subs", "0", "--event", "storm", "--pubs", "1",
                                       "--count", str(replay), "--duration", "60"],
                                      label + ";part=preload")
        if failed:
            print(" load tool failed", file=sys.stderr)
            self.finish_run(label, "", True)
            return
        self.restart_broadcast()
        loaded = within(10, lambda: self.evs_metric(self.sub_port, "evs_broadcast_history_events")
                        == replay + 1)
        # The others: connected and receiving before the storm starts.
        pids = [x for pid in self.server_pids for x in ("--server-pid", str(pid))]
        others = self.load_tool([*common, "--subs", str(live), "--event", "live", "--pubs", "16",
                                 "--rate", "50", "--duration", live_s], label + ";part=live",
                                wait=False)
        within(60, lambda: (self.evs_metric(self.sub_port, "evs_broadcast_sessions_authenticated")
                            or 0) >= live)
        line, failed = self.load_tool([*common, *pids, "--subs", str(resumers), "--event", "storm",
                                       "--since", since, "--preloaded", str(replay),
                                       "--pub-base", "1", "--pubs", "1", "--count", "1",
                                       "--duration", "30", "--drain", "120"], label)
        live_line, live_failed = others()
        print(" load tool failed" if failed or live_failed else " done", file=sys.stderr)
        extra = {"history_loaded": bool(loaded)}
        if not live_failed:
            o = json.loads(live_line)
            extra.update(live_subs_ok=o["subs_ok"], live_e2e_p50_ms=o["e2e_p50_ms"],
                         live_e2e_p99_ms=o["e2e_p99_ms"], live_e2e_max_ms=o["e2e_max_ms"],
                         live_lost=o["lost"], live_s=o["pub_s"])
        self.finish_run(label, line, failed or live_failed, extra)

    def run_history_memory(self, target, run):
        """Scenario 9 (see the top of this file)."""
        label = f"target={target};scenario=9;run={run}"
        if target == "evs-redis":
            self.record_skip(label, "on Redis the stream is the history (trimmed by count)")
            return
        if target != "evs":
            self.record_skip(label, "nchan's history is per channel, in message counts")
            return
        print(f"  {target:<11} 9   run {run}/{self.o['repeat']} ...", end="", file=sys.stderr,
              flush=True)
        self.start_evs(1, False)
        label += ";processes=1 broadcast + 1 listen"
        names = {}
        for d in self.own:
            names[os.path.basename(d.argv[0])] = d.pid
        before = {n: rss_kb(pid) for n, pid in names.items()}
        pids = [x for pid in self.server_pids for x in ("--server-pid", str(pid))]
        line, failed = self.load_tool(["--proto", "evs", "--sub-port", str(self.sub_port),
                                       "--pub-port", str(self.pub_port), "--token", self.token,
                                       *pids, "--subs", "0", "--event", "history", "--pubs", "16",
                                       "--count", "12000", "--payload", "8192", "--duration", "60"],
                                      label)
        print(" load tool failed" if failed else " done", file=sys.stderr)
        extra = {}
        if not failed:
            # The daemons keep their histories: what they hold now is the bound's doing.
            extra = {
                "broadcast_history_events": self.evs_metric(self.sub_port, "evs_broadcast_history_events"),
                "broadcast_history_bytes": self.evs_metric(self.sub_port, "evs_broadcast_history_bytes"),
                "listen_history_events": self.evs_metric(self.pub_port, "evs_listen_history_events"),
                "listen_history_bytes": self.evs_metric(self.pub_port, "evs_listen_history_bytes"),
                "history_bound_bytes": 64 * 1024 * 1024,
                "broadcast_rss_growth_kb": rss_kb(names["event-broadcast"]) - before["event-broadcast"],
                "listen_rss_growth_kb": rss_kb(names["event-listen"]) - before["event-listen"],
            }
        self.finish_run(label, line, failed, extra)

    # --- the run ------------------------------------------------------------------------------

    def run(self):
        o = self.o
        cores = len(os.sched_getaffinity(0))
        cpu_model = ""
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem_kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal"))
        machine = (f"{cores} cores ({cpu_model}), {mem_kb / 1048576:.1f} GiB, Linux "
                   f"{os.uname().release}, file limit {self.file_limit} per process")
        versions = subprocess.run([self.broadcast_bin, "--version"], capture_output=True,
                                  text=True, check=True).stdout.rstrip("\n")
        targets = o["targets"]
        if any(t.startswith("nchan-") for t in targets):
            nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
            nchan = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libnginx-mod-nchan"],
                                   capture_output=True, text=True).stdout
            versions += f", {nginx.removeprefix('nginx version: ')}, nchan {nchan}"
        if REDIS_TARGETS.intersection(targets):
            redis = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True,
                                   check=True).stdout
            m = re.search(r"v=(\S+)", redis)
            versions += f", redis-server {m.group(1) if m else '?'}"
        started_at = time.time()
        load_before = loadavg()
        print(f"machine: {machine}", file=sys.stderr)
        if int(float(load_before.split()[0])) >= cores:
            print(f"warning: load average {load_before.split()[0]} on {cores} cores: other work "
                  f"will skew the figures", file=sys.stderr)
        # Scenario by scenario, each server in turn: drifting background load then
        # weighs on the servers compared in a row alike.
        for sid in o["scenarios"]:
            for run in range(1, o["repeat"] + 1):
                for target in targets:
                    self.run_scenario(target, sid, run)
        elapsed = int(time.time() - started_at)
        mode = "--smoke, " if o["smoke"] else "--quick, " if o["quick"] else ""
        report(self.results, machine, versions, elapsed, mode,
               f"{load_before} before, {loadavg()} after")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# --- the report -------------------------------------------------------------------------------

NAMES = {
    "1a": "publish, 1 conn, no subscribers",
    "1b": "publish, 32 conns, no subscribers",
    "2a": "1k subs x 50 ev/s",
    "2b": "1k subs x 200 ev/s",
    "2c": "1k subs, max sustained (window 32)",
    "3a": "10k subs x 5 ev/s",
    "3b": "10k subs x 10 ev/s",
    "4": "idle subs, 1 event to all",
    "5": "4 KiB data, 1k subs x 50 ev/s",
    "6": "1 MiB event, 10k slow subs",
    "7a": "WSS 1k subs x 50 ev/s",
    "7b": "WSS 1k subs x 200 ev/s",
    "7c": "WSS 1k subs, max (window 32)",
    "8": "resume storm after a restart",
    "9": "full history, 8 KiB events",
    "10": "2 machines, 1k subs x 50 ev/s",
}

# Repeated runs of a scenario on a server become one row: the median of
# each figure, and the worst run for what must be zero (losses, errors).
WORST = {"lost", "reordered", "duplicates", "subs_failed", "pub_errors", "pub_no_answer",
         "closed_by_server", "dropped", "unparsed", "pub_4xx", "pub_5xx"}


def read_results(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            d = json.loads(line)
            d["meta"] = dict(kv.split("=", 1) for kv in d["label"].split(";") if "=" in kv)
            rows.append(d)
    return rows


def combine(runs):
    good = [r for r in runs if "skipped" not in r["meta"] and "same_as" not in r["meta"]]
    if len(good) < 2:
        return good[0] if good else runs[0]
    out = dict(good[0])
    for key, value in good[0].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        vals = [r[key] for r in good if isinstance(r.get(key), (int, float))]
        out[key] = max(vals) if key in WORST else statistics.median(vals)
        if all(isinstance(v, int) for v in vals):
            out[key] = int(round(out[key]))
    out["drained"] = all(r.get("drained", True) for r in good)
    return out


def fmt(v, digits=1):
    if v is None:
        return "-"
    if v >= 100000:
        return f"{v/1000:.0f}k"
    if v >= 10000:
        return f"{v/1000:.1f}k"
    return f"{v:.{digits}f}"


def figures(d):
    """The figures compared between servers, None where not meaningful."""
    sc = d["meta"]["scenario"]
    f = {}
    subs = d.get("subs", 0)
    f["deliv"] = d["deliveries_per_s"] if subs and sc not in ("4", "6", "8") else None
    f["p99"] = d["e2e_p99_ms"] if subs and sc != "6" else None
    f["pubs"] = d["pub_rps"] if sc in ("1a", "1b") else None
    f["cpu_deliv"] = d["srv_cpu_us_per_delivery"] if d.get("received") else None
    f["cpu_pub"] = d["srv_cpu_us_per_publish"] if sc in ("1a", "1b") else None
    f["reach"] = d["e2e_max_ms"] if sc == "4" else None
    f["rss_sub"] = ((d["srv_rss_ready_kb"] - d["srv_rss_base_kb"]) / d["subs_ok"]
                    if sc == "4" and d.get("subs_ok") else None)
    f["rss_growth"] = (d["srv_hwm_kb"] - d["srv_rss_ready_kb"]) / 1024 if sc == "6" else None
    return f


def report(path, machine, versions, elapsed, mode, load):
    """Prints the table of the results in path and, with nchan rows, the ratios."""
    groups = {}
    for d in read_results(path):
        groups.setdefault((d["meta"]["scenario"], d["meta"]["target"]), []).append(d)
    runs_per_row = max(len(g) for g in groups.values()) if groups else 1
    rows = [combine(g) for g in groups.values()]

    print()
    print(f"machine: {machine}")
    print(f"servers: {versions}; load tool on the same machine; {mode}took {elapsed} s; "
          f"load average {load} (other work on the machine skews the figures)")
    if runs_per_row > 1:
        print(f"each row: the median of {runs_per_row} runs, figure by figure (servers taking "
              f"turns run by run); lost, errors and closes: the worst run")
    print("CPU = utime+stime of all server processes over publishing+delivery, per delivered "
          "message and per accepted publish; RSS = sum of VmRSS once the subscribers are connected "
          "/ peak (VmHWM) during publishing+delivery")
    print()
    head = (f"{'#':<3} {'scenario':<34} {'server':<11} {'subs ok':>7} {'deliv/s':>7} "
            f"{'e2e p50':>7} {'p99':>7} {'max ms':>7} {'pub/s':>6} {'pub p50':>7} {'p99 ms':>7} "
            f"{'CPU us':>7} {'CPU us':>7} {'RSS MiB':>13} {'lost':>5}  notes")
    head2 = (f"{'':<3} {'':<34} {'':<11} {'':>7} {'':>7} {'':>7} {'':>7} {'':>7} {'':>6} {'':>7} "
             f"{'':>7} {'/deliv':>7} {'/pub':>7} {'ready/peak':>13} {'':>5}")
    print(head)
    print(head2)
    print("-" * len(head))
    several = len({r["meta"]["target"] for r in rows}) > 1
    previous = None
    for d in rows:
        m = d["meta"]
        sc, tg = m["scenario"], m["target"]
        if several and previous is not None and sc != previous:
            print()
        previous = sc
        name = NAMES.get(sc, sc)
        if sc == "4" and "subs" in d:
            name = f"{d['subs']//1000}k idle subs, 1 event to all"
        if "skipped" in m or "same_as" in m:
            why = m.get("skipped") or f"same run as the {m['same_as']}"
            print(f"{sc:<3} {name:<34} {tg:<11} {why}")
            continue
        notes = []
        if d["subs"] and d["subs_failed"]:
            notes.append(f"{d['subs_failed']} subs failed: {d['first_error']}")
        if d["pub_errors"]:
            notes.append(f"{d['pub_errors']} publish errors (first status "
                         f"{d['pub_first_bad_status']}, {d['pub_no_answer']} unanswered)")
        if d["reordered"] or d["duplicates"]:
            notes.append(f"{d['reordered']} reordered, {d['duplicates']} duplicated")
        if d["closed_by_server"] or d["dropped"]:
            notes.append(f"closed by server {d['closed_by_server']} {d['close_codes']}, "
                         f"dropped {d['dropped']}")
        if d["unparsed"]:
            notes.append(f"{d['unparsed']} frames not events")
        f = figures(d)
        if sc == "4":
            after = (d["srv_rss_end_kb"] - d["srv_rss_base_kb"]) / max(d["subs_ok"], 1)
            notes.append(f"RSS/sub {f['rss_sub']:.1f} KiB idle, {after:.1f} KiB after the event; "
                         f"reached all in {d['e2e_max_ms']:.0f} ms; connected in "
                         f"{d['connect_s']:.1f} s")
        if sc == "6":
            notes.append(f"peak RSS growth {f['rss_growth']:.1f} MiB; {d['complete_subs']} subs "
                         f"had all of it within the {d['meta'].get('hold', '?')} s held")
        if not d.get("srv_hwm_reset", True):
            notes.append("peak RSS since start (VmHWM could not be reset)")
        if sc in ("2c", "7c"):
            notes.append(f"{d['pub_rps']:.0f} events/s")
        if sc == "8":
            notes.append(f"{d['caught_up_subs']} of {d['subs_ok']} resumed {d['preloaded']} "
                         f"events each: all live {d['caught_up_max_ms'] / 1000:.1f} s after they "
                         f"started connecting (half by {d['caught_up_p50_ms'] / 1000:.1f} s)")
            if "live_e2e_p99_ms" in d:
                notes.append(f"meanwhile {d['live_subs_ok']} others at 50 ev/s for "
                             f"{d['live_s']:.0f} s: p50 {d['live_e2e_p50_ms']:.1f} ms, p99 "
                             f"{d['live_e2e_p99_ms']:.1f} ms, max {d['live_e2e_max_ms']:.0f} ms, "
                             f"lost {d['live_lost']}")
            if not d.get("history_loaded", True):
                notes.append("HISTORY NOT LOADED before the storm")
        if sc == "9" and d.get("broadcast_history_bytes") is not None:
            mib = 1024 * 1024
            notes.append(f"bound {d['history_bound_bytes'] / mib:.0f} MiB: broadcast holds "
                         f"{d['broadcast_history_events']:.0f} events in "
                         f"{d['broadcast_history_bytes'] / mib:.1f} MiB, RSS +"
                         f"{d['broadcast_rss_growth_kb'] / 1024:.1f} MiB; listen "
                         f"{d['listen_history_events']:.0f} in {d['listen_history_bytes'] / mib:.1f} "
                         f"MiB, RSS +{d['listen_rss_growth_kb'] / 1024:.1f} MiB")
        if d["rate"] > 0 and d["pub_rps"] < 0.95 * d["rate"]:
            notes.append(f"RATE NOT TAKEN: {d['pub_rps']:.0f} of {d['rate']:.0f} events/s accepted")
        if d["tls"] and d.get("tls_suite"):
            notes.append(d["tls_suite"])
        if not d["drained"] and sc != "6":
            notes.append("NOT DRAINED")
        if "note" in m:
            notes.append(m["note"])
        if d.get("redis_cpu_s", -1) >= 0 and d["pub_ok"]:
            # In clock ticks (10 ms): only the faster rows give it to a few percent.
            notes.append(f"of which redis-server {d['redis_cpu_s'] * 1e6 / d['pub_ok']:.0f} "
                         f"us/pub")
        notes.append(m.get("processes", ""))
        lost = "-" if sc == "6" or not d["subs"] else str(d["lost"])
        subs = d["subs_ok"] if d["subs"] else "-"
        rss = f"{d['srv_rss_ready_kb']/1024:.0f}/{d['srv_hwm_kb']/1024:.0f}"
        dl = f["deliv"] if d["received"] else None
        e2e = [d["e2e_p50_ms"], d["e2e_p99_ms"], d["e2e_max_ms"]] if d["received"] else [None] * 3
        cpu_d = d["srv_cpu_us_per_delivery"] if d["received"] else None
        print(f"{sc:<3} {name:<34} {tg:<11} {subs:>7} {fmt(dl, 0):>7} {fmt(e2e[0], 2):>7} "
              f"{fmt(e2e[1], 2):>7} {fmt(e2e[2], 1):>7} {fmt(d['pub_rps'], 0):>6} "
              f"{fmt(d['pub_lat_p50_ms'], 2):>7} {fmt(d['pub_lat_p99_ms'], 2):>7} "
              f"{fmt(cpu_d, 2):>7} {fmt(d['srv_cpu_us_per_publish'], 1):>7} {rss:>13} {lost:>5}  "
              f"{'; '.join(n for n in notes if n)}")

    ratios(rows, "evs", ("nchan-1w", "nchan-2w"),
           "ours / nchan, each figure against the better of the nchan runs (1 and 2 workers; "
           "scenario 4: as many workers as needed)",
           "deliv/s and pub/s: above 1 is better for us; the others (latency, CPU, memory): "
           "below 1 is better for us")
    ratios(rows, "evs-redis", ("nchan-redis",),
           "ours on Redis / nchan on Redis (the same redis-server, its CPU counted on both sides)",
           "deliv/s and pub/s: above 1 is better for us; the others (latency, CPU, memory): "
           "below 1 is better for us")
    ratios(rows, "evs-redis", ("evs",),
           "Redis engine / UNIX bus (event-server both times; Redis's CPU counted)",
           "deliv/s and pub/s: above 1 means the Redis engine is faster; the others: above 1 "
           "means it costs more")


RATIO_COLUMNS = [("deliv", "deliv/s"), ("p99", "e2e p99"), ("pubs", "pub/s"),
                 ("cpu_deliv", "CPU/deliv"), ("cpu_pub", "CPU/pub"), ("reach", "reach all"),
                 ("rss_sub", "RSS/sub"), ("rss_growth", "RSS growth")]
HIGHER_BETTER = {"deliv", "pubs"}


def ratios(rows, ours, theirs, title, legend):
    """Prints, scenario by scenario, each figure of target ours over the
    better one of the targets theirs (the columns some scenario has); nothing
    when no scenario ran on both."""
    mine = {r["meta"]["scenario"]: r for r in rows
            if r["meta"]["target"] == ours and "skipped" not in r["meta"]}
    other = {}
    for r in rows:
        m = r["meta"]
        if m["target"] in theirs and "skipped" not in m and "same_as" not in m:
            other.setdefault(m["scenario"], []).append(r)
    table = []
    for sc, r in mine.items():
        if sc not in other:
            continue
        fo = figures(r)
        out = {}
        for key, _ in RATIO_COLUMNS:
            vals = [figures(t)[key] for t in other[sc] if figures(t)[key] is not None]
            if fo[key] is not None and vals:
                best = max(vals) if key in HIGHER_BETTER else min(vals)
                if best > 0:
                    out[key] = f"{fo[key] / best:.2f}"
        table.append((sc, out))
    if not table:
        return
    cols = [c for c in RATIO_COLUMNS if any(c[0] in out for _, out in table)]
    print()
    print(title)
    print(f"  {legend}")
    print(f"{'#':<3} {'scenario':<34} " + " ".join(f"{c[1]:>10}" for c in cols))
    for sc, out in table:
        print(f"{sc:<3} {NAMES.get(sc, sc):<34} " +
              " ".join(f"{out.get(key, '-'):>10}" for key, _ in cols))


# --- the command ------------------------------------------------------------------------------

def on_stop_signal(sig, frame):
    raise KeyboardInterrupt


def main(argv):
    try:
        o = parse_args(argv)
    except Usage as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, on_stop_signal)
    work = None
    bench = None
    try:
        if o["build"]:
            subprocess.run([os.path.join(ROOT, "scripts", "deps"), "build"], check=True)
        if any(t.startswith("nchan-") for t in o["targets"]):
            install_nchan()
        if REDIS_TARGETS.intersection(o["targets"]) and not os.access(REDIS_SERVER, os.X_OK):
            raise Fatal(f"no {REDIS_SERVER}: scripts/deps test installs it")
        work = tempfile.mkdtemp(prefix="evs-bench.")
        if o["build"]:
            log = os.path.join(work, "build.log")
            print(f"building (log: {log}) ...", file=sys.stderr)
            # The load tool is a target of the tests, so the tests are configured in.
            with open(log, "wb") as f:
                built = subprocess.run([os.path.join(ROOT, "scripts", "build"), o["build_dir"],
                                        "-DENABLE_TESTS=ON"], stdout=f, stderr=f).returncode == 0
            if not built:
                subprocess.run(["tail", "-20", log], stdout=sys.stderr)
                return 1
        bench = Bench(o, work)
        for path in (bench.loadgen, bench.listen_bin, bench.broadcast_bin):
            if not os.access(path, os.X_OK):
                raise Fatal(f"no {path} (build it, or leave out --no-build)")
        bench.run()
        return 0
    except Fatal as e:
        if e.args[0]:
            print(f"{PROG}: {e.args[0]}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as e:
        print(f"{PROG}: {' '.join(e.cmd)} failed (status {e.returncode})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the servers are being stopped
        if bench:
            bench.stop_all()
        if work and o["keep"]:
            print(f"kept: {work}", file=sys.stderr)
        elif work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
