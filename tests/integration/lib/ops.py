"""What the operations tests share: the service manager's side of the
daemons (a NOTIFY_SOCKET that records what they send, daemons started by
systemd-socket-activate or with inherited sockets) and OpsCase, the harness's
ServiceCase with those.
"""

import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time

from lib import harness
from lib.harness import TIME_SCALE

OK = (200, {"code": "OK"})
UNAVAILABLE = (503, {"code": "BROADCAST_UNAVAILABLE"})

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"

# Variables a service manager sets; a daemon only sees them when a test sets them.
SERVICE_MANAGER_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
SANITIZER_VARS = ("ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS")


def fresh_type(prefix="ops"):
    return f"{prefix}-{secrets.token_hex(4)}"


# --- sd_notify ------------------------------------------------------------------------------------

class NotifySocket:
    """The service manager's end of NOTIFY_SOCKET: a datagram socket whose
    messages ("KEY=value" lines) are recorded with their arrival time."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.05)
        self.messages = []  # (monotonic time, {key: value}, raw text)
        self.cond = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopping:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic()
            text = data.decode("utf-8", "replace")
            fields = {}
            for line in text.split("\n"):
                if line:
                    key, _, value = line.partition("=")
                    fields[key] = value
            with self.cond:
                self.messages.append((now, fields, text))
                self.cond.notify_all()

    def count(self):
        with self.cond:
            return len(self.messages)

    def wait(self, predicate, start=0, timeout=10.0, what="a notify message"):
        """Index of the first message from start on whose fields satisfy predicate."""
        def find():
            for i in range(start, len(self.messages)):
                if predicate(self.messages[i][1]):
                    return i + 1  # true even for index 0
            return 0

        with self.cond:
            found = self.cond.wait_for(find, timeout * TIME_SCALE)
            if not found:
                got = [m[2] for m in self.messages[start:]][-10:]
                raise AssertionError(f"timed out waiting for {what}; got {got}")
            return found - 1

    def fields(self, i):
        with self.cond:
            return self.messages[i][1]

    def time(self, i):
        with self.cond:
            return self.messages[i][0]

    def all(self):
        with self.cond:
            return [m[1] for m in self.messages]

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


def has(key, value=None):
    return lambda f: key in f and (value is None or f[key] == value)


def status_only(f):
    return set(f) == {"STATUS"}


def read_all_until_closed(sock, timeout):
    """Reads until the peer closes (EOF or reset); returns what arrived."""
    sock.settimeout(timeout * TIME_SCALE)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


# --- daemons launched with inherited sockets -------------------------------------------------------

# Puts the given descriptors at 3, 4, ... (LISTEN_FDS_START), sets LISTEN_FDS and
# LISTEN_PID to its own pid, and execs the rest of its arguments: what PID 1
# does for a .socket unit. Python rather than sh: dash cannot redirect fds > 9.
FD_PASSER = r"""
import fcntl, os, sys
sep = sys.argv.index("--")
fds = [int(a) for a in sys.argv[1:sep]]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
for n, fd in enumerate(high):
    os.dup2(fd, 3 + n)
for fd in set(fds + high):
    if fd >= 3 + len(fds):
        os.close(fd)
os.environ["LISTEN_FDS"] = str(len(fds))
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ.pop("LISTEN_FDNAMES", None)
os.execvp(sys.argv[sep + 1], sys.argv[sep + 1:])
"""


class PassingDaemon(harness.Daemon):
    """harness.Daemon whose process inherits some descriptors (pass_fds)."""

    def __init__(self, argv, env, log_path, pass_fds):
        self.argv = argv
        self.log_path = log_path
        self.log_file = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log_file, stderr=self.log_file,
                                     stdin=subprocess.DEVNULL, pass_fds=pass_fds)
        self.pid = self.proc.pid


class OpsCase(harness.ServiceCase):

    def env(self, extra=None):
        env = super().env(extra)
        for key in SERVICE_MANAGER_VARS:
            if not (extra and key in extra):
                env.pop(key, None)
        return env

    def notify_socket(self, name="notify"):
        n = NotifySocket(os.path.join(self.dir, f"{name}.sock"))
        self.addCleanup(n.close)
        return n

    def notify_env(self, notify, watchdog_usec=None):
        env = {"NOTIFY_SOCKET": notify.path}
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        return env

    def passenv_args(self):
        """systemd-socket-activate hands its child a bare environment: pass
        the sanitizer settings on with -E."""
        env = self.env()
        return [f"-E{k}={env[k]}" for k in SANITIZER_VARS if k in env]

    def socket_activate(self, argv, name, pass_fds=()):
        self.assertTrue(os.access(SOCKET_ACTIVATE, os.X_OK),
                        "systemd-socket-activate (Debian package systemd) is needed")
        log = os.path.join(self.dir, f"{name}.log")
        if pass_fds:
            full = [sys.executable, "-c", FD_PASSER, *map(str, pass_fds), "--",
                    SOCKET_ACTIVATE, *argv]
            d = PassingDaemon(full, self.env(), log, pass_fds)
        else:
            d = harness.Daemon([SOCKET_ACTIVATE, *argv], self.env(), log)
        self.daemons.append(d)
        return d

    def wait_exit(self, d, timeout):
        """Waits for d to exit by itself; returns (exit code, seconds waited)."""
        t0 = time.monotonic()
        try:
            d.proc.wait(timeout * TIME_SCALE)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{d.argv[0]} did not exit within {timeout}s:\n{d.log()[-3000:]}")
        return d.stop(), time.monotonic() - t0

    def rewrite_tokens_in_place(self, tokens):
        """Rewrites the tokens file in place with the same size, then puts its
        mtime back. (The daemons' file watcher also compares the ctime, which
        no call can put back, so it may notice the change as well; the tests
        wait for the reload whose logged reason is SIGHUP.)"""
        st = os.stat(self.tokens_path)
        data = "".join(t + "\n" for t in tokens).encode()
        self.assertEqual(len(data), st.st_size, "tokens of the same length keep the size")
        fd = os.open(self.tokens_path, os.O_WRONLY)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.utime(self.tokens_path, ns=(st.st_atime_ns, st.st_mtime_ns))
