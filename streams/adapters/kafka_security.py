"""Kafka security for every client the product runs, and a probe that fails fast with one line.

One reading of the ``SLO_STREAM_KAFKA_*`` settings and secrets (:func:`from_settings`) turned into what
each client library takes: :func:`kafka_python` (KafkaConsumer, KafkaProducer, KafkaAdminClient),
:func:`aiokafka` (AIOKafkaConsumer, AIOKafkaProducer) and :func:`faust_credentials` (``faust.App``'s
``broker_credentials``). Every TLS client gets its ``ssl.SSLContext`` from here, built from the same
settings (CA file, client certificate and key with its password, hostname verification on unless
turned off); the clients given one :class:`KafkaSecurity` share its context.

:func:`probe` connects to the bootstrap address the way the clients will (TCP, TLS handshake, SASL
handshake and authentication, ApiVersions, Metadata) with a timeout per step, and raises
:class:`KafkaAccessError`, one line that says what failed and which setting to check, instead of a
client library's traceback or endless reconnects.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from streams.core.errors import ConfigError
from streams.settings import KAFKA_SASL_PASSWORD, KAFKA_SSL_KEY_PASSWORD, Settings, env_name, read_secret

__all__ = ["PLAINTEXT", "KafkaAccessError", "KafkaSecurity", "addresses", "aiokafka", "faust_credentials",
           "from_settings", "kafka_python", "probe"]


@dataclass(frozen=True)
class KafkaSecurity:
    """How a client authenticates to Kafka and protects the connection. Secrets are kept out of repr."""

    protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    mechanism: str = ""  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    username: str = ""
    password: str | None = field(default=None, repr=False)
    cafile: str = ""
    certfile: str = ""
    keyfile: str = ""
    key_password: str | None = field(default=None, repr=False)
    check_hostname: bool = True

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The one TLS context of every client (None without TLS). ConfigError when a file is unusable."""
        if not self.tls:
            return None
        try:
            ctx = ssl.create_default_context(cafile=self.cafile or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{env_name('kafka_ssl_cafile')}={self.cafile}: not a CA bundle ({exc})") from None
        ctx.check_hostname = self.check_hostname
        if self.certfile:
            try:
                ctx.load_cert_chain(self.certfile, self.keyfile, password=self.key_password)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"{env_name('kafka_ssl_certfile')}={self.certfile}, {env_name('kafka_ssl_keyfile')}="
                    f"{self.keyfile}: cannot load the client certificate and key ({_reason(exc)}); check "
                    f"both files and {KAFKA_SSL_KEY_PASSWORD} for an encrypted key") from None
        return ctx


PLAINTEXT = KafkaSecurity()


