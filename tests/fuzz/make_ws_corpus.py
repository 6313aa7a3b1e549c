#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_ws_session: raw client bytes after the
opening handshake, mostly valid masked frames (RFC 6455 §5.2), so that the
fuzzer starts from inputs that reach deep into the session: init messages
(good and each kind of bad), pings, closes, fragmented messages, bad UTF-8,
announced lengths far over the limit, and protocol violations.

Usage: tests/fuzz/make_ws_corpus.py [OUTDIR]   (default: tests/fuzz/corpus/ws_session)
The output is deterministic (fixed masking keys), so re-running it changes
nothing unless this file changed.
"""

import json
import os
import struct
import sys

TOKEN = "fuzz-token-0123456789abcdef"  # the token fuzz_ws_session.c loads
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
KEY = bytes([0x37, 0xFA, 0x21, 0x3D])


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None, key=KEY):
    """One client frame. length overrides the announced payload length."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def init(events, auth=f"Basic {TOKEN}", **extra):
    msg = {"authentication": auth, "events": events}
    msg.update(extra)
    return json.dumps(msg, separators=(",", ":"))


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


def seeds():
    good = init(["a", "news"])
    yield "init_ok", frame(TEXT, good)
    yield "init_ok_binary", frame(BINARY, good)
    yield "init_ping_close", frame(TEXT, good) + frame(PING, "hi") + frame(CLOSE, close_payload(1000, b"bye"))
    yield "close_only", frame(CLOSE, close_payload(1001))
    yield "close_empty", frame(CLOSE)
    yield "close_one_byte", frame(CLOSE, b"\x03")
    yield "close_bad_code", frame(CLOSE, close_payload(999, b"x"))
    yield "close_bad_utf8_reason", frame(CLOSE, close_payload(1000, b"\xc3\x28"))
    yield "bytes_after_close", frame(CLOSE, close_payload(1000)) + frame(TEXT, good) + b"\x00" * 16

    text = good.encode()
    a, b = len(text) // 3, 2 * len(text) // 3
    yield "fragmented_init", (frame(TEXT, text[:a], fin=False) + frame(PING, "mid")
                              + frame(CONT, text[a:b], fin=False) + frame(CONT, text[b:]))
    yield "fragmented_many", (frame(TEXT, text[:1], fin=False)
                              + b"".join(frame(CONT, text[i:i + 1], fin=False) for i in range(1, len(text) - 1))
                              + frame(CONT, text[-1:]))
    yield "continuation_without_start", frame(CONT, "x")
    yield "text_inside_fragments", frame(TEXT, "{", fin=False) + frame(TEXT, "}")
    yield "fragmented_ping", frame(PING, "p", fin=False)
    yield "ping_126_bytes", frame(PING, b"p" * 126)
    yield "init_then_ping_126_bytes", frame(TEXT, good) + frame(PING, "ok") + frame(PING, b"p" * 126)
    yield "close_then_fragmented_ping", frame(CLOSE, close_payload(1000)) + frame(PING, "x", fin=False)
    yield "fragmented_close", frame(CLOSE, close_payload(1000), fin=False)
    yield "ping_length_2gib", frame(PING, b"", length=2 * 1024 * 1024 * 1024)
    yield "reserved_opcode", frame(0x3, "x") + frame(0xB, "y")
    yield "rsv_bits", frame(TEXT, good, rsv=4)
    yield "unmasked", frame(TEXT, good, mask=False)
    yield "unsolicited_pong", frame(PONG, "u") + frame(TEXT, good)

    yield "bad_utf8_text", frame(TEXT, b'{"authentication":"Basic \xff\xfe","events":["a"]}')
    yield "bad_utf8_split", frame(TEXT, b'{"a":"\xe2\x82', fin=False) + frame(CONT, b'\xac"}')
    yield "truncated_utf8_end", frame(TEXT, b"ok \xe2\x82")
    yield "binary_not_utf8", frame(BINARY, b"\xff\xfe\x00garbage") + frame(TEXT, good)

    yield "length_2gib", frame(TEXT, b"", length=2 * 1024 * 1024 * 1024)
    yield "length_top_bit", frame(BINARY, b"", length=1 << 63)
    yield "length_over_max_message", frame(TEXT, b"x" * 300, length=5000)
    yield "length_16bit_small", bytes([0x81, 0x80 | 126, 0x00, 0x05]) + KEY + b"hello"
    yield "fragments_over_max_message", (frame(TEXT, b" " * 3000, fin=False) + frame(CONT, b" " * 3000))

    yield "every_init_error", b"".join(frame(TEXT, t) for t in [
        "not json",
        json.dumps({"authentication": f"Basic {TOKEN}"}),
        json.dumps({"authentication": f"Basic {TOKEN}", "events": "a"}),
        json.dumps({"authentication": f"Basic {TOKEN}", "events": [1, None]}),
        init(["a"], auth=f"Token {TOKEN}"),
        init(["a"], auth="Basic wrong-token-but-long-enough"),
        init(["a"], auth="Basic"),
        init(["a"], auth="Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln"),
        init([]),
        good,
    ])
    yield "later_init_adds", frame(TEXT, init(["a"])) + frame(TEXT, init(["a", "b", "news"]))
    yield "too_many_events", frame(TEXT, init([f"t{i}" for i in range(20)]))
    yield "duplicates_and_escapes", frame(TEXT, init(["a", "a", "n\\u0065ws", "\u00e9v\u00e9nement"]))
    yield "ping_flood", frame(TEXT, good) + b"".join(frame(PING, b"f" * 125) for _ in range(120))
    yield "init_flood", b"".join(frame(TEXT, good) for _ in range(200))
    yield "resume_oldest", frame(TEXT, init(["a"], since="oldest"))
    yield "resume_ids", b"".join(frame(TEXT, init(["a", "news"], since=f"0000000000000001-{n:016x}"))
                                 for n in (1, 2, 50, 1 << 40))
    yield "resume_then_init", frame(TEXT, init(["a"], since="oldest")) + frame(TEXT, init(["news"]))
    yield "resume_now_then_live", frame(TEXT, init(["a"], since="now")) + frame(TEXT, init(["news"], since="now"))
    yield "resume_bad_since", b"".join(frame(TEXT, init(["a"], since=v)) for v in
                                       [7, "", "x" * 65, "a/b", None, ["0000000000000001-0000000000000001"]])
    yield "half_frame", frame(TEXT, good)[:7]
    yield "garbage", bytes(range(256))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                              "corpus", "ws_session")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"wrote {sum(1 for _ in seeds())} seeds to {out}")


if __name__ == "__main__":
    main()
