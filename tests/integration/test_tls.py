"""HTTPS and WSS: both daemons started with --tls on certificates made by
the test (openssl), checked with independent clients.

- curl --cacert for publishes, every error answer (whole, with its JSON body,
  also on closing connections), a 1 MiB body (also chunked) and keep-alive
  reuse;
- Python's ssl module over raw sockets for pipelining, close_notify, and
  clients that misbehave (plain HTTP, garbage, a handshake that stops);
- Python's ssl + python3-websockets for WSS (init, delivery, 1 MiB events,
  100 subscribers, a subscriber that stays through a certificate reload);
- openssl s_client for protocol versions, cipher suites, ALPN and
  renegotiation.

Certificates are made once per test class in a temporary folder; each test
starts its own daemons in its own folder (harness.ServiceCase).
"""

import asyncio
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib import harness, rawws  # noqa: E402
from lib.harness import TIME_SCALE, event_text, run, wait_for  # noqa: E402
from lib.rawws import RawWS  # noqa: E402

JSON_TYPE = "application/json"

# The policy of common/net/tls.c, in OpenSSL's names.
ALLOWED_SUITES = {
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-CHACHA20-POLY1305",
}
EC_SUITES = sorted(s for s in ALLOWED_SUITES if "ECDSA" in s)
RSA_SUITES = sorted(s for s in ALLOWED_SUITES if "-RSA-" in s)


# --- certificates ---------------------------------------------------------------------------------

def openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed:\n{p.stderr.decode()}")
    return p.stdout


class Certs:
    """The certificates the tests use, made with the openssl command.

    first, second: EC P-256 self-signed, for 127.0.0.1/localhost, distinct
    subjects and serials (a reload switches from one to the other);
    rsa: RSA 2048 self-signed; leaf + ca: a leaf signed by a CA, with
    chain.crt = leaf then CA; expired: valid 2020-01-01 to 2020-01-02 03:04:05.
    """

    SAN = "subjectAltName=IP:127.0.0.1,DNS:localhost"
    EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]

    def __init__(self, folder):
        self.dir = folder
        self.self_signed("first", "first.example", 0x1001, self.EC)
        self.self_signed("second", "second.example", 0x1002, self.EC)
        self.self_signed("rsa", "rsa.example", 0x1003, ["-newkey", "rsa:2048"])
        self.self_signed("ca", "Test CA", 0x1004, self.EC)
        openssl("req", *self.EC, "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr",
                "-subj", "/CN=leaf.example", cwd=folder)
        with open(self.path("san.ext"), "w") as f:
            f.write(self.SAN + "\n")
        openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-set_serial", str(0x1005), "-days", "30", "-extfile", "san.ext",
                "-out", "leaf.crt", cwd=folder)
        with open(self.path("chain.crt"), "w") as f:
            f.write(self.read("leaf.crt") + self.read("ca.crt"))
        # openssl req -x509 only counts days from now; openssl ca takes dates.
        with open(self.path("ca.cnf"), "w") as f:
            f.write("[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\n"
                    "serial=serial\ndefault_md=sha256\npolicy=p\nunique_subject=no\n"
                    "[p]\ncommonName=supplied\n")
        open(self.path("index.txt"), "w").close()
        with open(self.path("serial"), "w") as f:
            f.write("1006\n")
        openssl("req", *self.EC, "-nodes", "-keyout", "expired.key", "-out", "expired.csr",
                "-subj", "/CN=expired.example", cwd=folder)
        openssl("ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", "expired.key",
                "-in", "expired.csr", "-out", "expired.crt", "-notext", "-extfile", "san.ext",
                "-startdate", "20200101000000Z", "-enddate", "20200102030405Z", cwd=folder)
        for name in ("first", "second", "rsa", "ca", "leaf", "expired"):
            os.chmod(self.key(name), 0o600)

    def self_signed(self, name, cn, serial, newkey):
        openssl("req", "-x509", *newkey, "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.crt", "-days", "30", "-subj", f"/CN={cn}", "-set_serial", str(serial),
                "-addext", self.SAN, cwd=self.dir)

    def path(self, name):
        return os.path.join(self.dir, name)

    def crt(self, name):
        return self.path(f"{name}.crt")

    def key(self, name):
        return self.path(f"{name}.key")

    def read(self, name):
        with open(self.path(name)) as f:
            return f.read()

    def der(self, name):
        """The DER bytes of a certificate (the first one in its file)."""
        return ssl.PEM_cert_to_DER_cert(self.read(f"{name}.crt"))


def install(src, dst):
    """Puts a copy of src at dst through a rename, as deployment tools do."""
    shutil.copyfile(src, dst + ".tmp")
    os.chmod(dst + ".tmp", 0o600)
    os.replace(dst + ".tmp", dst)


# --- clients --------------------------------------------------------------------------------------

def client_context(cafile=None, verify=True, alpn=("http/1.1",)):
    if verify:
        ctx = ssl.create_default_context(cafile=cafile)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def tls_connect(port, cafile=None, verify=True, strict_eof=False, timeout=10.0):
    """An ssl socket to 127.0.0.1:port after a completed handshake. With
    strict_eof, a close without close_notify raises ssl.SSLEOFError."""
    ctx = client_context(cafile, verify)
    if strict_eof:
        ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout * TIME_SCALE)
    try:
        return ctx.wrap_socket(sock, server_hostname="127.0.0.1",
                               suppress_ragged_eofs=not strict_eof)
    except BaseException:
        sock.close()
        raise


def peer_der(port, cafile=None):
    """The certificate a new connection is shown (DER), and its parsed form
    when cafile verifies it."""
    with tls_connect(port, cafile, verify=cafile is not None) as s:
        return s.getpeercert(binary_form=True), s.getpeercert()


def read_until_closed(sock, deadline_s=10.0):
    """Reads until the peer closes; returns the bytes."""
    data = b""
    sock.settimeout(deadline_s * TIME_SCALE)
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def parse_responses(data):
    """Splits a byte stream into (status, headers, body) answers framed by
    Content-Length; returns them and what is left over."""
    answers = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            break
        head = data[:end].decode("latin-1").split("\r\n")
        status = int(head[0].split(" ")[1])
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if len(data) < end + 4 + length:
            break
        answers.append((status, headers, data[end + 4:end + 4 + length]))
        data = data[end + 4 + length:]
    return answers, data


def read_answers(sock, buf=b""):
    """Reads until buf holds at least one whole answer. Returns (answers,
    rest), or (None, buf) when the server closed first."""
    while True:
        answers, rest = parse_responses(buf)
        if answers:
            return answers, rest
        chunk = sock.recv(65536)
        if not chunk:
            return None, buf
        buf += chunk


