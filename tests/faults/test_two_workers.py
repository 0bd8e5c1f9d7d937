"""Two workers share the partitions of playback.events (4 partitions, one consumer group); the one that
owns playback-api's partition is SIGKILLed a minute into an outage. The survivor takes its partitions
over (its assigned-partitions gauge goes from 2 to 4, its log shows the recovered state), and the
page for the killed worker's series fires and resolves, from the survivor, exactly as in an
uninterrupted run; the counts of every series equal the ground truth."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from streams.adapters.processes import free_port
from tests.faults.support import (
    GroupOffsets,
    PacedProducer,
    Uninterrupted,
    burn_scenario,
    chains,
    ground_truth,
    page_key,
    partitions_of,
    pick,
    processed_all,
    read_json,
    read_topic,
    specs,
    statuses_caught_up,
    tail,
    wait_until,
)
from tests.integration.harness import Deployment

PARTITIONS = 4
OUTAGE_AT = 65 * 60  # burn_scenario's healthy hour (and 5 min)


def test_the_survivor_of_two_workers_takes_over_the_killed_ones_partitions_and_its_alerts_keep_coming(
    kafka_bootstrap: str, tmp_path: Path, fault_report: list[str]
) -> None:
    dep = Deployment.create(kafka_bootstrap, tmp_path, partitions=PARTITIONS)
    s = dep.settings
    # Two burns: playback-api and stream-router hash to different partitions (1 and 3 of 4), so that
    # wherever the assignment puts them, a page depends on the worker that is killed.
    scenario = burn_scenario(burning=(("playback-api", "eu-west-1"), ("stream-router", "us-east-1")))
    timed = list(scenario.messages())
    # Up to a minute into the outage: the burn has started, the page has not fired yet (the watermark
    # is the allowed lateness, 2 min, behind).
    first = [(k, v) for ts, k, v in timed if ts < scenario.start_ts + OUTAGE_AT + 60]
    rest = [(k, v) for ts, k, v in timed if ts >= scenario.start_ts + OUTAGE_AT + 60]
    produced = first + rest
    ports = {"a": free_port(), "b": free_port()}
    t0 = time.monotonic()
    marks: list[str] = []

    def mark(what: str) -> None:
        marks.append(f"{what} +{time.monotonic() - t0:.0f}s")

    offsets = GroupOffsets(kafka_bootstrap, s.app_id, s.topic_playback, s.partitions)
    try:
        with dep.worker("a", SLO_STREAM_WEB_PORT=str(ports["a"])) as proc_a, \
                dep.worker("b", SLO_STREAM_WEB_PORT=str(ports["b"])) as proc_b:
            procs = {"a": proc_a, "b": proc_b}

            def logs() -> str:
                return "".join(f"--- {n}.log\n{tail(tmp_path / f'{n}.log')}\n" for n in procs)

            dep.produce(first)
            mark("produced")
            # Both in the group, two partitions each, and everything sent so far committed.
            def split() -> dict[str, tuple[int, set[int]]] | None:
                got = {n: partitions_of(p) for n, p in ports.items()}
                if any(g is None or g[0] != PARTITIONS // 2 for g in got.values()):
                    return None
                held = [g[1] for g in got.values() if g is not None]
                return got if set().union(*held) == set(range(PARTITIONS)) else None  # type: ignore[return-value]

            owned = wait_until(split, timeout_s=120, what="two workers with two partitions each", alive=procs,
                               logs=logs)
            mark("assigned")
            wait_until(lambda: offsets.total() >= len(first), timeout_s=120, what="the first part committed",
                       alive=procs, logs=logs)
            mark("committed")
            back = read_topic(kafka_bootstrap, s.topic_playback, s.partitions)
            p_page = next(m.partition for m in back if m.key == b"playback-api")
            victim = next(n for n, (_, parts) in owned.items() if p_page in parts)
            survivor = next(n for n in procs if n != victim)
            before = offsets.committed()
            alerts_before = read_json(kafka_bootstrap, s.topic_alerts, s.partitions)

            os.killpg(procs[victim].pid, signal.SIGKILL)
            killed = time.monotonic()
            mark("killed")
            procs[victim].wait()
            alive = {survivor: procs[survivor]}
            producer = PacedProducer(kafka_bootstrap, s.topic_playback, rest, per_second=100)
            producer.start()
            wait_until(lambda: (partitions_of(ports[survivor]) or (0, set()))[0] == PARTITIONS, timeout_s=120,
                       what=f"{survivor} to hold all {PARTITIONS} partitions", alive=alive, logs=logs)
            took_over = time.monotonic() - killed
            wait_until(lambda: offsets.committed()[p_page] > before[p_page], timeout_s=120,
                       what=f"{survivor} to commit on partition {p_page}", alive=alive, logs=logs)
            resumed = time.monotonic() - killed
            wait_until(lambda: producer.finished_at, timeout_s=120, what="the producer", alive=alive)
            producer.check()
            wait_until(lambda: processed_all(ports[survivor], PARTITIONS), timeout_s=120,
                       what=f"{survivor} to process everything", alive=alive, logs=logs)
            mark("all processed")
            back = read_topic(kafka_bootstrap, s.topic_playback, s.partitions)
            assert sorted((m.key, m.value) for m in back) == sorted(produced)
            clean = Uninterrupted.run(dep, back)

            def statuses_final() -> dict[str, dict] | None:
                return statuses_caught_up(kafka_bootstrap, s.topic_status, s.partitions, clean.statuses)

            mark("uninterrupted run")
            statuses = wait_until(statuses_final, timeout_s=60, what="the final statuses", alive=alive, every_s=1.0)
            mark("final statuses")
            survivor_log = (tmp_path / f"{survivor}.log").read_text(errors="replace")
    finally:
        offsets.close()

    # The takeover, in the survivor's own words: the killed worker's partitions recovered from the
    # changelog, then the page of a series on them fired and resolved here.
    taken = sorted(owned[victim][1])
    after_kill = survivor_log.split("released partitions", 1)[-1]
    assert "recovered state for partitions" in after_kill, survivor_log[-3000:]
    page = page_key()
    router_page = page_key("us-east-1", "us-east", slo="stream-router-availability")
    alerts = read_json(kafka_bootstrap, s.topic_alerts, s.partitions)
    assert chains(alerts) == chains(clean.alerts)
    assert [a["state"] for a in chains(alerts)[page]] == ["firing", "resolved"]
    assert [a["state"] for a in chains(alerts)[router_page]][:1] == ["firing"]  # 99.95%: resolves later
    assert not [a for a in alerts_before if a["dedup_key"] == page], "the page fired before the kill"
    survivor_alerts = [line for line in survivor_log.splitlines() if "ALERT" in line and "playback-api-availability"
                       in line and "'eu-west-1'" in line and " page " in line]
    assert [line.split("ALERT ", 1)[1].split()[0] for line in survivor_alerts] == ["firing", "resolved"], \
        survivor_alerts

    slos = specs()
    for series, status in statuses.items():
        assert pick(status) == pick(clean.statuses[series]), series
        got = status["good_total"]["30d"]
        assert (got["bad"], got["total"]) == ground_truth(slos, produced, series, status["evaluated_at"]), series

    fault_report += [
        f"partitions: {victim} held {taken}, {survivor} held {sorted(owned[survivor][1])}; playback-api on {p_page}",
        f"SIGKILL {victim} a minute into the outage ({sum(before.values())} offsets committed); "
        f"{survivor} held all {PARTITIONS} partitions {took_over:.1f}s later (slo_stream_assigned_partitions 2 -> 4) "
        f"and committed on partition {p_page} after {resumed:.1f}s",
        f"the page of the killed worker's series fired and resolved from {survivor}: "
        + ", ".join(f"{a['state']} at +{a['ts'] - scenario.start_ts}s event time" for a in chains(alerts)[page]),
        f"alerts: {len(alerts)} records, {sum(len(v) for v in chains(alerts).values())} changes, equal to the "
        f"uninterrupted run; counts of {len(statuses)} series equal to the ground truth",
        "timeline: " + ", ".join(marks),
    ]
