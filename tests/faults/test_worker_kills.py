"""A worker SIGKILLed at random moments (seeded, printed) while an outage scenario streams in, at least
10 times (30 in the long mode), restarted each time: every replacement recovers its tables from the
changelogs and carries on. At the end the counts equal the ground truth summed from the produced
records (nothing lost, nothing counted twice), the alerts equal those of an uninterrupted run (the pure
engine over the same messages), and PagerDuty, fed by the real notifier, holds one incident per dedup
key, resolved where the uninterrupted run resolves it."""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from streams.adapters.processes import free_port
from streams.demo.pagerduty_receiver import PagerDutyReceiver
from tests.faults.support import (
    LONG,
    GroupOffsets,
    PacedProducer,
    Uninterrupted,
    burn_scenario,
    chains,
    expected_actions,
    ground_truth,
    incidents,
    notifier,
    page_key,
    pd_actions,
    pick,
    processed_all,
    read_json,
    read_topic,
    run_seed,
    scenario_messages,
    specs,
    statuses_caught_up,
    tail,
    wait_until,
)
from tests.integration.harness import Deployment

N_KILLS = 30 if LONG else 10
EARLY = 9 if LONG else 3  # kills aimed at a replacement still starting or recovering
RATE = 60.0  # playback messages per second, as far as released (each message: 3 records)
MARGIN = 60  # a worker to be killed at a target catches up to this many messages before it...
LOOKAHEAD = 150  # ...then meets live traffic up to this many past it: the kill finds work in flight


RECOVERED = "recovered state for partitions"  # the worker's log line once its tables are recovered


@dataclass
class Kill:
    n: int
    worker: str
    moment: str  # "start-up/recovery" (tables not recovered yet), "catching up" (no commit yet), "processing"
    delay_s: float  # the random delay that chose the moment
    up_s: float  # the victim's life: spawn to SIGKILL
    committed: dict[int, int]  # the group's committed offset per partition at the kill
    produced: int  # messages produced by then
    back_s: float | None = None  # SIGKILL to the next worker's tables recovered (its log line)
    commit_s: float | None = None  # SIGKILL to the next worker's first commit beyond ``committed``
    ts: float | None = None  # event time of the last committed playback-api message at the kill


@dataclass
class Life:
    """One worker's life, watched by polling: when its tables were recovered, when it first
    committed offsets beyond ``before``."""

    log: Path
    offsets: GroupOffsets
    before: int
    recovered: float | None = None
    committed: float | None = None

    def poll(self) -> None:
        now = time.monotonic()
        if self.recovered is None and self.log.exists() and RECOVERED in self.log.read_text(errors="replace"):
            self.recovered = now
        if self.committed is None and self.offsets.total() > self.before:
            self.committed = now


