"""The chart's alerts under promtool: each fires when it should (the everything-down case included)
and stays silent on a healthy system. The rules are rendered from the chart, so the tests check the
alerts as installed; the cases are in tests/deploy/alerts/*.test.yaml."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .support import PRODUCTION_VALUES, by_kind, promtool_binary, render

CASES = Path(__file__).parent / "alerts"
# Production (PostgreSQL, the relay a Deployment) and the defaults (SQLite, relays as sidecars).
CONFIGS = {
    "production": ([PRODUCTION_VALUES], []),
    "sqlite": ([], ["prometheusRule.enabled=true"]),
}
SERVICES = ("ingress", "inventory", "channel-notifier", "outbox-relay")


def rule_groups(config: str) -> list[dict[str, Any]]:
    files, sets = CONFIGS[config]
    (rule,) = by_kind(render(files, sets), "PrometheusRule").values()
    return rule["spec"]["groups"]


def alerts(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for g in groups for r in g["rules"]]


def cases() -> list[dict[str, Any]]:
    return yaml.safe_load((CASES / "alerts.test.yaml").read_text())["tests"]


def write_rules(groups: list[dict[str, Any]], where: Path) -> None:
    """rules-annotated.yaml as rendered; rules.yaml without annotations (promtool compares them with
    every expected alert; annotations.test.yaml checks the ones that depend on the branch)."""
    (where / "rules-annotated.yaml").write_text(yaml.safe_dump({"groups": groups}))
    bare = [{**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]} for g in groups]
    (where / "rules.yaml").write_text(yaml.safe_dump({"groups": bare}))


def promtool(*args: str, cwd: Path) -> None:
    proc = subprocess.run([promtool_binary(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_alert_rules_pass_their_promtool_unit_tests(config: str, tmp_path: Path) -> None:
    write_rules(rule_groups(config), tmp_path)
    for case in CASES.glob("*.test.yaml"):
        shutil.copy(case, tmp_path / case.name)
    promtool("check", "rules", "rules-annotated.yaml", cwd=tmp_path)
    promtool("test", "rules", *sorted(p.name for p in tmp_path.glob("*.test.yaml")), cwd=tmp_path)


def test_every_alert_is_tested_firing_and_silent() -> None:
    names = {a["alert"] for a in alerts(rule_groups("production"))}
    fired: set[str] = set()
    silent: set[str] = set()
    for case in cases():
        for check in case["alert_rule_test"]:
            (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    assert names - fired == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested silent"
    assert fired <= names, f"tests of alerts the chart does not have: {fired - names}"


def test_everything_down_fires_for_every_service() -> None:
    """With no series at all (every pod gone), a service-down alert for each service and the relay
    alerts fire: alerts on a metric a dead process would have exported cannot."""
    (nothing,) = [c for c in cases() if not c["input_series"]]
    expected = {c["alertname"]: [a["exp_labels"] for a in c["exp_alerts"]] for c in nothing["alert_rule_test"]
                if c["exp_alerts"]}
    assert sorted(labels["service"] for labels in expected["StockwireServiceDown"]) == sorted(SERVICES)
    assert {"StockwireOutboxNoRelayLeader", "StockwireOutboxBacklogOld"} <= set(expected)
    for config in CONFIGS:
        down = [a for a in alerts(rule_groups(config)) if a["alert"] == "StockwireServiceDown"]
        assert sorted(a["labels"]["service"] for a in down) == sorted(SERVICES), config


def test_services_keda_may_scale_to_zero_raise_no_service_down() -> None:
    files, sets = CONFIGS["production"]
    (rule,) = by_kind(render(files, [*sets, "services.inventory.keda.minReplicas=0"]), "PrometheusRule").values()
    down = {a["labels"]["service"] for a in alerts(rule["spec"]["groups"]) if a["alert"] == "StockwireServiceDown"}
    assert down == set(SERVICES) - {"inventory"}


def test_relay_alerts_follow_the_relay() -> None:
    (rule,) = by_kind(render([PRODUCTION_VALUES], ["services.outbox-relay.enabled=false"]), "PrometheusRule").values()
    names = {a["alert"] for a in alerts(rule["spec"]["groups"])}
    assert not names & {"StockwireOutboxBacklogOld", "StockwireOutboxNoRelayLeader"}
    down = {a["labels"]["service"] for a in alerts(rule["spec"]["groups"]) if a["alert"] == "StockwireServiceDown"}
    assert "outbox-relay" not in down