def from_settings(s: Settings, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
    """The security of ``s`` with its secrets from ``environ`` (default ``os.environ``). Builds the TLS
    context at once, so a wrong key password or a bad file fails here (ConfigError), at start."""
    env = os.environ if environ is None else environ
    sec = KafkaSecurity(
        protocol=s.kafka_security_protocol, mechanism=s.kafka_sasl_mechanism, username=s.kafka_sasl_username,
        password=read_secret(env, KAFKA_SASL_PASSWORD), cafile=s.kafka_ssl_cafile,
        certfile=s.kafka_ssl_certfile, keyfile=s.kafka_ssl_keyfile,
        key_password=read_secret(env, KAFKA_SSL_KEY_PASSWORD), check_hostname=s.kafka_ssl_check_hostname)
    _ = sec.ssl_context
    return sec


def ready(s: Settings) -> KafkaSecurity:
    """The security of every client a command starts, once a :func:`probe` of the broker with it
    succeeded: a wrong CA, a missing client certificate, a wrong password or the wrong protocol for the
    listener raise :class:`KafkaAccessError` (one line) at start instead of a traceback or a hang."""
    security = from_settings(s)
    probe(s.bootstrap or "", security)
    return security


def embedded_plaintext(s: Settings) -> None:
    """The embedded broker speaks PLAINTEXT only: refuse secured settings without a broker to use them."""
    if s.kafka_security_protocol != "PLAINTEXT":
        raise ConfigError(f"{env_name('kafka_security_protocol')}={s.kafka_security_protocol} needs "
                          "KAFKA_BOOTSTRAP_SERVERS: the embedded broker speaks PLAINTEXT only")


def kafka_python(sec: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments for kafka-python's KafkaConsumer, KafkaProducer and KafkaAdminClient."""
    if sec.protocol == "PLAINTEXT":
        return {}
    kw = aiokafka(sec)
    if sec.tls:
        kw["ssl_check_hostname"] = sec.check_hostname
    return kw


def aiokafka(sec: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments for aiokafka's AIOKafkaConsumer and AIOKafkaProducer."""
    if sec.protocol == "PLAINTEXT":
        return {}
    kw: dict[str, Any] = {"security_protocol": sec.protocol}
    if sec.tls:
        kw["ssl_context"] = sec.ssl_context
    if sec.sasl:
        kw.update(sasl_mechanism=sec.mechanism, sasl_plain_username=sec.username,
                  sasl_plain_password=sec.password)
    return kw


def faust_credentials(sec: KafkaSecurity) -> Any:
    """``broker_credentials`` for ``faust.App``: SSLCredentials, SASLCredentials (with the TLS context
    for SASL_SSL), or None for PLAINTEXT."""
    import faust

    if sec.sasl:
        return faust.SASLCredentials(username=sec.username, password=sec.password, mechanism=sec.mechanism,
                                     ssl_context=sec.ssl_context)
    if sec.tls:
        return faust.SSLCredentials(sec.ssl_context)
    return None


def addresses(bootstrap: str) -> list[tuple[str, int]]:
    """Parse ``host:port[,host:port...]`` (``scheme://`` prefixes and ``[ipv6]`` hosts allowed)."""
    out: list[tuple[str, int]] = []
    for raw in bootstrap.split(","):
        item = raw.strip()
        if "://" in item:
            item = item.split("://", 1)[1]
        item = item.rstrip("/")
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit():
            host, port = item, "9092"
        out.append((host.strip("[]") or "localhost", int(port)))
    if not out:
        raise ValueError(f"no broker address in bootstrap {bootstrap!r}")
    return out


# -- the probe -------------------------------------------------------------------------------------------

PROTOCOL = env_name("kafka_security_protocol")
CAFILE = env_name("kafka_ssl_cafile")
CLIENT_CERT = f"{env_name('kafka_ssl_certfile')} and {env_name('kafka_ssl_keyfile')}"
MECHANISM = env_name("kafka_sasl_mechanism")
CREDENTIALS = f"{env_name('kafka_sasl_username')} and {KAFKA_SASL_PASSWORD}"


class KafkaAccessError(RuntimeError):
    """A client cannot reach, handshake with or authenticate to Kafka. ``str()`` is one line: where,
    what failed, which setting to check. ``retryable`` is True only when no broker answered at all."""

    def __init__(self, address: str, what: str, check: str, *, retryable: bool = False) -> None:
        super().__init__(f"Kafka at {address}: {what}; check {check}")
        self.retryable = retryable


class _Step(Exception):
    """Internal: a probe step failed with (what, check)."""

    def __init__(self, what: str, check: str) -> None:
        super().__init__(what)
        self.what, self.check = what, check


def probe(bootstrap: str, sec: KafkaSecurity, *, connect_wait_s: float = 30.0, step_timeout_s: float = 5.0) -> None:
    """Connect to the first bootstrap address that accepts TCP (waiting up to ``connect_wait_s`` for one)
    and do what every client will: TLS handshake, SASL handshake and authentication, ApiVersions and a
    Metadata request, each within ``step_timeout_s``. Raises :class:`KafkaAccessError`."""
    where = ",".join(f"{h}:{p}" for h, p in addresses(bootstrap))
    sock, host, port = _connect(addresses(bootstrap), connect_wait_s, where)
    where = f"{host}:{port}"
    conn = sock
    try:
        sock.settimeout(step_timeout_s)
        if sec.tls:
            conn = _tls(sock, host, sec, step_timeout_s)
        kafka = _Conn(conn, sec, step_timeout_s)
        if sec.sasl:
            kafka.authenticate()
        kafka.api_versions()
        kafka.metadata()
    except _Step as step:
        raise KafkaAccessError(where, step.what, step.check) from None
    except (struct.error, IndexError, UnicodeDecodeError) as exc:  # an answer too short or garbled to parse
        raise KafkaAccessError(where, f"the answer is not Kafka's ({exc})",
                               f"KAFKA_BOOTSTRAP_SERVERS and {PROTOCOL}") from None
    finally:
        conn.close()
        sock.close()


def _connect(addrs: list[tuple[str, int]], wait_s: float, where: str) -> tuple[socket.socket, str, int]:
    deadline = time.monotonic() + wait_s
    last = ""
    while True:
        for host, port in addrs:
            try:
                return socket.create_connection((host, port), timeout=2.0), host, port
            except OSError as exc:
                last = exc.strerror or str(exc)
        if time.monotonic() >= deadline:
            raise KafkaAccessError(where, f"no broker accepts connections ({last}, waited {wait_s:g}s)",
                                   "KAFKA_BOOTSTRAP_SERVERS and that the broker runs", retryable=True)
        time.sleep(0.2)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


_REFUSED_CERT = f"{CLIENT_CERT} (the broker wants a client certificate it trusts)"


def _tls(sock: socket.socket, host: str, sec: KafkaSecurity, timeout_s: float) -> ssl.SSLSocket:
    assert sec.ssl_context is not None
    try:
        return sec.ssl_context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        if "mismatch" in (exc.verify_message or ""):
            raise _Step(f"TLS handshake failed: {_reason(exc)}",
                        f"that the broker's certificate names {host}, or "
                        f"{env_name('kafka_ssl_check_hostname')}") from None
        raise _Step(f"TLS handshake failed: {_reason(exc)}", CAFILE) from None
    except TimeoutError:
        raise _Step(f"TLS handshake got no answer within {timeout_s:g}s (a plaintext listener?)",
                    PROTOCOL) from None
    except ssl.SSLError as exc:
        why = _reason(exc)
        if "alert" in why:
            raise _Step(f"the broker refused the TLS session ({why})", _REFUSED_CERT) from None
        raise _Step(f"TLS handshake failed: {why} (not a TLS listener?)", PROTOCOL) from None
    except OSError as exc:
        raise _Step(f"the broker closed the connection during the TLS handshake ({_reason(exc)})",
                    f"{PROTOCOL} and {CLIENT_CERT}") from None


class _Conn:
    """Kafka requests on a blocking socket, each answer read within the step timeout."""

    _CLIENT_ID = b"slo-stream-probe"

    def __init__(self, sock: socket.socket, sec: KafkaSecurity, timeout_s: float) -> None:
        self.sock, self.sec, self.timeout_s, self.correlation = sock, sec, timeout_s, 0

    def request(self, api_key: int, version: int, body: bytes, step: str, check: str) -> bytes:
        """Send one request and read its answer; a failure is a :class:`_Step` naming ``step``."""
        self.correlation += 1
        header = struct.pack(">hhih", api_key, version, self.correlation, len(self._CLIENT_ID)) + self._CLIENT_ID
        try:
            self.sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
            head = self._read(4)
            if head[:2] == b"\x15\x03":
                raise _Step(f"{step}: the listener answered with a TLS alert (a TLS listener?)", PROTOCOL)
            (size,) = struct.unpack(">i", head)
            if not 4 <= size <= 64 * 1024 * 1024:
                raise _Step(f"{step}: the answer is not Kafka's (size {size})",
                            f"KAFKA_BOOTSTRAP_SERVERS and {PROTOCOL}")
            return self._read(size)[4:]
        except TimeoutError:
            raise _Step(f"{step}: no answer within {self.timeout_s:g}s", check) from None
        except ssl.SSLError as exc:
            raise _Step(f"the broker refused the TLS session ({_reason(exc)})", _REFUSED_CERT) from None
        except (EOFError, OSError) as exc:
            alert = self._pending_alert()
            if alert is not None:
                raise _Step(f"the broker refused the TLS session ({alert})", _REFUSED_CERT) from None
            raise _Step(f"{step}: the broker closed the connection ({_reason(exc) or 'EOF'})", check) from None

    def _pending_alert(self) -> str | None:
        """The TLS alert the broker sent before closing, if one is still to be read. With TLS 1.3 a
        listener that wants a client certificate says so only after the client's handshake is done: the
        client may first meet the closed connection (a send that fails) and only then the alert."""
        if not isinstance(self.sock, ssl.SSLSocket):
            return None
        try:
            self.sock.settimeout(0.5)
            self.sock.recv(1)
        except ssl.SSLError as exc:
            return _reason(exc)
        except (OSError, ValueError):
            return None
        return None

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("end of stream")
            buf += chunk
        return buf

    def api_versions(self) -> None:
        check = f"{PROTOCOL} (a TLS listener needs SSL or SASL_SSL)" if not self.sec.tls else PROTOCOL
        answer = self.request(18, 0, b"", "ApiVersions", check)
        (code,) = struct.unpack(">h", answer[:2])
        if code:
            raise _Step(f"ApiVersions answered error {code}", PROTOCOL)

    def metadata(self) -> None:
        # Metadata v1 for no topic: a listener that wants SASL refuses it (Kafka closes the connection).
        check = (f"{PROTOCOL} (a listener that requires authentication needs SASL_PLAINTEXT or SASL_SSL)"
                 if not self.sec.sasl else CREDENTIALS)
        self.request(3, 1, struct.pack(">i", 0), "Metadata", check)

    def authenticate(self) -> None:
        """SaslHandshake v1, then SaslAuthenticate v0 until the mechanism is done."""
        from kafka.net.sasl import get_sasl_mechanism

        mech = self.sec.mechanism
        answer = self.request(17, 1, _string(mech), f"SASL handshake ({mech})", MECHANISM)
        (code,) = struct.unpack(">h", answer[:2])
        if code:
            offered = _strings(answer[2:])
            raise _Step(f"SASL mechanism {mech} is not enabled on the broker (it offers "
                        f"{', '.join(offered) or 'none'})", MECHANISM)
        client = get_sasl_mechanism(mech)(security_protocol=self.sec.protocol, sasl_mechanism=mech,
                                          sasl_plain_username=self.sec.username,
                                          sasl_plain_password=self.sec.password)
        step = f"SASL {mech} authentication as {self.sec.username!r}"
        while not client.is_done():
            token = client.auth_bytes()
            answer = self.request(36, 0, struct.pack(">i", len(token)) + token, step, CREDENTIALS)
            code, message, data = _sasl_answer(answer)
            if code:
                raise _Step(f"{step} failed: {message or f'error {code}'}", CREDENTIALS)
            try:
                client.receive(data)
            except Exception as exc:  # SCRAM: the server's error (e=...) or a signature that does not match
                said = data.decode(errors="replace")
                why = f"the broker says {said[2:]!r}" if said.startswith("e=") else f"{type(exc).__name__}: {said!r}"
                raise _Step(f"{step} failed ({why})", CREDENTIALS) from None
        if not client.is_authenticated():
            raise _Step(f"{step} failed", CREDENTIALS)


def _string(s: str) -> bytes:
    raw = s.encode()
    return struct.pack(">h", len(raw)) + raw


def _strings(buf: bytes) -> list[str]:
    """A Kafka array of strings; struct.error when the bytes do not hold what they announce."""
    (n,) = struct.unpack(">i", buf[:4])
    if n > (len(buf) - 4) // 2:
        raise struct.error(f"an array of {n} strings in {len(buf)} bytes")
    out, pos = [], 4
    for _ in range(max(0, n)):
        (length,) = struct.unpack(">h", buf[pos:pos + 2])
        if length < 0 or pos + 2 + length > len(buf):
            raise struct.error(f"a string of {length} bytes at {pos} of {len(buf)}")
        out.append(buf[pos + 2:pos + 2 + length].decode(errors="replace"))
        pos += 2 + length
    return out


def _sasl_answer(buf: bytes) -> tuple[int, str, bytes]:
    """SaslAuthenticate v0: error_code, error_message (nullable string), auth_bytes."""
    (code, length) = struct.unpack(">hh", buf[:4])
    pos = 4 + max(0, length)
    message = buf[4:pos].decode(errors="replace") if length > 0 else ""
    (size,) = struct.unpack(">i", buf[pos:pos + 4])
    return code, message, buf[pos + 4:pos + 4 + max(0, size)]