def request_bytes(method, path, body=b"", headers=None):
    if isinstance(body, str):
        body = body.encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    for name, value in (headers or {}).items():
        head += f"{name}: {value}\r\n"
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def https(port, cafile, method, path, body=b"", headers=None, timeout=30.0):
    """One request on its own connection; returns (status, headers, body)."""
    with tls_connect(port, cafile, timeout=timeout) as s:
        h = {"Connection": "close"}
        h.update(headers or {})
        s.sendall(request_bytes(method, path, body, h))
        answers, rest = parse_responses(read_until_closed(s, timeout))
    if len(answers) != 1 or rest:
        raise AssertionError(f"expected one whole answer, got {answers!r} + {rest!r}")
    return answers[0]


def curl(*args, timeout=60.0):
    """Runs curl -sS; returns the CompletedProcess (stdout/stderr bytes)."""
    return subprocess.run(["curl", "-sS", *args], capture_output=True,
                          timeout=timeout * TIME_SCALE)


def curl_answer(output):
    """Parses curl -i output: the last (status, headers, body)."""
    answers, rest = parse_responses(output)
    # curl -i shows "HTTP/1.1 100 Continue" before the real answer
    answers = [a for a in answers if a[0] != 100]
    if len(answers) != 1 or rest:
        raise AssertionError(f"expected one whole answer from curl, got {output!r}")
    return answers[0]


def compact(value):
    return json.dumps(value, separators=(",", ":"))


def event_body(event, data=None):
    """A publish body; the data's text is compact JSON, as it will appear
    in the subscriber message (the daemon keeps the value's text)."""
    payload = {"event": event}
    if data is not None:
        payload["data"] = data
    return compact(payload)


async def wss_connect(port, cafile, **kwargs):
    import websockets
    kwargs.setdefault("max_size", 64 * 1024 * 1024)
    kwargs.setdefault("ping_interval", None)
    kwargs.setdefault("ssl", client_context(cafile))
    return await websockets.connect(f"wss://127.0.0.1:{port}/", **kwargs)


async def wss_subscribe(port, cafile, token, events, **kwargs):
    ws = await wss_connect(port, cafile, **kwargs)
    await ws.send(json.dumps({"authentication": f"Basic {token}", "events": events}))
    reply = json.loads(await asyncio.wait_for(ws.recv(), 10 * TIME_SCALE))
    if reply != {"type": "init", "code": "OK"}:
        await ws.close()
        raise AssertionError(f"init failed: {reply}")
    return ws


def raw_wss_subscriber(port, cafile, token, events, rcvbuf=None):
    """A TLS socket through the WebSocket handshake and a successful init,
    for a subscriber that then misbehaves (stops reading, resets)."""
    t = client_context(cafile).wrap_socket(rawws.connect(port, rcvbuf), server_hostname="127.0.0.1")
    raw = RawWS(sock=t).handshake()
    reply = raw.init(token, events)
    if reply != {"type": "init", "code": "OK"}:
        raise AssertionError(f"raw subscriber's init failed: {reply!r}")
    t.settimeout(10 * TIME_SCALE)
    return t


def s_client(port, *args, stdin=b"", timeout=20.0):
    """openssl s_client against 127.0.0.1:port; returns (exit code, output).
    stdin is closed after its bytes, so s_client ends after the handshake."""
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                        "-servername", "localhost", *args],
                       input=stdin, capture_output=True, timeout=timeout * TIME_SCALE)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def negotiated(output):
    """(protocol, cipher) from s_client's summary; cipher "(NONE)" if none."""
    m = re.search(r"^New, (\S+), Cipher is (\S+)", output, re.M)
    if not m:
        raise AssertionError(f"no handshake summary in s_client output:\n{output}")
    return m.group(1), m.group(2)


def client_hello():
    """The bytes of a real TLS 1.2 ClientHello made by Python's ssl."""
    ctx = client_context(verify=False)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def wait_closed(sock, timeout):
    """Waits until the peer closes sock (EOF or reset); returns the seconds
    it took and what arrived before."""
    start = time.monotonic()
    data = b""
    sock.settimeout(timeout)
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        except socket.timeout:
            raise AssertionError(f"connection still open after {timeout:.1f}s")
        if not chunk:
            break
        data += chunk
    return time.monotonic() - start, data


# --- the test cases -------------------------------------------------------------------------------

_certs = {}


def shared_certs():
    """The certificates, made once for the whole file (RSA key generation is slow)."""
    if "certs" not in _certs:
        _certs["tmp"] = tempfile.TemporaryDirectory(prefix="evs-tls-certs-")
        _certs["certs"] = Certs(_certs["tmp"].name)
    return _certs["certs"]


def tearDownModule():
    if "tmp" in _certs:
        _certs.pop("tmp").cleanup()
        _certs.clear()


class TlsCase(harness.ServiceCase):

    @classmethod
    def setUpClass(cls):
        cls.certs = shared_certs()

    def setUp(self):
        super().setUp()
        # Runs before the harness's cleanup (cleanups run last-in first-out):
        # a clean SIGTERM exit lets LeakSanitizer check what the TLS
        # connections left behind (a SIGKILL would skip it).
        self.addCleanup(self.stop_daemons_cleanly)

    def stop_daemons_cleanly(self):
        for d in reversed(self.daemons):
            if d.running():
                self.assertEqual(d.stop(), 0, d.log()[-3000:])

    def tls_args(self, name="first", cert=None, key=None):
        return ("--tls", "--cert", cert or self.certs.crt(name), "--key", key or self.certs.key(name))

    def start_tls_pair(self, name="first", broadcast_args=(), listen_args=(), cert=None, key=None,
                       cafile=None):
        b = self.start_broadcast(*self.tls_args(name, cert, key), *broadcast_args)
        l = self.start_listen(*self.tls_args(name, cert, key), *listen_args, bus=b.bus)
        cafile = cafile or self.certs.crt(name)
        wait_for(lambda: self.healthz(l.port, cafile) == 200, what="listen over TLS to reach the bus")
        return b, l

    @staticmethod
    def healthz(port, cafile):
        try:
            return https(port, cafile, "GET", "/healthz", timeout=5)[0]
        except OSError:
            return 0

    def auth(self, token=None):
        return {"Authorization": f"Basic {token or self.token}", "Content-Type": JSON_TYPE}

    def publish(self, port, event, data=None, cafile=None):
        status, headers, body = https(port, cafile or self.certs.crt("first"), "POST", "/event",
                                      event_body(event, data), self.auth())
        return status, json.loads(body)

    def assert_error(self, answer, status, code):
        got_status, headers, body = answer
        self.assertEqual(got_status, status, body)
        self.assertEqual(headers.get("content-type"), JSON_TYPE)
        self.assertEqual(int(headers["content-length"]), len(body))
        self.assertEqual(json.loads(body), {"code": code})

    def assert_serves(self, b, l, cafile=None, event="alive"):
        """A fresh WSS subscriber receives a fresh HTTPS publish."""
        cafile = cafile or self.certs.crt("first")

        async def go():
            ws = await wss_subscribe(b.port, cafile, self.token, [event])
            try:
                self.assertEqual(self.publish(l.port, event, {"n": 1}, cafile), (200, {"code": "OK"}))
                self.assertEqual(await asyncio.wait_for(ws.recv(), 10 * TIME_SCALE),
                                 event_text(event, '{"n":1}'))
            finally:
                await ws.close()
        run(go())