def test_a_worker_killed_at_random_moments_ten_times_loses_nothing_doubles_nothing_and_pages_once(
    kafka_bootstrap: str, tmp_path: Path, fault_report: list[str]
) -> None:
    seed = run_seed()
    rng = random.Random(seed)
    # Live traffic and a commit every second: a kill usually finds processed, uncommitted work.
    dep = Deployment.create(kafka_bootstrap, tmp_path)
    s = dep.settings
    scenario = burn_scenario()
    produced = scenario_messages(scenario)
    # The plan, drawn up front. EARLY kills (never the first) aim at a worker still starting or
    # recovering: a random moment 0.5-5 s after its start (start-up, group join, changelog recovery).
    # The others aim at a random point of the stream: kill k waits until the group has committed a
    # random position inside the k-th of equal segments of the scenario (so the kills cover all of
    # it, the burn included), then a random 0-1 s more (a random phase of the 1 s commit interval),
    # while live traffic still arrives.
    early = set(rng.sample(range(1, N_KILLS), EARLY))
    n_targets = N_KILLS - EARLY
    targets = iter(int(len(produced) * (k + rng.uniform(0.2, 1.0)) / (n_targets + 1)) for k in range(n_targets))
    plan = [("recovering", 0, rng.uniform(0.5, 5.0)) if i in early else ("processing", next(targets),
                                                                           rng.uniform(0.0, 1.0))
            for i in range(N_KILLS)]
    fault_report += [f"seed {seed} (SLO_STREAM_FAULTS_SEED={seed} replays the kill plan)",
                     f"{len(produced)} playback messages ({len(produced) * 3} records) produced at {RATE:.0f}/s "
                     f"as far as released; {N_KILLS} kills, {EARLY} of them aimed at start-up/recovery, the "
                     f"others at stream positions {[t for m, t, _ in plan if m == 'processing']}"]
    receiver = PagerDutyReceiver().start()
    offsets = GroupOffsets(kafka_bootstrap, s.app_id, s.topic_playback, s.partitions)
    producer = PacedProducer(kafka_bootstrap, s.topic_playback, produced, per_second=RATE, gated=True)
    kills: list[Kill] = []
    t_start = time.monotonic()
    try:
        with notifier(dep, receiver, tmp_path / "notifier.log") as notif:
            producer.start()
            before = 0
            last_killed = 0.0
            for i, (mode, target, delay) in enumerate(plan):
                name = f"w{i:02d}"
                if mode == "processing":
                    producer.release(max(before + 1, target - MARGIN))
                with dep.worker(name) as proc:
                    spawned = time.monotonic()
                    life = Life(tmp_path / f"{name}.log", offsets, before)
                    alive = {name: proc, "notifier": notif}

                    def logs(n: str = name) -> str:
                        # A worker idle for want of records is the producer's story: say where it is.
                        return (f"producer: {producer.sent} of {len(produced)} sent, {producer.allowed} released, "
                                f"error {producer.error!r}, group committed {offsets.total()}\n"
                                + tail(tmp_path / f"{n}.log"))

                    if mode == "processing":
                        # Recovered and through the backlog to its first commit; then live traffic.
                        wait_until(lambda lf=life: lf.poll() or lf.committed, timeout_s=120,
                                   what=f"{name} to commit new offsets", alive=alive, logs=logs)
                        producer.release(target + LOOKAHEAD)
                        aim = max(target, offsets.total() + 1)
                        reached = wait_until(
                            lambda lf=life, t=aim: lf.poll() or (offsets.total() >= t and time.monotonic()),
                            timeout_s=120, what=f"{name} to commit up to {aim}", alive=alive, logs=logs)
                        until = reached + delay
                    else:
                        until = spawned + delay
                    while time.monotonic() < until:  # up to the chosen moment, watching
                        life.poll()
                        assert proc.poll() is None, f"{name} died on its own:\n{logs()}"
                        time.sleep(0.1)
                    life.poll()
                    os.killpg(proc.pid, signal.SIGKILL)
                    killed = time.monotonic()
                    proc.wait()
                    committed = offsets.committed()  # as the victim left it
                if kills:  # this worker's life measures the recovery from the previous kill
                    previous = kills[-1]
                    previous.back_s = life.recovered - last_killed if life.recovered else None
                    previous.commit_s = life.committed - last_killed if life.committed else None
                moment = ("start-up/recovery" if not life.recovered
                          else "processing" if life.committed else "catching up")
                kills.append(Kill(i + 1, name, moment,
                                  delay, killed - spawned, committed, producer.sent))
                last_killed = killed
                before = sum(committed.values())
                producer.check()

            producer.release(len(produced))
            final_port = free_port()
            with dep.worker("final", SLO_STREAM_WEB_PORT=str(final_port)) as proc:
                alive = {"final": proc, "notifier": notif}
                life = Life(tmp_path / "final.log", offsets, before)
                logs = lambda: tail(tmp_path / "final.log")  # noqa: E731
                wait_until(lambda: life.poll() or (life.recovered and life.committed), timeout_s=120,
                           what="the final worker to recover and commit new offsets", alive=alive, logs=logs)
                assert life.recovered is not None and life.committed is not None
                kills[-1].back_s, kills[-1].commit_s = life.recovered - last_killed, life.committed - last_killed
                wait_until(lambda: producer.finished_at, timeout_s=180, what="the producer to finish", alive=alive)
                producer.check()
                wait_until(lambda: processed_all(final_port, s.partitions), timeout_s=120,
                           what="every playback message processed", alive=alive, logs=logs)
                t_done = time.monotonic()

                # The uninterrupted run over the very messages the broker holds.
                back = read_topic(kafka_bootstrap, s.topic_playback, s.partitions)
                assert [(m.key, m.value) for m in back] == produced, "the topic holds exactly what was produced"
                clean = Uninterrupted.run(dep, back)
                assert clean.alerts, "the scenario pages in the uninterrupted run"

                # The last statuses follow the last commit.
                def statuses_final() -> dict[str, dict] | None:
                    return statuses_caught_up(kafka_bootstrap, s.topic_status, s.partitions, clean.statuses)

                statuses = wait_until(statuses_final, timeout_s=60, what="the final statuses", alive=alive,
                                      every_s=1.0)
                expected = {k: expected_actions(v) for k, v in chains(clean.alerts).items()}
                wait_until(lambda: {k: incidents(v) for k, v in pd_actions(receiver).items()} == expected,
                           timeout_s=90, what=f"PagerDuty to hold {expected}", alive=alive,
                           logs=lambda: tail(tmp_path / "notifier.log"))
                committed_end = offsets.total()
            worker_logs = {n: (tmp_path / f"{n}.log").read_text(errors="replace")
                           for n in [k.worker for k in kills] + ["final"]}
    finally:
        producer.stop()
        offsets.close()
        receiver.stop()

    # ---- counting: every series, exactly the ground truth -------------------------------------------------
    slos = specs()
    compared = []
    for series, status in sorted(statuses.items()):
        assert pick(status) == pick(clean.statuses[series]), f"{series} differs from the uninterrupted run"
        truth = ground_truth(slos, produced, series, status["evaluated_at"])
        got = status["good_total"]["30d"]
        assert (got["bad"], got["total"]) == truth, f"{series}: counted {got}, the records hold {truth}"
        compared.append((series, truth))

    # ---- alerts: the uninterrupted sequence, at least once --------------------------------------------------
    alerts = read_json(kafka_bootstrap, s.topic_alerts, s.partitions)
    assert chains(alerts) == chains(clean.alerts), "alert changes differ from the uninterrupted run"
    page = page_key()
    assert [a["state"] for a in chains(clean.alerts)[page]] == ["firing", "resolved"]

    # ---- PagerDuty: one incident per dedup key, with its resolve ----------------------------------------------
    actions = pd_actions(receiver)
    assert actions[page][-1] == "resolve" and "trigger" not in actions[page][actions[page].index("resolve"):]

    # ---- figures --------------------------------------------------------------------------------------------
    p_page = next(m.partition for m in back if m.key == b"playback-api")
    back_ts = {m.offset: max(r["ts"] for r in orjson.loads(m.value)["records"]) for m in back
               if m.partition == p_page}
    for k in kills:
        k.ts = back_ts.get(k.committed[p_page] - 1)
    fire_ts, resolve_ts = (a["ts"] for a in chains(clean.alerts)[page])
    mid_burn = sum(1 for k in kills if k.ts is not None and fire_ts <= k.ts < resolve_ts)
    assert mid_burn >= 1, "the plan's segments put at least one kill inside the burn"
    recovered_logs = sum(text.count(RECOVERED) for text in worker_logs.values())
    rereads = sum(text.count("reading again from") + text.count("seeking back to the committed offset")
                  for text in worker_logs.values())
    fault_report.append(f"{len(kills)} SIGKILLs in {t_done - t_start:.0f}s: "
                        f"{sum(k.moment == 'processing' for k in kills)} while processing, "
                        f"{sum(k.moment == 'catching up' for k in kills)} catching up before a commit, "
                        f"{sum(k.moment == 'start-up/recovery' for k in kills)} during start-up/recovery; "
                        f"{mid_burn} with the page firing (event time {fire_ts}..{resolve_ts})")
    for k in kills:
        rec = (f"tables back {k.back_s:.1f}s, first commit {k.commit_s:.1f}s after it" if k.back_s and k.commit_s
               else "the replacement was killed before it " + ("committed" if k.back_s else "recovered"))
        fault_report.append(
            f"kill {k.n:2d} {k.worker} {k.moment:17s} {k.up_s:4.1f}s after start (random delay {k.delay_s:.2f}s): "
            f"{sum(k.committed.values())} committed / {k.produced} produced, at "
            f"{'-' if k.ts is None else f'{k.ts - scenario.start_ts:.0f}s'} event time; {rec}")
    backs = sorted(k.back_s for k in kills if k.back_s is not None)
    commits = sorted(k.commit_s for k in kills if k.commit_s is not None)
    fault_report.append(f"recovery after SIGKILL: tables recovered in {backs[0]:.1f}..{backs[-1]:.1f}s "
                        f"(median {backs[len(backs) // 2]:.1f}s, {len(backs)} kills), first new commit in "
                        f"{commits[0]:.1f}..{commits[-1]:.1f}s (median {commits[len(commits) // 2]:.1f}s)")
    fault_report.append(f"table recoveries logged: {recovered_logs}; offset re-reads (holes, commit stalls): "
                        f"{rereads}; the group had committed {committed_end} of {len(produced)} offsets when "
                        "the checks ran (all processed)")
    fault_report.append(f"counts: {len(compared)} series, 30d good/total equal to the records' sums and all windows "
                        f"equal to the uninterrupted run, e.g. {compared[0][0]} bad/total {compared[0][1]}")
    changes = sum(len(v) for v in chains(clean.alerts).values())
    fault_report.append(f"alerts: {len(alerts)} records on slo.alerts for {changes} changes "
                        f"({len(alerts) - changes} re-published), the uninterrupted sequence per dedup key")
    fault_report.append("PagerDuty accepted: " + "; ".join(f"{k.removeprefix('slo-stream/')}: {', '.join(v)}"
                                                           for k, v in sorted(actions.items())))


