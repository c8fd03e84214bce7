"""``stockwire up`` as a user runs it: embedded NATS, a service, a signed webhook, a clean stop."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.natsserver import NatsServer, free_port
from tests.support import eventually_sync

pytestmark = pytest.mark.e2e


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return response.status == 200
    except OSError:
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def running_up(
    tmp_path: Path, services: str, env: dict[str, str], ready_port: int, nats_port: int, data_dir: bool = True
) -> Iterator[subprocess.Popen[str]]:
    """``stockwire up --services …`` in ``tmp_path`` until its service on ``ready_port`` answers; stopped after."""
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stockwire",
            "up",
            "--services",
            services,
            *(["--data-dir", str(tmp_path / "data")] if data_dir else []),
            "--nats-port",
            str(nats_port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        eventually_sync(
            lambda: _answers(f"http://127.0.0.1:{ready_port}/healthz") or up.poll() is not None,
            timeout=60,
            what=f"{services} up",
        )
        assert up.poll() is None, up.communicate()[0]
        yield up
    finally:
        if up.poll() is None:
            # SIGTERM first: `up` stops its children; a SIGKILL would leave them running.
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(30)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKWIRE")}
    return {**env, **extra}


def test_up_starts_nats_and_ingress_accepts_a_sent_webhook_and_stops_cleanly(tmp_path: Path) -> None:
    nats_port, ingress_port = free_port(), free_port()
    data_dir = tmp_path / "data"
    env = _clean_env(STOCKWIRE__INGRESS__PORT=str(ingress_port))
    with running_up(tmp_path, "ingress", env, ingress_port, nats_port) as up:
        assert _port_open(nats_port), "the embedded nats-server listens on the chosen port"
        sent = subprocess.run(
            [
                sys.executable,
                "-m",
                "stockwire",
                "send",
                "--data-dir",
                str(data_dir),
                "--url",
                f"http://127.0.0.1:{ingress_port}",
                "--id",
                "evt-up-1",
                "inventory.received",
                '{"sku": "A", "qty": 3}',
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=30,
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert '"status":"accepted"' in sent.stdout
        up.send_signal(signal.SIGTERM)
        output, _ = up.communicate(timeout=30)
        assert up.returncode == 0, output
        assert "Stockwire is up." in output and f"127.0.0.1:{ingress_port}" in output
        # The suggested command reaches this stack from any shell: its port and data dir, not the defaults.
        assert f"stockwire send --url http://127.0.0.1:{ingress_port} --data-dir {data_dir} inventory." in output
        assert "stockwire up: stopped" in output
        assert not _port_open(ingress_port) and not _port_open(nats_port), "nothing is left running"
        assert (data_dir / "nats" / "jetstream").is_dir(), "the NATS store lives under the data dir"


def _status(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("configured", ["environment and file", "file", "STOCKWIRE__ADMIN__TOKEN", "none"])
def test_up_uses_the_configured_admin_token_and_generates_one_only_when_none_is_set(
    configured: str, tmp_path: Path
) -> None:
    nats_port, port = free_port(), free_port()
    token_file = tmp_path / "data" / "secrets" / "admin-token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text("left-by-an-earlier-run")
    config = tmp_path / "config" / "stockwire.toml"  # not ./stockwire.toml: read only where named
    config.parent.mkdir()
    config.write_text(f'[admin]\ntoken = "from-the-file"\n[channel-notifier]\nport = {port}\n')
    env = _clean_env()
    if configured == "environment and file":
        env |= {"STOCKWIRE_CONFIG": str(config), "STOCKWIRE_ADMIN_TOKEN": "from-the-environment"}
        expected, refused = "from-the-environment", ["from-the-file", "left-by-an-earlier-run"]
    elif configured == "file":
        env |= {"STOCKWIRE_CONFIG": str(config)}
        expected, refused = "from-the-file", ["left-by-an-earlier-run"]
    elif configured == "STOCKWIRE__ADMIN__TOKEN":
        env |= {"STOCKWIRE__ADMIN__TOKEN": "nested-variable", "STOCKWIRE__CHANNEL_NOTIFIER__PORT": str(port)}
        expected, refused = "nested-variable", ["left-by-an-earlier-run"]
    else:
        token_file.unlink()
        env |= {"STOCKWIRE__CHANNEL_NOTIFIER__PORT": str(port)}
        expected, refused = None, ["from-the-file"]
    with running_up(tmp_path, "channel-notifier", env, port, nats_port) as up:
        channels = f"http://127.0.0.1:{port}/channels"
        if expected is None:
            expected = token_file.read_text().strip()
            assert len(expected) >= 24, "a generated token is long and random"
        else:
            assert token_file.read_text() == "left-by-an-earlier-run", "nothing is generated or overwritten"
        assert _status(channels, expected) == 200
        for token in refused:
            assert _status(channels, token) == 401, token
        up.send_signal(signal.SIGTERM)
        output, _ = up.communicate(timeout=30)
    if configured == "none":
        assert f"admin token       in {token_file}" in output
    else:
        assert "admin token       as configured" in output and str(token_file) not in output


def test_up_and_send_take_nats_data_dir_and_ports_from_the_configuration_file(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    nats_port, port = free_port(), free_port()
    config = tmp_path / "config" / "stockwire.toml"
    config.parent.mkdir()
    config.write_text(
        f'data_dir = "{tmp_path / "configured-data"}"\n[nats]\nservers = ["{nats_server.url}"]\n'
        f"[ingress]\nport = {port}\n"
    )
    env = _clean_env(STOCKWIRE_CONFIG=str(config))
    with running_up(tmp_path, "ingress", env, port, nats_port, data_dir=False) as up:
        assert not _port_open(nats_port), "no embedded nats-server when one is configured"
        sent = subprocess.run(
            [
                sys.executable,
                "-m",
                "stockwire",
                "send",
                "inventory.received",
                '{"sku": "A", "qty": 1}',
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=30,
        )
        assert sent.returncode == 0 and '"status":"accepted"' in sent.stdout, sent.stdout + sent.stderr
        up.send_signal(signal.SIGTERM)
        output, _ = up.communicate(timeout=30)
    assert f"NATS              {nats_server.url}" in output
    assert (tmp_path / "configured-data" / "ingress.db").is_file()
    assert not (tmp_path / "data").exists() and not (tmp_path / ".data").exists()


def test_up_starts_the_console_prints_its_url_and_points_it_at_the_services_it_started(tmp_path: Path) -> None:
    nats_port, inventory_port, console_port = free_port(), free_port(), free_port()
    env = _clean_env(
        STOCKWIRE__INVENTORY__PORT=str(inventory_port),
        STOCKWIRE__CONSOLE__PORT=str(console_port),
        STOCKWIRE_ADMIN_TOKEN="console-token",
    )
    with running_up(tmp_path, "inventory,console", env, console_port, nats_port) as up:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())

        def sku_page() -> int:
            try:
                # The login form's CSRF token (its cookie goes with the opener).
                with opener.open(f"http://127.0.0.1:{console_port}/login", timeout=10) as form:
                    found = re.search(r'name="csrf" value="([^"]+)" id="login-csrf"', form.read().decode())
            except (urllib.error.URLError, OSError):
                return 0
            csrf = urllib.parse.quote(found.group(1) if found else "", safe="")
            login = urllib.request.Request(
                f"http://127.0.0.1:{console_port}/login",
                data=f"token=console-token&next=/skus/NONE&csrf={csrf}".encode(),
                method="POST",
            )
            try:
                with opener.open(login, timeout=10) as page:
                    return int(page.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        # The SKU page asks inventory (on its configured port) and answers with inventory's 404.
        eventually_sync(lambda: sku_page() == 404, timeout=30, what="the console reaching inventory")
        up.send_signal(signal.SIGTERM)
        output, _ = up.communicate(timeout=30)
    assert f"console           http://127.0.0.1:{console_port}" in output, output
    assert "log in with the admin token" in output
