"""Bearer JWTs and authorization by role, end to end.

Both real daemons run on free loopback ports with the authentication flags
(--roles, --jwt-secrets, --jwt-public-key, --jwt-leeway-s, --jwt-issuer,
--jwt-audience); publishers are http.client, subscribers Debian's
python3-websockets. Tokens are minted here with the standard library for
HS256, and with `openssl` (genpkey, dgst -sha256 -sign) for RS256 and ES256;
the ES256 DER signature is converted to the raw r||s form of RFC 7518 §3.4
by this file.

What is proven: every accepted and refused Bearer token on both daemons and
the wire code of each refusal; HS256 secret rotation and its revocation of
live sessions; roles from the roles file, the tokens file and JWT claims,
with trailing wildcards; FORBIDDEN on a publish and on an init (which then
subscribes to none of its types); expiry of a live session at exp and its
extension by a re-init; revocation of live sessions within a second; the
roles file's failure rules; and that Basic clients work as before.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib.harness import (TIME_SCALE, ServiceCase, event_dict, http_request, new_token, run,  # noqa: E402
                     wait_for, ws_connect)

from lib.metrics import metric  # noqa: E402
import websockets  # noqa: E402  (Debian's python3-websockets, as the harness uses)

ROLES = """\
# role            rights             patterns
orders-writer     publish            orders.*
orders-reader     subscribe          orders.*
payments-reader   subscribe          payments.*
marker-reader     subscribe          marker
admin             publish,subscribe  *
"""


# --- JWT minting (standard library and openssl only) ----------------------------------------------

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact_json(obj):
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def claims_for(exp_in=3600, **extra):
    """Claims with iat = now and exp = now + exp_in; extra claims set to
    None are left out (e.g. iat=None)."""
    now = int(time.time())
    claims = {"iat": now, "exp": now + exp_in}
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


def signing_input(header, claims):
    return b64url(compact_json(header)) + "." + b64url(compact_json(claims))


def mint_hs256(secret, claims, header=None):
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    header = header or {"alg": "HS256", "typ": "JWT"}
    text = signing_input(header, claims)
    sig = hmac.new(secret, text.encode("ascii"), hashlib.sha256).digest()
    return text + "." + b64url(sig)


def openssl_sign(key_path, data):
    """SHA-256 signature of data by a PEM private key: PKCS#1 v1.5 for an
    RSA key, DER ECDSA-Sig-Value for an EC key."""
    proc = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key_path], input=data,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    return proc.stdout


def der_read_length(der, pos):
    first = der[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    count = first & 0x7F
    if count == 0 or count > 2:
        raise ValueError("unsupported DER length")
    return int.from_bytes(der[pos:pos + count], "big"), pos + count


def der_ecdsa_to_raw(der, size=32):
    """DER SEQUENCE { INTEGER r, INTEGER s } -> r || s, each size bytes
    big-endian (RFC 7518 §3.4)."""
    if der[0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    seq_len, pos = der_read_length(der, 1)
    if pos + seq_len != len(der):
        raise ValueError("DER SEQUENCE length does not cover the signature")
    out = b""
    for _ in range(2):
        if der[pos] != 0x02:
            raise ValueError("not a DER INTEGER")
        n, pos = der_read_length(der, pos + 1)
        value = der[pos:pos + n]
        pos += n
        value = value.lstrip(b"\x00")  # the sign byte of a "negative-looking" integer
        if len(value) > size:
            raise ValueError("integer too large for the curve")
        out += value.rjust(size, b"\x00")
    if pos != len(der):
        raise ValueError("trailing bytes after the DER INTEGERs")
    return out


def mint_rs256(key_path, claims):
    text = signing_input({"alg": "RS256", "typ": "JWT"}, claims)
    return text + "." + b64url(openssl_sign(key_path, text.encode("ascii")))


def mint_es256(key_path, claims, raw=True):
    text = signing_input({"alg": "ES256", "typ": "JWT"}, claims)
    der = openssl_sign(key_path, text.encode("ascii"))
    return text + "." + b64url(der_ecdsa_to_raw(der) if raw else der)


def forged_es256(claims=None):
    """An ES256 token with a random signature: what anybody can send, and
    what costs the daemon a full ECDSA verification to refuse."""
    return "Bearer " + signing_input({"alg": "ES256", "typ": "JWT"}, claims or claims_for()) + \
        "." + b64url(os.urandom(64))


def tamper_signature(token):
    """A token whose signature differs in its first byte (the last character
    of the signature may carry pad bits, so the first one is changed)."""
    head, sig = token.rsplit(".", 1)
    first = "A" if sig[0] != "A" else "B"
    return head + "." + first + sig[1:]


# --- clients --------------------------------------------------------------------------------------

def post_event(port, event, authorization=None, raw=None):
    """POST /event with an exact Authorization header; returns (status, body)."""
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    if raw is None:
        raw = json.dumps({"event": event, "data": {"n": 1}})
    status, body, _ = http_request(port, "POST", "/event", raw, headers)
    return status, body


async def recv_json(ws, timeout=10.0):
    msg = await asyncio.wait_for(ws.recv(), timeout * TIME_SCALE)
    if not isinstance(msg, str):
        raise AssertionError(f"expected a text message, got binary {msg[:80]!r}")
    return json.loads(msg)


async def send_init(ws, authentication, events):
    await ws.send(json.dumps({"authentication": authentication, "events": events}))
    return await recv_json(ws)


async def subscriber(port, authentication, events):
    """A connected subscriber whose init was answered OK."""
    ws = await ws_connect(port)
    reply = await send_init(ws, authentication, events)
    if reply != {"type": "init", "code": "OK"}:
        await ws.close()
        raise AssertionError(f"init with {authentication[:40]!r}... answered {reply}")
    return ws


async def init_reply(port, authentication, events):
    """The answer to one init on a fresh connection; the connection must stay
    open after an error (the public contract), which is checked too."""
    ws = await ws_connect(port)
    try:
        reply = await send_init(ws, authentication, events)
        if reply.get("code") != "OK":
            pong = await ws.ping()  # still open: the pong arrives
            await asyncio.wait_for(pong, 10 * TIME_SCALE)
        return reply
    finally:
        await ws.close()


async def expect_auth_close(ws, code, timeout=10.0):
    """The next message is {"type":"auth","code":code} and the server then
    closes with 1008. Returns the wall-clock time the message arrived."""
    msg = await recv_json(ws, timeout)
    arrived = time.time()
    if msg != {"type": "auth", "code": code}:
        raise AssertionError(f"expected auth {code}, got {msg}")
    try:
        extra = await asyncio.wait_for(ws.recv(), 5 * TIME_SCALE)
        raise AssertionError(f"message after the auth notice: {extra!r}")
    except websockets.exceptions.ConnectionClosed:
        pass
    if ws.close_code != 1008:
        raise AssertionError(f"closed with {ws.close_code}, expected 1008")
    return arrived


async def expect_silence(ws, seconds):
    """Nothing arrives for seconds (and the connection stays open)."""
    try:
        msg = await asyncio.wait_for(ws.recv(), seconds)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"unexpected message: {msg!r}")


# --- keys, made once for the file -----------------------------------------------------------------

KEYS = {}


def setUpModule():
    KEYS["dir"] = tempfile.mkdtemp(prefix="evs-auth-keys-")
    d = KEYS["dir"]

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)

    KEYS["rsa"] = os.path.join(d, "rsa.key")
    KEYS["rsa_pub"] = os.path.join(d, "rsa.pub.pem")
    KEYS["ec"] = os.path.join(d, "ec.key")
    KEYS["ec_pub"] = os.path.join(d, "ec.pub.pem")
    KEYS["rsa_other"] = os.path.join(d, "rsa-other.key")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", KEYS["rsa"])
    openssl("pkey", "-in", KEYS["rsa"], "-pubout", "-out", KEYS["rsa_pub"])
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", KEYS["ec"])
    openssl("pkey", "-in", KEYS["ec"], "-pubout", "-out", KEYS["ec_pub"])
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
            KEYS["rsa_other"])


def tearDownModule():
    shutil.rmtree(KEYS.get("dir", ""), ignore_errors=True)


# --- tests ----------------------------------------------------------------------------------------

class AuthCase(ServiceCase):
    """Writes the secrets and roles files and starts the pair with the flags."""

    def setUp(self):
        super().setUp()
        self.secret1 = secrets.token_urlsafe(36)  # 48 characters
        self.secret2 = secrets.token_urlsafe(36)
        self.secrets_path = os.path.join(self.dir, "jwt-secrets")
        self.roles_path = os.path.join(self.dir, "roles")

    def write_file(self, path, text):
        """Replaces path atomically (a new inode: the daemons see the change)."""
        tmp = path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def write_secrets(self, *lines):
        self.write_file(self.secrets_path, "".join(line + "\n" for line in lines))

    def auth_args(self, secrets_file=True, roles=False, public_keys=(), leeway=None, issuer=None,
                  audience=None):
        args = []
        if secrets_file:
            if not os.path.exists(self.secrets_path):
                self.write_secrets(self.secret1)
            args += ["--jwt-secrets", self.secrets_path]
        if roles:
            if not os.path.exists(self.roles_path):
                self.write_file(self.roles_path, ROLES)
            args += ["--roles", self.roles_path]
        for key in public_keys:
            args += ["--jwt-public-key", key]
        if leeway is not None:
            args += ["--jwt-leeway-s", str(leeway)]
        if issuer is not None:
            args += ["--jwt-issuer", issuer]
        if audience is not None:
            args += ["--jwt-audience", audience]
        return args

    def pair(self, **kwargs):
        args = self.auth_args(**kwargs)
        self.b, self.l = self.start_pair(args, args)
        return self.b, self.l

    def bearer(self, claims=None, secret=None, **claim_kwargs):
        claims = claims if claims is not None else claims_for(**claim_kwargs)
        return "Bearer " + mint_hs256(secret or self.secret1, claims)

    # both daemons at once

    def assert_accepted_on_both(self, authorization, event="orders.created"):
        """The credential publishes (200) and inits (OK), and the subscriber
        it opened receives the event it published."""
        async def go():
            ws = await subscriber(self.b.port, authorization, [event])
            try:
                data = {"check": secrets.token_hex(4)}
                status, body = await asyncio.to_thread(
                    post_event, self.l.port, event, authorization, json.dumps({"event": event, "data": data}))
                self.assertEqual((status, body), (200, {"code": "OK"}))
                self.assertEqual(await recv_json(ws), event_dict(event, data))
            finally:
                await ws.close()
        run(go())

    def assert_session_receives(self, authentication, event="orders.created"):
        """A subscriber whose init carries authentication gets the next
        publish of event (made with the Basic token)."""
        async def go():
            ws = await subscriber(self.b.port, authentication, [event])
            try:
                status, body = await asyncio.to_thread(post_event, self.l.port, event,
                                                       f"Basic {self.token}")
                self.assertEqual((status, body), (200, {"code": "OK"}))
                self.assertEqual(await recv_json(ws), event_dict(event, {"n": 1}))
            finally:
                await ws.close()
        run(go())

    def assert_refused_on_both(self, authorization, code, event="orders.created"):
        status, body = post_event(self.l.port, event, authorization)
        self.assertEqual((status, body), (403, {"code": code}), "publish")
        reply = run(init_reply(self.b.port, authorization, [event]))
        self.assertEqual(reply, {"type": "init", "code": code}, "init")


class BearerTest(AuthCase):

    def test_hs256_bearer_is_accepted_for_publish_and_init_on_both_daemons(self):
        self.pair()
        self.assert_accepted_on_both(self.bearer(sub="billing-svc"))
        self.b.wait_log("init OK as billing-svc")  # sub keeps its JWT meaning: logged
        # The scheme is case-insensitive, as for Basic.
        self.assert_accepted_on_both("bearer " + mint_hs256(self.secret1, claims_for()))

    def test_rs256_and_es256_bearer_are_accepted_with_public_keys(self):
        self.pair(secrets_file=False, public_keys=(KEYS["rsa_pub"], KEYS["ec_pub"]))
        self.assert_accepted_on_both("Bearer " + mint_rs256(KEYS["rsa"], claims_for()))
        self.assert_accepted_on_both("Bearer " + mint_es256(KEYS["ec"], claims_for()))

    def test_rs256_and_es256_with_another_key_or_der_signature_are_unauthenticated(self):
        self.pair(secrets_file=False, public_keys=(KEYS["rsa_pub"], KEYS["ec_pub"]))
        # Signed by an RSA key that is not configured.
        self.assert_refused_on_both("Bearer " + mint_rs256(KEYS["rsa_other"], claims_for()),
                                    "UNAUTHENTICATED")
        # ES256 with the DER signature openssl gives, not r||s: refused.
        self.assert_refused_on_both("Bearer " + mint_es256(KEYS["ec"], claims_for(), raw=False),
                                    "UNAUTHENTICATED")
        # A tampered RS256 / ES256 signature.
        self.assert_refused_on_both(
            "Bearer " + tamper_signature(mint_rs256(KEYS["rsa"], claims_for())),
            "UNAUTHENTICATED")
        self.assert_refused_on_both(
            "Bearer " + tamper_signature(mint_es256(KEYS["ec"], claims_for())),
            "UNAUTHENTICATED")

    def test_hs256_signed_with_the_public_key_text_is_refused_no_algorithm_confusion(self):
        self.pair(public_keys=(KEYS["rsa_pub"],))
        with open(KEYS["rsa_pub"], "rb") as f:
            pem = f.read()
        self.assert_refused_on_both("Bearer " + mint_hs256(pem, claims_for()), "UNAUTHENTICATED")
        # And with public keys only (no secrets at all), HS256 is not an algorithm.
        self.l.stop()
        self.b.stop()
        self.pair(secrets_file=False, public_keys=(KEYS["rsa_pub"],))
        self.assert_refused_on_both("Bearer " + mint_hs256(pem, claims_for()), "UNAUTHENTICATED")
        self.assert_accepted_on_both("Bearer " + mint_rs256(KEYS["rsa"], claims_for()))

    def test_expired_token_is_403_token_expired_on_publish_and_init_token_expired(self):
        self.pair(leeway=0)
        self.assert_refused_on_both(self.bearer(exp_in=-5, iat=int(time.time()) - 60),
                                    "TOKEN_EXPIRED")

    def test_token_expired_within_the_leeway_is_accepted_for_publish_and_init(self):
        self.pair(leeway=30)
        self.assert_refused_on_both(self.bearer(exp_in=-40, iat=int(time.time()) - 100),
                                    "TOKEN_EXPIRED")
        status, body = post_event(self.l.port, "orders.created",
                                  self.bearer(exp_in=-5, iat=int(time.time()) - 60))
        self.assertEqual((status, body), (200, {"code": "OK"}))
        reply = run(init_reply(self.b.port, self.bearer(exp_in=-5, iat=int(time.time()) - 60),
                               ["orders.created"]))
        self.assertEqual(reply, {"type": "init", "code": "OK"})

    def test_session_of_a_token_within_the_leeway_is_usable_not_closed_at_once(self):
        # A token the daemon accepts because of the clock-skew leeway must
        # give a working session: accepting the init and then closing it with
        # TOKEN_EXPIRED at once would make the leeway meaningless for
        # subscribers.
        self.pair(leeway=30)
        auth = self.bearer(exp_in=-5, iat=int(time.time()) - 60)
        self.assert_session_receives(auth)

    def test_nbf_in_the_future_is_unauthenticated(self):
        self.pair(leeway=5)
        self.assert_refused_on_both(self.bearer(nbf=int(time.time()) + 120), "UNAUTHENTICATED")
        # nbf in the past, and in the future but within the leeway: accepted.
        self.assert_accepted_on_both(self.bearer(nbf=int(time.time()) - 10))
        self.assert_accepted_on_both(self.bearer(nbf=int(time.time()) + 2))

    def test_iat_in_the_future_is_unauthenticated(self):
        self.pair(leeway=5)
        self.assert_refused_on_both(self.bearer(iat=int(time.time()) + 120), "UNAUTHENTICATED")
        self.assert_accepted_on_both(self.bearer(iat=int(time.time()) + 2))

    def test_exp_missing_is_unauthenticated(self):
        self.pair()
        claims = claims_for()
        del claims["exp"]
        self.assert_refused_on_both("Bearer " + mint_hs256(self.secret1, claims), "UNAUTHENTICATED")

    def test_bad_signature_is_unauthenticated(self):
        self.pair()
        self.assert_refused_on_both(
            "Bearer " + tamper_signature(mint_hs256(self.secret1, claims_for())),
            "UNAUTHENTICATED")
        # Claims changed after signing (a role escalation attempt).
        token = mint_hs256(self.secret1, claims_for(sub="a"))
        header, _, sig = token.split(".")
        forged = header + "." + b64url(compact_json(claims_for(sub="admin"))) + "." + sig
        self.assert_refused_on_both("Bearer " + forged, "UNAUTHENTICATED")

    def test_token_signed_with_a_secret_not_in_the_file_is_unauthenticated(self):
        self.pair()
        self.assert_refused_on_both(self.bearer(secret=self.secret2), "UNAUTHENTICATED")

    def test_alg_none_is_unauthenticated(self):
        self.pair()
        text = signing_input({"alg": "none", "typ": "JWT"}, claims_for())
        self.assert_refused_on_both("Bearer " + text + ".", "UNAUTHENTICATED")
        # "none" with an HMAC that would be valid for HS256: still refused.
        sig = hmac.new(self.secret1.encode(), text.encode(), hashlib.sha256).digest()
        self.assert_refused_on_both("Bearer " + text + "." + b64url(sig), "UNAUTHENTICATED")
        # alg missing, and "hs256" (names are case-sensitive).
        self.assert_refused_on_both(
            "Bearer " + mint_hs256(self.secret1, claims_for(), header={"typ": "JWT"}),
            "UNAUTHENTICATED")
        self.assert_refused_on_both(
            "Bearer " + mint_hs256(self.secret1, claims_for(), header={"alg": "hs256"}),
            "UNAUTHENTICATED")

    def test_rs256_token_when_only_secrets_are_configured_is_unauthenticated(self):
        self.pair()
        self.assert_refused_on_both("Bearer " + mint_rs256(KEYS["rsa"], claims_for()),
                                    "UNAUTHENTICATED")
        self.assert_refused_on_both("Bearer " + mint_es256(KEYS["ec"], claims_for()),
                                    "UNAUTHENTICATED")

    def test_malformed_base64_and_compact_form_are_unauthenticated(self):
        # Every variant is signed over exactly what is sent, so only its
        # encoding or form is at fault: a lenient parser would accept it.
        self.pair()

        def signed(header_part, payload_part):
            text = header_part + "." + payload_part
            mac = hmac.new(self.secret1.encode(), text.encode("ascii"), hashlib.sha256).digest()
            return text + "." + b64url(mac)

        def payload_where(predicate):
            for i in range(64):
                part = b64url(compact_json(claims_for(pad="~" * i + "?" * (i % 3))))
                if predicate(part):
                    return part
            raise AssertionError("no payload with the wanted shape")

        header = b64url(compact_json({"alg": "HS256", "typ": "JWT"}))
        payload = payload_where(lambda p: len(p) % 4 == 2 and ("-" in p or "_" in p))
        self.assert_accepted_on_both("Bearer " + signed(header, payload))
        last = payload[-1]
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        nonzero_pad = payload[:-1] + alphabet[alphabet.index(last) | 1]
        self.assertNotEqual(nonzero_pad, payload)
        cases = {
            "'=' padding": signed(header, payload + "=="),
            "standard alphabet": signed(header, payload.replace("-", "+").replace("_", "/")),
            "non-zero pad bits": signed(header, nonzero_pad),
            "character outside the alphabet": signed(header, payload[:5] + "!" + payload[6:]),
            "blank inside": signed(header, payload[:5] + " " + payload[5:]),
            "impossible length": signed(header, payload + "AAA"),
            "header not JSON": signed(b64url(b"not json"), payload),
            "claims not JSON": signed(header, b64url(b"{not json")),
            "claims an array": signed(header, b64url(b'[{"exp":99999999999}]')),
            "duplicate claim": signed(header, b64url(
                b'{"exp":99999999999,"exp":1,"sub":"x"}')),
            "two parts": header + "." + payload,
            "four parts": signed(header, payload) + ".AAAA",
            "empty token": "",
        }
        for name, token in cases.items():
            with self.subTest(name):
                self.assert_refused_on_both("Bearer " + token, "UNAUTHENTICATED")

    def test_oversized_token_is_unauthenticated_and_a_large_one_within_limits_is_accepted(self):
        self.pair()
        # Claims of about 3.9 KiB decoded (under the 4096-byte limit).
        within = mint_hs256(self.secret1, claims_for(pad="x" * 3900))
        self.assert_accepted_on_both("Bearer " + within)
        # Claims over 4096 bytes, and a token over 8192 bytes: refused, though signed.
        big_claims = mint_hs256(self.secret1, claims_for(pad="x" * 4200))
        self.assertLess(len(big_claims), 8192)
        self.assert_refused_on_both("Bearer " + big_claims, "UNAUTHENTICATED")
        huge = mint_hs256(self.secret1, claims_for(pad="x" * 9000))
        self.assertGreater(len(huge), 8192)
        self.assert_refused_on_both("Bearer " + huge, "UNAUTHENTICATED")
        # A header over 1024 bytes.
        big_header = mint_hs256(self.secret1, claims_for(),
                                header={"alg": "HS256", "typ": "JWT", "kid": "k" * 1100})
        self.assert_refused_on_both("Bearer " + big_header, "UNAUTHENTICATED")

    def test_bearer_without_any_jwt_key_configured_is_auth_unrecognized_scheme(self):
        self.b, self.l = self.start_pair()  # no --jwt-secrets, no --jwt-public-key
        self.assert_refused_on_both(self.bearer(), "AUTH_UNRECOGNIZED_SCHEME")
        # Basic still works there.
        self.assert_accepted_on_both(f"Basic {self.token}")

    def test_iss_and_aud_mismatch_is_unauthenticated_when_configured(self):
        self.pair(issuer="https://issuer.example", audience="event-server")
        iss, aud = "https://issuer.example", "event-server"
        self.assert_accepted_on_both(self.bearer(iss=iss, aud=aud))
        self.assert_accepted_on_both(self.bearer(iss=iss, aud=["other", aud]))
        for name, claims in {
            "wrong iss": claims_for(iss="https://evil.example", aud=aud),
            "wrong aud": claims_for(iss=iss, aud="other"),
            "aud array without ours": claims_for(iss=iss, aud=["a", "b"]),
            "iss missing": claims_for(aud=aud),
            "aud missing": claims_for(iss=iss),
        }.items():
            with self.subTest(name):
                self.assert_refused_on_both("Bearer " + mint_hs256(self.secret1, claims),
                                            "UNAUTHENTICATED")

    def test_iss_and_aud_are_not_required_when_not_configured(self):
        self.pair()
        self.assert_accepted_on_both(self.bearer(iss="anyone", aud="anything"))


class RotationTest(AuthCase):

    def test_tokens_signed_by_either_of_two_secrets_are_accepted(self):
        self.write_secrets("# current and next", self.secret1, "", self.secret2)
        self.pair()
        self.assert_accepted_on_both(self.bearer(secret=self.secret1))
        self.assert_accepted_on_both(self.bearer(secret=self.secret2))

    def test_removing_a_secret_refuses_its_tokens_within_a_second_and_revokes_live_sessions(self):
        self.write_secrets(self.secret1, self.secret2)
        self.pair()
        old = self.bearer(secret=self.secret1)
        new = self.bearer(secret=self.secret2)

        async def go():
            ws_old = await subscriber(self.b.port, old, ["orders.created"])
            ws_new = await subscriber(self.b.port, new, ["orders.created"])
            try:
                changed = time.time()
                self.write_secrets(self.secret2)
                arrived = await expect_auth_close(ws_old, "REVOKED", timeout=3)
                self.assertLessEqual(arrived - changed, 1.0 * TIME_SCALE)
                # The listen daemon refuses the old secret's tokens within a second too.
                await asyncio.to_thread(
                    wait_for, lambda: post_event(self.l.port, "orders.created", old)
                    == (403, {"code": "UNAUTHENTICATED"}), 1.0, 0.05,
                    "the old secret's token to be refused")
                status, body = await asyncio.to_thread(post_event, self.l.port, "orders.created", new)
                self.assertEqual((status, body), (200, {"code": "OK"}))
                # The other session is untouched and still receives events.
                self.assertEqual(await recv_json(ws_new), event_dict("orders.created", {"n": 1}))
            finally:
                await ws_old.close()
                await ws_new.close()
        run(go())
        reply = run(init_reply(self.b.port, old, ["orders.created"]))
        self.assertEqual(reply, {"type": "init", "code": "UNAUTHENTICATED"})


class RolesTest(AuthCase):

    def setUp(self):
        super().setUp()
        self.writer = new_token()
        self.reader = new_token()
        self.admin = new_token()
        self.write_tokens([self.token, f"{self.writer} orders-writer",
                           f"{self.reader} orders-reader,marker-reader", f"{self.admin} admin"])

    def test_basic_token_with_roles_publishes_only_within_its_trailing_wildcard(self):
        self.pair(roles=True)
        auth = f"Basic {self.writer}"
        for event in ("orders.created", "orders.eu.created", "orders."):
            with self.subTest(event):
                self.assertEqual(post_event(self.l.port, event, auth), (200, {"code": "OK"}))
        for event in ("orders", "ordersx", "payments.settled", "order.created"):
            with self.subTest(event):
                self.assertEqual(post_event(self.l.port, event, auth), (403, {"code": "FORBIDDEN"}))

    def test_forbidden_comes_after_a_valid_body_and_an_invalid_body_is_still_invalid_body(self):
        self.pair(roles=True)
        auth = f"Basic {self.writer}"
        for name, raw in {"not JSON": "{", "no event": '{"data":{}}',
                          "event not a string": '{"event":5}'}.items():
            with self.subTest(name):
                self.assertEqual(post_event(self.l.port, None, auth, raw=raw),
                                 (400, {"code": "INVALID_BODY"}))
        self.assertEqual(post_event(self.l.port, "payments.settled", auth),
                         (403, {"code": "FORBIDDEN"}))

    def test_basic_token_with_roles_subscribes_only_within_its_patterns(self):
        self.pair(roles=True)
        auth = f"Basic {self.reader}"
        for events in (["orders.created"], ["orders.eu.created", "marker"]):
            with self.subTest(events):
                self.assertEqual(run(init_reply(self.b.port, auth, events)),
                                 {"type": "init", "code": "OK"})
        for events in (["orders"], ["payments.settled"], ["markers"], ["orders.created", "x"]):
            with self.subTest(events):
                self.assertEqual(run(init_reply(self.b.port, auth, events)),
                                 {"type": "init", "code": "FORBIDDEN"})
        # A subscriber-only role may not publish.
        self.assertEqual(post_event(self.l.port, "orders.created", auth),
                         (403, {"code": "FORBIDDEN"}))

    def test_star_grants_every_type(self):
        self.pair(roles=True)
        self.assert_accepted_on_both(f"Basic {self.admin}", event="anything.at.all")
        self.assert_accepted_on_both(f"Basic {self.admin}", event="x")

    def test_forbidden_init_subscribes_to_none_of_its_types(self):
        self.pair(roles=True)
        self.forbidden_init_subscribes_none(f"Basic {self.reader}")

    def forbidden_init_subscribes_none(self, auth):
        async def go():
            ws = await ws_connect(self.b.port)
            try:
                # orders.created is allowed on its own, payments.settled is not.
                reply = await send_init(ws, auth, ["orders.created", "payments.settled"])
                self.assertEqual(reply, {"type": "init", "code": "FORBIDDEN"})
                self.assertEqual(await send_init(ws, auth, ["marker"]),
                                 {"type": "init", "code": "OK"})
                publisher = f"Basic {self.token}"
                for event in ("orders.created", "payments.settled", "marker"):
                    status, body = await asyncio.to_thread(post_event, self.l.port, event, publisher)
                    self.assertEqual((status, body), (200, {"code": "OK"}), event)
                # Events of one publisher arrive in order: the marker first
                # means neither type of the refused init was subscribed.
                self.assertEqual(await recv_json(ws), event_dict("marker", {"n": 1}))
            finally:
                await ws.close()
        run(go())

    def test_basic_token_without_roles_keeps_full_rights(self):
        self.pair(roles=True)
        self.assert_accepted_on_both(f"Basic {self.token}", event="payments.settled")
        self.assert_accepted_on_both(f"Basic {self.token}", event="orders")

    def test_jwt_roles_claim_grants_the_roles_rights(self):
        self.pair(roles=True)
        writer = self.bearer(sub="billing", roles=["orders-writer"])
        self.assertEqual(post_event(self.l.port, "orders.created", writer), (200, {"code": "OK"}))
        self.assertEqual(post_event(self.l.port, "orders", writer), (403, {"code": "FORBIDDEN"}))
        self.assertEqual(post_event(self.l.port, "payments.settled", writer),
                         (403, {"code": "FORBIDDEN"}))
        self.assertEqual(run(init_reply(self.b.port, writer, ["orders.created"])),
                         {"type": "init", "code": "FORBIDDEN"})
        reader = self.bearer(roles=["orders-reader", "marker-reader"])
        self.assertEqual(run(init_reply(self.b.port, reader, ["orders.created", "marker"])),
                         {"type": "init", "code": "OK"})
        self.forbidden_init_subscribes_none(reader)
        # Two roles add up; a role that does not exist grants nothing.
        both = self.bearer(roles=["orders-writer", "orders-reader"])
        self.assert_accepted_on_both(both, event="orders.created")
        nobody = self.bearer(roles=["no-such-role"])
        self.assert_refused_on_both(nobody, "FORBIDDEN")
        self.assert_refused_on_both(self.bearer(roles=[]), "FORBIDDEN")

    def test_jwt_publish_and_subscribe_claims_grant_their_patterns(self):
        self.pair(roles=True)
        token = self.bearer(sub="svc", publish=["orders.*", "audit"],
                            subscribe=["orders.*", "marker"])
        self.assertEqual(post_event(self.l.port, "orders.created", token), (200, {"code": "OK"}))
        self.assertEqual(post_event(self.l.port, "audit", token), (200, {"code": "OK"}))
        self.assertEqual(post_event(self.l.port, "audit.x", token), (403, {"code": "FORBIDDEN"}))
        self.assertEqual(post_event(self.l.port, "orders", token), (403, {"code": "FORBIDDEN"}))
        self.assert_accepted_on_both(token, event="orders.eu.created")
        self.assertEqual(run(init_reply(self.b.port, token, ["audit"])),
                         {"type": "init", "code": "FORBIDDEN"})
        self.forbidden_init_subscribes_none(token)
        # Only a publish claim: no subscription at all; "*" in a claim: every type.
        pub_only = self.bearer(publish=["orders.*"])
        self.assertEqual(run(init_reply(self.b.port, pub_only, ["orders.created"])),
                         {"type": "init", "code": "FORBIDDEN"})
        self.assert_accepted_on_both(self.bearer(publish=["*"], subscribe=["*"]), event="zz")

    def test_jwt_without_authorization_claims_keeps_full_rights(self):
        self.pair(roles=True)
        self.assert_accepted_on_both(self.bearer(sub="legacy"), event="payments.settled")


class LiveExpiryTest(AuthCase):

    def test_subscriber_is_told_token_expired_and_closed_1008_at_exp(self):
        self.pair(leeway=0)
        exp = int(time.time()) + 3  # 2..3 s from now
        auth = self.bearer(claims_for(exp_in=0) | {"exp": exp})

        async def go():
            ws = await subscriber(self.b.port, auth, ["orders.created"])
            other = await subscriber(self.b.port, f"Basic {self.token}", ["orders.created"])
            try:
                # Events still arrive while the token is valid.
                status, body = await asyncio.to_thread(post_event, self.l.port, "orders.created",
                                                       f"Basic {self.token}")
                self.assertEqual((status, body), (200, {"code": "OK"}))
                self.assertEqual(await recv_json(ws), event_dict("orders.created", {"n": 1}))
                self.assertEqual(await recv_json(other), event_dict("orders.created", {"n": 1}))
                arrived = await expect_auth_close(ws, "TOKEN_EXPIRED", timeout=6)
                self.assertGreaterEqual(arrived, exp - 0.2, "told before exp")
                self.assertLessEqual(arrived, exp + 1.0 + 0.5 * TIME_SCALE, "told long after exp")
                # The Basic session beside it is untouched.
                status, body = await asyncio.to_thread(post_event, self.l.port, "orders.created",
                                                       f"Basic {self.token}")
                self.assertEqual((status, body), (200, {"code": "OK"}))
                self.assertEqual(await recv_json(other), event_dict("orders.created", {"n": 1}))
            finally:
                await ws.close()
                await other.close()
        run(go())

    def test_session_of_a_far_future_exp_stays_open_and_gets_later_events(self):
        # exp + leeway in nanoseconds passes INT64_MAX for these (year 2286,
        # and the largest exp accepted, 2^53 - 1): no overflow may turn them
        # into "expired already". The event arriving after the init is the
        # proof that the session is alive and was not told TOKEN_EXPIRED.
        self.pair()
        for exp in (9999999999, 2**53 - 1):
            with self.subTest(exp=exp):
                auth = self.bearer(claims_for(exp_in=0) | {"exp": exp})
                self.assert_session_receives(auth)
                self.assertEqual(post_event(self.l.port, "orders.created", auth),
                                 (200, {"code": "OK"}))
        self.assertTrue(self.b.running(), self.b.log()[-2000:])

    def test_expiry_close_is_not_late_by_the_fraction_of_a_second_of_the_init(self):
        # exp is a whole second E. An init sent at E - 2.1 s must still be
        # closed at E, not at E + 0.9 s (a timer computed from whole seconds
        # of the current time would be up to a second late).
        self.pair(leeway=0)
        frac = time.time() % 1.0
        if not 0.85 <= frac < 0.9:
            # Creates the situation under test: the init is sent late in a second.
            time.sleep((0.87 - frac) % 1.0)
        exp = int(time.time()) + 3
        auth = self.bearer(claims_for(exp_in=0) | {"exp": exp})

        async def go():
            ws = await subscriber(self.b.port, auth, ["orders.created"])
            try:
                arrived = await expect_auth_close(ws, "TOKEN_EXPIRED", timeout=6)
                self.assertGreaterEqual(arrived, exp - 0.2, "told before exp")
                self.assertLessEqual(arrived, exp + 0.25 + 0.1 * TIME_SCALE,
                                     f"told {arrived - exp:.2f} s after exp")
            finally:
                await ws.close()
        run(go())

    def test_reinit_with_a_fresh_token_before_exp_keeps_the_session_and_its_subscriptions(self):
        self.pair(leeway=0)
        exp = int(time.time()) + 3
        first = self.bearer(claims_for(exp_in=0) | {"exp": exp})

        async def go():
            ws = await subscriber(self.b.port, first, ["orders.created"])
            try:
                fresh = self.bearer(exp_in=3600)
                self.assertEqual(await send_init(ws, fresh, []), {"type": "init", "code": "OK"})
                # Past the old exp (with the timer's whole-second margin), nothing.
                await expect_silence(ws, max(0.0, exp + 1.5 - time.time()))
                self.assertGreater(time.time(), exp + 1.0)
                status, body = await asyncio.to_thread(post_event, self.l.port, "orders.created",
                                                       f"Basic {self.token}")
                self.assertEqual((status, body), (200, {"code": "OK"}))
                self.assertEqual(await recv_json(ws), event_dict("orders.created", {"n": 1}))
            finally:
                await ws.close()
        run(go())

    def test_reinit_with_a_later_short_token_moves_the_expiry_to_the_new_exp(self):
        self.pair(leeway=0)
        exp1 = int(time.time()) + 2
        exp2 = exp1 + 2
        first = self.bearer(claims_for(exp_in=0) | {"exp": exp1})
        second = self.bearer(claims_for(exp_in=0) | {"exp": exp2})

        async def go():
            ws = await subscriber(self.b.port, first, ["orders.created"])
            try:
                self.assertEqual(await send_init(ws, second, ["marker"]),
                                 {"type": "init", "code": "OK"})
                arrived = await expect_auth_close(ws, "TOKEN_EXPIRED", timeout=8)
                self.assertGreaterEqual(arrived, exp2 - 0.2, "closed at the first token's exp")
            finally:
                await ws.close()
        run(go())

    def test_listen_refuses_a_token_from_its_exp_on(self):
        self.pair(leeway=0)
        exp = int(time.time()) + 2
        auth = self.bearer(claims_for(exp_in=0) | {"exp": exp})
        self.assertEqual(post_event(self.l.port, "orders.created", auth), (200, {"code": "OK"}))
        wait_for(lambda: post_event(self.l.port, "orders.created", auth)
                 == (403, {"code": "TOKEN_EXPIRED"}), 5, 0.05, "the token to expire")
        self.assertGreaterEqual(time.time(), exp - 0.2)


class RevocationTest(AuthCase):

    def test_removing_a_basic_token_revokes_its_live_session_within_a_second(self):
        victim, other = new_token(), new_token()
        self.write_tokens([self.token, victim, other])
        self.pair()

        async def go():
            ws_victim = await subscriber(self.b.port, f"Basic {victim}", ["orders.created"])
            ws_other = await subscriber(self.b.port, f"Basic {other}", ["orders.created"])
            try:
                changed = time.time()
                self.write_tokens([self.token, other])
                arrived = await expect_auth_close(ws_victim, "REVOKED", timeout=3)
                self.assertLessEqual(arrived - changed, 1.0 * TIME_SCALE)
                status, body = await asyncio.to_thread(post_event, self.l.port, "orders.created",
                                                       f"Basic {self.token}")
                self.assertEqual((status, body), (200, {"code": "OK"}))
                self.assertEqual(await recv_json(ws_other), event_dict("orders.created", {"n": 1}))
            finally:
                await ws_victim.close()
                await ws_other.close()
        run(go())
        # The listen daemon watches the file on its own: within a second too.
        wait_for(lambda: post_event(self.l.port, "orders.created", f"Basic {victim}")
                 == (403, {"code": "UNAUTHENTICATED"}), 1.0, 0.05, "listen to drop the token")

    def test_a_role_losing_the_right_revokes_live_sessions_within_a_second(self):
        reader, payer = new_token(), new_token()
        self.write_tokens([self.token, f"{reader} orders-reader", f"{payer} payments-reader",
                           f"{new_token()} orders-writer"])
        self.pair(roles=True)
        jwt_reader = self.bearer(roles=["orders-reader"])

        async def go():
            ws_reader = await subscriber(self.b.port, f"Basic {reader}", ["orders.created"])
            ws_jwt = await subscriber(self.b.port, jwt_reader, ["orders.eu.created"])
            ws_payer = await subscriber(self.b.port, f"Basic {payer}", ["payments.settled"])
            ws_full = await subscriber(self.b.port, f"Basic {self.token}", ["orders.created"])
            try:
                changed = time.time()
                self.write_file(self.roles_path, ROLES.replace(
                    "orders-reader     subscribe          orders.*",
                    "orders-reader     subscribe          payments.*"))
                for ws in (ws_reader, ws_jwt):
                    arrived = await expect_auth_close(ws, "REVOKED", timeout=3)
                    self.assertLessEqual(arrived - changed, 1.0 * TIME_SCALE)
                publisher = f"Basic {self.token}"
                for event in ("orders.created", "payments.settled"):
                    status, body = await asyncio.to_thread(post_event, self.l.port, event, publisher)
                    self.assertEqual((status, body), (200, {"code": "OK"}))
                self.assertEqual(await recv_json(ws_payer),
                                 event_dict("payments.settled", {"n": 1}))
                self.assertEqual(await recv_json(ws_full), event_dict("orders.created", {"n": 1}))
            finally:
                for ws in (ws_reader, ws_jwt, ws_payer, ws_full):
                    await ws.close()
        run(go())
        # The edited role now grants what the file says, on a new init.
        self.assertEqual(run(init_reply(self.b.port, f"Basic {reader}", ["orders.created"])),
                         {"type": "init", "code": "FORBIDDEN"})
        self.assertEqual(run(init_reply(self.b.port, f"Basic {reader}", ["payments.settled"])),
                         {"type": "init", "code": "OK"})

    def test_a_role_losing_publish_is_forbidden_on_listen_within_a_second(self):
        writer = new_token()
        self.write_tokens([self.token, f"{writer} orders-writer"])
        self.pair(roles=True)
        auth = f"Basic {writer}"
        self.assertEqual(post_event(self.l.port, "orders.created", auth), (200, {"code": "OK"}))
        self.write_file(self.roles_path, ROLES.replace(
            "orders-writer     publish            orders.*",
            "orders-writer     publish            payments.*"))
        wait_for(lambda: post_event(self.l.port, "orders.created", auth)
                 == (403, {"code": "FORBIDDEN"}), 1.0, 0.05, "the publish right to be gone")
        self.assertEqual(post_event(self.l.port, "payments.settled", auth), (200, {"code": "OK"}))


class RolesFileTest(AuthCase):

    BAD = ROLES.replace("orders-reader     subscribe ", "orders-reader     subscrib  ")

    def test_bad_roles_file_at_start_exits_2_with_a_one_line_reason_naming_the_line(self):
        self.write_file(self.roles_path, self.BAD)
        bad_line = self.BAD.splitlines().index(
            next(line for line in self.BAD.splitlines() if "subscrib " in line)) + 1
        for name, start in (("broadcast", lambda: self.start_broadcast(
                                "--roles", self.roles_path, wait=False)),
                            ("listen", lambda: self.start_listen(
                                "--roles", self.roles_path, bus=os.path.join(self.dir, "none.sock"),
                                wait=False))):
            with self.subTest(name):
                d = start()
                d.proc.wait(10 * TIME_SCALE)
                self.assertEqual(d.stop(), 2, d.log())
                lines = [line for line in d.log().splitlines() if "roles file" in line]
                self.assertEqual(len(lines), 1, d.log())
                self.assertEqual(lines[0], f"event-{name}: roles file {self.roles_path}: "
                                           f"line {bad_line}: unknown right 'subscrib'")

    def test_missing_roles_file_at_start_exits_2(self):
        d = self.start_broadcast("--roles", os.path.join(self.dir, "no-roles"), wait=False)
        d.proc.wait(10 * TIME_SCALE)
        self.assertEqual(d.stop(), 2, d.log())
        self.assertIn("no-roles", d.log())

    def test_bad_roles_file_written_later_is_logged_and_the_previous_roles_kept(self):
        writer, reader = new_token(), new_token()
        self.write_tokens([self.token, f"{writer} orders-writer", f"{reader} orders-reader"])
        self.pair(roles=True)

        async def go():
            ws = await subscriber(self.b.port, f"Basic {reader}", ["orders.created"])
            try:
                self.write_file(self.roles_path, self.BAD)
                for d in (self.b, self.l):
                    await asyncio.to_thread(d.wait_log, "keeping the previous roles")
                self.assertIn("unknown right 'subscrib'", self.l.log())
                # Rights unchanged: the live session stays and gets events.
                status, body = await asyncio.to_thread(post_event, self.l.port, "orders.created",
                                                       f"Basic {writer}")
                self.assertEqual((status, body), (200, {"code": "OK"}))
                self.assertEqual(await recv_json(ws), event_dict("orders.created", {"n": 1}))
            finally:
                await ws.close()
        run(go())
        self.assertEqual(post_event(self.l.port, "payments.settled", f"Basic {writer}"),
                         (403, {"code": "FORBIDDEN"}))
        self.assertEqual(run(init_reply(self.b.port, f"Basic {reader}", ["orders.created"])),
                         {"type": "init", "code": "OK"})
        self.assertEqual(run(init_reply(self.b.port, f"Basic {reader}", ["payments.settled"])),
                         {"type": "init", "code": "FORBIDDEN"})
        # A good file after the bad one is taken again.
        self.write_file(self.roles_path, ROLES.replace(
            "orders-writer     publish            orders.*",
            "orders-writer     publish            payments.*"))
        wait_for(lambda: post_event(self.l.port, "payments.settled", f"Basic {writer}")
                 == (200, {"code": "OK"}), 2.0, 0.05, "the good roles file")


class CredentialCostTest(AuthCase):
    """What a client without a credential can make the daemons spend: a
    connection ends after three refused credentials in a row, each network
    has a small budget of failed public-key verifications, and a token that
    verified is not verified again."""

    def pipelined_publishes(self, authorizations):
        """Sends one POST /event per authorization on one connection, all at
        once; returns the answers read before the daemon closed it, each as
        (status, code, Connection header), and whether it closed."""
        body = json.dumps({"event": "orders.created", "data": 1}).encode()
        data = b"".join(f"POST /event HTTP/1.1\r\nHost: x\r\nAuthorization: {a}\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n".encode() + body
                        for a in authorizations)
        sock = socket.create_connection(("127.0.0.1", self.l.port), timeout=10 * TIME_SCALE)
        answers, buf, closed = [], b"", False
        try:
            sock.sendall(data)
            while len(answers) < len(authorizations):
                while b"\r\n\r\n" not in buf:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return answers, True
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip()
                           for k, v in (line.split(":", 1) for line in lines[1:])}
                length = int(headers["content-length"])
                while len(buf) < length:
                    buf += sock.recv(65536)
                answers.append((int(lines[0].split()[1]), json.loads(buf[:length])["code"],
                                headers.get("connection")))
                buf = buf[length:]
            sock.settimeout(2 * TIME_SCALE)
            try:
                closed = sock.recv(1) == b""
            except socket.timeout:
                closed = False
            return answers, closed
        finally:
            sock.close()

    def test_third_refused_credential_in_a_row_ends_the_http_connection(self):
        self.pair(secrets_file=False, public_keys=(KEYS["ec_pub"],))
        good = f"Basic {self.token}"
        # Two refusals, an accepted credential, two refusals: all on one connection.
        answers, closed = self.pipelined_publishes([forged_es256(), forged_es256(), good,
                                                    forged_es256(), f"Basic {new_token()}"])
        self.assertEqual(answers, [(403, "UNAUTHENTICATED", None), (403, "UNAUTHENTICATED", None),
                                   (200, "OK", None), (403, "UNAUTHENTICATED", None),
                                   (403, "UNAUTHENTICATED", None)])
        self.assertFalse(closed)
        # The third in a row is answered with Connection: close and ends it;
        # a request pipelined after it is not read.
        answers, closed = self.pipelined_publishes([forged_es256(), "Digest x", forged_es256(),
                                                    good])
        self.assertEqual(answers, [(403, "UNAUTHENTICATED", None),
                                   (403, "AUTH_UNRECOGNIZED_SCHEME", None),
                                   (403, "UNAUTHENTICATED", "close")])
        self.assertTrue(closed)
        self.assertEqual(post_event(self.l.port, "orders.created", good), (200, {"code": "OK"}))

    def test_third_refused_credential_in_a_row_closes_the_websocket_with_1008(self):
        self.pair(secrets_file=False, public_keys=(KEYS["ec_pub"],))

        async def refused(ws, authentication):
            self.assertEqual(await send_init(ws, authentication, ["orders.created"]),
                             {"type": "init", "code": "UNAUTHENTICATED"})

        async def go():
            ws = await ws_connect(self.b.port)
            try:
                # The connection stays open after the first refusals (the
                # public contract), and an accepted credential starts over.
                await refused(ws, forged_es256())
                await refused(ws, f"Basic {new_token()}")
                self.assertEqual(await send_init(ws, f"Basic {self.token}", ["a"]),
                                 {"type": "init", "code": "OK"})
                await refused(ws, forged_es256())
                await refused(ws, forged_es256())
                await asyncio.wait_for(await ws.ping(), 10 * TIME_SCALE)
                # The third in a row is answered, then the session is closed.
                await refused(ws, forged_es256())
                with self.assertRaises(websockets.exceptions.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10 * TIME_SCALE)
                self.assertEqual(ws.close_code, 1008)
            finally:
                await ws.close()
        run(go())
        self.assertEqual(metric(self.b.port, 'evs_broadcast_closes_total{reason="auth_failures"}'), 1)

    def test_forged_tokens_past_the_source_budget_are_refused_unchecked_and_others_still_work(self):
        self.pair(secrets_file=False, public_keys=(KEYS["ec_pub"],))
        verified = "Bearer " + mint_es256(KEYS["ec"], claims_for(sub="verified-before"))
        self.assertEqual(post_event(self.l.port, "orders.created", verified), (200, {"code": "OK"}))
        self.assertEqual(run(init_reply(self.b.port, verified, ["x"])), {"type": "init", "code": "OK"})
        # Forged tokens from this address: the first ones cost a verification
        # each; past the budget they are refused without one.
        answers = [post_event(self.l.port, "orders.created", forged_es256()) for _ in range(40)]
        self.assertEqual(answers[0], (403, {"code": "UNAUTHENTICATED"}))
        self.assertIn((429, {"code": "TOO_MANY_AUTH_FAILURES"}), answers)
        self.assertEqual(set(map(str, answers)), {str((403, {"code": "UNAUTHENTICATED"})),
                                                  str((429, {"code": "TOO_MANY_AUTH_FAILURES"}))})
        failures = metric(self.l.port, "evs_listen_jwt_public_key_failures_total")
        refused = metric(self.l.port, "evs_listen_jwt_refused_unchecked_total")
        self.assertEqual(failures, answers.count((403, {"code": "UNAUTHENTICATED"})))
        self.assertEqual(refused, answers.count((429, {"code": "TOO_MANY_AUTH_FAILURES"})))
        self.assertGreaterEqual(refused, 1)
        self.assertEqual(metric(self.l.port, 'evs_listen_publishes_total{code="TOO_MANY_AUTH_FAILURES"}'),
                         refused)
        # Meanwhile the same address still publishes with a Basic token and
        # with the JWT verified before (it is not verified again).
        self.assertEqual(post_event(self.l.port, "orders.created", f"Basic {self.token}"),
                         (200, {"code": "OK"}))
        self.assertEqual(post_event(self.l.port, "orders.created", verified), (200, {"code": "OK"}))
        # A JWT never seen waits for the budget to refill, then is verified.
        fresh = "Bearer " + mint_es256(KEYS["ec"], claims_for(sub="fresh"))
        wait_for(lambda: post_event(self.l.port, "orders.created", fresh) == (200, {"code": "OK"}),
                 10, 0.1, "the budget to refill")

        # The same on the broadcast side, on a fresh connection per init.
        replies = [run(init_reply(self.b.port, forged_es256(), ["x"]))["code"] for _ in range(40)]
        self.assertEqual(replies[0], "UNAUTHENTICATED")
        self.assertEqual(set(replies), {"UNAUTHENTICATED", "TOO_MANY_AUTH_FAILURES"})
        self.assertEqual(metric(self.b.port, "evs_broadcast_jwt_refused_unchecked_total"),
                         replies.count("TOO_MANY_AUTH_FAILURES"))
        self.assertEqual(run(init_reply(self.b.port, verified, ["x"])), {"type": "init", "code": "OK"})
        self.assertEqual(run(init_reply(self.b.port, f"Basic {self.token}", ["x"])),
                         {"type": "init", "code": "OK"})

    def test_a_verified_token_is_not_verified_again_until_the_keys_are_reloaded(self):
        self.pair(secrets_file=False, public_keys=(KEYS["ec_pub"],))
        token = "Bearer " + mint_es256(KEYS["ec"], claims_for())
        expired = "Bearer " + mint_es256(KEYS["ec"], claims_for(exp_in=-3600))
        for _ in range(3):
            self.assertEqual(post_event(self.l.port, "orders.created", token), (200, {"code": "OK"}))
            self.assertEqual(post_event(self.l.port, "orders.created", expired),
                             (403, {"code": "TOKEN_EXPIRED"}))
            self.assertEqual(run(init_reply(self.b.port, token, ["x"])), {"type": "init", "code": "OK"})
        for port, prefix in ((self.l.port, "evs_listen"), (self.b.port, "evs_broadcast")):
            for name in ("jwt_public_key_checks_total", "jwt_verifications_total"):
                self.assertEqual(metric(port, f"{prefix}_{name}"),
                                 2 if prefix == "evs_listen" else 1, f"{prefix}_{name}")
        self.assertEqual(metric(self.l.port, "evs_listen_jwt_cached_tokens"), 2)
        # A reload of the keys forgets what they vouched for.
        self.l.signal(signal.SIGHUP)
        self.l.wait_log("reloaded (SIGHUP)")
        self.assertEqual(metric(self.l.port, "evs_listen_jwt_cached_tokens"), 0)
        self.assertEqual(post_event(self.l.port, "orders.created", token), (200, {"code": "OK"}))
        self.assertEqual(metric(self.l.port, "evs_listen_jwt_public_key_checks_total"), 3)
        self.assertEqual(metric(self.l.port, "evs_listen_jwt_verifications_total"), 3)


class BasicCompatibilityTest(AuthCase):

    def test_basic_publish_and_subscribe_work_unchanged_with_jwt_and_roles_configured(self):
        self.pair(roles=True, public_keys=(KEYS["ec_pub"],))
        self.assert_accepted_on_both(f"Basic {self.token}", event="anything")
        self.assert_refused_on_both(f"Basic {new_token()}", "UNAUTHENTICATED")
        self.assert_refused_on_both(f"Digest {self.token}", "AUTH_UNRECOGNIZED_SCHEME")
        self.assertEqual(post_event(self.l.port, "x", None), (403, {"code": "UNAUTHENTICATED"}))
        self.assertEqual(run(init_reply(self.b.port, "Bearer", ["x"])),
                         {"type": "init", "code": "UNAUTHENTICATED"})

    def test_basic_token_rotation_still_works(self):
        self.pair(roles=True)
        fresh = new_token()
        self.write_tokens([self.token, fresh])
        wait_for(lambda: post_event(self.l.port, "x", f"Basic {fresh}") == (200, {"code": "OK"}),
                 2.0, 0.05, "listen to take the new token")
        wait_for(lambda: run(init_reply(self.b.port, f"Basic {fresh}", ["x"]))
                 == {"type": "init", "code": "OK"}, 2.0, 0.05, "broadcast to take the new token")
        self.assert_accepted_on_both(f"Basic {fresh}")


if __name__ == "__main__":
    unittest.main()
