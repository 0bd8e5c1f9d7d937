"""Real TLS in front of the embedded broker for tests: a CA and certificates made with the openssl CLI,
stunnel4 terminating TLS (optionally verifying client certificates) in front of a Tansu broker that
advertises the stunnel port, so that every client connection, metadata-directed ones included, goes
through TLS. Tansu 0.6 serves no TLS itself (docs/kafka-security.md)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from streams.adapters.broker import EmbeddedBroker
from streams.adapters.processes import free_port, stop_group

HOST = "127.0.0.1"
KEY_PASSWORD = "k3y-pa55-" + "e2e"  # the encrypted client key's password (a secret searched in logs)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass(frozen=True)
class Pki:
    """``ca.pem`` signs the server and client certificates; ``other-ca.pem`` signs nothing we trust."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def other_ca(self) -> Path:
        return self.dir / "other-ca.pem"

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"


def make_pki(d: Path) -> Pki:
    """CA, other CA, server (SAN 127.0.0.1, localhost), client (key encrypted with KEY_PASSWORD) and a
    client certified by the other CA."""
    d.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                 "-days", "2", "-subj", f"/CN=slo-stream test {ca}", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, ca, ext in (("server", "ca", "server.ext"), ("client", "ca", "client.ext"),
                          ("stranger", "other-ca", "client.ext")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", ext, cwd=d)
    _openssl("pkey", "-in", "client.key", "-out", "client.enc", "-aes256", "-passout", f"pass:{KEY_PASSWORD}",
             cwd=d)
    (d / "client.enc").replace(d / "client.key")
    return Pki(d)


class TlsBroker:
    """A Tansu broker reachable only through stunnel on ``bootstrap`` (TLS; mTLS when ``verify_clients``).
    ``plain`` is Tansu's own plaintext listener (not advertised: clients bootstrapping there are sent to
    the TLS port)."""

    def __init__(self, pki: Pki, tmp: Path, *, verify_clients: bool) -> None:
        self.pki, self.tmp, self.verify_clients = pki, tmp, verify_clients
        self.port = free_port(HOST)
        self.broker = EmbeddedBroker(advertised=f"tcp://{HOST}:{self.port}", log_path=tmp / "tansu.log",
                                     keep_log=True)
        self.stunnel: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def plain(self) -> str:
        return self.broker.bootstrap

    def start(self) -> TlsBroker:
        stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
        if stunnel is None:
            raise RuntimeError("stunnel4 is not installed (apt-get install stunnel4)")
        self.broker.start()
        conf = self.tmp / "stunnel.conf"
        verify = f"verifyChain = yes\nCAfile = {self.pki.ca}\n" if self.verify_clients else ""
        conf.write_text(f"foreground = yes\npid =\ndebug = 4\noutput = {self.tmp / 'stunnel.log'}\n\n"
                        f"[kafka]\naccept = {HOST}:{self.port}\nconnect = {self.plain}\n"
                        f"cert = {self.pki.cert('server')}\nkey = {self.pki.key('server')}\n{verify}")
        self.stunnel = subprocess.Popen([stunnel, str(conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return self
            except OSError:
                if self.stunnel.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"stunnel did not listen on {self.bootstrap}: {(self.tmp / 'stunnel.log').read_text()}")

    def stop(self) -> None:
        if self.stunnel is not None:
            stop_group(self.stunnel)
        self.broker.stop()
