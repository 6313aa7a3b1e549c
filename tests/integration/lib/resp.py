"""A small Redis client speaking RESP2 over the test's redis-server UNIX
socket, independent of the daemons' hiredis: the tests write to the stream
what a foreign or broken writer would (any bytes in any field) and read it
back to check what the listen daemons appended.
"""

import socket

from lib.harness import TIME_SCALE


class RespError(Exception):
    """An error reply (-ERR ...)."""


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, int):
            a = str(a)
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Resp:
    """One connection, authenticated with the server's password."""

    def __init__(self, redis, timeout=30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout * TIME_SCALE)
        self.sock.connect(redis.sock)
        self.file = self.sock.makefile("rb")
        self.command("AUTH", redis.password)

    def close(self):
        self.file.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def command(self, *args):
        """Sends one command; returns its reply (bytes, int, list or None),
        or raises RespError for an error reply."""
        self.sock.sendall(encode(args))
        reply = self.read()
        if isinstance(reply, RespError):
            raise reply
        return reply

    def read(self):
        line = self.file.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("redis-server closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            return RespError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ConnectionError(f"not RESP: {line[:40]!r}")
