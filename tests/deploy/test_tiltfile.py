"""The Tiltfile, executed against stand-ins for Tilt (see tilt_standins.py): it loads, declares the
resources tilt.json asks for, and reads exactly the keys tilt.json has."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from .support import PORTS, ROOT, STATELESS, workloads
from .tilt_standins import TILT_JSON, TILTFILE, StandIns, TiltRun

NATS_REPO = "https://nats-io.github.io/k8s/helm/charts/"


def tilt_json() -> dict[str, Any]:
    return json.loads(TILT_JSON.read_text())


def run_tiltfile(settings: dict[str, Any] | None = None, source: str | None = None) -> TiltRun:
    return StandIns(settings).execute(source)


def tiltfile_error(settings: dict[str, Any] | None = None, source: str | None = None) -> str:
    with pytest.raises(Exception) as info:
        StandIns(settings, render=False).execute(source)
    return str(info.value)


def expected_resources(settings: dict[str, Any]) -> set[str]:
    services = set(settings["services"])
    if settings["store"] == "sqlite":
        services.discard("outbox-relay")  # a sidecar of ingress and inventory, not a resource
    extra = {"postgres"} if settings["store"] == "postgres" else set()
    return services | {"nats-helm-repo", "nats", "topology"} | extra


def check_run_matches(settings: dict[str, Any], run: TiltRun) -> None:
    """What the Tiltfile declared (resources, replicas, ports, store) is what `settings` asks for."""
    resources = run.resources()
    assert set(resources) == expected_resources(settings)

    rendered = workloads(run.manifests)
    # Every workload the Tiltfile configures exists in what the chart (or dev manifest) renders.
    for args in run.called("k8s_resource"):
        assert args["workload"] in rendered, f"k8s_resource names {args['workload']}, which nothing renders"

    # The services and their replicas.
    for service in PORTS:
        name = f"stockwire-{service}"
        has_workload = service in settings["services"] and not (
            service == "outbox-relay" and settings["store"] == "sqlite")
        assert (name in rendered) is has_workload, name
        if has_workload:
            assert rendered[name]["spec"]["replicas"] == settings["replicas"].get(service, 1), name
            kind = "StatefulSet" if settings["store"] == "sqlite" and service not in STATELESS else "Deployment"
            assert rendered[name]["kind"] == kind

    # Port forwards: every running service on its own port, 8080-8084, each once.
    forwarded: dict[int, str] = {}
    for args in run.called("k8s_resource"):
        for forward in args["port_forwards"] or []:
            assert forward["local_port"] == forward["container_port"]
            assert forward["local_port"] not in forwarded
            forwarded[forward["local_port"]] = forward["name"]
    expected = {PORTS[s]: s for s in settings["services"]}
    if settings["store"] == "sqlite" and not ({"ingress", "inventory"} & set(settings["services"])):
        expected.pop(PORTS["outbox-relay"], None)  # no pod to carry the relay sidecar
    assert forwarded == expected

    # Order: NATS (and PostgreSQL), then the topology Job, then the services.
    assert resources["nats"]["resource_deps"] == ["nats-helm-repo"]
    assert resources["topology"]["resource_deps"] == ["nats"]
    for service in settings["services"]:
        if service in resources:
            assert "topology" in resources[service]["resource_deps"]
            assert ("postgres" in resources[service]["resource_deps"]) is (settings["store"] == "postgres")

    (chart,) = run.called("helm")
    assert f"store.mode={settings['store']}" in chart["set"]


def test_tiltfile_runs_with_tilt_json_and_declares_what_it_asks_for() -> None:
    settings = tilt_json()
    check_run_matches(settings, run_tiltfile())


@pytest.mark.parametrize(
    "settings",
    [
        {"services": ["ingress", "inventory", "channel-notifier", "outbox-relay"],
         "replicas": {"ingress": 2, "inventory": 3, "channel-notifier": 2, "outbox-relay": 2}, "store": "postgres"},
        {"services": ["ingress", "outbox-relay"], "replicas": {"ingress": 3}, "store": "sqlite"},
        {"services": ["channel-notifier", "outbox-relay"], "replicas": {}, "store": "sqlite"},
        {"services": ["inventory"], "replicas": {"inventory": 1}, "store": "postgres"},
        {"services": ["inventory", "console"], "replicas": {"console": 2}, "store": "sqlite"},
        {"services": ["ingress", "inventory", "outbox-relay", "console"], "replicas": {}, "store": "postgres"},
    ],
    ids=[
        "postgres-scaled",
        "sqlite-ingress-only",
        "sqlite-no-writer",
        "postgres-inventory-only",
        "sqlite-console",
        "postgres-console",
    ],
)
def test_tiltfile_follows_other_settings(settings: dict[str, Any]) -> None:
    check_run_matches(settings, run_tiltfile(settings))


def test_nats_chart_is_installed_first_with_jetstream() -> None:
    run = run_tiltfile()
    (repo,) = run.called("helm_repo")
    assert repo["url"] == NATS_REPO
    (nats,) = run.called("helm_resource")
    assert nats["chart"] == f"{repo['name']}/nats"
    flags = " ".join(nats["flags"])
    assert "config.jetstream.enabled=true" in flags
    # The chart's default NATS URL is the service the NATS release creates.
    assert nats["release_name"] == "nats"
    nats_urls = {m["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"]
                 for m in run.manifests if m["kind"] == "Job"}
    assert nats_urls == {"nats://nats:4222"}


def test_image_is_built_once_and_live_updated() -> None:
    run = run_tiltfile()
    (build,) = run.called("docker_build")
    images = {c["image"] for m in workloads(run.manifests).values()
              for c in m["spec"]["template"]["spec"]["containers"]}
    assert images and all(image.split(":")[0] == build["ref"] for image in images), images
    assert (ROOT / build["dockerfile"]).is_file()
    dockerfile = (ROOT / build["dockerfile"]).read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile, re.MULTILINE | re.IGNORECASE)
    assert build["target"] in stages
    steps = build["live_update"]
    syncs = {(s["local_path"], s["remote_path"]) for s in steps if s["step"] == "sync"}
    assert syncs == {("libs", "/app/libs"), ("services", "/app/services"), ("stockwire", "/app/stockwire")}
    # Tilt requires fall_back_on steps first, then syncs, then runs.
    order = [s["step"] for s in steps]
    assert order == sorted(order, key=["fall_back_on", "sync", "run"].index)
    # The processes restart on synced changes (watchfiles), and /app is writable for the sync.
    for workload in workloads(run.manifests).values():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            if workload["kind"] != "Job":
                assert container["command"][0] == "watchfiles"
                assert container["securityContext"]["readOnlyRootFilesystem"] is False


# -- tilt.json and the Tiltfile agree on the keys ------------------------------------------------


def test_tilt_json_has_exactly_the_keys_the_tiltfile_reads() -> None:
    settings = tilt_json()
    baseline = run_tiltfile(settings)
    # Each key is required: without it the Tiltfile stops and names it.
    for key in settings:
        partial = {k: v for k, v in settings.items() if k != key}
        assert key in tiltfile_error(partial)
    # A key the Tiltfile does not know is refused, so tilt.json cannot carry dead settings.
    assert "surprise" in tiltfile_error({**settings, "surprise": True})
    # And each key is used: changing its value changes what Tilt would run.
    changed = {
        "services": [s for s in settings["services"] if s != "channel-notifier"],
        "replicas": {**settings["replicas"], "ingress": settings["replicas"].get("ingress", 1) + 1},
        "store": "postgres" if settings["store"] == "sqlite" else "sqlite",
    }
    assert set(changed) == set(settings), "a tilt.json key this test does not vary"
    for key, value in changed.items():
        variant = copy.deepcopy(settings)
        variant[key] = value
        run = run_tiltfile(variant)
        assert (run.calls, run.manifests) != (baseline.calls, baseline.manifests), f"{key} changes nothing"
        check_run_matches(variant, run)


def test_tilt_json_defaults_are_sensible() -> None:
    settings = tilt_json()
    assert settings["services"] == list(PORTS)
    assert settings["store"] == "sqlite"
    assert all(count == 1 for count in settings["replicas"].values())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"store": "mysql"}, "store"),
        ({"services": ["ingress", "billing"]}, "billing"),
        ({"services": []}, "services"),
        ({"replicas": {"inventory": 2}}, "inventory"),  # one SQLite database: one replica
        ({"replicas": {"ingress": 0}}, "ingress"),
        ({"replicas": {"ingress": "2"}}, "ingress"),
        ({"replicas": {"billing": 1}}, "billing"),
    ],
)
def test_bad_settings_stop_the_tiltfile(change: dict[str, Any], message: str) -> None:
    assert message in tiltfile_error({**tilt_json(), **change})


def test_a_typo_in_the_tiltfile_fails() -> None:
    """The stand-ins are strict: an unknown builtin or keyword argument is an error, as in Tilt."""
    source = TILTFILE.read_text()
    assert "k8s_resource(" in source and "resource_deps = " in source
    assert "k8s_resourse" in tiltfile_error(source=source.replace("k8s_resource(", "k8s_resourse(", 1))
    assert "resource_dep" in tiltfile_error(source=source.replace("resource_deps = ", "resource_dep = ", 1))
    assert "not_an_extension" in tiltfile_error(
        source=source.replace("ext://helm_resource", "ext://not_an_extension", 1))
