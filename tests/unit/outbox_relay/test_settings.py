"""The [outbox-relay] section, from TOML and from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.config import ConfigError, load_raw, load_section
from services.outbox_relay.settings import OutboxRelaySettings, OutboxSpec, resolve_outboxes


def test_defaults_serve_ingress_and_inventory_from_the_data_dir(tmp_path: Path) -> None:
    settings = load_section(load_raw(env={}), "outbox-relay", OutboxRelaySettings)
    assert settings.port == 8083
    specs = resolve_outboxes(settings, tmp_path)
    assert [(s.name, s.database_url) for s in specs] == [
        ("ingress", f"sqlite+aiosqlite:///{tmp_path / 'ingress.db'}"),
        ("inventory", f"sqlite+aiosqlite:///{tmp_path / 'inventory.db'}"),
    ]


def test_outboxes_from_the_environment_as_json(tmp_path: Path) -> None:
    env = {
        "STOCKWIRE__OUTBOX_RELAY__OUTBOXES": '[{"name": "inventory", "database_url": "postgresql://u:p@db/inv"},'
        ' {"name": "shop-0", "database_url": "sqlite:////data/ingress.db"}]',
        "STOCKWIRE__OUTBOX_RELAY__LEASE_TTL_S": "2.5",
    }
    settings = load_section(load_raw(env=env), "outbox-relay", OutboxRelaySettings)
    assert settings.lease_ttl_s == 2.5
    specs = resolve_outboxes(settings, tmp_path)
    assert [s.database_url for s in specs] == [
        "postgresql+asyncpg://u:p@db/inv",
        "sqlite+aiosqlite:////data/ingress.db",
    ]
    assert "u:p" not in repr(specs[0]), "a URL with a password never reaches a log line"


def test_outboxes_from_toml(tmp_path: Path) -> None:
    config = tmp_path / "stockwire.toml"
    config.write_text('[outbox-relay]\nbatch_size = 100\noutboxes = [{name = "inventory", table = "outbox"}]\n')
    settings = load_section(load_raw(config, env={}), "outbox-relay", OutboxRelaySettings)
    assert settings.batch_size == 100
    assert settings.outboxes == [OutboxSpec("inventory")]


@pytest.mark.parametrize(
    "outboxes",
    [
        '[{"name": "bad name"}]',
        '[{"name": "a.*"}]',
        '[{"name": "x"}, {"name": "x"}]',
        '[{"name": "x", "table": "outbox; drop"}]',
    ],
)
def test_bad_outboxes_are_refused_with_the_key_named(outboxes: str) -> None:
    with pytest.raises(ConfigError, match="outbox-relay"):
        load_section(load_raw(env={"STOCKWIRE__OUTBOX_RELAY__OUTBOXES": outboxes}), "outbox-relay", OutboxRelaySettings)
