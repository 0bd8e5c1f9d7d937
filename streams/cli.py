"""The ``slo-stream`` command (also ``python -m streams``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from streams import __version__
from streams.adapters import kafka_security

if TYPE_CHECKING:
    from streams.adapters.kafka_security import KafkaSecurity
    from streams.settings import Settings

DESCRIPTION = """\
slo-stream: SLO error budgets and multi-window multi-burn-rate alerts computed from the playback
stream on Kafka, for services moving onto Kubernetes.

Settings come from the environment (KAFKA_BOOTSTRAP_SERVERS, SLO_STREAM_*); see `slo-stream settings`.
Without KAFKA_BOOTSTRAP_SERVERS, `worker` and `demo` start the embedded Tansu broker."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="slo-stream", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"slo-stream {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    b = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (Tansu) on loopback")
    b.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    b.add_argument("--no-topics", action="store_true", help="do not create slo-stream's topics")

    w = sub.add_parser("worker", help="run a stream-processing worker (Faust)")
    w.add_argument("--specs", help="SLO spec file or directory (default: SLO_STREAM_SPECS or alerts/slos)")
    w.add_argument("--web-port", type=int, help="HTTP port (default: SLO_STREAM_WEB_PORT or 6066)")
    w.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])

    v = sub.add_parser("validate", help="check SLO spec files; print every problem with file, document, field")
    v.add_argument("paths", nargs="+", metavar="PATH")

    sub.add_parser("topics", help="create every slo-stream topic on KAFKA_BOOTSTRAP_SERVERS")
    sub.add_parser("settings", help="print the settings in force and the variables that set them")

    n = sub.add_parser("notifier", help="deliver slo.alerts to PagerDuty Events API v2 and k8s.rollouts as "
                                        "Change Events",
                       description="Consumes slo.alerts and k8s.rollouts (consumer group <app id>-notifier) and "
                                   "posts to SLO_STREAM_PAGERDUTY_URL. Routing keys: "
                                   "SLO_STREAM_PAGERDUTY_ROUTING_KEY, or per kind ..._PAGE, ..._TICKET, "
                                   "..._CHANGE; each also as <name>_FILE; per SLO with "
                                   "SLO_STREAM_PAGERDUTY_ROUTES_FILE. "
                                   "Offsets are committed only after "
                                   "PagerDuty accepted (or the event was dead-lettered as invalid).")
    n.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])

    _add_kube_bridge_parser(sub)
    _add_generate_parser(sub)

    from streams import gate_cli

    gate_cli.add_parser(sub)

    _add_demo_parsers(sub)
    return p