class HttpsPublishTest(TlsCase):

    def test_curl_publish_is_200_ok_and_reaches_a_wss_subscriber(self):
        b, l = self.start_tls_pair()
        ca = self.certs.crt("first")

        async def go():
            ws = await wss_subscribe(b.port, ca, self.token, ["temp"])
            p = await asyncio.get_running_loop().run_in_executor(None, lambda: curl(
                "-i", "--cacert", ca, "-H", f"Authorization: Basic {self.token}",
                "-H", "Content-Type: application/json", "--data-binary", event_body("temp", [1, 2]),
                f"https://127.0.0.1:{l.port}/event"))
            self.assertEqual(p.returncode, 0, p.stderr)
            status, headers, body = curl_answer(p.stdout)
            self.assertEqual((status, headers["content-type"], json.loads(body)),
                             (200, JSON_TYPE, {"code": "OK"}))
            self.assertEqual(await asyncio.wait_for(ws.recv(), 10 * TIME_SCALE),
                             event_text("temp", "[1,2]"))
            await ws.close()
        run(go())

    def test_https_and_wss_settings_from_https_enable_and_tls_files_env(self):
        env = {"HTTPS_ENABLE": "true", "TLS_CERT_FILE": self.certs.crt("rsa"),
               "TLS_KEY_FILE": self.certs.key("rsa")}
        b = self.start_broadcast(env=env)
        l = self.start_listen(bus=b.bus, env=env)
        ca = self.certs.crt("rsa")
        wait_for(lambda: self.healthz(l.port, ca) == 200, what="listen over TLS")
        self.assertEqual(peer_der(b.port, ca)[0], self.certs.der("rsa"))
        self.assertEqual(peer_der(l.port, ca)[0], self.certs.der("rsa"))
        self.assert_serves(b, l, ca)

    def test_every_error_answer_arrives_whole_with_its_json_body_keep_alive_or_closing(self):
        b, l = self.start_tls_pair(listen_args=("--max-body-size", "64k", "--max-header-size", "4k"))
        ca = self.certs.crt("first")
        url = f"https://127.0.0.1:{l.port}"
        good = ["-H", f"Authorization: Basic {self.token}", "-H", "Content-Type: application/json"]
        cases = [
            ("no authorization", ["--data-binary", event_body("a")], "/event", 403, "UNAUTHENTICATED"),
            ("wrong token", ["-H", "Authorization: Basic tok-not-a-known-token-at-all",
                             "--data-binary", event_body("a")], "/event", 403, "UNAUTHENTICATED"),
            ("bearer scheme", ["-H", f"Authorization: Bearer {self.token}",
                               "--data-binary", event_body("a")], "/event", 403,
             "AUTH_UNRECOGNIZED_SCHEME"),
            ("not json", good + ["--data-binary", "not json"], "/event", 400, "INVALID_BODY"),
            ("no event", good + ["--data-binary", '{"data":1}'], "/event", 400, "INVALID_BODY"),
            ("body over the limit", good + ["-H", "Expect:", "--data-binary",
                                            event_body("big", "x" * 100000)], "/event", 413,
             "BODY_TOO_LARGE"),
            ("body over the limit, 100-continue", good + [
                "-H", "Expect: 100-continue", "--expect100-timeout", "30",
                "--data-binary", event_body("big", "x" * 100000)], "/event", 413, "BODY_TOO_LARGE"),
            ("head over the limit", good + ["-H", "X-Pad: " + "p" * 5000,
                                            "--data-binary", event_body("a")], "/event", 431,
             "HEADERS_TOO_LARGE"),
            ("chunked body over the limit", good + ["-H", "Transfer-Encoding: chunked",
                                                    "--data-binary", event_body("big", "x" * 100000)],
             "/event", 413, "BODY_TOO_LARGE"),
            ("chunked after another coding", good + ["-H", "Transfer-Encoding: gzip, chunked",
                                                     "--data-binary", event_body("a")], "/event",
             501, "UNSUPPORTED_TRANSFER_ENCODING"),
            ("other path", ["--data-binary", event_body("a")], "/nope", 404, "NOT_FOUND"),
            ("get", [], "/event", 405, "METHOD_NOT_ALLOWED"),
        ]
        for closing in (False, True):
            for name, args, path, status, code in cases:
                with self.subTest(name, closing=closing):
                    extra = ["-H", "Connection: close"] if closing else []
                    p = curl("-i", "--cacert", ca, *args, *extra, url + path)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    answer = curl_answer(p.stdout)
                    self.assert_error(answer, status, code)
                    if status == 405:
                        self.assertEqual(answer[1].get("allow"), "POST")
        self.assert_serves(b, l)

    def test_error_answers_that_close_arrive_whole_before_the_close_on_raw_tls(self):
        b, l = self.start_tls_pair(listen_args=("--max-body-size", "64k"))
        ca = self.certs.crt("first")
        auth = self.auth()
        cases = [
            # a 413 decided from the head while the client is still sending its body
            ("413 mid-body", request_bytes("POST", "/event", event_body("big", "x" * 1000000), auth),
             413, "BODY_TOO_LARGE"),
            ("400 bad json", request_bytes("POST", "/event", "{nope", dict(auth, Connection="close")),
             400, "INVALID_BODY"),
            ("403", request_bytes("POST", "/event", event_body("a"), {"Connection": "close"}), 403,
             "UNAUTHENTICATED"),
            ("404", request_bytes("GET", "/nope", b"", {"Connection": "close"}), 404, "NOT_FOUND"),
            ("405", request_bytes("GET", "/event", b"", {"Connection": "close"}), 405,
             "METHOD_NOT_ALLOWED"),
        ]
        for name, raw, status, code in cases:
            with self.subTest(name):
                with tls_connect(l.port, ca) as s:
                    try:
                        s.sendall(raw)
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # the answer came, and the connection ended, before the body went out
                    answers, rest = parse_responses(read_until_closed(s))
                self.assertEqual(len(answers), 1, answers)
                self.assertEqual(rest, b"")
                self.assert_error(answers[0], status, code)
                self.assertEqual(answers[0][1].get("connection"), "close")

    def test_connection_the_server_closes_ends_with_a_tls_close_notify(self):
        # RFC 5246 7.2.1: each party sends close_notify before closing its
        # write side; without it a client cannot tell an end from a cut.
        b, l = self.start_tls_pair()
        ca = self.certs.crt("first")
        with tls_connect(l.port, ca, strict_eof=True) as s:
            s.sendall(request_bytes("GET", "/nope", b"", {"Connection": "close"}))
            data = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except ssl.SSLError as e:  # SSLEOFError, or UNEXPECTED_EOF_WHILE_READING
                self.fail(f"the server closed without close_notify after {data!r}: {e}")
        answers, rest = parse_responses(data)
        self.assert_error(answers[0], 404, "NOT_FOUND")

    def test_one_mib_publish_with_curl_arrives_byte_exact_at_a_wss_subscriber(self):
        b, l = self.start_tls_pair(listen_args=("--max-body-size", "2M"))
        ca = self.certs.crt("first")
        data = {"blob": "".join(chr(0x41 + i % 26) for i in range(1024 * 1024))}
        body = event_body("big", data)
        body_path = os.path.join(self.dir, "body.json")
        with open(body_path, "w") as f:
            f.write(body)

        async def go():
            ws = await wss_subscribe(b.port, ca, self.token, ["big"])
            p = await asyncio.get_running_loop().run_in_executor(None, lambda: curl(
                "-i", "--cacert", ca, *sum((["-H", f"{k}: {v}"] for k, v in self.auth().items()), []),
                "--data-binary", "@" + body_path, f"https://127.0.0.1:{l.port}/event"))
            self.assertEqual(p.returncode, 0, p.stderr)
            status, _, answer = curl_answer(p.stdout)
            self.assertEqual((status, json.loads(answer)), (200, {"code": "OK"}))
            message = await asyncio.wait_for(ws.recv(), 30 * TIME_SCALE)
            self.assertEqual(message, event_text("big", compact(data)))
            await ws.close()
        run(go())

    def test_chunked_curl_publish_arrives_byte_exact_at_a_wss_subscriber(self):
        b, l = self.start_tls_pair(listen_args=("--max-body-size", "2M"))
        ca = self.certs.crt("first")
        data = {"blob": "".join(chr(0x41 + i % 26) for i in range(1024 * 1024)), "n": 1}
        body_path = os.path.join(self.dir, "body.json")
        with open(body_path, "w") as f:
            f.write(event_body("big", data))

        async def go():
            ws = await wss_subscribe(b.port, ca, self.token, ["big"])
            p = await asyncio.get_running_loop().run_in_executor(None, lambda: curl(
                "-i", "-v", "--cacert", ca,
                *sum((["-H", f"{k}: {v}"] for k, v in self.auth().items()), []),
                "-H", "Transfer-Encoding: chunked", "--data-binary", "@" + body_path,
                f"https://127.0.0.1:{l.port}/event"))
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn(b"> Transfer-Encoding: chunked", p.stderr)
            status, _, answer = curl_answer(p.stdout)
            self.assertEqual((status, json.loads(answer)), (200, {"code": "OK"}))
            message = await asyncio.wait_for(ws.recv(), 30 * TIME_SCALE)
            self.assertEqual(message, event_text("big", compact(data)))
            await ws.close()
        run(go())

    def test_pipelined_chunked_requests_in_one_tls_write_are_answered_in_order(self):
        b, l = self.start_tls_pair()
        ca = self.certs.crt("first")

        def chunked_request(body, headers):
            head = "POST /event HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            chunks = b"".join(b"%x;i=%d\r\n" % (len(body[i:i + 3]), i) + body[i:i + 3].encode() +
                              b"\r\n" for i in range(0, len(body), 3))
            return head.encode() + b"\r\n" + chunks + b"0\r\nX-T: 1\r\n\r\n"

        async def go():
            ws = await wss_subscribe(b.port, ca, self.token, ["c1", "c2"])

            def send_pipelined():
                with tls_connect(l.port, ca) as s:
                    s.sendall(chunked_request(event_body("c1", 1), self.auth()) +
                              request_bytes("GET", "/healthz") +
                              chunked_request(event_body("c2", [2]),
                                              dict(self.auth(), Connection="close")))
                    return parse_responses(read_until_closed(s))
            answers, rest = await asyncio.get_running_loop().run_in_executor(None, send_pipelined)
            self.assertEqual(rest, b"")
            self.assertEqual([(a[0], json.loads(a[2])) for a in answers],
                             [(200, {"code": "OK"}), (200, {"code": "OK"}), (200, {"code": "OK"})])
            self.assertEqual(await asyncio.wait_for(ws.recv(), 10 * TIME_SCALE),
                             event_text("c1", "1"))
            self.assertEqual(await asyncio.wait_for(ws.recv(), 10 * TIME_SCALE),
                             event_text("c2", "[2]"))
            await ws.close()
        run(go())

    def test_curl_reuses_one_tls_connection_for_two_requests(self):
        b, l = self.start_tls_pair()
        ca = self.certs.crt("first")
        out1, out2 = os.path.join(self.dir, "a"), os.path.join(self.dir, "b")
        url = f"https://127.0.0.1:{l.port}/event"
        p = curl("--cacert", ca, "-H", f"Authorization: Basic {self.token}",
                 "-H", "Content-Type: application/json", "--data-binary", event_body("a"),
                 "-w", "%{http_code} %{num_connects}\n", url, "-o", out1, url, "-o", out2)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.decode().split("\n"), ["200 1", "200 0", ""])
        for out in (out1, out2):
            with open(out) as f:
                self.assertEqual(json.load(f), {"code": "OK"})

    def test_keep_alive_connection_serves_several_requests_over_one_handshake(self):
        b, l = self.start_tls_pair()
        ca = self.certs.crt("first")
        with tls_connect(l.port, ca) as s:
            buf = b""
            for i in range(5):
                s.sendall(request_bytes("POST", "/event", event_body("k", i), self.auth()))
                answers, rest = read_answers(s, buf)
                self.assertIsNotNone(answers, f"closed after {i} answers")
                self.assertEqual(len(answers), 1)
                self.assertEqual((answers[0][0], json.loads(answers[0][2])), (200, {"code": "OK"}))
                buf = rest

    def test_keep_alive_connection_idle_past_the_request_timeout_still_serves(self):
        # An idle keep-alive connection lasts the idle timeout, not the
        # request timeout (the write timeout of HTTP connections), even
        # though the TLS filter re-arms its write timeout whenever it
        # encrypts an answer.
        request_timeout_s = 0.8
        b, l = self.start_tls_pair(listen_args=(
            "--request-timeout-ms", str(int(request_timeout_s * 1000 * TIME_SCALE)),
            "--idle-timeout-ms", str(int(30000 * TIME_SCALE))))
        ca = self.certs.crt("first")
        with tls_connect(l.port, ca) as s:
            for i in range(2):
                if i:
                    # Idle for twice the request timeout: the behaviour under test.
                    time.sleep(2 * request_timeout_s * TIME_SCALE)
                s.sendall(request_bytes("POST", "/event", event_body("idle", i), self.auth()))
                answers, _ = read_answers(s)
                self.assertIsNotNone(answers, f"closed after {i} answers")
                self.assertEqual((answers[0][0], json.loads(answers[0][2])), (200, {"code": "OK"}))

    def test_client_close_notify_is_answered_with_the_server_close_notify(self):
        # TLS 1.2 has no half-close: a client's close_notify gets ours back
        # at once (RFC 5246 section 7.2.1), not a silent TCP close later.
        b, l = self.start_tls_pair(listen_args=("--request-timeout-ms", str(int(20000 * TIME_SCALE))))
        ca = self.certs.crt("first")
        with tls_connect(l.port, ca, strict_eof=True, timeout=5) as s:
            s.sendall(request_bytes("POST", "/event", event_body("bye", 1), self.auth()))
            answers, _ = read_answers(s)
            self.assertIsNotNone(answers, "closed before the answer")
            self.assertEqual(answers[0][0], 200)
            started = time.monotonic()
            plain = s.unwrap()  # sends close_notify; returns once the server's arrives
            plain.close()
        self.assertLess(time.monotonic() - started, 5 * TIME_SCALE)

    def test_client_that_never_reads_its_answers_is_dropped_at_the_write_timeout(self):
        # Pipelined requests whose answers pile up unread: reading stops,
        # and the connection ends once the socket has taken nothing for the
        # write timeout (the request timeout), TLS or not.
        b, l = self.start_tls_pair(listen_args=("--request-timeout-ms", str(int(1000 * TIME_SCALE))))
        ca = self.certs.crt("first")
        sock = socket.create_connection(("127.0.0.1", l.port), timeout=10 * TIME_SCALE)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s = client_context(ca).wrap_socket(sock, server_hostname="127.0.0.1")
        self.addCleanup(s.close)
        request = request_bytes("GET", "/healthz")
        s.settimeout(2 * TIME_SCALE)
        sent = 0
        try:
            for _ in range(4000):  # 4000 x 100 requests: far more answers than the kernel buffers
                s.sendall(request * 100)
                sent += 100
        except (socket.timeout, OSError):
            pass  # the server stopped reading: what was sent is enough
        self.assertGreater(sent, 0)

        def connections():
            text = https(l.port, ca, "GET", "/metrics", timeout=5)[2].decode()
            return int(float(re.search(r"^evs_listen_connections (\S+)$", text, re.M)[1]))

        # 1: the scrape's own connection.
        wait_for(lambda: connections() == 1, timeout=15, interval=0.2,
                 what=f"the connection that sent {sent} requests and read nothing to be dropped")

    def test_pipelined_requests_followed_by_a_tcp_half_close_are_all_answered(self):
        b, l = self.start_tls_pair()
        ca = self.certs.crt("first")
        with tls_connect(l.port, ca) as s:
            s.sendall(request_bytes("POST", "/event", event_body("h", 1), self.auth()) +
                      request_bytes("POST", "/event", event_body("h", 2), self.auth()))
            # FIN without close_notify: the client is done sending
            half = socket.socket(fileno=os.dup(s.fileno()))
            half.shutdown(socket.SHUT_WR)
            half.close()
            answers, rest = parse_responses(read_until_closed(s))
        self.assertEqual(rest, b"")
        self.assertEqual([(a[0], json.loads(a[2])) for a in answers],
                         [(200, {"code": "OK"}), (200, {"code": "OK"})])

    def test_three_pipelined_requests_in_one_tls_write_get_three_answers_in_order(self):
        b, l = self.start_tls_pair()
        ca = self.certs.crt("first")

        async def go():
            ws = await wss_subscribe(b.port, ca, self.token, ["p1", "p2"])
            loop = asyncio.get_running_loop()

            def send_pipelined():
                with tls_connect(l.port, ca) as s:
                    s.sendall(request_bytes("POST", "/event", event_body("p1", 1), self.auth()) +
                              request_bytes("GET", "/nope") +
                              request_bytes("POST", "/event", event_body("p2", 2),
                                            dict(self.auth(), Connection="close")))
                    return parse_responses(read_until_closed(s))
            answers, rest = await loop.run_in_executor(None, send_pipelined)
            self.assertEqual(rest, b"")
            self.assertEqual([(a[0], json.loads(a[2])) for a in answers],
                             [(200, {"code": "OK"}), (404, {"code": "NOT_FOUND"}),
                              (200, {"code": "OK"})])
            self.assertEqual(await asyncio.wait_for(ws.recv(), 10 * TIME_SCALE), event_text("p1", "1"))
            self.assertEqual(await asyncio.wait_for(ws.recv(), 10 * TIME_SCALE), event_text("p2", "2"))
            await ws.close()
        run(go())


