from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from libs.config import ConfigError, check_known, load_raw, load_section, load_settings

ROOT = Path(__file__).resolve().parents[3]


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
        '[sources.shop]\nscheme = "standard-webhooks"\nsecrets = ["whsec_c2VjcmV0"]\n'
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


# -- unknown keys and sections are refused, naming the key and the nearest valid one -------------------


@dataclass(frozen=True)
class _Item:
    name: str = ""
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Nested:
    port: int = 1
    items: list[_Item] = field(default_factory=list)


def _refusal(raw: dict, sections: dict[str, type] | None = None) -> str:
    with pytest.raises(ConfigError) as refused:
        check_known(raw, sections or {})
    return str(refused.value)


def test_a_misspelt_key_in_a_section_is_refused_with_the_nearest_key(tmp_path: Path) -> None:
    config = tmp_path / "stockwire.toml"
    config.write_text("[outbox-relay]\nprot = 7\n")
    raw = load_raw(config, env={})
    message = _refusal(raw, {"outbox-relay": _Section})
    assert message.startswith("unknown key [outbox-relay] prot")
    assert str(config) in message and "did you mean port?" in message
    with pytest.raises(ConfigError, match="did you mean port"):
        load_section(raw, "outbox-relay", _Section)


def test_a_misspelt_section_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "stockwire.toml"
    config.write_text("[ingres]\nport = 9000\n[topolgy]\nreplicas = 3\n")
    message = _refusal(load_raw(config, env={}))
    assert "unknown section [ingres]" in message and "did you mean [ingress]?" in message
    assert "unknown section [topolgy]" in message and "did you mean [topology]?" in message
    with pytest.raises(ConfigError, match=r"\[ingres\]"):
        load_settings(load_raw(config, env={}))


def test_a_misspelt_environment_variable_names_the_variable_and_the_right_one() -> None:
    raw = load_raw(env={"STOCKWIRE__OUTBOX_RELAY__PORTS": "5"})
    message = _refusal(raw, {"outbox-relay": _Section})
    assert "unknown key [outbox-relay] ports (STOCKWIRE__OUTBOX_RELAY__PORTS)" in message
    assert "did you mean port (STOCKWIRE__OUTBOX_RELAY__PORT)?" in message
    message = _refusal(load_raw(env={"STOCKWIRE__NAT__SERVERS": "nats://x:1"}))
    assert "unknown section [nat] (STOCKWIRE__NAT__SERVERS)" in message
    assert "did you mean [nats] (STOCKWIRE__NATS__SERVERS)?" in message


def test_a_misspelt_key_of_a_source_is_refused_not_left_without_secrets(tmp_path: Path) -> None:
    config = tmp_path / "stockwire.toml"
    config.write_text('[sources.shop]\nsecret = "s3cr3t"\n')
    message = _refusal(load_raw(config, env={}))
    assert "unknown key [sources.shop] secret" in message and "did you mean secrets?" in message
    assert "s3cr3t" not in message, "a value, maybe a secret, is never echoed"
    with pytest.raises(ConfigError, match=r"\[sources.shop\] secret"):
        load_settings(load_raw(config, env={}))
    env = {"STOCKWIRE__SOURCES__SHOP__TOLERANCE": "60"}
    assert "did you mean tolerance_s (STOCKWIRE__SOURCES__SHOP__TOLERANCE_S)?" in _refusal(load_raw(env=env))


def test_keys_inside_lists_of_tables_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "stockwire.toml"
    config.write_text('[outbox-relay]\n[[outbox-relay.items]]\nname = "a"\n[[outbox-relay.items]]\nnmae = "b"\n')
    message = _refusal(load_raw(config, env={}), {"outbox-relay": _Nested})
    assert "unknown key [outbox-relay.items[1]] nmae" in message and "did you mean name?" in message
    env = {"STOCKWIRE__OUTBOX_RELAY__ITEMS": '[{"name": "a", "tag": ["x"]}]'}
    message = _refusal(load_raw(env=env), {"outbox-relay": _Nested})
    assert "[outbox-relay.items[0]] tag (STOCKWIRE__OUTBOX_RELAY__ITEMS)" in message and "did you mean tags" in message


