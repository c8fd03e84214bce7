"""The Helm chart, rendered offline: lint, Kubernetes schemas, and what the design asks of it."""

from __future__ import annotations

import base64
import dataclasses
import importlib
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from .support import (
    CHART,
    DEV_POSTGRES,
    DEV_VALUES,
    PORTS,
    PRODUCTION_VALUES,
    STATELESS,
    by_kind,
    containers,
    env_of,
    missing_tool,
    parse_manifests,
    pod_spec,
    render,
    render_error,
    run_helm,
    workloads,
)

# The configurations CI renders: defaults (sqlite), the production file (postgres, autoscaled),
# the Tilt set-ups (both stores, the console on), a mix (ingress on its own SQLite spool, the rest on
# PostgreSQL), and production with the operator console.
DEV_PG_URLS = [
    f"store.postgres.urls.{name}=postgresql://stockwire:stockwire@stockwire-dev-postgres:5432/{name.replace('-', '_')}"
    for name in ("ingress", "inventory", "channel-notifier")
]
CONFIGS: dict[str, tuple[list[Path], list[str]]] = {
    "default": ([], []),
    "production": ([PRODUCTION_VALUES], []),
    "dev-sqlite": ([DEV_VALUES], []),
    "dev-postgres": ([DEV_VALUES], ["store.mode=postgres", *DEV_PG_URLS]),
    "mixed": ([PRODUCTION_VALUES], ["services.ingress.store=sqlite", "services.ingress.autoscaling.enabled=false"]),
    "console": ([PRODUCTION_VALUES], ["services.console.enabled=true"]),
}

# Contract metric names (design and issue): alerts and dashboards may use these and nothing else.
KNOWN_METRICS = {
    "ingress_webhooks_received_total", "ingress_spool_depth", "ingress_request_duration_seconds",
    "inventory_events_applied_total", "inventory_consumer_pending", "inventory_apply_duration_seconds",
    "outbox_relay_backlog_rows", "outbox_relay_oldest_unpublished_age_seconds", "outbox_relay_leader",
    "channel_notifier_deliveries_total", "channel_notifier_circuit_open",
    "channel_notifier_delivery_latency_seconds", "channel_notifier_pending_deliveries",
    "stockwire_consumer_messages_total",
    # Prometheus' own, per scraped target: present from the first scrape, and 0 when a target is down.
    "up",
}
HISTOGRAMS = {"ingress_request_duration_seconds", "inventory_apply_duration_seconds",
              "channel_notifier_delivery_latency_seconds"}

_rendered: dict[str, list[dict[str, Any]]] = {}


def rendered(config: str) -> list[dict[str, Any]]:
    """Each configuration is rendered once per session."""
    if config not in _rendered:
        files, sets = CONFIGS[config]
        _rendered[config] = render(files, sets)
    return _rendered[config]


# -- helm lint and the Kubernetes schemas ----------------------------------------------------------


@pytest.mark.parametrize("values", [None, PRODUCTION_VALUES, DEV_VALUES], ids=["default", "production", "dev"])
def test_helm_lint_strict(values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)]
    if values is not None:
        args += ["--values", str(values)]
    proc = run_helm(args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def _kubernetes_validate():
    try:
        import kubernetes_validate
        from kubernetes_validate import utils
    except ImportError:
        missing_tool("the kubernetes-validate package is not installed")
    return kubernetes_validate, utils


def _kubernetes_versions() -> list[str]:
    """The oldest version the chart supports (Chart.yaml kubeVersion) and the newest known schemas."""
    _, utils = _kubernetes_validate()
    floor = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    minimum = re.search(r"(\d+\.\d+)", floor).group(1)  # type: ignore[union-attr]
    def key(version: str) -> tuple[int, ...]:
        return tuple(int(p) for p in version.split("."))

    known = sorted(set(utils.all_versions()), key=key)
    supported = [v for v in known if key(v)[:2] >= key(minimum)]
    return sorted({supported[0], known[-1]})


# Custom resources are not in kubernetes-validate's schemas (they come with their operators'
# CRDs), so they are checked here structurally: apiVersion, kind, metadata and the spec fields
# this chart uses, with their types. Everything else is validated against the real schemas.
_STRING = {"type": "string", "minLength": 1}
_CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object",
        "required": ["selector", "endpoints"],
        "additionalProperties": False,
        "properties": {
            "selector": {"type": "object", "additionalProperties": False,
                         "properties": {"matchLabels": {"type": "object"}, "matchExpressions": {"type": "array"}}},
            "namespaceSelector": {"type": "object", "properties": {"matchNames": {"type": "array", "items": _STRING}}},
            "endpoints": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["port", "path"], "additionalProperties": False,
                "properties": {"port": _STRING, "path": _STRING, "interval": _STRING, "scrapeTimeout": _STRING}}},
            "targetLabels": {"type": "array", "items": _STRING},
        },
    },
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "type": "object",
        "required": ["groups"],
        "additionalProperties": False,
        "properties": {"groups": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "rules"], "additionalProperties": False,
            "properties": {"name": _STRING, "rules": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["alert", "expr", "labels", "annotations"], "additionalProperties": False,
                "properties": {"alert": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]*$"}, "expr": _STRING,
                               "for": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h|d)$"},
                               "labels": {"type": "object", "required": ["severity"]},
                               "annotations": {"type": "object", "required": ["summary", "description"]}}}}}}}},
    },
    ("keda.sh/v1alpha1", "ScaledObject"): {
        "type": "object",
        "required": ["scaleTargetRef", "triggers"],
        "additionalProperties": False,
        "properties": {
            "scaleTargetRef": {"type": "object", "required": ["name"], "additionalProperties": False,
                               "properties": {"apiVersion": _STRING, "kind": _STRING, "name": _STRING}},
            "minReplicaCount": {"type": "integer", "minimum": 0},
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "pollingInterval": {"type": "integer", "minimum": 1},
            "cooldownPeriod": {"type": "integer", "minimum": 0},
            "triggers": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["type", "metadata"],
                "properties": {"type": _STRING, "metadata": {
                    "type": "object", "additionalProperties": {"type": "string"}}}}},
        },
    },
}
_DNS_NAME = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_METADATA = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string", "pattern": _DNS_NAME, "maxLength": 253},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}