def test_a_worker_killed_right_after_its_first_commit_loses_nothing(
    kafka_bootstrap: str, tmp_path: Path, fault_report: list[str]
) -> None:
    """The earliest kill: the first worker commits its first batch and dies. On Tansu its replacement
    recovers none or part of that batch's state writes and no meta record (the changelog recovery
    stops short of the last batch of writes, docs/semantics.md); it must read the partition again
    from the start, not from the committed offset, or that batch's counts are lost."""
    dep = Deployment.create(kafka_bootstrap, tmp_path)
    s = dep.settings
    produced = scenario_messages(burn_scenario())[:120]
    first, rest = produced[:20], produced[20:]
    offsets = GroupOffsets(kafka_bootstrap, s.app_id, s.topic_playback, s.partitions)
    try:
        dep.produce(first)
        with dep.worker("w1") as proc:
            wait_until(lambda: offsets.total() >= len(first), timeout_s=120, what="the first batch committed",
                       alive={"w1": proc}, logs=lambda: tail(tmp_path / "w1.log"))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        dep.produce(rest)
        port = free_port()
        with dep.worker("w2", SLO_STREAM_WEB_PORT=str(port)) as proc:
            wait_until(lambda: processed_all(port, s.partitions), timeout_s=120, what="everything processed",
                       alive={"w2": proc}, logs=lambda: tail(tmp_path / "w2.log"))
            back = read_topic(kafka_bootstrap, s.topic_playback, s.partitions)
            clean = Uninterrupted.run(dep, back)

            def statuses_final() -> dict[str, dict] | None:
                return statuses_caught_up(kafka_bootstrap, s.topic_status, s.partitions, clean.statuses)

            statuses = wait_until(statuses_final, timeout_s=60, what="the final statuses",
                                  alive={"w2": proc}, every_s=1.0)
        log = (tmp_path / "w2.log").read_text(errors="replace")
    finally:
        offsets.close()
    slos = specs()
    for series, status in statuses.items():
        assert pick(status) == pick(clean.statuses[series]), series
        got = status["good_total"]["30d"]
        assert (got["bad"], got["total"]) == ground_truth(slos, produced, series, status["evaluated_at"]), series
    recovered = next((line.split("recovered state for partitions ", 1)[1].strip() for line in log.splitlines()
                      if RECOVERED in line), "?")
    reread = [line.split("WARNING] ", 1)[-1].strip() for line in log.splitlines() if "was next but" in line]
    fault_report += [
        f"killed after committing {len(first)} messages; the replacement recovered {recovered}; "
        + (f"re-read: {reread[0]}" if reread else "no re-read needed (its state came back whole)"),
        f"counts of {len(statuses)} series equal to the ground truth and to the uninterrupted run",
    ]