class WssTest(TlsCase):

    def test_wss_init_errors_and_ok_then_delivery(self):
        b, l = self.start_tls_pair()
        ca = self.certs.crt("first")

        async def go():
            ws = await wss_connect(b.port, ca)
            await ws.send("not json")
            self.assertEqual(json.loads(await ws.recv()), {"type": "init", "code": "INVALID_SYNTAX"})
            await ws.send(json.dumps({"authentication": "Basic tok-not-a-known-token-at-all",
                                      "events": ["x"]}))
            self.assertEqual(json.loads(await ws.recv()), {"type": "init", "code": "UNAUTHENTICATED"})
            await ws.send(json.dumps({"authentication": f"Basic {self.token}", "events": ["x"]}))
            self.assertEqual(json.loads(await ws.recv()), {"type": "init", "code": "OK"})
            self.assertEqual(self.publish(l.port, "x", "hi"), (200, {"code": "OK"}))
            self.assertEqual(await asyncio.wait_for(ws.recv(), 10 * TIME_SCALE), event_text("x", '"hi"'))
            await ws.close()
            self.assertEqual(ws.close_code, 1000)
        run(go())

    def test_one_mib_event_arrives_byte_exact_over_wss_with_a_small_one_after_it(self):
        b, l = self.start_tls_pair(listen_args=("--max-body-size", "2M"))
        ca = self.certs.crt("first")
        data = "".join(f"{i:08x}" for i in range(1024 * 1024 // 8))

        async def go():
            subs = [await wss_subscribe(b.port, ca, self.token, ["big", "small"]) for _ in range(3)]
            loop = asyncio.get_running_loop()
            self.assertEqual(await loop.run_in_executor(None, self.publish, l.port, "big", data),
                             (200, {"code": "OK"}))
            self.assertEqual(await loop.run_in_executor(None, self.publish, l.port, "small", 1),
                             (200, {"code": "OK"}))
            for ws in subs:
                big = await asyncio.wait_for(ws.recv(), 30 * TIME_SCALE)
                self.assertEqual(len(big), len(event_text("big", compact(data))))
                self.assertEqual(big, event_text("big", compact(data)))
                self.assertEqual(await asyncio.wait_for(ws.recv(), 10 * TIME_SCALE),
                                 event_text("small", "1"))
                await ws.close()
        run(go())

    def test_100_wss_subscribers_all_receive_every_event_in_order(self):
        b, l = self.start_tls_pair()
        ca = self.certs.crt("first")

        async def go():
            subs = await asyncio.gather(*(wss_subscribe(b.port, ca, self.token, ["fan"])
                                          for _ in range(100)))
            loop = asyncio.get_running_loop()
            for i in range(5):
                self.assertEqual(await loop.run_in_executor(None, self.publish, l.port, "fan", i),
                                 (200, {"code": "OK"}))

            async def drain(ws):
                got = [await asyncio.wait_for(ws.recv(), 20 * TIME_SCALE) for _ in range(5)]
                await ws.close()
                return got
            results = await asyncio.gather(*(drain(ws) for ws in subs))
            expected = [event_text("fan", str(i)) for i in range(5)]
            for got in results:
                self.assertEqual(got, expected)
        run(go(), timeout=120)

    def test_wss_subscriber_reset_mid_event_does_not_disturb_the_others(self):
        b, l = self.start_tls_pair(listen_args=("--max-body-size", "2M"))
        ca = self.certs.crt("first")
        data = "z" * (512 * 1024)

        async def go():
            keep = await wss_subscribe(b.port, ca, self.token, ["big"])
            # a raw TLS subscriber that leaves with a reset while the event is sent
            loop = asyncio.get_running_loop()
            raw = await loop.run_in_executor(None, raw_wss_subscriber, b.port, ca, self.token, ["big"])
            self.assertEqual(await loop.run_in_executor(None, self.publish, l.port, "big", data),
                             (200, {"code": "OK"}))
            raw.recv(1000)  # some of the event, then a reset
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            raw.close()
            self.assertEqual(await asyncio.wait_for(keep.recv(), 30 * TIME_SCALE),
                             event_text("big", compact(data)))
            await keep.close()
        run(go())
        self.assert_serves(b, l)


    def test_wss_subscriber_that_stops_reading_is_closed_1013_while_another_gets_every_event(self):
        b, l = self.start_tls_pair(broadcast_args=("--max-backlog", "256k"),
                                   listen_args=("--max-body-size", "2M"))
        ca = self.certs.crt("first")
        data = "s" * (64 * 1024)
        count = 40  # 2.5 MiB: far more than the backlog and the socket buffers hold

        async def go():
            loop = asyncio.get_running_loop()
            stalled = await loop.run_in_executor(None, raw_wss_subscriber, b.port, ca, self.token,
                                                 ["slow"], 4096)
            good = await wss_subscribe(b.port, ca, self.token, ["slow"])

            async def receive_all():
                return [await asyncio.wait_for(good.recv(), 30 * TIME_SCALE) for _ in range(count)]
            receiving = asyncio.ensure_future(receive_all())
            for i in range(count):
                self.assertEqual(await loop.run_in_executor(None, self.publish, l.port, "slow",
                                                            {"i": i, "d": data}),
                                 (200, {"code": "OK"}))
            got = await receiving
            self.assertEqual(got, [event_text("slow", compact({"i": i, "d": data}))
                                   for i in range(count)])
            await loop.run_in_executor(None, b.wait_log, "slow consumer, over 262144 bytes unsent: "
                                                         "closing (1013)")
            stalled.close()
            await good.close()
        run(go())
        self.assert_serves(b, l)


    def test_sigterm_closes_wss_subscribers_with_1001_and_exits_0(self):
        b, l = self.start_tls_pair()
        ca = self.certs.crt("first")

        async def go():
            subs = [await wss_subscribe(b.port, ca, self.token, ["t"]) for _ in range(3)]
            b.signal(signal.SIGTERM)
            for ws in subs:
                with self.assertRaises(Exception):
                    await asyncio.wait_for(ws.recv(), 15 * TIME_SCALE)
                await asyncio.wait_for(ws.wait_closed(), 15 * TIME_SCALE)
                self.assertEqual(ws.close_code, 1001)
        run(go())
        self.assertEqual(b.stop(), 0, b.log())


class ProtocolTest(TlsCase):
    """openssl s_client: versions, suites, ALPN, renegotiation."""

    def test_tls_1_0_and_1_1_are_refused_by_both_daemons(self):
        b, l = self.start_tls_pair()
        for port in (l.port, b.port):
            for version in ("-tls1", "-tls1_1"):
                with self.subTest(port=port, version=version):
                    # SECLEVEL=0 lets OpenSSL 3 offer the old versions at all
                    rc, out = s_client(port, version, "-cipher", "DEFAULT:@SECLEVEL=0")
                    self.assertNotEqual(rc, 0, out)
                    self.assertEqual(negotiated(out), ("(NONE)", "(NONE)"), out)
        self.assert_serves(b, l)

    def test_refused_old_version_is_told_with_a_protocol_version_alert(self):
        # RFC 5246 E.1: the server answers a version it does not support with
        # a protocol_version alert before closing. Repeated, because a lost
        # alert is a race between the alert's write and the close.
        b, l = self.start_tls_pair()
        for port in (l.port, b.port):
            for attempt in range(10):
                with self.subTest(port=port, attempt=attempt):
                    rc, out = s_client(port, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", "-msg")
                    alert = r"<<< TLS 1\.\d, Alert \[length 0002\], fatal protocol_version"
                    self.assertTrue(re.search(alert, out),
                                    "no alert from the server (s_client -msg):\n" + out[:1200])

    def test_tls_1_2_negotiates_an_ecdhe_aead_suite_and_alpn_http_1_1(self):
        b, l = self.start_tls_pair()
        for port in (l.port, b.port):
            with self.subTest(port=port):
                rc, out = s_client(port, "-tls1_2", "-alpn", "h2,http/1.1", "-CAfile",
                                   self.certs.crt("first"), "-verify_return_error")
                self.assertEqual(rc, 0, out)
                protocol, cipher = negotiated(out)
                self.assertEqual(protocol, "TLSv1.2")
                self.assertIn(cipher, ALLOWED_SUITES)
                self.assertIn("ALPN protocol: http/1.1", out)
                self.assertIn("Verify return code: 0 (ok)", out)
                self.assertIn("Secure Renegotiation IS supported", out)

    def test_each_allowed_suite_is_negotiated_with_ec_and_rsa_certificates(self):
        for name, suites in (("first", EC_SUITES), ("rsa", RSA_SUITES)):
            b = self.start_broadcast(*self.tls_args(name), name=f"broadcast-{name}")
            l = self.start_listen(*self.tls_args(name), bus=b.bus, name=f"listen-{name}")
            for port in (l.port, b.port):
                for suite in suites:
                    with self.subTest(cert=name, port=port, suite=suite):
                        rc, out = s_client(port, "-tls1_2", "-cipher", suite)
                        self.assertEqual(rc, 0, out)
                        self.assertEqual(negotiated(out), ("TLSv1.2", suite))

    def test_suites_outside_the_list_are_refused(self):
        for name, suites in (("first", ["ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA",
                                        "ECDHE-ECDSA-AES128-CCM"]),
                             ("rsa", ["AES128-GCM-SHA256", "AES256-SHA", "DHE-RSA-AES128-GCM-SHA256",
                                      "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384"])):
            b = self.start_broadcast(*self.tls_args(name), name=f"broadcast-{name}")
            l = self.start_listen(*self.tls_args(name), bus=b.bus, name=f"listen-{name}")
            for port in (l.port, b.port):
                for suite in suites:
                    with self.subTest(cert=name, port=port, suite=suite):
                        rc, out = s_client(port, "-tls1_2", "-cipher", suite + ":@SECLEVEL=0")
                        self.assertNotEqual(rc, 0, out)
                        self.assertEqual(negotiated(out)[1], "(NONE)", out)
            self.assert_serves(b, l, self.certs.crt(name))

    def test_client_renegotiation_is_refused(self):
        b, l = self.start_tls_pair()
        for port in (l.port, b.port):
            with self.subTest(port=port):
                p = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                                      "-tls1_2", "-msg"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                try:
                    out = b""
                    deadline = time.monotonic() + 20 * TIME_SCALE
                    sent = False
                    while p.poll() is None or select.select([p.stdout], [], [], 0)[0]:
                        if time.monotonic() > deadline:
                            self.fail("s_client did not finish:\n" + out.decode())
                        if select.select([p.stdout], [], [], 0.05)[0]:
                            chunk = os.read(p.stdout.fileno(), 65536)
                            if not chunk:
                                break
                            out += chunk
                        if not sent and b"Verify return code" in out:
                            # the s_client command "R" asks for a renegotiation
                            p.stdin.write(b"R\n")
                            p.stdin.flush()
                            sent = True
                        if b"no_renegotiation" in out or b"handshake_failure" in out:
                            break
                finally:
                    p.kill()
                    p.wait()
                    p.stdin.close()
                    p.stdout.close()
                text = out.decode("utf-8", "replace")
                self.assertIn("RENEGOTIATING", text)
                self.assertIn("<<< TLS 1.2, Alert [length 0002], warning no_renegotiation", text)
        self.assert_serves(b, l)


class HostileClientTest(TlsCase):

    def test_plain_http_request_to_the_tls_port_is_closed_and_tls_clients_are_still_served(self):
        b, l = self.start_tls_pair()
        for port, request in ((l.port, request_bytes("POST", "/event", event_body("a"), self.auth())),
                              (b.port, b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                       b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                                       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")):
            with self.subTest(port=port):
                with socket.create_connection(("127.0.0.1", port)) as s:
                    s.sendall(request)
                    # the request timeouts are long: the close is the TLS error's
                    took, data = wait_closed(s, 5 * TIME_SCALE)
                self.assertFalse(data.startswith(b"HTTP"), data)
        self.assertTrue(b.running() and l.running())
        self.assert_serves(b, l)

    def test_garbage_bytes_to_the_tls_port_are_closed_and_tls_clients_are_still_served(self):
        b, l = self.start_tls_pair()
        garbage = [os.urandom(4096), b"\x16\x03\x03\xff\xff" + os.urandom(64),
                   b"\x17\x03\x03\x00\x10" + os.urandom(16), b"\x15\x03\x03\x00\x02\x02\x28",
                   b"\x00" * 1000, b"\x16\x03\x01\x00\x04\x01\x00\x00\x00"]
        for port in (l.port, b.port):
            for i, junk in enumerate(garbage):
                with self.subTest(port=port, garbage=i):
                    with socket.create_connection(("127.0.0.1", port)) as s:
                        try:
                            s.sendall(junk)
                        except (BrokenPipeError, ConnectionResetError):
                            continue
                        wait_closed(s, 5 * TIME_SCALE)
        self.assertTrue(b.running() and l.running())
        self.assert_serves(b, l)

    def test_garbage_after_a_completed_handshake_closes_only_that_connection(self):
        b, l = self.start_tls_pair()
        ca = self.certs.crt("first")
        for port in (l.port, b.port):
            with self.subTest(port=port):
                sock = socket.create_connection(("127.0.0.1", port))
                ctx = client_context(ca)
                incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
                obj = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
                sock.settimeout(10 * TIME_SCALE)
                while True:
                    try:
                        obj.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        sock.sendall(outgoing.read())
                        chunk = sock.recv(65536)
                        self.assertNotEqual(chunk, b"")
                        incoming.write(chunk)
                sock.sendall(outgoing.read())
                # an application-data record whose tag cannot verify
                sock.sendall(b"\x17\x03\x03\x00\x40" + os.urandom(0x40))
                wait_closed(sock, 5 * TIME_SCALE)
                sock.close()
        self.assert_serves(b, l)

    def test_tls_connection_its_client_closes_after_the_handshake_is_released_at_once(self):
        # The client's close is an EOF: nothing is left to flush or to wait
        # for. The bound (1 s, not scaled) is half the 2 s lingering close,
        # to tell "released on the EOF" from "released by a deadline".
        b, l = self.start_tls_pair()
        ca = self.certs.crt("first")
        for d in (l, b):
            with self.subTest(daemon=d.argv[0]):
                def open_fds():
                    return len(os.listdir(f"/proc/{d.pid}/fd"))
                before = open_fds()
                for _ in range(10):
                    tls_connect(d.port, ca).close()
                deadline = time.monotonic() + 1.0
                while open_fds() > before and time.monotonic() < deadline:
                    time.sleep(0.01)
                self.assertLessEqual(open_fds(), before,
                                     "descriptors of closed TLS connections still open after 1 s")
        self.assert_serves(b, l)

    def test_handshake_that_stops_half_way_is_closed_at_the_timeout_while_others_are_served(self):
        timeout_ms = 1500
        b, l = self.start_tls_pair(broadcast_args=("--handshake-timeout-ms", str(timeout_ms)),
                                   listen_args=("--request-timeout-ms", str(timeout_ms)))
        hello = client_hello()
        self.assertEqual(hello[0], 0x16)
        stalled = []
        for port in (l.port, b.port):
            # half a ClientHello; a whole one then nothing more; no byte at all
            for what in ("half hello", "hello only", "nothing"):
                s = socket.create_connection(("127.0.0.1", port))
                if what == "half hello":
                    s.sendall(hello[:len(hello) // 2])
                elif what == "hello only":
                    s.sendall(hello)
                stalled.append((port, what, s, time.monotonic()))
        # others are served while these wait
        self.assert_serves(b, l)
        for port, what, s, opened in stalled:
            with self.subTest(port=port, what=what):
                limit = (timeout_ms / 1000 + 5) * TIME_SCALE
                wait_closed(s, limit)
                took = time.monotonic() - opened
                s.close()
                self.assertGreaterEqual(took, timeout_ms / 1000 * 0.9)
                self.assertLess(took, limit)
        self.assert_serves(b, l)


class CertificateTest(TlsCase):

    def test_sighup_reload_serves_the_new_certificate_while_a_wss_subscriber_stays(self):
        cert, key = os.path.join(self.dir, "live.crt"), os.path.join(self.dir, "live.key")
        install(self.certs.crt("first"), cert)
        install(self.certs.key("first"), key)
        b, l = self.start_tls_pair(cert=cert, key=key, cafile=self.certs.crt("first"))
        both = os.path.join(self.dir, "both.crt")
        with open(both, "w") as f:
            f.write(self.certs.read("first.crt") + self.certs.read("second.crt"))

        async def go():
            loop = asyncio.get_running_loop()
            old = await wss_subscribe(b.port, both, self.token, ["before"])
            kept = await loop.run_in_executor(None, tls_connect, l.port, both)
            self.assertEqual(kept.getpeercert(binary_form=True), self.certs.der("first"))

            install(self.certs.crt("second"), cert)
            install(self.certs.key("second"), key)
            for d in (b, l):
                d.signal(signal.SIGHUP)
                await loop.run_in_executor(None, d.wait_log, "TLS certificate and key reloaded")

            for port in (b.port, l.port):
                der, parsed = await loop.run_in_executor(None, peer_der, port, both)
                self.assertEqual(der, self.certs.der("second"))
                self.assertEqual(parsed["serialNumber"], "1002")
                self.assertEqual(parsed["subject"], ((("commonName", "second.example"),),))

            # the subscriber from before the reload still talks and receives
            await old.send(json.dumps({"authentication": f"Basic {self.token}", "events": ["after"]}))
            self.assertEqual(json.loads(await old.recv()), {"type": "init", "code": "OK"})
            # a publish on a connection opened before the reload...
            kept.sendall(request_bytes("POST", "/event", event_body("before", 1), self.auth()))
            buf = b""
            while not parse_responses(buf)[0]:
                chunk = await loop.run_in_executor(None, kept.recv, 65536)
                self.assertNotEqual(chunk, b"")
                buf += chunk
            answer = parse_responses(buf)[0][0]
            self.assertEqual((answer[0], json.loads(answer[2])), (200, {"code": "OK"}))
            kept.close()
            # ...and one on a new connection, with the new certificate
            self.assertEqual(await loop.run_in_executor(
                None, self.publish, l.port, "after", 2, self.certs.crt("second")),
                (200, {"code": "OK"}))
            self.assertEqual(await asyncio.wait_for(old.recv(), 10 * TIME_SCALE),
                             event_text("before", "1"))
            self.assertEqual(await asyncio.wait_for(old.recv(), 10 * TIME_SCALE),
                             event_text("after", "2"))
            await old.close()
        run(go())
        self.assert_serves(b, l, self.certs.crt("second"))

    def test_failed_reload_keeps_the_previous_certificate(self):
        cert, key = os.path.join(self.dir, "live.crt"), os.path.join(self.dir, "live.key")
        install(self.certs.crt("first"), cert)
        install(self.certs.key("first"), key)
        b, l = self.start_tls_pair(cert=cert, key=key, cafile=self.certs.crt("first"))
        # a key that does not match, then a certificate that is not one
        install(self.certs.key("second"), key)
        for d in (b, l):
            d.signal(signal.SIGHUP)
            d.wait_log("TLS reload failed, keeping the previous certificate")
            self.assertRegex(d.log(), r"TLS reload failed, keeping the previous certificate: .*"
                                      r"does not match")
        with open(cert, "w") as f:
            f.write("garbage\n")
        install(self.certs.key("first"), key)
        for d in (b, l):
            d.signal(signal.SIGHUP)
            wait_for(lambda: d.log().count("TLS reload failed") == 2, what="second failed reload")
        for port in (b.port, l.port):
            self.assertEqual(peer_der(port, self.certs.crt("first"))[0], self.certs.der("first"))
        self.assertNotIn("TLS certificate and key reloaded", b.log() + l.log())
        self.assert_serves(b, l)

    def test_chain_file_is_served_whole_and_verifies_against_the_ca_alone(self):
        b, l = self.start_tls_pair(cert=self.certs.crt("chain"), key=self.certs.key("leaf"),
                                   cafile=self.certs.crt("ca"))
        for port in (l.port, b.port):
            with self.subTest(port=port):
                rc, out = s_client(port, "-showcerts", "-CAfile", self.certs.crt("ca"),
                                   "-verify_return_error")
                self.assertEqual(rc, 0, out)
                self.assertEqual(out.count("-----BEGIN CERTIFICATE-----"), 2, out)
                self.assertIn("Verify return code: 0 (ok)", out)
        p = curl("--cacert", self.certs.crt("ca"), f"https://127.0.0.1:{l.port}/healthz")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assert_serves(b, l, self.certs.crt("ca"))

    def assert_refused_start(self, args, env=None, blamed=(), reason=None):
        for start in (self.start_broadcast, self.start_listen):
            with self.subTest(daemon=start.__name__):
                if start == self.start_listen:
                    d = start(*args, bus=os.path.join(self.dir, "nobus.sock"), wait=False, env=env)
                else:
                    d = start(*args, wait=False, env=env)
                code = d.proc.wait(20 * TIME_SCALE)
                d.log_file.close()
                log = d.log()
                self.assertEqual(code, 2, log)
                lines = log.strip("\n").split("\n")
                self.assertEqual(len(lines), 1, log)
                for text in blamed:
                    self.assertIn(text, lines[0])
                if reason:
                    self.assertRegex(lines[0], reason)

    def test_missing_certificate_stops_start_up_with_exit_2_and_a_one_line_reason(self):
        missing = os.path.join(self.dir, "missing.crt")
        self.assert_refused_start(("--tls", "--cert", missing, "--key", self.certs.key("first")),
                                  blamed=(missing,), reason="No such file")

    def test_missing_key_from_env_stops_start_up_with_exit_2_naming_it(self):
        missing = os.path.join(self.dir, "missing.key")
        self.assert_refused_start((), env={"HTTPS_ENABLE": "true",
                                           "TLS_CERT_FILE": self.certs.crt("first"),
                                           "TLS_KEY_FILE": missing},
                                  blamed=(missing,), reason="No such file")

    @unittest.skipIf(os.path.exists("/certs/cert.crt"), "this machine has a /certs/cert.crt")
    def test_default_certificate_path_is_certs_cert_crt(self):
        self.assert_refused_start((), env={"HTTPS_ENABLE": "true"}, blamed=("/certs/cert.crt",))

    def test_mismatched_key_stops_start_up_with_exit_2_and_a_one_line_reason(self):
        self.assert_refused_start(self.tls_args(cert=self.certs.crt("first"),
                                                key=self.certs.key("second")),
                                  blamed=(self.certs.crt("first"), self.certs.key("second")),
                                  reason="does not match")

    def test_file_that_is_not_a_certificate_stops_start_up_with_exit_2(self):
        self.assert_refused_start(self.tls_args(cert=self.certs.key("first"),
                                                key=self.certs.key("first")),
                                  blamed=(self.certs.key("first"),))

    def test_expired_certificate_starts_with_a_warning_giving_its_date(self):
        b = self.start_broadcast(*self.tls_args("expired"))
        l = self.start_listen(*self.tls_args("expired"), bus=b.bus)
        for d in (b, l):
            self.assertRegex(d.log(), r" warn: TLS certificate " + re.escape(self.certs.crt("expired")) +
                             r" expired on 2020-01-02 03:04:05 UTC")
        for port in (b.port, l.port):
            der, _ = peer_der(port)
            self.assertEqual(der, self.certs.der("expired"))
            # a verifying client refuses it, as the warning says
            with self.assertRaisesRegex(ssl.SSLCertVerificationError, "expired"):
                peer_der(port, self.certs.crt("expired"))


if __name__ == "__main__":
    unittest.main()