def check_custom_resource(manifest: Mapping[str, Any]) -> None:
    import jsonschema

    assert set(manifest) == {"apiVersion", "kind", "metadata", "spec"}, sorted(manifest)
    jsonschema.validate(manifest["metadata"], _METADATA)
    jsonschema.validate(manifest["spec"], _CRD_SCHEMAS[(manifest["apiVersion"], manifest["kind"])])


def validate_manifests(manifests: list[dict[str, Any]]) -> None:
    kubernetes_validate, _ = _kubernetes_validate()
    versions = _kubernetes_versions()
    for manifest in manifests:
        key = (manifest.get("apiVersion"), manifest.get("kind"))
        where = f"{key[1]}/{manifest.get('metadata', {}).get('name')}"
        if key in _CRD_SCHEMAS:
            check_custom_resource(manifest)
            continue
        for version in versions:
            try:
                # strict: unknown fields are errors too, so a misspelt key does not slip through.
                kubernetes_validate.validate(manifest, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{where} is not valid Kubernetes {version}: {path}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                pytest.fail(f"{where}: {exc.message}")


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_rendered_manifests_match_kubernetes_schemas(config: str) -> None:
    manifests = rendered(config)
    assert manifests
    validate_manifests(manifests)


def test_dev_postgres_manifest_matches_kubernetes_schemas() -> None:
    validate_manifests(parse_manifests(DEV_POSTGRES.read_text()))


def test_a_misspelt_field_fails_validation() -> None:
    """The validation above really catches mistakes: strict mode refuses an unknown field."""
    deployment = next(m for m in rendered("production") if m["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(pytest.fail.Exception):
        validate_manifests([broken])
    service_monitor = json.loads(json.dumps(by_kind(rendered("production"), "ServiceMonitor")))
    broken_sm = next(iter(service_monitor.values()))
    broken_sm["spec"]["endpoint"] = broken_sm["spec"].pop("endpoints")
    with pytest.raises(Exception):  # noqa: B017 - jsonschema's ValidationError
        check_custom_resource(broken_sm)


# -- what every service gets ------------------------------------------------------------------------


def _service_workloads(manifests: list[dict[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {name: w for name, w in workloads(manifests).items() if w["kind"] in ("Deployment", "StatefulSet")}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_every_container_is_probed_limited_and_unprivileged(config: str) -> None:
    manifests = rendered(config)
    dev = config.startswith("dev")
    for name, workload in _service_workloads(manifests).items():
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        for cname, container in containers(workload).items():
            where = f"{name}/{cname}"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", where
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", where
            assert container["startupProbe"]["httpGet"]["path"] == "/healthz", where
            port = container["ports"][0]
            assert port["containerPort"] == PORTS[cname], where
            assert container["livenessProbe"]["httpGet"]["port"] == port["name"], where
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], where
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            # Development turns it off so that Tilt can sync sources into /app.
            assert sc["readOnlyRootFilesystem"] is (not dev), where
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            assert {"/tmp", "/data", "/etc/stockwire"} <= set(mounts), where
            env = env_of(container)
            assert env["STOCKWIRE_CONFIG"]["value"] == "/etc/stockwire/stockwire.toml", where
            assert env["STOCKWIRE_DATA_DIR"]["value"] == "/data", where
            command = container["command"]
            module = "services." + cname.replace("-", "_")
            if dev:
                assert command[0] == "watchfiles" and f"python -m {module}" in command, where
            else:
                assert command == ["python", "-m", module], where


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_every_workload_has_a_service_and_a_disruption_budget(config: str) -> None:
    manifests = rendered(config)
    services = by_kind(manifests, "Service")
    budgets = by_kind(manifests, "PodDisruptionBudget")
    for name, workload in _service_workloads(manifests).items():
        selector = workload["spec"]["selector"]["matchLabels"]
        assert budgets[name]["spec"]["selector"]["matchLabels"] == selector
        assert services[name]["spec"]["selector"] == selector
        service_ports = {p["name"] for p in services[name]["spec"]["ports"]}
        container_ports = {p["name"] for c in containers(workload).values() for p in c["ports"]}
        assert service_ports == container_ports, name
        if workload["kind"] == "StatefulSet":
            assert workload["spec"]["serviceName"] in services
            assert services[workload["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"


def test_config_changes_roll_the_pods() -> None:
    before = {n: w["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
              for n, w in _service_workloads(rendered("default")).items()}
    after = {n: w["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
             for n, w in _service_workloads(render(sets=["topology.duplicateWindowSeconds=300"])).items()}
    assert before.keys() == after.keys()
    assert all(before[n] != after[n] for n in before)


# -- store modes ------------------------------------------------------------------------------------


def test_sqlite_store_uses_statefulsets_with_a_volume_per_pod_and_relay_sidecars() -> None:
    manifests = rendered("default")
    loads = _service_workloads(manifests)
    assert set(loads) == {"stockwire-ingress", "stockwire-inventory", "stockwire-channel-notifier"}
    for name, workload in loads.items():
        assert workload["kind"] == "StatefulSet", name
        claims = workload["spec"]["volumeClaimTemplates"]
        assert [c["metadata"]["name"] for c in claims] == ["data"], name
        assert "data" not in {v["name"] for v in pod_spec(workload)["volumes"]}, name
    for writer in ("ingress", "inventory"):
        pod = containers(loads[f"stockwire-{writer}"])
        assert set(pod) == {writer, "outbox-relay"}
        outboxes = json.loads(env_of(pod["outbox-relay"])["STOCKWIRE__OUTBOX_RELAY__OUTBOXES"]["value"])
        # Every pod has its own outbox file; named after the pod so each gets its own relay lease.
        assert outboxes == [{"name": "$(POD_NAME)", "database_url": f"sqlite:////data/{writer}.db"}]
        assert "POD_NAME" in env_of(pod["outbox-relay"])
    assert set(containers(loads["stockwire-channel-notifier"])) == {"channel-notifier"}
    assert "stockwire-outbox-relay" not in by_kind(manifests, "Service")
    assert not by_kind(manifests, "Secret"), "no inline secrets in the default values"


def test_postgres_store_uses_deployments_and_a_relay_deployment() -> None:
    manifests = rendered("production")
    loads = _service_workloads(manifests)
    assert set(loads) == {f"stockwire-{s}" for s in PORTS if s != "console"}  # the console: opt-in
    for name, workload in loads.items():
        assert workload["kind"] == "Deployment", name
        assert "volumeClaimTemplates" not in workload["spec"]
        assert len(containers(workload)) == 1, name
    for service in ("ingress", "inventory", "channel-notifier"):
        env = env_of(containers(loads[f"stockwire-{service}"])[service])
        var = f"STOCKWIRE__{service.replace('-', '_').upper()}__DATABASE_URL"
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "stockwire-postgres", "key": f"{service}-database-url"}
    relay = containers(loads["stockwire-outbox-relay"])["outbox-relay"]
    env_list = [e["name"] for e in relay["env"]]
    outboxes = json.loads(env_of(relay)["STOCKWIRE__OUTBOX_RELAY__OUTBOXES"]["value"])
    assert [o["name"] for o in outboxes] == ["ingress", "inventory"]
    for outbox in outboxes:
        # $(VAR) expansion only sees variables defined earlier in the list.
        var = re.fullmatch(r"\$\((\w+)\)", outbox["database_url"]).group(1)  # type: ignore[union-attr]
        assert env_list.index(var) < env_list.index("STOCKWIRE__OUTBOX_RELAY__OUTBOXES")
        assert env_of(relay)[var]["valueFrom"]["secretKeyRef"]["name"] == "stockwire-postgres"
    assert "postgresql://" not in yaml.safe_dump_all(manifests), "database URLs stay in Secrets"


def test_mixed_stores_keep_the_ingress_spool_local() -> None:
    loads = _service_workloads(rendered("mixed"))
    assert loads["stockwire-ingress"]["kind"] == "StatefulSet"
    assert set(containers(loads["stockwire-ingress"])) == {"ingress", "outbox-relay"}
    relay = containers(loads["stockwire-outbox-relay"])["outbox-relay"]
    outboxes = json.loads(env_of(relay)["STOCKWIRE__OUTBOX_RELAY__OUTBOXES"]["value"])
    assert [o["name"] for o in outboxes] == ["inventory"]


def test_production_values_scale_out_every_service() -> None:
    manifests = rendered("production")
    values = yaml.safe_load(PRODUCTION_VALUES.read_text())
    assert values["store"]["mode"] == "postgres"
    hpas = by_kind(manifests, "HorizontalPodAutoscaler")
    scaled = by_kind(manifests, "ScaledObject")
    assert set(hpas) == {"stockwire-ingress"}
    assert set(scaled) == {"stockwire-inventory", "stockwire-channel-notifier"}
    for name, workload in _service_workloads(manifests).items():
        if name in hpas:
            assert hpas[name]["spec"]["minReplicas"] == 3
            assert hpas[name]["spec"]["scaleTargetRef"]["name"] == name
            assert "replicas" not in workload["spec"], "the autoscaler owns the replica count"
        elif name in scaled:
            assert scaled[name]["spec"]["minReplicaCount"] == 3
            assert "replicas" not in workload["spec"]
        else:
            assert workload["spec"]["replicas"] == 3, name
    streams = {"stockwire-inventory": ("COMMERCE", "inventory"),
               "stockwire-channel-notifier": ("INVENTORY", "channel-notifier")}
    for name, (stream, consumer) in streams.items():
        spec = scaled[name]["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "nats-jetstream"
        meta = trigger["metadata"]
        assert (meta["stream"], meta["consumer"]) == (stream, consumer)
        assert meta["natsServerMonitoringEndpoint"].endswith(":8222")
        assert int(meta["lagThreshold"]) > 0
    assert by_kind(manifests, "ServiceMonitor") and by_kind(manifests, "PrometheusRule")
    (job,) = [w for w in workloads(manifests).values() if w["kind"] == "Job"]
    assert env_of(containers(job)["topology"])["STOCKWIRE__TOPOLOGY__REPLICAS"]["value"] == "3"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["services.inventory.replicas=2"], "one replica"),
        (["services.channel-notifier.replicas=3"], "one replica"),
        (["services.inventory.keda.enabled=true"], "postgres store"),
        (["store.mode=postgres"], "store.postgres.existingSecret"),
        (["store.mode=postgres", "store.postgres.existingSecret=pg", "services.inventory.keda.enabled=true",
          "services.inventory.autoscaling.enabled=true"], "not both"),
        (["sources.shop.scheme=commerce-engine"], "existingSecret"),
        (["sources.Shop.existingSecret=x"], "Shop"),
        (["store.mode=mysql"], "store.mode"),
        (["services.ingress.replicaz=2"], "replicaz"),
        # A pod the autoscaler removes would strand the webhooks in its SQLite spool.
        (["services.ingress.autoscaling.enabled=true"], "strands"),
        ([f"--values={PRODUCTION_VALUES}", "services.ingress.store=sqlite"], "strands"),
        # JWT (.creds) authentication: KEDA must read the lag in the streams' account, not "$G".
        ([f"--values={PRODUCTION_VALUES}", "nats.account=$G"], "nats.account"),
        ([f"--values={PRODUCTION_VALUES}", "nats.account=stockwire"], "public NKey"),
        # Shorter than the preStop sleep plus the graceful shutdown: in-flight webhooks cut off.
        (["terminationGracePeriodSeconds=12"], "terminationGracePeriodSeconds"),
        (["preStopSleepSeconds=20"], "at least 35"),
        # The console logs in with the admin token and calls the APIs with it.
        (["services.console.enabled=true"], "admin.existingSecret"),
    ],
)
def test_invalid_values_are_refused(sets: list[str], message: str) -> None:
    files = [s.split("=", 1)[1] for s in sets if s.startswith("--values=")]
    assert message in render_error(files, [s for s in sets if not s.startswith("--values=")])


def test_a_source_may_name_every_signature_scheme_ingress_takes() -> None:
    from libs.schemes import SCHEME_NAMES

    schema = json.loads((CHART / "values.schema.json").read_text())
    source = schema["properties"]["sources"]["additionalProperties"]["properties"]
    assert source["scheme"]["enum"] == list(SCHEME_NAMES)


# -- topology hook ----------------------------------------------------------------------------------


def test_topology_job_is_a_post_install_pre_upgrade_hook() -> None:
    manifests = rendered("default")
    job = by_kind(manifests, "Job")["stockwire-topology"]
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"post-install", "pre-upgrade"}
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    container = containers(job)["topology"]
    assert container["command"] == ["stockwire", "topology", "apply"]
    env = env_of(container)
    assert env["STOCKWIRE__TOPOLOGY__REPLICAS"]["value"] == "3"
    assert env["STOCKWIRE_NATS_URL"]["value"] == "nats://nats:4222"
    # Before an upgrade the ConfigMap is still the old one: the Job must not depend on it.
    assert all(v.get("configMap") is None for v in pod_spec(job)["volumes"])
    one = by_kind(render(sets=["topology.replicas=1", "topology.settings.max_deliver=5"]), "Job")["stockwire-topology"]
    env = env_of(containers(one)["topology"])
    assert env["STOCKWIRE__TOPOLOGY__REPLICAS"]["value"] == "1"
    assert env["STOCKWIRE__TOPOLOGY__MAX_DELIVER"]["value"] == "5"


# -- configuration --------------------------------------------------------------------------------


def _config_toml(manifests: list[dict[str, Any]]) -> str:
    return by_kind(manifests, "ConfigMap")["stockwire-config"]["data"]["stockwire.toml"]


def _container_environment(container: Mapping[str, Any]) -> dict[str, str]:
    """The environment Kubernetes would give the container: Secret values stand in as markers,
    $(VAR) references are expanded as the kubelet does."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"])
        elif "secretKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["secretKeyRef"]
            value = f"secret:{ref['name']}/{ref['key']}"
            if ref["key"].endswith("database-url"):
                value = f"postgresql://user@db:5432/{ref['key']}"
            elif item["name"].startswith("STOCKWIRE__SOURCES__"):
                # A source's secrets are checked at start: stand in with one of the form its scheme takes.
                value = "whsec_" + base64.b64encode(value.encode()).decode()
            env[item["name"]] = value
        else:
            env[item["name"]] = "stockwire-pod-0"
    return env


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_every_service_reads_its_configuration(config: str, tmp_path: Path) -> None:
    """The rendered stockwire.toml, with each container's environment, loads through the project's
    own configuration code, as strictly as the processes read it: the chart and the services agree
    on every name (an unknown key or section would stop the pod at start)."""
    from libs.config import check_known, load_raw, load_section, load_settings
    from stockwire.stack import section_classes

    manifests = rendered(config)
    text = _config_toml(manifests)
    tomllib.loads(text)
    path = tmp_path / "stockwire.toml"
    path.write_text(text)
    for name, workload in _service_workloads(manifests).items():
        for cname, container in containers(workload).items():
            env = _container_environment(container)
            raw = load_raw(path, env)
            check_known(raw, section_classes())
            settings = load_settings(raw)
            section = raw[cname.replace("-", "_")]
            assert section["host"] == "0.0.0.0", f"{name}/{cname} must listen on every interface"
            assert section["port"] == PORTS[cname]
            if cname == "ingress":
                # The default values configure no source; every other configuration does.
                assert bool(settings.sources) is (config != "default")
                for source in settings.sources.values():
                    assert source.secrets, "every source's secrets come from a Secret"
            if cname == "outbox-relay":
                outboxes = section["outboxes"]
                assert outboxes and all(set(o) == {"name", "database_url"} for o in outboxes)
                assert all("$(" not in o["name"] + o["database_url"] for o in outboxes)
            # The service's own settings class, where it exists, accepts the section as rendered.
            settings_class = _settings_class(cname)
            if settings_class is not None:
                parsed = load_section(raw, cname, settings_class)
                if cname == "outbox-relay":
                    from services.outbox_relay.settings import resolve_outboxes

                    for spec in resolve_outboxes(parsed, settings.data_dir):
                        assert spec.database_url.startswith(("sqlite+aiosqlite:////data/", "postgresql+asyncpg://"))
            if cname not in STATELESS and workload["kind"] == "Deployment":
                assert section["database_url"].startswith("postgresql://"), f"{name}: PostgreSQL URL from the Secret"


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_outbound_urls_to_loopback_and_private_hosts_are_refused(config: str, tmp_path: Path) -> None:
    """The service's own allow_hosts default (localhost) suits a laptop; in a pod, loopback reaches
    its sidecars: every configuration the chart renders refuses it unless an operator lists it."""
    from libs.config import load_raw, load_section
    from libs.urlpolicy import UrlPolicy, UrlRefused
    from services.channel_notifier.settings import ChannelNotifierSettings

    path = tmp_path / "stockwire.toml"
    path.write_text(_config_toml(rendered(config)))
    settings = load_section(load_raw(path, {}), "channel-notifier", ChannelNotifierSettings)
    policy = UrlPolicy.from_hosts(settings.allow_hosts)
    for url in ["https://127.0.0.1/hook", "https://[::1]/hook", "https://10.0.0.1/hook", "http://localhost/hook"]:
        with pytest.raises(UrlRefused):
            policy.check_url(url)
    with pytest.raises(UrlRefused, match="loopback"):
        policy.check_addresses("localhost", ["127.0.0.1"])


def _settings_class(service: str) -> type | None:
    """The dataclass a service reads its section into (services/<pkg>/settings.py), if it exists yet."""
    try:
        module = importlib.import_module(f"services.{service.replace('-', '_')}.settings")
    except ImportError:
        return None
    classes = [c for c in vars(module).values()
               if dataclasses.is_dataclass(c) and isinstance(c, type) and c.__module__ == module.__name__
               and c.__name__.endswith("Settings") and "port" in {f.name for f in dataclasses.fields(c)}]
    assert len(classes) == 1, f"{module.__name__}: which class is the section? {classes}"
    return classes[0]


def test_secrets_never_reach_the_configmap() -> None:
    manifests = rendered("dev-postgres")
    text = _config_toml(manifests)
    assert "dev-shop-secret" not in text and "dev-admin-token" not in text and "postgresql://" not in text
    (secret,) = by_kind(manifests, "Secret").values()
    assert secret["stringData"]["source-shop-secrets"] == "dev-shop-secret"
    assert secret["stringData"]["admin-token"] == "dev-admin-token"
    ingress = containers(_service_workloads(manifests)["stockwire-ingress"])["ingress"]
    ref = env_of(ingress)["STOCKWIRE__SOURCES__SHOP__SECRETS"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": secret["metadata"]["name"], "key": "source-shop-secrets"}


def test_nats_credentials_and_tls_come_from_secrets(tmp_path: Path) -> None:
    from libs.config import load_raw, load_settings

    manifests = render(sets=[
        "nats.url=nats://a:4222\\,nats://b:4222",
        "nats.existingSecret=nats-auth", "nats.credsKey=user.creds", "nats.userKey=user", "nats.passwordKey=pw",
        "nats.tls.existingSecret=nats-tls", "nats.tls.certKey=tls.crt", "nats.tls.keyKey=tls.key",
    ])
    path = tmp_path / "stockwire.toml"
    path.write_text(_config_toml(manifests))
    ingress = containers(_service_workloads(manifests)["stockwire-ingress"])["ingress"]
    settings = load_settings(load_raw(path, _container_environment(ingress)))
    assert settings.nats.servers == ["nats://a:4222", "nats://b:4222"]
    assert settings.nats.creds_file == "/etc/stockwire/nats-auth/creds"
    assert (settings.nats.tls_ca, settings.nats.tls_cert, settings.nats.tls_key) == (
        "/etc/stockwire/nats-tls/ca.crt", "/etc/stockwire/nats-tls/tls.crt", "/etc/stockwire/nats-tls/tls.key")
    assert settings.nats.user == "secret:nats-auth/user" and settings.nats.password == "secret:nats-auth/pw"
    mounts = {m["name"]: m["mountPath"] for m in ingress["volumeMounts"]}
    assert mounts["nats-auth"] == "/etc/stockwire/nats-auth" and mounts["nats-tls"] == "/etc/stockwire/nats-tls"
    job = containers(by_kind(manifests, "Job")["stockwire-topology"])["topology"]
    job_env = _container_environment(job)
    assert job_env["STOCKWIRE__NATS__CREDS_FILE"] == "/etc/stockwire/nats-auth/creds"
    assert job_env["STOCKWIRE_NATS_URL"] == "nats://a:4222,nats://b:4222"


# -- alerts and dashboard ---------------------------------------------------------------------------

_PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "by", "without", "rate", "irate", "increase", "delta",
    "histogram_quantile", "vector", "or", "and", "unless", "on", "ignoring", "group_left", "group_right",
    "abs", "clamp_min", "clamp_max", "time", "label_values", "humanize", "bool", "offset", "topk", "bottomk",
    "absent", "label_replace",
}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (strings, label matchers, grouping and ranges removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    names = set()
    for token in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if token in _PROMQL_WORDS or token.startswith("$"):
            continue
        base = re.sub(r"_(bucket|sum|count)$", "", token)
        names.add(base if base in HISTOGRAMS else token)
    return names


def test_alerts_cover_the_pipeline_with_known_metrics() -> None:
    (rule,) = by_kind(rendered("production"), "PrometheusRule").values()
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    required = {
        "StockwireConsumerLag": "inventory_consumer_pending",
        "StockwireOutboxBacklogOld": "outbox_relay_oldest_unpublished_age_seconds",
        "StockwireDeadLetters": "inventory_events_applied_total",
        "StockwireChannelCircuitOpen": "channel_notifier_circuit_open",
        "StockwireIngressSpooling": "ingress_webhooks_received_total",
        "StockwireNotifierDeadLetters": "stockwire_consumer_messages_total",
        "StockwireChannelDeliveriesAbandoned": "channel_notifier_deliveries_total",
        "StockwireNotifierBacklog": "channel_notifier_pending_deliveries",
        "StockwireNotifierLag": "channel_notifier_delivery_latency_seconds",
        "StockwireServiceDown": "up",
        "StockwireTargetDown": "up",
    }
    for alert, metric in required.items():
        assert metric in metric_names(alerts[alert]["expr"]), alert
    # Alerts on what a relay exports also fire when no relay runs (its series are gone then).
    for name in ("StockwireOutboxBacklogOld", "StockwireOutboxNoRelayLeader"):
        assert "absent(" in alerts[name]["expr"], name
    assert 'outcome="dead_lettered"' in alerts["StockwireDeadLetters"]["expr"]
    assert 'outcome="spooled"' in alerts["StockwireIngressSpooling"]["expr"]
    for name, alert in alerts.items():
        unknown = metric_names(alert["expr"]) - KNOWN_METRICS
        assert not unknown, f"{name} uses unknown metrics {unknown}"
        assert 'namespace="stockwire"' in alert["expr"], f"{name} is scoped to the release namespace"
        assert alert["labels"]["severity"] in {"warning", "critical"}


def test_metric_name_extraction() -> None:
    expr = 'histogram_quantile(0.99, sum by (le) (rate(ingress_request_duration_seconds_bucket{a="b{"}[5m])))'
    assert metric_names(expr) == {"ingress_request_duration_seconds"}
    assert metric_names("max by (outbox) (outbox_relay_leader) < 1 or vector(0)") == {"outbox_relay_leader"}


def test_dashboard_is_valid_grafana_json_over_known_metrics() -> None:
    manifests = rendered("default")
    config_map = by_kind(manifests, "ConfigMap")["stockwire-dashboard"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["stockwire.json"])
    assert dashboard["uid"] and dashboard["title"] == "Stockwire"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace"} <= set(variables)
    # On a fresh install, before any webhook, only series that exist from the first scrape can list
    # the namespaces: `up`, not a counter that appears with its first increment.
    query = re.fullmatch(r"label_values\((.+), *namespace\)", variables["namespace"]["query"]["query"])
    assert query and metric_names(query.group(1)) == {"up"}, variables["namespace"]["query"]
    used: set[str] = set()
    ids = []
    for panel in dashboard["panels"]:
        ids.append(panel["id"])
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        for target in panel.get("targets", []):
            assert 'namespace="$namespace"' in target["expr"], panel["title"]
            if panel["type"] == "stat":
                # A number, never "No data", while its series do not exist yet.
                assert target["expr"].endswith("or vector(0)"), panel["title"]
            names = metric_names(target["expr"])
            assert names <= KNOWN_METRICS, f"{panel['title']}: {names - KNOWN_METRICS}"
            used |= names
    assert len(ids) == len(set(ids))
    assert used == KNOWN_METRICS, f"metrics without a panel: {KNOWN_METRICS - used}"
    assert not by_kind(render(sets=["grafanaDashboard.enabled=false"]), "ConfigMap").get("stockwire-dashboard")


# -- rolling updates, pod placement, network policy, operator APIs ---------------------------------


def _uvicorn_graceful_shutdown_seconds() -> int:
    """timeout_graceful_shutdown, as libs/server.py passes it to uvicorn."""
    from .support import ROOT

    match = re.search(r"timeout_graceful_shutdown=(\d+)", (ROOT / "libs" / "server.py").read_text())
    assert match, "libs/server.py no longer sets timeout_graceful_shutdown: update the chart's shutdownSeconds"
    return int(match.group(1))


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_http_services_drain_before_stopping_within_the_grace_period(config: str) -> None:
    """A terminating pod keeps serving through the preStop sleep (its endpoint leaves every node's
    proxy meanwhile), then uvicorn finishes what is in flight: the grace period covers both."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for name, workload in _service_workloads(rendered(config)).items():
        spec = pod_spec(workload)
        for cname, container in containers(workload).items():
            if cname == "outbox-relay":
                assert "lifecycle" not in container, "the relay takes no Service traffic: it stops at once"
                continue
            command = container["lifecycle"]["preStop"]["exec"]["command"]
            assert command == ["sleep", str(values["preStopSleepSeconds"])], name
            sleep = int(command[1])
            assert sleep > 0
            assert spec["terminationGracePeriodSeconds"] >= sleep + _uvicorn_graceful_shutdown_seconds(), name
    none = _service_workloads(render(sets=["preStopSleepSeconds=0", "terminationGracePeriodSeconds=15"]))
    assert all("lifecycle" not in c for w in none.values() for c in containers(w).values())


def test_pod_labels_priority_class_and_extra_volumes() -> None:
    volume = {"name": "ca", "configMap": {"name": "corporate-ca"}}
    relay_volume = {"name": "relay-extra", "emptyDir": {"medium": "Memory"}}
    manifests = render(sets=[
        "podLabels.team=commerce", "services.ingress.podLabels.tier=edge",
        # The chart's own labels win: the selectors depend on them.
        "services.ingress.podLabels.app\\.kubernetes\\.io/component=other",
        "priorityClassName=stockwire-default", "services.channel-notifier.priorityClassName=stockwire-low",
        "extraVolumes[0].name=ca", "extraVolumes[0].configMap.name=corporate-ca",
        "extraVolumeMounts[0].name=ca", "extraVolumeMounts[0].mountPath=/etc/ssl/corporate",
        "services.outbox-relay.extraVolumes[0].name=relay-extra", "services.outbox-relay.extraVolumes[0].emptyDir.medium=Memory",
        "services.outbox-relay.extraVolumeMounts[0].name=relay-extra",
        "services.outbox-relay.extraVolumeMounts[0].mountPath=/relay",
    ])
    validate_manifests(manifests)
    loads = _service_workloads(manifests)
    for name, workload in loads.items():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert labels["team"] == "commerce", name
        assert labels["app.kubernetes.io/component"] == name.removeprefix("stockwire-"), name
        assert (labels.get("tier") == "edge") is (name == "stockwire-ingress"), name
        priority = "stockwire-low" if name == "stockwire-channel-notifier" else "stockwire-default"
        assert pod_spec(workload)["priorityClassName"] == priority, name
        volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
        assert volumes["ca"] == volume, name
        for cname, container in containers(workload).items():
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            assert mounts["ca"] == "/etc/ssl/corporate", (name, cname)
            assert (mounts.get("relay-extra") == "/relay") is (cname == "outbox-relay"), (name, cname)
        # The relay's volumes go where the relay runs: here, as the sidecar of ingress and inventory.
        assert (volumes.get("relay-extra") == relay_volume) is ("outbox-relay" in containers(workload)), name
    # The topology Job's pod too (global settings only).
    job = by_kind(manifests, "Job")["stockwire-topology"]
    assert job["spec"]["template"]["metadata"]["labels"]["team"] == "commerce"
    assert pod_spec(job)["priorityClassName"] == "stockwire-default"
    assert {v["name"]: v for v in pod_spec(job)["volumes"]}["ca"] == volume
    assert {m["name"] for m in containers(job)["topology"]["volumeMounts"]} >= {"ca"}
    default = _service_workloads(rendered("default"))
    assert all("priorityClassName" not in pod_spec(w) for w in default.values())


def _policy_rules(policy: Mapping[str, Any]) -> dict[str, list[Any] | None]:
    """Port name → the peers admitted (None: everyone)."""
    rules: dict[str, list[Any] | None] = {}
    for rule in policy["spec"]["ingress"]:
        for port in rule["ports"]:
            rules[port["port"]] = rule.get("from")
    return rules


def test_production_network_policies_admit_only_the_named_peers() -> None:
    manifests = rendered("production")
    values = yaml.safe_load(PRODUCTION_VALUES.read_text())["networkPolicy"]
    policies = by_kind(manifests, "NetworkPolicy")
    loads = _service_workloads(manifests)
    assert set(policies) == set(loads)
    for name, workload in loads.items():
        spec = policies[name]["spec"]
        assert spec["policyTypes"] == ["Ingress"]
        assert spec["podSelector"]["matchLabels"] == workload["spec"]["selector"]["matchLabels"]
        rules = _policy_rules(policies[name])
        ports = {p["name"] for c in containers(workload).values() for p in c["ports"]}
        assert set(rules) == ports, f"{name}: every port Prometheus scrapes has a rule"
        component = name.removeprefix("stockwire-")
        callers = {"ingress": values["webhookFrom"], "inventory": values["apiFrom"],
                   "channel-notifier": values["apiFrom"], "outbox-relay": []}[component]
        for port, peers in rules.items():
            assert peers is not None, f"{name}/{port} admits everyone"
            expected = values["metricsFrom"] + (callers if port == "http" else [])
            assert sorted(map(json.dumps, peers)) == sorted(map(json.dumps, expected)), (name, port)


def test_network_policies_are_optional_and_closed_by_default_when_enabled() -> None:
    assert not by_kind(rendered("default"), "NetworkPolicy")
    manifests = render(sets=["networkPolicy.enabled=true"])
    validate_manifests(manifests)
    policies = by_kind(manifests, "NetworkPolicy")
    # No peers named: webhooks from anyone, nothing else but the kubelet.
    assert _policy_rules(policies["stockwire-ingress"]) == {"http": None}
    assert policies["stockwire-inventory"]["spec"]["ingress"] == []
    assert policies["stockwire-channel-notifier"]["spec"]["ingress"] == []
    # Relay sidecars (SQLite) get their metrics port opened to metricsFrom.
    scraped = render(sets=["networkPolicy.enabled=true",
                           "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring"])
    inventory = _policy_rules(by_kind(scraped, "NetworkPolicy")["stockwire-inventory"])
    assert set(inventory) == {"http", "relay-http"} and all(inventory.values())


def test_operator_objects_are_rendered_only_where_their_apis_exist() -> None:
    """Without KEDA's and the Prometheus operator's CRDs the chart leaves their objects out (applying
    them would fail the install), and a service KEDA would have scaled keeps its replica count."""
    files, sets = CONFIGS["production"]
    bare = render(files, sets, api_versions=())
    for kind in ("ScaledObject", "ServiceMonitor", "PrometheusRule"):
        assert not by_kind(bare, kind), kind
    loads = _service_workloads(bare)
    for name in ("stockwire-inventory", "stockwire-channel-notifier"):
        assert loads[name]["spec"]["replicas"] == 3, name
    validate_manifests(bare)
    keda_only = render(files, sets, api_versions=["keda.sh/v1alpha1/ScaledObject"])
    assert set(by_kind(keda_only, "ScaledObject")) == {"stockwire-inventory", "stockwire-channel-notifier"}
    assert not by_kind(keda_only, "ServiceMonitor") and not by_kind(keda_only, "PrometheusRule")
    assert "replicas" not in _service_workloads(keda_only)["stockwire-inventory"]["spec"]


def test_keda_reads_the_lag_in_the_streams_account() -> None:
    production = yaml.safe_load(PRODUCTION_VALUES.read_text())
    assert production["nats"]["credsKey"], "production uses JWT authentication"
    for scaled in by_kind(rendered("production"), "ScaledObject").values():
        (trigger,) = scaled["spec"]["triggers"]
        assert trigger["metadata"]["account"] == production["nats"]["account"]
        assert re.fullmatch(r"A[A-Z2-7]{55}", trigger["metadata"]["account"])
    # Without KEDA the account is not read: "$G" with a .creds file is then no error.
    render([PRODUCTION_VALUES], ["nats.account=$G", "services.inventory.keda.enabled=false",
                                 "services.channel-notifier.keda.enabled=false"])
    # Without JWT authentication, "$G" (no accounts) or an account's configured name.
    plain = render(sets=["store.mode=postgres", "store.postgres.existingSecret=pg", "services.inventory.keda.enabled=true",
                         "nats.account=stockwire"])
    (trigger,) = by_kind(plain, "ScaledObject")["stockwire-inventory"]["spec"]["triggers"]
    assert trigger["metadata"]["account"] == "stockwire"


@pytest.mark.parametrize("config", ["console", "dev-sqlite", "dev-postgres"])
def test_the_console_is_a_deployment_that_reads_its_peers_through_their_services(config: str) -> None:
    """No store of its own (a Deployment, no database URL), the admin token from the Secret, and every
    peer URL one of this release's Services on the port that service listens on."""
    manifests = rendered(config)
    loads = _service_workloads(manifests)
    console = loads["stockwire-console"]
    assert console["kind"] == "Deployment" and "volumeClaimTemplates" not in console["spec"]
    (container,) = containers(console).values()
    env = env_of(container)
    assert not [name for name in env if name.endswith("DATABASE_URL")]
    token = env["STOCKWIRE_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
    # Production names the operator's Secret; development has the chart write one.
    expected = ("stockwire-admin", "token") if config == "console" else ("stockwire-dev-secrets", "admin-token")
    assert (token["name"], token["key"]) == expected
    section = tomllib.loads(_config_toml(manifests))["console"]
    services = by_kind(manifests, "Service")
    for peer in ("ingress", "inventory", "channel-notifier", "outbox-relay"):
        match = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", section[f"{peer.replace('-', '_')}_url"])
        assert match, section
        host, port = match.group(1), int(match.group(2))
        assert port == PORTS[peer]
        # The relay answers on its own Service, or on a writer's where it is a sidecar (sqlite).
        assert host == "stockwire-" + peer or (peer == "outbox-relay" and host == "stockwire-ingress"), host
        assert port in {p["port"] for p in services[host]["spec"]["ports"]}, (peer, host)
        assert host in loads, f"{peer}: {host} is a Service with pods behind it"


def test_the_console_may_call_every_service_under_network_policies() -> None:
    manifests = rendered("console")
    policies = by_kind(manifests, "NetworkPolicy")
    selector = _service_workloads(manifests)["stockwire-console"]["spec"]["selector"]["matchLabels"]
    console_peer = json.dumps({"podSelector": {"matchLabels": selector}}, sort_keys=True)
    values = yaml.safe_load(PRODUCTION_VALUES.read_text())["networkPolicy"]
    for name, policy in policies.items():
        rules = _policy_rules(policy)
        for port, peers in rules.items():
            admitted = {json.dumps(p, sort_keys=True) for p in peers or []}
            if name == "stockwire-console":
                # Operators reach it from where the APIs may be called from, and Prometheus scrapes it.
                expected = values["metricsFrom"] + values["apiFrom"]
                assert admitted == {json.dumps(p, sort_keys=True) for p in expected}
            else:
                assert console_peer in admitted, (name, port)
    # Without the console nothing admits it (the production test above checks the exact peers).
    assert all(
        "console" not in json.dumps(policy)
        for name, policy in by_kind(rendered("production"), "NetworkPolicy").items()
    )
