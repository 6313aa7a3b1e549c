"""A WebSocket client on a plain (or TLS) socket, for what a library will not
do: frames of any shape (unmasked, fragmented control frames, lying lengths),
a handshake sent in pieces, a client that stops reading or never answers a
close. One frame encoder, one frame decoder, one handshake.

Reads have deadlines (scaled by TIME_SCALE); EOF and resets read as None.
"""

import base64
import hashlib
import json
import os
import socket
import struct
import time

from lib.harness import TIME_SCALE

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# The sample nonce of RFC 6455 §1.3, for handshakes written out in full.
SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def accept_for(key):
    """The Sec-WebSocket-Accept a server owes to the Sec-WebSocket-Key key."""
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def handshake_request(host="127.0.0.1", key=SAMPLE_KEY, method="GET", path="/", version="13", extra=""):
    """An opening handshake's bytes; key or version None leaves that header
    out, extra is more header lines (each ending in CRLF)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade"]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode("latin-1")


def encode_frame(opcode, payload=b"", fin=True, mask=True, length=None):
    """One RFC 6455 frame; client frames are masked unless told otherwise.
    length, when given, is announced instead of the payload's own length."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    m = len(payload)
    keystream = (key * (m // 4 + 1))[:m]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")).to_bytes(m, "big") if m else b""
    return head + key + masked


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


def close_code(payload):
    """The status code of a close frame's payload, None if it has none."""
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


class Frame(tuple):
    """A received frame: the pair (opcode, payload), with fin and masked beside it."""

    def __new__(cls, fin, opcode, payload, masked=False):
        self = super().__new__(cls, (opcode, payload))
        self.fin, self.masked = fin, masked
        return self

    @property
    def opcode(self):
        return self[0]

    @property
    def payload(self):
        return self[1]

    @property
    def close_code(self):
        return close_code(self.payload)

    def json(self):
        return json.loads(self.payload)

    def __repr__(self):
        return f"Frame(fin={self.fin}, opcode={self.opcode}, payload={self.payload[:80]!r})"


def decode_frame(b, off=0):
    """(frame, end) for the complete frame at b[off:] (masked or not), or None
    while it is incomplete."""
    avail = len(b) - off
    if avail < 2:
        return None
    fin, opcode = bool(b[off] & 0x80), b[off] & 0x0F
    masked, n = bool(b[off + 1] & 0x80), b[off + 1] & 0x7F
    pos = 2
    if n == 126:
        if avail < 4:
            return None
        n, pos = struct.unpack("!H", b[off + 2:off + 4])[0], 4
    elif n == 127:
        if avail < 10:
            return None
        n, pos = struct.unpack("!Q", b[off + 2:off + 10])[0], 10
    key = None
    if masked:
        if avail < pos + 4:
            return None
        key, pos = bytes(b[off + pos:off + pos + 4]), pos + 4
    if avail < pos + n:
        return None
    payload = bytes(b[off + pos:off + pos + n])
    if key:
        payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
    return Frame(fin, opcode, payload, masked), off + pos + n


def parse_frames(data):
    """(frames, rest): the complete frames at the start of data, and what follows."""
    frames, off = [], 0
    while True:
        got = decode_frame(data, off)
        if got is None:
            return frames, data[off:]
        frame, off = got
        frames.append(frame)


def connect(port, rcvbuf=None):
    """A TCP socket to 127.0.0.1:port; rcvbuf is set before connecting, so
    that the advertised window stays small."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10 * TIME_SCALE)
    sock.connect(("127.0.0.1", port))
    return sock


class RawWS:
    """A WebSocket client on a socket of its own (connect(port, rcvbuf)) or a
    given one (sock, e.g. TLS): handshake(), frames sent as they are told,
    frames read with deadlines."""

    def __init__(self, port=None, rcvbuf=None, sock=None, pending=b""):
        self.sock = sock if sock is not None else connect(port, rcvbuf)
        self.buf = bytearray(pending)  # bytes already read from sock
        self.off = 0  # start of the unparsed bytes in buf
        self.eof = False

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def handshake(self, key=None):
        """Sends an opening handshake (a fresh key unless given) and checks the
        101 answer and its Sec-WebSocket-Accept; returns self."""
        key = key or base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(handshake_request(key=key))
        deadline = time.monotonic() + 10 * TIME_SCALE
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                raise AssertionError(f"connection ended during the handshake: {bytes(self.buf)!r}")
        head, rest = bytes(self.buf).split(b"\r\n\r\n", 1)
        self.buf = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            raise AssertionError(f"handshake refused: {head!r}")
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        if headers.get("sec-websocket-accept") != accept_for(key):
            raise AssertionError(f"bad Sec-WebSocket-Accept in {head!r}")
        return self

    def send(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", fin=True, mask=True):
        self.sock.sendall(encode_frame(opcode, payload, fin, mask))

    def _fill(self, deadline):
        """Reads more bytes; False at EOF (or reset). Raises on the deadline."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("deadline passed")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _parse(self):
        got = decode_frame(self.buf, self.off)
        if got is None:
            return None
        frame, self.off = got
        if self.off > (1 << 20):
            del self.buf[:self.off]
            self.off = 0
        return frame

    def recv_frame(self, timeout=10.0):
        """The next frame, or None once the server has closed the connection.
        A server never masks a frame (RFC 6455 §5.1): that fails the test."""
        deadline = time.monotonic() + timeout * TIME_SCALE
        while True:
            frame = self._parse()
            if frame:
                if frame.masked:
                    raise AssertionError(f"the server masked a frame: {frame!r}")
                return frame
            if not self._fill(deadline):
                return None

    def recv_data_frame(self, timeout=10.0, answer_pings=False):
        """The next frame that is not a ping (answered when told to)."""
        while True:
            frame = self.recv_frame(timeout)
            if frame is None or frame.opcode != OP_PING:
                return frame
            if answer_pings:
                self.send_frame(OP_PONG, frame.payload)

    def wait_eof(self, timeout=10.0):
        """Reads (and discards) until the server closes; returns the frames seen."""
        frames = []
        while True:
            frame = self.recv_frame(timeout)
            if frame is None:
                return frames
            frames.append(frame)

    def init(self, token, events, scheme="Basic"):
        """Sends an init; returns its reply, parsed."""
        self.send_frame(OP_TEXT, json.dumps({"authentication": f"{scheme} {token}", "events": events}))
        frame = self.recv_data_frame()
        if frame is None or frame.opcode != OP_TEXT:
            raise AssertionError(f"no init reply: {frame!r}")
        return frame.json()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
