"""The generated dashboards as kustomize-generated ConfigMaps, as data (``dashboards/_gen/kustomization.yaml``).

One ConfigMap per dashboard (a ConfigMap holds at most 1 MiB, and ``kubectl apply`` keeps a copy of
each object in a 256 KiB annotation: the dashboards together exceed it), labelled for the Grafana
sidecar (:data:`SIDECAR_LABEL`). Names without kustomize's hash suffix: nothing refers to them, and a
renamed ConfigMap would leave its predecessor behind, a second copy of the same dashboard for the
sidecar. deploy/kubernetes/base includes this directory (kustomize reads files only under a
kustomization's own directory, so the kustomization sits next to the dashboards).

Pure: :mod:`streams.render.writer` serialises what :func:`dashboards_kustomization` returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePath
from typing import Any

KUSTOMIZATION_FILE = "kustomization.yaml"
CONFIGMAP_PREFIX = "slo-stream-dashboard-"
# The label kiwigrid's k8s-sidecar (Grafana's Helm chart: sidecar.dashboards.label / labelValue) watches.
SIDECAR_LABEL = {"grafana_dashboard": "1"}


def dashboards_kustomization(files: Iterable[str]) -> dict[str, Any]:
    """A Kustomization generating one ConfigMap per dashboard file (``<stem>.json``), sorted by name."""
    names = sorted(files)
    for name in names:
        if PurePath(name).name != name or not name.endswith(".json"):
            raise ValueError(f"a dashboard file is a plain *.json name: {name!r}")
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "generatorOptions": {"disableNameSuffixHash": True, "labels": dict(SIDECAR_LABEL)},
        "configMapGenerator": [
            {"name": CONFIGMAP_PREFIX + PurePath(name).stem, "files": [name]} for name in names
        ],
    }