def _add_kube_bridge_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    k = sub.add_parser(
        "kube-bridge",
        help="watch a Kubernetes cluster's Deployments, ReplicaSets and Events; publish k8s.rollouts and k8s.events",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
List, then watch, the Deployments, ReplicaSets and Events of one cluster (all namespaces, or those
given) and publish to KAFKA_BOOTSTRAP_SERVERS:
  k8s.rollouts  one record per rollout phase: started, progressing, completed, failed, paused,
                rolled_back (key cluster/namespace/deployment), with migration steps from the
                slo-stream.io/migration-* and traffic-percent annotations
  k8s.events    every Event, and every repetition of it (key cluster/namespace/kind/name)
Watches resume from the last resourceVersion (bookmarks keep it fresh); after 410 Gone it relists
and publishes only what changed. Credentials: the in-cluster service account when
KUBERNETES_SERVICE_HOST is set and --kubeconfig is not, else the kubeconfig. It needs get, list and
watch on deployments, replicasets and events (docs/kube-bridge.md). Stops on SIGINT/SIGTERM.
With SLO_STREAM_ENFORCE=pause (default off) it also reads slo.alerts and pauses a Deployment whose
rollout in progress a firing page blames with a score >= SLO_STREAM_ENFORCE_MIN_SCORE (0.8), once per
rollout, recording it on rollout.gates; that needs get and patch on deployments
(deploy/enforcement/rbac.yaml).""")
    k.add_argument("--cluster", required=True,
                   help="this cluster's name in records and keys (e.g. eu-west-1)")
    k.add_argument("--namespace", action="append", default=None, metavar="NS", dest="namespaces",
                   help="watch only this namespace (repeatable; default: SLO_STREAM_KUBE_NAMESPACES or all)")
    k.add_argument("--kubeconfig", default=None,
                   help="kubeconfig file (default: in-cluster config, else $KUBECONFIG or ~/.kube/config)")
    k.add_argument("--context", default=None, help="kubeconfig context (default: its current context)")
    k.add_argument("--events-api", default=None, choices=["auto", "core/v1", "events.k8s.io/v1"],
                   help="which Events API to watch (default: SLO_STREAM_KUBE_EVENTS_API or auto: "
                        "events.k8s.io/v1 when the server has it)")
    k.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])


def _add_demo_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``replay`` and ``demo``: the tooling of streams.demo."""
    r = sub.add_parser(
        "replay", help="play a scenario file into Kafka (playback records, rollouts, Kubernetes events)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Plays a scenario (docs/scenarios.md) in accelerated event time into "
                    "KAFKA_BOOTSTRAP_SERVERS: playback.events batches, k8s.rollouts and k8s.events records, "
                    "deterministic for a seed and a start time.\nBy default the story ends now and every "
                    "rollout record is followed by a wait until the workers' changes table shows it "
                    "(--no-sync: do not wait).")
    r.add_argument("scenario", metavar="SCENARIO", help="a scenario file (YAML, kind: Scenario)")
    r.add_argument("--start", default=None,
                   help="event time of the first record: epoch seconds or RFC 3339 (default: the story ends now)")
    r.add_argument("--speed", type=float, default=0.0,
                   help="seconds of event time per wall-clock second (default 0: as fast as possible)")
    r.add_argument("--no-sync", action="store_true", help="do not wait for rollouts to reach the workers")
    r.add_argument("--plan", action="store_true", help="print the story and exit (checks the file)")

    d = sub.add_parser("demo", help="play the bundled migration story through the whole product and narrate it",
                       description="Starts the embedded broker (unless KAFKA_BOOTSTRAP_SERVERS is set), a local "
                                   "PagerDuty receiver (unless SLO_STREAM_PAGERDUTY_ROUTING_KEY is set), the "
                                   "worker(s) and the notifier; plays streams/demo/scenarios/migration.yaml; asks the "
                                   "gate around each step; prints alerts, suspects, notifications, a summary and "
                                   "the path of a PNG chart; stops everything.")
    d.add_argument("--specs", default=None, help="SLO specs (default: alerts/slos)")
    d.add_argument("--scenario", default=None, help="another scenario file (default: the bundled story)")
    d.add_argument("--workers", type=int, default=1, choices=[1, 2, 3], help="worker processes (default 1)")
    d.add_argument("--chart", default=None, help="where to write the PNG chart (default: in the log directory)")
    d.add_argument("--timeout", type=float, default=170.0, help="give up after this many seconds (default 170)")


def _add_generate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    g = sub.add_parser(
        "generate",
        help="write the Prometheus rules, Alertmanager config, Grafana dashboards and PrometheusRule generated "
             "from the SLO specs",
        description="Write prometheus-rules.yaml (recording and burn-rate alerting rules over the workers' "
        "counters) and alertmanager.yaml (page and ticket routes to PagerDuty) into --out, the Grafana "
        "dashboards (SLO overview, one SLO detail per service, migration, pipeline health) into "
        "--dashboards-out, and the same rules as a prometheus-operator PrometheusRule into "
        "--prometheusrule-out, generated from the SLO specs.",
    )
    g.add_argument("--specs", default=None,
                   help="SLO spec file or directory (default: SLO_STREAM_SPECS or alerts/slos)")
    g.add_argument("--out", default="alerts/_gen", help="rules and Alertmanager config (default: alerts/_gen)")
    g.add_argument("--dashboards-out", default="dashboards/_gen",
                   help="Grafana dashboards (default: dashboards/_gen); *.json files there that are no longer "
                        "generated are removed")
    g.add_argument("--prometheusrule-out", default="deploy/kubernetes/base/prometheusrule.yaml",
                   help="the PrometheusRule of the rules (default: deploy/kubernetes/base/prometheusrule.yaml)")
    g.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 listing the files that differ from a fresh generation")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from streams.core.errors import ConfigError, SpecError

    try:
        return _run(args)
    except kafka_security.KafkaAccessError as exc:  # one line: which broker, what failed, what to check
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SpecError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `slo-stream validate ... | head`
        sys.stderr.close()
        return 0


def _run(args: argparse.Namespace) -> int:
    from streams import settings as settings_mod

    if args.command == "validate":
        from streams.adapters.specfiles import validate

        return validate(args.paths)
    if args.command == "broker":
        from streams.adapters.broker import run_broker

        s = settings_mod.load()
        return run_broker(port=args.port, topics=None if args.no_topics else s.topics)
    if args.command == "settings":
        s = settings_mod.load()
        from dataclasses import fields

        for f in fields(s):
            print(f"{settings_mod.env_name(f.name)}={getattr(s, f.name)!s}")
        for secret in (settings_mod.KAFKA_SASL_PASSWORD, settings_mod.KAFKA_SSL_KEY_PASSWORD):
            print(f"{secret}={'(set)' if settings_mod.read_secret(os.environ, secret) else '(unset)'}")
        return 0
    if args.command == "topics":
        s = settings_mod.load()
        if not s.bootstrap:
            return _no_kafka()
        security = kafka_security.ready(s)
        code = _ensure_topics(s, security, holds_state=True)
        for t in s.topics.values():
            configs = " ".join(f"{k}={v}" for k, v in t.configs().items())
            print(f"{t.name}: {t.partitions} partitions, {configs}")
        return code
    if args.command == "worker":
        return _worker(args)
    if args.command == "notifier":
        return _notifier(args)
    if args.command == "generate":
        return _generate(args)
    if args.command == "gate":
        from streams import gate_cli

        return gate_cli.run(args)
    if args.command == "kube-bridge":
        return _kube_bridge(args)
    if args.command == "demo":
        from streams.demo.story import run_demo

        return run_demo(specs=args.specs, timeout_s=args.timeout, scenario=args.scenario, workers=args.workers,
                        chart=args.chart)
    if args.command == "replay":
        return _replay(args)
    raise AssertionError(args.command)


def _generate(args: argparse.Namespace) -> int:
    from streams import settings as settings_mod
    from streams.adapters.generated import stale, write
    from streams.adapters.specfiles import load_specs
    from streams.render.outputs import DEFAULT_DASHBOARDS_OUT, DEFAULT_OUT, DEFAULT_PROMETHEUSRULE_OUT, outputs

    specs = args.specs or settings_mod.load().specs
    generated = outputs(load_specs(specs), out=args.out, dashboards_out=args.dashboards_out,
                        prometheusrule_out=args.prometheusrule_out)
    if not args.check:
        for line in write(generated):
            print(line)
        return 0
    problems = stale(generated)
    for path, state in problems:
        print(f"{path}: {state}", file=sys.stderr)
    if problems:
        flags = "".join(f" {flag} {value}" for flag, value, default in (
            ("--specs", args.specs, None), ("--out", args.out, DEFAULT_OUT),
            ("--dashboards-out", args.dashboards_out, DEFAULT_DASHBOARDS_OUT),
            ("--prometheusrule-out", args.prometheusrule_out, DEFAULT_PROMETHEUSRULE_OUT)) if value != default)
        print(f"{len(problems)} generated file(s) out of date: run `slo-stream generate{flags}`", file=sys.stderr)
        return 1
    total = sum(len(o.files) for o in generated)
    print(f"OK: {total} generated files in {', '.join(str(o.directory) for o in generated)} are up to date "
          f"with {specs}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import faust

    from streams import settings as settings_mod
    from streams.adapters.pipeline import Pipeline
    from streams.adapters.specfiles import load_specs
    from streams.app import build_app

    # At debug level these log every produced message (kilobytes each, per table write).
    _log(args.loglevel, quiet=("faust.topics", "aiokafka", "kafka"), floor=logging.INFO)
    # "producer buffer full" is Faust's routine back-pressure on table writes (a few hundred per
    # batch against a 100-message buffer), logged as a warning on every batch: not news to anyone.
    logging.getLogger("faust.transport.producer").setLevel(logging.ERROR)
    from streams.adapters.http_api import Api, Tokens, default_gate_config

    s = settings_mod.load()
    if args.specs:
        s = replace(s, specs=args.specs)
    if args.web_port:
        s = replace(s, web_port=args.web_port)
    tokens = Tokens.from_env().check(s)
    slos = load_specs(s.specs)
    broker = None
    if not s.bootstrap:
        from streams.adapters.broker import EmbeddedBroker

        kafka_security.embedded_plaintext(s)
        broker = EmbeddedBroker()
        broker.start()
        s = replace(s, bootstrap=broker.bootstrap)
        print(f"embedded broker: KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}", flush=True)
    try:
        security = kafka_security.ready(s)
        code = _ensure_topics(s, security, holds_state=True)
        if code:
            return code
        app = build_app(s, security)
        pipeline = Pipeline(app, s, slos, security=security)
        Api(app, s, pipeline, slos, tokens, default_gate_config(s))
        logging.getLogger("slo_stream").info(
            "worker %d: %d SLOs from %s, bootstrap %s", os.getpid(), len(slos), s.specs, s.bootstrap)
        worker = faust.Worker(app, loglevel=args.loglevel, redirect_stdouts=False)
        worker.execute_from_commandline()
    finally:
        if broker is not None:
            broker.stop()
    return 0


def _log(level: str, *, quiet: Sequence[str], floor: int = logging.WARNING) -> None:
    """Log lines to stderr at ``level``; the ``quiet`` loggers at ``floor`` at least."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in quiet:
        logging.getLogger(name).setLevel(max(floor, logging.getLogger().level))


def _ensure_topics(s: Settings, security: KafkaSecurity | None, *, holds_state: bool) -> int:
    """Create every topic (with its configs) and report those that exist with configs their semantics
    cannot live with; 2 when a state changelog would delete state and this command holds state (the
    worker, ``topics``), unless SLO_STREAM_ALLOW_STATE_DELETION is set."""
    from streams.adapters.topics import ensure_topics

    problems = ensure_topics(s.bootstrap or "", s.topics, replication_factor=s.replication_factor, security=security)
    refuse = holds_state and not s.allow_state_deletion
    for p in problems:
        stop = p.fatal and refuse
        print(f"{'error' if stop else 'warning'}: {p.message}. Fix: {p.fix}"
              + (" (or set SLO_STREAM_ALLOW_STATE_DELETION=true to start anyway)" if stop else ""),
              file=sys.stderr)
    return 2 if refuse and any(p.fatal for p in problems) else 0


def _no_kafka() -> int:
    print("error: KAFKA_BOOTSTRAP_SERVERS is not set", file=sys.stderr)
    return 2


def _notifier(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from streams import settings as settings_mod
    from streams.adapters.notifier import Notifier, load_routing

    _log(args.loglevel, quiet=("aiokafka", "kafka"))
    s = settings_mod.load()
    if not s.bootstrap:
        return _no_kafka()
    routing = load_routing(s)
    security = kafka_security.ready(s)
    _ensure_topics(s, security, holds_state=False)
    notifier = Notifier(s, routing, security=security)
    if s.notifier_metrics_port:
        from streams.adapters.metrics import NotifierMetrics

        notifier.metrics = NotifierMetrics()
        notifier.metrics.serve(s.web_host, s.notifier_metrics_port)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, notifier.stopping.set)
        await notifier.run()

    asyncio.run(main())
    return 0


def _kube_bridge(args: argparse.Namespace) -> int:
    import signal

    from streams import settings as settings_mod
    from streams.core.errors import RecordError
    from streams.core.wire.fields import check_cluster

    _log(args.loglevel, quiet=("kafka", "urllib3"))
    s = settings_mod.load()
    if not s.bootstrap:
        return _no_kafka()
    try:
        cluster = check_cluster(args.cluster, "--cluster")
    except RecordError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    namespaces = args.namespaces or settings_mod.kube_namespaces(s)
    from streams.core.conventions import NAME_RE

    bad = [ns for ns in namespaces if not NAME_RE.match(ns)]
    if bad:
        print(f"error: --namespace {bad[0]!r} is not a namespace name", file=sys.stderr)
        return 2
    from streams.adapters import kube_bridge as bridge_mod  # the only path to the kubernetes package

    security = kafka_security.ready(s)
    api = bridge_mod.load_api_client(kubeconfig=args.kubeconfig, context=args.context)
    _ensure_topics(s, security, holds_state=False)
    bridge = bridge_mod.KubeBridge(s, cluster=cluster, api_client=api, namespaces=namespaces,
                                   events_api=args.events_api or s.kube_events_api)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: bridge.request_stop())
    try:
        bridge.run()
    finally:
        api.close()
    return 0


def _replay(args: argparse.Namespace) -> int:
    import time
    from datetime import datetime
    from pathlib import Path

    from streams import settings as settings_mod
    from streams.demo.scenario import parse_scenario, summary, timeline

    path = Path(args.scenario)
    try:
        text = path.read_text()
    except OSError as exc:
        print(f"error: {path}: {exc.strerror}", file=sys.stderr)
        return 2
    sc = parse_scenario(str(path), text)
    for line in summary(sc):
        print(line)
    if args.plan:
        return 0
    s = settings_mod.load()
    if not s.bootstrap:
        print("error: set KAFKA_BOOTSTRAP_SERVERS (`slo-stream broker` starts one and prints it)", file=sys.stderr)
        return 2
    if args.start is None:
        start = int(time.time()) // 60 * 60 - sc.duration_s
    elif args.start.replace(".", "", 1).isdigit():
        start = int(float(args.start))
    else:
        try:
            start = int(datetime.fromisoformat(args.start).timestamp())
        except ValueError:
            print(f"error: --start {args.start!r} is neither epoch seconds nor RFC 3339", file=sys.stderr)
            return 2
    from streams.adapters.specfiles import load_specs
    from streams.demo.player import Player

    security = kafka_security.ready(s)
    _ensure_topics(s, security, holds_state=False)
    services = None
    if not args.no_sync:
        try:
            services = {x.service for x in load_specs(s.specs)}
        except Exception:  # no specs here: wait for every service's rollouts
            services = None
    player = Player(s.bootstrap, s, sync_rollouts=not args.no_sync, services=services, security=security)
    t0 = time.monotonic()
    try:
        stats = player.play(timeline(sc, start), speed=args.speed)
    finally:
        player.close()
    print(f"produced {stats.messages['playback']:,} playback messages ({stats.records:,} records), "
          f"{stats.messages['rollouts']} rollout records and {stats.messages['events']} Kubernetes events "
          f"in {time.monotonic() - t0:.1f}s")
    if stats.rollouts_unseen:
        print(f"warning: no worker took these rollouts within 30s: {', '.join(stats.rollouts_unseen)}",
              file=sys.stderr)
    return 0
