"""The Faust side of the spine: the state table, the ingest-and-evaluate agent, the staleness timer.

All decisions are the core's (:class:`streams.core.engine.Engine`); this module moves bytes between
Kafka and the engine, in the order that makes a crash harmless (see the engine's module doc):
process -> deliver alerts -> commit state -> dead letters and statuses; Faust flushes the producer
before it commits source offsets, so nothing is acknowledged before it is written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

import faust
import mode
from faust.types import TP

from streams import settings as settings_mod
from streams.adapters import kafka_security
from streams.adapters.changes import Changes
from streams.adapters.kafka_security import KafkaSecurity
from streams.adapters.metrics import WorkerMetrics
from streams.adapters.tables import state_table
from streams.core.answer import GateInputs, Question
from streams.core.engine import BatchResult, Engine, EngineConfig
from streams.core.gate import GateConfig
from streams.core.model import Slo
from streams.core.offsets import OffsetGuard
from streams.core.wire.deadletter import refused
from streams.settings import Settings

log = logging.getLogger("slo_stream.pipeline")

# Bounded work per event-loop turn (issue 19): the engine's work on a batch comes in small steps (a part
# of the batch's messages, a few evaluations, a few table writes, a few sends); after each the worker
# gives the loop a turn if it has held it for TURN_S (Pacer), so that the HTTP API and the consumer's
# heartbeats keep their latency during a burst. Turning often is cheap and keeps the consumer's fetches
# flowing: with 10 ms between turns a worker ingested about half as many records per second.
TURN_S = 0.002
PART_BYTES = 64 * 1024
EVALUATIONS_PER_STEP = 32  # series evaluations (tens of microseconds to a few ms each)
WRITES_PER_STEP = 64  # state table writes (each also a changelog record)
SENDS_PER_CHECK = 16  # dead letters or statuses sent between two looks at the clock
COMMIT_GAP_CHECK_S = 5.0
HOLE_CHECK_S = 1.0
SEEK_TIMEOUT_S = 30.0  # a seek in the consumer thread answers at once; longer means that thread is stuck


class Pacer:
    """Gives the event loop a turn when the current task has held it for ``turn_s`` since its last
    turn: the hot path calls :meth:`turn_if_due` after each small step of work."""

    def __init__(self, turn_s: float = TURN_S) -> None:
        self.turn_s = turn_s
        self.since = time.perf_counter()
        self.turns = 0

    async def turn(self) -> None:
        # Two loop iterations: an HTTP request read in the first is answered in the second (its
        # handler's task is woken by the read), before the hot path goes on.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.turns += 1
        self.since = time.perf_counter()

    async def turn_if_due(self) -> bool:
        """A turn if one is due; True when one was given."""
        if time.perf_counter() - self.since < self.turn_s:
            return False
        await self.turn()
        return True


def _retrieved(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


def commit_gap(committed: int | None, acked: list[int]) -> int | None:
    """The first acknowledged offset when offsets between the committed one and it were never
    acknowledged (Faust then never commits again), else None.

    Faust commits over a single missing offset itself (it treats it as a compacted hole), so only a
    gap of two or more counts. ``committed`` is Faust's: the next offset to read.
    """
    if not committed or not acked:
        return None
    head = min(acked)
    return head if head - committed > 1 else None


class Pipeline:
    """Wires an Engine into a faust.App. Create it before the worker starts."""

    def __init__(self, app: faust.App, settings: Settings, slos: list[Slo], *,
                 security: KafkaSecurity | None = None) -> None:
        self.app = app
        self.settings = settings
        self.kafka = security or kafka_security.from_settings(settings)  # our own clients' security
        self.table = state_table(app, settings, name="state",
                                 help="slo-stream counters, alert tracks and partition watermarks")
        self.dead_letter = app.topic(settings.topic_dead_letter, key_serializer="raw", value_serializer="raw")
        self.stats: dict[str, int] = defaultdict(int)
        self.changes = Changes(app, settings, {s.service for s in slos}, dead_letter=self.dead_letter,
                               stats=self.stats)
        self.engine = Engine(
            slos,
            self.table,
            EngineConfig(
                step_s=settings.step_s,
                allowed_lateness_s=settings.allowed_lateness_s,
                max_future_s=settings.max_future_s,
                max_series_per_slo=settings.max_series_per_slo,
                series_allow=settings_mod.series_allow(settings),
                series_idle_s=settings.series_idle_s,
                provisional=settings.provisional,
            ),
            changes=self.changes.table,
        )
        self.playback = app.topic(settings.topic_playback, key_type=bytes, value_type=bytes,
                                  key_serializer="raw", value_serializer="raw")
        self.alerts = app.topic(settings.topic_alerts, key_serializer="raw", value_serializer="raw")
        self.status = app.topic(settings.topic_status, key_serializer="raw", value_serializer="raw")
        self.metrics = WorkerMetrics(self.engine, self.stats, app=app, topic=settings.topic_playback)
        self.last_batch_wall: dict[int, float] = {}
        self._stale_marked: set[int] = set()
        self.started = False  # tables recovered at least once
        self.batches: dict[int, int] = {}  # batches committed per partition (a version of its state)
        self._epoch = 0  # changes with every assignment and revocation (see _moved)
        self.pacer = Pacer()  # when the hot path gives the event loop a turn (TURN_S)
        self.table.on_recover(self._on_recover)
        app.on_partitions_revoked.connect(self._on_revoked)
        # A failed batch must not be skipped by restarting the agent in place: crash the worker.
        app.agent(self.playback, name="ingest", supervisor_strategy=mode.CrashingSupervisor)(self._ingest)
        app.timer(interval=max(1.0, settings.stale_after_s / 4), name="staleness")(self._staleness)
        app.timer(interval=10.0, name="progress")(self._progress)
        self._gaps_seen: dict[TP, tuple[int, int]] = {}
        self.guard = OffsetGuard(retry_after_s=COMMIT_GAP_CHECK_S)
        app.timer(interval=HOLE_CHECK_S, name="offset-holes")(self._seek_holes_now)
        app.timer(interval=COMMIT_GAP_CHECK_S, name="commit-gap")(self._heal_commit_gap)

    # ---- partitions ---------------------------------------------------------------------------

    def _owned(self) -> set[int]:
        topic = self.settings.topic_playback
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic}

    def owned(self) -> set[int]:
        """The playback partitions the consumer has assigned to this worker right now."""
        return self._owned()

    def stale_partitions(self) -> set[int]:
        """Partitions the staleness timer has marked (no records for ``stale_after_s``)."""
        return set(self._stale_marked)

    def gate_inputs(self, q: Question, *, now: float, configs: dict[str, GateConfig],
                    default: GateConfig) -> GateInputs:
        """What the gate needs for ``q``, from the engine's state and this worker's clock of each
        partition's last batch."""
        return self.engine.read.gate_inputs(q, now=now, processed_at=self.last_batch_wall,
                                            stale=self._stale_marked, configs=configs, default=default)

    async def _on_recover(self) -> None:
        self.started = True
        owned = self._owned()
        new = owned - self.engine.assigned()
        if new:
            self._assign(new)
            log.info("recovered state for partitions %s: %d series", sorted(new),
                     self.engine.counters.series_count())

    async def _turn(self, partition: int, epoch: int) -> bool:
        """Between two steps of a batch of ``partition``: give the event loop a turn if the batch has
        held it for TURN_S; True when partitions moved meanwhile (see :meth:`_moved`: the batch is
        then abandoned)."""
        if not await self.pacer.turn_if_due():
            return False
        return self._moved(partition, epoch)

    def _moved(self, partition: int, epoch: int) -> bool:
        """Partitions were revoked or assigned since ``epoch`` (during a batch's await): the engine's
        state of ``partition`` is no longer what the batch started from, so nothing of the batch is
        committed; whoever owns the partition now reads the batch again from the committed offset
        (an alert delivered meanwhile is sent again at worst, under the same dedup key)."""
        if self._epoch == epoch:
            return False
        log.info("partitions moved during a batch of partition %d; it is read again", partition)
        if partition in self.engine.assigned():
            self.engine.revoke({partition})  # drop what the batch changed in memory
            self._assign({partition})
        self.guard.forget({partition})
        return True

    def _assign(self, partitions: set[int]) -> None:
        self._epoch += 1
        self.engine.assign(partitions)
        now = time.time()
        for p in partitions:
            # Staleness counts from the assignment, so a worker started after traffic stopped says so.
            self.last_batch_wall.setdefault(p, now)

    async def _on_revoked(self, sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        parts = {tp.partition for tp in revoked if tp.topic == self.settings.topic_playback}
        if parts:
            self._epoch += 1
            self.engine.revoke(parts)
            self.guard.forget(parts)
            for tp in [tp for tp in self._gaps_seen if tp.partition in parts]:
                del self._gaps_seen[tp]
            log.info("released partitions %s", sorted(parts))

    # ---- the hot path -------------------------------------------------------------------------

    async def _ingest(self, stream: faust.StreamT) -> None:
        s = self.settings
        async for events in stream.take_events(s.batch_max, within=s.batch_within_s):
            self.pacer.since = time.perf_counter()  # the loop had its turn while the batch was awaited
            by_partition: dict[int, list[tuple[bytes | None, bytes | None, int]]] = defaultdict(list)
            events_of: dict[int, list[Any]] = defaultdict(list)
            for ev in events:
                m = ev.message
                by_partition[m.partition].append((m.key, m.value, m.offset))
                events_of[m.partition].append(ev)
            for partition, messages in sorted(by_partition.items()):
                keep = await self._process(partition, messages)
                if keep is not None:
                    for ev, kept in zip(events_of[partition], keep, strict=True):
                        if not kept:
                            # Marked done without telling the consumer: Faust then never counts
                            # this offset as processed and commits nothing past it until the
                            # re-read delivers it again and it is processed.
                            ev.message.acked = True

    async def _process(self, partition: int,
                       messages: list[tuple[bytes | None, bytes | None, int]]) -> list[bool] | None:
        """Process one partition's part of a batch. Returns which messages were taken when some were
        refused beyond an offset hole (see :mod:`streams.core.offsets`), else None."""
        engine = self.engine
        offered = len(messages)
        if partition not in engine.assigned():
            self._assign({partition})
        epoch = self._epoch
        now = time.time()
        # The next offset the state needs: the meta offset + 1, or the log's start (0) when the
        # partition has no meta record. Never the group's committed offset: a missing meta record
        # does not mean that nothing was written. Tansu answers a log-end query with the base offset
        # of the last record batch, so Faust's changelog recovery can stop short of the last batch
        # of writes and lose the partition's first meta record while chunks written before it come
        # back; the records below the committed offset must be read again, and the per-chunk offsets
        # tell what is already applied. A log that really starts later (retention) is a hole the log
        # itself shows empty (_seek_holes).
        expected = engine.meta(partition).offset + 1
        adm = self.guard.admit(partition, expected, [m[2] for m in messages], now=now)
        if adm.accepted_hole is not None:
            lo, hi = adm.accepted_hole
            log.warning("partition %d: offsets %d..%d are not in the log; carrying on at %d",
                        partition, lo, hi - 1, hi)
        taken: list[bool] | None = None
        if adm.refused or adm.duplicates:
            self.stats["refused_beyond_hole"] += adm.refused
            self.stats["duplicates_dropped"] += adm.duplicates
            taken = adm.keep
            # The re-read is the timer's job: a seek from inside the agent lands while Faust's fetch
            # loop is parked handing us the next message, and that loop then moves its read
            # position past the re-read records (they get dropped again).
            messages = [m for m, keep in zip(messages, adm.keep, strict=True) if keep]
            if not messages:
                return taken
        t0 = time.perf_counter()
        # The batch in parts, then the evaluations the parts left, each call within its budget and
        # with a turn for the HTTP API, the heartbeats and the timers before the next.
        res = BatchResult(partition)
        busy = 0.0
        for i, part in enumerate(parts(messages, PART_BYTES)):
            if i and await self._turn(partition, epoch):
                return [False] * offered
            tp = time.perf_counter()
            res.absorb(engine.process(partition, part, now=now, max_evaluations=EVALUATIONS_PER_STEP))
            busy += time.perf_counter() - tp
        while engine.due(partition):
            if await self._turn(partition, epoch):
                return [False] * offered
            tp = time.perf_counter()
            res.absorb(engine.evaluate_due(partition, EVALUATIONS_PER_STEP))
            busy += time.perf_counter() - tp
        # Early firing on a live partition (streams.core.provisional), in steps like the due evaluations.
        # A provisional alert's track is written now and is in the changelog (acknowledged) before its
        # FIRING goes out: a worker that takes the partition over after a crash finds it and settles it.
        first = True
        while first or engine.provisional_due(partition):
            if not first and await self._turn(partition, epoch):
                return [False] * offered
            first = False
            tp = time.perf_counter()
            self.table.write_partition = partition
            try:
                res.absorb(engine.provisional(partition, now=now, max_evaluations=EVALUATIONS_PER_STEP))
            finally:
                self.table.write_partition = None
            busy += time.perf_counter() - tp
        if res.durable:
            await self._make_durable(partition, res.durable)
            if self._moved(partition, epoch):
                return [False] * offered
        t1 = time.perf_counter()
        try:
            await self._deliver(res, messages)
        except BaseException:
            # The batch's effects were not all delivered: forget what process() changed in memory
            # (counts, alert tracks, watermark) and crash; the worker restarts from the committed
            # offset and does the batch again. Never carry on as if the alerts had gone out.
            engine.revoke({partition})
            engine.assign({partition})
            self.guard.forget({partition})
            log.critical("batch of partition %d could not be delivered; the worker stops and will "
                         "resume from the last committed offset", partition)
            raise
        t2 = time.perf_counter()
        if self._moved(partition, epoch):
            return [False] * offered
        # State last: alert tracks, per-revision counts, counters, then the partition meta record, in
        # steps of WRITES_PER_STEP table writes with a turn when due (a pause leaves a prefix of the
        # writes, as a crash would).
        self.table.write_partition = partition
        try:
            for _ in engine.commit_steps(res, every=WRITES_PER_STEP):
                self.table.write_partition = None
                if await self._turn(partition, epoch):
                    return [False] * offered
                self.table.write_partition = partition
        finally:
            self.table.write_partition = None
        t3 = time.perf_counter()
        self.metrics.observe_batch(busy, t3 - t0)
        log.debug("batch p%d: %d messages, %d records; process %.1f ms, deliver %.1f ms, commit %.1f ms",
                  partition, len(messages), res.records, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
        # The latest status per series: at-least-once like the rest, but nothing depends on it.
        pacer = self.pacer
        for i, ev in enumerate(res.statuses.values(), 1):
            await self.status.send(key=ev.series.encode(), value=engine.read.status(ev, now=now).encode())
            if i % SENDS_PER_CHECK == 0:
                await pacer.turn_if_due()
        self.last_batch_wall[partition] = now
        self.batches[partition] = self.batches.get(partition, 0) + 1
        self._stale_marked.discard(partition)
        st = self.stats
        st["messages"] += len(messages)
        st["records"] += res.records
        st["rejected"] += len(res.rejected)
        st["alerts"] += len(res.alerts)
        st["evaluations"] += res.evaluations
        for reason, n in res.rejected_by_reason().items():
            st[f"rejected.{reason}"] += n
        for outcome, n in res.provisional.items():
            st[f"provisional.{outcome}"] += n
        return taken

    async def _make_durable(self, partition: int, keys: list[str]) -> None:
        """Write ``keys`` of the state table to its changelog once more and wait for the broker's
        acknowledgement. The table's own write of each is only queued in Faust's producer buffer, and
        ``Producer.flush`` gives up waiting after 0.1 s; the same key and value written twice is harmless
        in a compacted changelog, and on one partition the earlier write is acknowledged first."""
        for key in keys:
            value = self.table.get(key)
            if value is not None:
                await self.table.send_changelog(partition, key, value)

    async def _deliver(self, res: BatchResult, messages: list[tuple[bytes | None, bytes | None, int]]) -> None:
        """Alert transitions and dead letters, awaited, before the state that says they happened."""
        futures = []
        for a in res.alerts:
            futures.append(await self.alerts.send(key=a.dedup_key.encode(), value=a.encode()))
            log.warning("ALERT %s %s %s %s burn=%s budget_left=%.4f top suspect: %s", a.state, a.severity,
                        a.slo, a.dimensions.to_json(), a.condition, a.error_budget_remaining,
                        a.suspects[0].summary if a.suspects else "none")
        if res.rejected:
            originals = {off: value for _, value, off in messages}
            topic = self.settings.topic_playback
            for i, rej in enumerate(res.rejected, 1):
                letter = refused(rej, topic=topic, partition=res.partition, original=originals.get(rej.offset))
                futures.append(await self.dead_letter.send(key=letter.key.encode(), value=letter.encode()))
                if i % SENDS_PER_CHECK == 0:
                    await self.pacer.turn_if_due()
        # Awaited one by one: one gather over a burst's ~100,000 futures is a single step of about
        # half a second (a callback on each). A future already done returns at once; the first
        # failure raises, as gather would.
        try:
            for i, fut in enumerate(futures, 1):
                await fut
                if i % SENDS_PER_CHECK == 0:
                    await self.pacer.turn_if_due()
        except BaseException:
            for fut in futures:  # their failures are this one's: no "exception never retrieved" each
                fut.add_done_callback(_retrieved)
            raise

    # ---- wall-clock timers ----------------------------------------------------------------------

    async def _staleness(self) -> None:
        """Traffic stopped: say so on slo.status (event time cannot advance without events)."""
        now = time.time()
        for p in sorted(self.engine.assigned()):
            last = self.last_batch_wall.get(p)
            if last is None or now - last < self.settings.stale_after_s or p in self._stale_marked:
                continue
            self._stale_marked.add(p)
            n = 0
            for series in self.engine.counters.series(p):
                ev = self.engine.read.last_status.get(series)
                if ev is None:
                    continue
                st = self.engine.read.status(ev, now=now).marked_stale(
                    f"no records on partition {p} for {now - last:.0f}s")
                await self.status.send(key=series.encode(), value=st.encode())
                n += 1
            log.warning("partition %d: no records for %.0fs; %d series marked stale", p, now - last, n)

    def _faust_committed(self, tp: TP) -> int | None:
        committed = getattr(self.app.consumer, "_committed_offset", None)
        return committed.get(tp) if isinstance(committed, dict) else None

    async def _seek_holes(self, now: float) -> None:
        """Read partitions with a hole again from before it (see :mod:`streams.core.offsets`): from
        the engine's next offset, or Faust's committed offset if lower, so that Faust, which commits
        only contiguous acknowledgements, sees every offset again too. Retried every
        ``COMMIT_GAP_CHECK_S`` while the hole stays open (a seek can race Faust's fetch loop again,
        which during a backlog may mean reading up to the log end first)."""
        topic = self.settings.topic_playback
        for p, hole in self.guard.due(now):
            tp = TP(topic, p)
            try:
                if self.guard.needs_check(hole):
                    first = await first_offset_from(self.settings.bootstrap or "", topic, p, hole.expected,
                                                     security=self.kafka)
                    if self.guard.holes.get(p) is not hole:
                        continue  # filled (or the partition left) while we looked
                    self.guard.checked(p, first)
                    if hole.confirmed:
                        log.warning("partition %d: the log has no records in %d..%d; they are skipped",
                                    p, hole.expected, hole.first - 1)
                if tp not in self.app.consumer.assignment():
                    self.guard.forget({p})
                    continue
                target = hole.expected
                committed = self._faust_committed(tp)
                if committed is not None and 0 <= committed < target:
                    target = committed
                log.warning("partition %d: offset %d was next but %d arrived; reading again from %d "
                            "(attempt %d)", p, hole.expected, hole.first, target, hole.seeks + 1)
                self.stats["hole_seeks"] += 1
                await self._seek(tp, target)
                self.guard.sought(p, now=now)
            except Exception as exc:  # the broker away, a partition revoked meanwhile: next tick
                log.warning("partition %d: re-reading past an offset hole failed (%s: %s); retrying",
                            p, type(exc).__name__, exc)
                self.guard.sought(p, now=now)

    async def _seek(self, tp: TP, offset: int) -> None:
        """Seek a source partition of Faust's consumer, inside the consumer's own thread.

        Faust runs the aiokafka consumer in a thread with its own event loop, and its
        ``Consumer.seek`` calls aiokafka's ``seek`` directly from the caller's thread: racing the
        fetcher there crashed a worker (``KeyError`` in ``Fetcher.fetched_records``, seen in
        bench/soak.py). ``seek_wait`` runs the seek in the consumer thread and sets Faust's read
        offset as ``Consumer.seek`` does; bounded, so that a stopped consumer thread cannot hold
        the timer that called it."""
        await asyncio.wait_for(self.app.consumer.seek_wait({tp: offset}), timeout=SEEK_TIMEOUT_S)

    async def _seek_holes_now(self) -> None:
        await self._seek_holes(time.time())

    async def _heal_commit_gap(self) -> None:
        """Work around faust-streaming#596: after recovery Faust resumes the source partitions before
        it seeks them to the committed offsets, and a fetch racing that seek can leave offsets that
        are never delivered; Faust then acknowledges everything after them and commits nothing ever
        again. A gap that persists across two checks is healed by seeking the partition back to the
        committed offset: the missing records arrive, records already processed are skipped by the
        engine's replay protection (offsets at or below the partition meta record), and commits resume.
        """
        consumer = self.app.consumer
        acked_by_tp = getattr(consumer, "_acked", None)
        if not isinstance(acked_by_tp, dict):
            return  # a Faust without these internals: nothing to heal
        topic = self.settings.topic_playback
        for tp in list(consumer.assignment()):
            if tp.topic != topic:
                continue
            committed = self._faust_committed(tp)
            head = commit_gap(committed, list(acked_by_tp.get(tp) or ()))
            if head is None or committed is None:
                self._gaps_seen.pop(tp, None)
                continue
            if self._gaps_seen.get(tp) != (committed, head):
                self._gaps_seen[tp] = (committed, head)  # seen once; a batch may still be in flight
                continue
            self._gaps_seen.pop(tp, None)
            self.stats["commit_gap_reseeks"] += 1
            log.warning("partition %d: offsets %d..%d were never delivered and commits stalled "
                        "(faust-streaming#596); seeking back to the committed offset %d",
                        tp.partition, committed, head - 1, committed)
            try:
                await self._seek(tp, committed)
            except Exception as exc:  # revoked meanwhile, the broker away: the next check retries
                log.warning("partition %d: seek failed (%s: %s)", tp.partition, type(exc).__name__, exc)

    async def _progress(self) -> None:
        st = self.stats
        if st["messages"]:
            holes = ""
            if st["hole_seeks"] or st["commit_gap_reseeks"]:
                holes = (f"; {st['refused_beyond_hole']} refused beyond offset holes, "
                         f"{st['hole_seeks'] + st['commit_gap_reseeks']} re-reads")
            log.info("progress: %d messages, %d records, %d rejected, %d evaluations, %d alerts, %d series%s",
                     st["messages"], st["records"], st["rejected"], st["evaluations"], st["alerts"],
                     self.engine.counters.series_count(), holes)


def parts(messages: list[tuple[bytes | None, bytes | None, int]], most_bytes: int
          ) -> list[list[tuple[bytes | None, bytes | None, int]]]:
    """``messages`` in consecutive parts of at most ``most_bytes`` of values (a larger message alone)."""
    out: list[list[tuple[bytes | None, bytes | None, int]]] = []
    part: list[tuple[bytes | None, bytes | None, int]] = []
    size = 0
    for m in messages:
        n = len(m[1] or b"")
        if part and size + n > most_bytes:
            out.append(part)
            part, size = [], 0
        part.append(m)
        size += n
    if part or not out:
        out.append(part)
    return out


async def first_offset_from(bootstrap: str, topic: str, partition: int, offset: int,
                            timeout_s: float = 5.0, *, security: KafkaSecurity | None = None) -> int | None:
    """The offset of the first record at or after ``offset`` (the log start if ``offset`` is gone),
    read by a client of our own, not Faust's consumer; None when nothing arrived in time."""
    import aiokafka

    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                         auto_offset_reset="earliest", client_id="slo-stream-offset-check",
                                         **kafka_security.aiokafka(security or kafka_security.PLAINTEXT))
    await consumer.start()
    try:
        tp = aiokafka.TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        got = await consumer.getmany(tp, timeout_ms=int(timeout_s * 1000), max_records=1)
        records = got.get(tp) or []
        return records[0].offset if records else None
    finally:
        await consumer.stop()
