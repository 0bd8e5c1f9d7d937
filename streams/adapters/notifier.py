"""The notifier: `slo.alerts` to the PagerDuty Events API v2, `k8s.rollouts` to PagerDuty Change Events.

One process (``slo-stream notifier``), its own consumer group, plain aiokafka with manual commits:
a record's offset is committed only after PagerDuty accepted its event (or the event was
dead-lettered as invalid), so a crash or a PagerDuty outage loses nothing; a resend after a crash
carries the same ``dedup_key`` and PagerDuty folds it into the same incident. Records of one
partition are delivered in order, and alerts are keyed by dedup key, so trigger and resolve of one
incident arrive in order. A change not newer than the last one delivered for its dedup key is a
worker's replay and is not sent again (:class:`streams.core.notify.Delivered`; on a partition's
assignment the records before its committed offset are read back into it). Payloads are decided in
:mod:`streams.core.notify`.

Routing keys come from the environment or ``*_FILE`` paths and appear in no log line, no dead letter
and no metric label.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from streams.adapters import kafka_security
from streams.adapters.kafka_security import KafkaSecurity
from streams.core.backoff import backoff_s
from streams.core.errors import ConfigError, RecordError
from streams.core.notify import Delivered, NotifyError, Routing, SendOutcome, alert_event, change_event, send_outcome
from streams.core.wire.alert import decode_alert_bytes
from streams.core.wire.deadletter import DeadLetter, Source
from streams.core.wire.rollout import decode_rollout
from streams.settings import Settings, read_secret

log = logging.getLogger("slo_stream.notifier")

KEY_ENV = "SLO_STREAM_PAGERDUTY_ROUTING_KEY"
KINDS = ("page", "ticket", "change")
EVENTS_PATH = "/v2/enqueue"
CHANGE_PATH = "/v2/change/enqueue"
# Alert records read back from before the committed offset when a partition is (re)assigned, so that
# a worker's replay of changes delivered before this notifier started is still recognised.
SEED_RECORDS = 1000
READ_BACK_TIMEOUT_S = 15.0


def load_routing(settings: Settings, environ: Mapping[str, str] | None = None) -> Routing:
    """Routing keys: ``SLO_STREAM_PAGERDUTY_ROUTING_KEY`` for everything, overridden per kind by
    ``..._PAGE``, ``..._TICKET``, ``..._CHANGE``; each may instead be given as ``<name>_FILE``."""
    env = os.environ if environ is None else environ

    def read(name: str) -> str | None:
        return read_secret(env, name)

    default = read(KEY_ENV)
    keys = {kind: key for kind in KINDS if (key := read(f"{KEY_ENV}_{kind.upper()}") or default)}
    if "page" not in keys:
        raise ConfigError(f"no PagerDuty routing key for pages: set {KEY_ENV} or {KEY_ENV}_PAGE "
                          f"(or the same name with _FILE)")
    routes = env.get(ROUTES_ENV)
    return Routing(keys=keys, severity={"page": settings.pagerduty_severity_page,
                                        "ticket": settings.pagerduty_severity_ticket},
                   per_slo=load_routes(routes) if routes else {})


ROUTES_ENV = "SLO_STREAM_PAGERDUTY_ROUTES_FILE"


def load_routes(path: str) -> dict[str, dict[str, str]]:
    """Per-SLO routing: a YAML mapping ``slo name -> {page: PATH, ticket: PATH}`` where each PATH is a
    file holding that routing key (keys themselves never sit in the routes file). Errors name the
    file, the line and the field."""
    import yaml

    from streams.core import conventions as c

    def where(node: yaml.Node | None) -> str:
        return f"{path}:{node.start_mark.line + 1}" if node is not None else path

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        root = yaml.compose(text)
    except OSError as exc:
        raise ConfigError(f"{ROUTES_ENV}={path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not YAML ({exc})") from None
    if root is None:
        return {}
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{where(root)}: must map SLO names to {{page: PATH, ticket: PATH}}")
    out: dict[str, dict[str, str]] = {}
    for k_node, v_node in root.value:
        slo = k_node.value
        if not isinstance(slo, str) or not c.NAME_RE.match(slo):
            raise ConfigError(f"{where(k_node)}: {slo!r} is not an SLO name")
        if not isinstance(v_node, yaml.MappingNode):
            raise ConfigError(f"{where(v_node)}: {slo}: must map page/ticket to a key file")
        out[slo] = {}
        for sk, sv in v_node.value:
            if sk.value not in ("page", "ticket"):
                raise ConfigError(f"{where(sk)}: {slo}.{sk.value}: only page and ticket can be routed per SLO")
            if not isinstance(sv, yaml.ScalarNode) or not sv.value:
                raise ConfigError(f"{where(sv)}: {slo}.{sk.value}: must be the path of a key file")
            try:
                with open(sv.value, encoding="utf-8") as fh:
                    key = fh.read().strip()
            except OSError as exc:
                raise ConfigError(f"{where(sv)}: {slo}.{sk.value}: cannot read {sv.value} ({exc.strerror})") from None
            if not key:
                raise ConfigError(f"{where(sv)}: {slo}.{sk.value}: {sv.value} is empty")
            out[slo][sk.value] = key
    return out


class Revoked(Exception):
    """The partition of the record being delivered was assigned to another notifier."""


@dataclass
class Stats:
    delivered: int = 0
    rejected: int = 0
    retries: int = 0
    dead_letters: int = 0
    repeats: int = 0


class _Reassigned(ConsumerRebalanceListener):  # type: ignore[misc]
    """Forget which partitions were read back when they leave: another notifier may deliver on
    them meanwhile, so a partition that comes back is read back again."""

    def __init__(self, seeded: set[TopicPartition]) -> None:
        self.seeded = seeded

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.seeded.difference_update(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        # aiokafka reports only the previous assignment as revoked: a partition marked while it was
        # already leaving (a batch fetched before the rebalance) is read back again too.
        self.seeded.difference_update(assigned)


class Notifier:
    def __init__(self, settings: Settings, routing: Routing, *, group: str | None = None,
                 security: KafkaSecurity | None = None) -> None:
        self.s = settings
        self.kafka = kafka_security.aiokafka(security or kafka_security.from_settings(settings))
        self.routing = routing
        self.group = group or f"{settings.app_id}-notifier"
        self.base = settings.pagerduty_url.rstrip("/")
        self.stats = Stats()
        self.stopping = asyncio.Event()
        self._rng = random.Random()
        # Per dedup key, the last alert change delivered: a worker's replay is not sent again.
        self.delivered = Delivered()
        self._seeded: set[TopicPartition] = set()
        self.metrics: Any = None  # streams.adapters.metrics counters when the exporter is there

    # ---- delivery ---------------------------------------------------------------------------------

    async def post(self, http: aiohttp.ClientSession, path: str, body: dict[str, Any],
                   *, kind: str, ident: str, owned: Callable[[], bool] = lambda: True,
                   ) -> tuple[SendOutcome, int | None, str]:
        """POST until PagerDuty accepts or rejects it; retries (429, 5xx, timeouts) back off and
        go on until the process is asked to stop or loses the partition (then the new owner sends
        it: :class:`Revoked`). Returns the verdict, status and response text."""
        attempt = 0
        data = orjson.dumps(body)
        while True:
            if not owned():
                raise Revoked(ident)
            attempt += 1
            status: int | None = None
            text = ""
            retry_after: float | None = None
            try:
                async with http.post(self.base + path, data=data,
                                     headers={"Content-Type": "application/json"}) as resp:
                    status = resp.status
                    text = (await resp.text())[:4096]
                    ra = resp.headers.get("Retry-After")
                    if ra and ra.strip().isdigit():
                        retry_after = float(ra.strip())
            except (aiohttp.ClientError, TimeoutError) as exc:
                text = f"{type(exc).__name__}: {exc}"[:512]
            v = send_outcome(status)
            if v is not SendOutcome.RETRY:
                return v, status, text
            self.stats.retries += 1
            self._count_retry(kind, "timeout" if status is None else str(status))
            wait = backoff_s(attempt, jitter=self._rng.random() * 0.2, retry_after_s=retry_after)
            log.warning("PagerDuty %s for %s: %s; retry %d in %.1fs", kind, ident,
                        status if status is not None else text, attempt, wait)
            try:
                await asyncio.wait_for(self.stopping.wait(), timeout=wait)
            except TimeoutError:
                continue
            raise asyncio.CancelledError("stopping with an undelivered event (it is not committed)")

    def _count_retry(self, kind: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.notifier_retry(kind, reason)

    def _consuming(self, on: bool) -> None:
        if self.metrics is not None:
            self.metrics.notifier_consuming(on)

    def _count_delivery(self, kind: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.notifier_delivery(kind, outcome)

    async def handle(self, http: aiohttp.ClientSession, producer: AIOKafkaProducer,
                     topic: str, partition: int, offset: int, value: bytes | None,
                     owned: Callable[[], bool] = lambda: True) -> None:
        """One source record: deliver its event, or dead-letter it with the reason."""
        source = Source(topic, partition, offset)
        try:
            if topic == self.s.topic_alerts:
                alert = decode_alert_bytes(value)
                _, body = alert_event(alert, self.routing)
                kind = body["event_action"]
                if self.delivered.confirms(alert):
                    # The final evaluation confirmed a provisional page already sent: the incident is open.
                    self.stats.repeats += 1
                    self._count_delivery(kind, "confirmation")
                    log.info("%s confirmed at ts %s: the provisional page already went out", alert.dedup_key,
                             alert.ts)
                    return
                if self.delivered.is_repeat(alert):
                    # A worker replayed a batch whose changes already went out (docs/semantics.md).
                    self.stats.repeats += 1
                    self._count_delivery(kind, "repeat")
                    log.info("not sending again the %s change of %s at ts %s: already delivered",
                             alert.state, alert.dedup_key, alert.ts)
                    return
                path, ident = EVENTS_PATH, alert.dedup_key
            else:
                rollout = decode_rollout(orjson.loads(value or b""))
                change = change_event(rollout, self.routing)
                if change is None:
                    return  # a phase we do not announce, or no routing key for changes
                body, kind, path, ident = change, "change", CHANGE_PATH, rollout.key
        except orjson.JSONDecodeError as exc:
            await self.dead_letter(producer, DeadLetter("bad_json", str(exc), source, original=value))
            return
        except NotifyError as exc:  # a record that decodes but cannot become an event (no routing key...)
            await self.dead_letter(producer, DeadLetter(exc.reason, exc.detail, source, original=value))
            return
        except RecordError as exc:  # a record that does not decode: the decoder says which field
            reason = exc.reason if exc.reason == "bad_json" else \
                "bad_alert" if topic == self.s.topic_alerts else "bad_rollout"
            await self.dead_letter(producer, DeadLetter(reason, f"{exc.reason}: {exc.detail}", source, original=value))
            return
        except Exception as exc:  # any other shape a field can have: never stop the whole stream
            reason = "bad_alert" if topic == self.s.topic_alerts else "bad_rollout"
            await self.dead_letter(producer, DeadLetter(reason, f"{type(exc).__name__}: {exc}"[:500], source,
                                                        original=value))
            return
        v, status, text = await self.post(http, path, body, kind=kind, ident=ident, owned=owned)
        if v is SendOutcome.ACCEPTED:
            if topic == self.s.topic_alerts:
                self.delivered.note(alert)
            self.stats.delivered += 1
            self._count_delivery(kind, "accepted")
            log.info("PagerDuty %s accepted for %s (%s)", kind, ident, status)
            return
        self.stats.rejected += 1
        self._count_delivery(kind, "rejected")
        log.error("PagerDuty rejected the %s for %s with %s: %s", kind, ident, status, text)
        redacted = {k: v for k, v in body.items() if k != "routing_key"}
        await self.dead_letter(producer, DeadLetter("pagerduty_rejected", f"HTTP {status}: {text}", source,
                                                    original=value, event=redacted))

    async def dead_letter(self, producer: AIOKafkaProducer, letter: DeadLetter) -> None:
        letter = replace(letter, stage="notifier")
        await producer.send_and_wait(self.s.topic_dead_letter, key=letter.key.encode(), value=letter.encode())
        self.stats.dead_letters += 1
        src = letter.source
        log.warning("dead letter from %s/%d/%d: %s (%s)", src.topic, src.partition, src.offset, letter.reason,
                    letter.detail[:300])

    async def read_back(self, tp: TopicPartition, upto: int) -> int:
        """Note the valid alert changes of up to :data:`SEED_RECORDS` records before ``upto`` (the
        partition's committed offset, handled by this or an earlier notifier) in :attr:`delivered`.
        Returns how many were noted. Records the notifier dead-lettered are not noted (a bad ``ts``
        must not hide later changes). The caller bounds the time it takes."""
        reader = AIOKafkaConsumer(bootstrap_servers=self.s.bootstrap, group_id=None, enable_auto_commit=False,
                                  auto_offset_reset="earliest", client_id=f"{self.group}-readback",
                                  **self.kafka)
        await reader.start()
        n = 0
        try:
            reader.assign([tp])
            # From the log's start when retention removed the older records (a quiet topic).
            first = (await reader.beginning_offsets([tp])).get(tp, 0)
            start = max(first, upto - SEED_RECORDS)
            if start >= upto:
                return 0
            reader.seek(tp, start)
            while await reader.position(tp) < upto and not self.stopping.is_set():
                got = await reader.getmany(tp, timeout_ms=500, max_records=500)
                for rec in got.get(tp, []):
                    if rec.offset >= upto:
                        break
                    try:
                        alert = decode_alert_bytes(rec.value)
                        alert_event(alert, self.routing)  # what handle() would have delivered
                    except Exception:  # dead-lettered when it was handled
                        continue
                    self.delivered.note(alert)
                    n += 1
        finally:
            await reader.stop()
        log.info("read back %d alert changes of %s/%d before offset %d", n, tp.topic, tp.partition, upto)
        return n

    # ---- the loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        s = self.s
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap, group_id=self.group, client_id=f"{self.group}",
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),
            # A PagerDuty outage holds one record for as long as it lasts: do not leave the group.
            max_poll_interval_ms=7 * 24 * 3600 * 1000,
            **self.kafka,
        )
        producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap, acks="all", client_id=f"{self.group}",
                                    **self.kafka)
        await producer.start()
        await consumer.start()
        consumer.subscribe([s.topic_alerts, s.topic_k8s_rollouts], listener=_Reassigned(self._seeded))
        self._consuming(True)
        timeout = aiohttp.ClientTimeout(total=s.pagerduty_timeout_s)
        log.info("notifier: %s + %s -> %s (routing keys for %s)", s.topic_alerts, s.topic_k8s_rollouts,
                 self.base, ", ".join(sorted(self.routing.keys)))
        last_progress = time.monotonic()
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                while not self.stopping.is_set():
                    batch = await consumer.getmany(timeout_ms=500, max_records=100)
                    for tp, records in batch.items():
                        ktp = TopicPartition(tp.topic, tp.partition)

                        def owned(ktp: TopicPartition = ktp) -> bool:
                            return ktp in consumer.assignment()

                        if tp.topic == s.topic_alerts and ktp not in self._seeded and records and owned():
                            self._seeded.add(ktp)
                            try:
                                await asyncio.wait_for(self.read_back(ktp, records[0].offset), READ_BACK_TIMEOUT_S)
                            except (KafkaError, TimeoutError) as exc:
                                log.warning("could not read back %s/%d before offset %d (%s); a replayed alert "
                                            "change may be delivered again", tp.topic, tp.partition,
                                            records[0].offset, type(exc).__name__)
                        try:
                            for rec in records:
                                if self.stopping.is_set() or not owned():
                                    break
                                await self.handle(http, producer, tp.topic, tp.partition, rec.offset, rec.value,
                                                  owned)
                                await consumer.commit({ktp: rec.offset + 1})
                        except (Revoked, CommitFailedError, IllegalStateError) as exc:
                            # The partition moved to another notifier during a rebalance: it resumes
                            # from the last commit (a resend is harmless: same dedup key).
                            log.warning("partition %s/%d left this notifier (%s); its new owner carries on",
                                        tp.topic, tp.partition, type(exc).__name__)
                    if time.monotonic() - last_progress > 30 and (self.stats.delivered or self.stats.dead_letters):
                        last_progress = time.monotonic()
                        log.info("progress: %d delivered, %d rejected, %d retries, %d dead letters, "
                                 "%d repeats not sent", self.stats.delivered, self.stats.rejected,
                                 self.stats.retries, self.stats.dead_letters, self.stats.repeats)
        except asyncio.CancelledError:
            if not self.stopping.is_set():
                raise
        finally:
            self._consuming(False)
            await consumer.stop()
            await producer.stop()
            log.info("notifier stopped: %d delivered, %d rejected, %d retries, %d dead letters, %d repeats not sent",
                     self.stats.delivered, self.stats.rejected, self.stats.retries, self.stats.dead_letters,
                     self.stats.repeats)
