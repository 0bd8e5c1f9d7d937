"""The Kafka start-up probe turns an answer too short to parse into its one-line error, never a
traceback: whatever listens at the bootstrap address (a half-configured proxy, another protocol that
happens to frame its bytes the same way) may answer with a well-sized frame of the wrong content."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from streams.adapters import kafka_security


@pytest.fixture
def short_answers() -> Iterator[str]:
    """A TCP listener that answers every request with a frame of 4 bytes (a correlation id, nothing more)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while True:
                head = conn.recv(4)
                if len(head) < 4:
                    return
                (size,) = struct.unpack(">i", head)
                body = b""
                while len(body) < size:
                    chunk = conn.recv(size - len(body))
                    if not chunk:
                        return
                    body += chunk
                conn.sendall(struct.pack(">i", 4) + body[4:8])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.close()
        thread.join(timeout=5)


def test_a_frame_too_short_for_its_answer_is_one_kafka_access_error(short_answers: str) -> None:
    with pytest.raises(kafka_security.KafkaAccessError) as exc:
        kafka_security.probe(short_answers, kafka_security.PLAINTEXT, connect_wait_s=5, step_timeout_s=2)
    line = str(exc.value)
    assert "\n" not in line and short_answers in line and "the answer is not Kafka's" in line, line
    assert "KAFKA_BOOTSTRAP_SERVERS" in line


def test_a_string_array_that_announces_more_than_it_holds_is_refused_at_once() -> None:
    """The SASL mechanisms of a handshake answer: an announced count of 2**31-1 with strings of length
    -2 would otherwise loop two billion times building a list of empty strings."""
    good = struct.pack(">i", 2) + struct.pack(">h", 5) + b"PLAIN" + struct.pack(">h", 13) + b"SCRAM-SHA-512"
    assert kafka_security._strings(good) == ["PLAIN", "SCRAM-SHA-512"]
    for bad in (struct.pack(">i", 2**31 - 1) + struct.pack(">h", -2) * 10,
                struct.pack(">i", 1) + struct.pack(">h", -2),
                struct.pack(">i", 1) + struct.pack(">h", 50) + b"x"):
        with pytest.raises(struct.error):
            kafka_security._strings(bad)
