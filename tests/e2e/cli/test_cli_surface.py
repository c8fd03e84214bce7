"""The CLI as a new user meets it: --version, a description on every command, clients that find the
configured ports, one-line errors instead of tracebacks, and ``python -m bench``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from libs.config import load_raw
from libs.natsserver import free_port
from stockwire.cli import build_parser
from stockwire.stack import configured_url

ROOT = Path(__file__).resolve().parents[3]


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STOCKWIRE")}
    return subprocess.run(
        [sys.executable, "-m", *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd or ROOT,
    )


def test_version() -> None:
    done = _cli("stockwire", "--version")
    assert done.returncode == 0 and done.stdout.startswith("stockwire ") and done.stdout.split()[1][0].isdigit()


def test_every_command_has_a_description() -> None:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) >= {"up", "send", "sim", "demo", "topology", "ledger", "audit", "deadletter"}
    for name, sub in commands.choices.items():
        assert sub.description and len(sub.description) > 40, f"`stockwire {name}` has no description"


def test_clients_find_services_where_the_configuration_puts_them() -> None:
    env = {"STOCKWIRE__INVENTORY__PORT": "9999", "STOCKWIRE__INVENTORY__HOST": "::1", "STOCKWIRE__INGRESS__PORT": "7"}
    raw = load_raw(env=env)
    assert configured_url("inventory", raw) == "http://[::1]:9999"
    assert configured_url("ingress", raw) == "http://127.0.0.1:7"
    assert configured_url("ingress", load_raw(env={"STOCKWIRE__INGRESS__HOST": "0.0.0.0"})) == "http://127.0.0.1:8080"


def test_send_to_an_ingress_that_does_not_answer_is_one_line_and_exit_3(tmp_path: Path) -> None:
    port = free_port()
    env = {"STOCKWIRE__SOURCES__SHOP__SECRETS": "s3cr3t", "STOCKWIRE__INGRESS__PORT": str(port)}
    done = _cli("stockwire", "send", "inventory.received", '{"sku": "A", "qty": 1}', env=env, cwd=tmp_path)
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert f"ingress at http://127.0.0.1:{port} did not answer" in line, "the configured port, not the default"


def test_send_without_a_secret_says_what_to_configure_and_creates_nothing(tmp_path: Path) -> None:
    done = _cli("stockwire", "send", "inventory.received", "{}", "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no secret for source 'shop': configure [sources.shop] secrets, or start `stockwire up`" in done.stderr
    assert list(tmp_path.iterdir()) == []
    other = _cli("stockwire", "send", "x", "{}", "--source", "erp", env={"STOCKWIRE__SOURCES__SHOP__SECRETS": "s"})
    assert other.returncode == 2 and "source 'erp' is not configured (configured: shop)" in other.stderr


def test_bench_lists_and_runs_each_benchmark() -> None:
    listed = _cli("bench")
    assert listed.returncode == 0
    readme = (ROOT / "bench" / "README.md").read_text()
    for name in ("ingress", "inventory", "outbox_relay", "channel_notifier", "flash_sale"):
        assert f"\n  {name} " in listed.stdout and f"python -m bench.{name}" in readme
    unknown = _cli("bench", "nope")
    assert unknown.returncode == 2 and "no benchmark 'nope'" in unknown.stderr
    helped = _cli("bench", "inventory", "--help")
    assert helped.returncode == 0 and "usage:" in helped.stdout


@pytest.mark.parametrize(
    ("command", "status"),
    [(["topology", "show"], 1), (["topology", "apply"], 1), (["deadletter", "list"], 3)],
)
def test_a_command_without_nats_says_so_in_one_line(command: list[str], status: int, tmp_path: Path) -> None:
    """At the default log level: no warning per failed connection attempt before the answer."""
    port = free_port()
    env = {"STOCKWIRE_NATS_URL": f"nats://127.0.0.1:{port}"}
    done = _cli("stockwire", *command, "--nats-timeout", "1.5", env=env, cwd=tmp_path)
    assert done.returncode == status and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert f"NATS at nats://127.0.0.1:{port} did not answer within 1.5s" in line


def test_the_demo_can_keep_off_the_usual_ports() -> None:
    from stockwire.demo.run import pick_ports
    from stockwire.stack import DEFAULT_PORTS, EMBEDDED_NATS_PORT

    assert build_parser().parse_args(["demo", "--free-ports"]).free_ports is True
    ports, nats = pick_ports(prefer_defaults=False)
    assert not set(ports.values()) & {*DEFAULT_PORTS.values(), EMBEDDED_NATS_PORT} and nats != EMBEDDED_NATS_PORT
