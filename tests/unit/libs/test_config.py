from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from libs.config import ConfigError, load_raw, load_section, load_settings


@dataclass(frozen=True)
class _Section:
    port: int = 1
    hosts: list[str] = field(default_factory=list)
    ratio: float = 0.5
    enabled: bool = False


def test_file_then_environment(tmp_path: Path) -> None:
    config = tmp_path / "stockwire.toml"
    config.write_text(
        '[nats]\nservers = ["nats://a:4222"]\n[admin]\ntoken = "t0"\n'
        '[sources.shop]\nscheme = "standard-webhooks"\nsecrets = ["whsec_x"]\n'
        '[outbox-relay]\nport = 7\nhosts = ["x"]\n'
    )
    env = {
        "STOCKWIRE_CONFIG": str(config),
        "STOCKWIRE__OUTBOX_RELAY__HOSTS": "a, b",
        "STOCKWIRE__OUTBOX_RELAY__ENABLED": "true",
        "STOCKWIRE__SOURCES__SHOP__TOLERANCE_S": "60",
        "STOCKWIRE_NATS_URL": "nats://b:1,nats://c:2",
    }
    raw = load_raw(env=env)
    settings = load_settings(raw)
    assert settings.nats.servers == ["nats://b:1", "nats://c:2"]
    assert settings.admin_token == "t0"
    assert settings.sources["shop"].scheme == "standard-webhooks"
    assert settings.sources["shop"].tolerance_s == 60
    section = load_section(raw, "outbox-relay", _Section)
    assert section == _Section(port=7, hosts=["a", "b"], enabled=True)


def test_secrets_never_appear_in_reprs() -> None:
    raw = load_raw(env={"STOCKWIRE__SOURCES__SHOP__SECRETS": "s3cr3t-one,s3cr3t-two", "STOCKWIRE_ADMIN_TOKEN": "adm1n"})
    settings = load_settings(raw)
    assert "s3cr3t" not in repr(settings) and "s3cr3t" not in repr(settings.sources)
    assert "adm1n" not in repr(settings)
    assert settings.sources["shop"].secrets == ["s3cr3t-one", "s3cr3t-two"]


def test_bad_values_name_the_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[outbox-relay\]"):
        load_section(load_raw(env={"STOCKWIRE__OUTBOX_RELAY__PORT": "many"}), "outbox-relay", _Section)
    with pytest.raises(ConfigError, match="does not exist"):
        load_raw(env={"STOCKWIRE_CONFIG": str(tmp_path / "missing.toml")})
    with pytest.raises(ConfigError, match="source name"):
        load_settings(load_raw(env={"STOCKWIRE__SOURCES__BAD.NAME__SECRETS": "x"}))