def test_every_problem_is_named_on_one_line(tmp_path: Path) -> None:
    config = tmp_path / "stockwire.toml"
    config.write_text('data_dri = "x"\n[admin]\ntokne = "t"\n[nats]\nserver = ["nats://a:1"]\n')
    message = _refusal(load_raw(config, env={}))
    assert "\n" not in message
    expected = ("unknown key data_dri", "did you mean data_dir", "[admin] tokne", "did you mean token", "[nats] server")
    assert all(part in message for part in expected), message


def test_documented_variables_and_admin_token_spellings_are_accepted(tmp_path: Path) -> None:
    config = tmp_path / "stockwire.toml"
    config.write_text('[admin]\ntoken = "from-file"\n')
    env = {
        "STOCKWIRE_CONFIG": str(config),
        "STOCKWIRE_LOG_LEVEL": "DEBUG",
        "STOCKWIRE_DATA_DIR": "/tmp/x",
        "STOCKWIRE_NATS_URL": "nats://a:1",
    }
    assert load_settings(load_raw(env=env)).admin_token == "from-file"
    assert load_settings(load_raw(env={**env, "STOCKWIRE__ADMIN__TOKEN": "nested"})).admin_token == "nested"
    both = {**env, "STOCKWIRE__ADMIN__TOKEN": "nested", "STOCKWIRE_ADMIN_TOKEN": "well-known"}
    assert load_settings(load_raw(env=both)).admin_token == "well-known"


def test_the_example_configuration_loads_strictly() -> None:
    from stockwire.stack import section_classes

    raw = load_raw(ROOT / "stockwire.example.toml", env={})
    check_known(raw, section_classes())
    settings = load_settings(raw)
    assert settings.sources["shop"].secrets == ["change-me"]
    for name, cls in section_classes().items():
        assert load_section(raw, name, cls).port > 0


@pytest.mark.parametrize("service", ["ingress", "inventory", "outbox_relay", "channel_notifier", "console"])
def test_a_service_refuses_a_typo_at_start_with_one_line_and_no_traceback(service: str, tmp_path: Path) -> None:
    section = service.upper()
    env = {**os.environ, f"STOCKWIRE__{section}__PROT": "1", "STOCKWIRE_DATA_DIR": str(tmp_path)}
    env.pop("STOCKWIRE_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", f"services.{service}"], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert f"STOCKWIRE__{section}__PROT" in line and "did you mean port" in line


def test_the_cli_refuses_a_typo_in_any_section_before_acting(tmp_path: Path) -> None:
    env = {**os.environ, "STOCKWIRE__CHANNEL_NOTIFIER__ALLOW_HOST": "10.0.0.1"}
    env.pop("STOCKWIRE_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "stockwire", "topology", "show"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "[channel-notifier] allow_host" in line and "did you mean allow_hosts" in line


def test_orders_source_must_name_a_configured_source() -> None:
    shop = {"secrets": ["s"]}
    settings = load_settings({"sources": {"shop": shop, "stripe": {"orders_source": "shop", **shop}}})
    assert settings.sources["stripe"].orders_source == "shop"
    with pytest.raises(ConfigError, match=r"\[sources.stripe\] orders_source: 'shopify' is not a configured source"):
        load_settings({"sources": {"shop": shop, "stripe": {"orders_source": "shopify", **shop}}})


def test_a_standard_webhooks_secret_that_is_not_base64_is_refused_at_start_without_showing_it() -> None:
    load_settings({"sources": {"svix": {"scheme": "standard-webhooks", "secrets": ["whsec_c2VjcmV0"]}}})
    with pytest.raises(ConfigError) as caught:
        load_settings({"sources": {"svix": {"scheme": "standard-webhooks", "secrets": ["whsec_c2VjcmV0", "not b64!"]}}})
    assert str(caught.value) == (
        "[sources.svix] secrets: secret 2 is not a Standard Webhooks secret (whsec_ followed by base64)"
    )
    assert "not b64" not in str(caught.value)
