"""The ``[console]`` section: its defaults, the peers' URLs taken from their configured sections, and
unknown keys refused as in every other section."""

from __future__ import annotations

import pytest

from libs.config import ConfigError, check_known, load_raw, load_section
from services.console.settings import ConsoleSettings, with_peer_urls


def test_defaults_listen_on_loopback_8084_and_find_the_services_on_their_default_ports() -> None:
    settings = with_peer_urls(load_section({}, "console", ConsoleSettings), {})
    assert (settings.host, settings.port) == ("127.0.0.1", 8084)
    assert settings.ingress_url == "http://127.0.0.1:8080"
    assert settings.inventory_url == "http://127.0.0.1:8081"
    assert settings.channel_notifier_url == "http://127.0.0.1:8082"
    assert settings.outbox_relay_url == "http://127.0.0.1:8083"


def test_a_peer_url_follows_that_service_s_configured_section_unless_given() -> None:
    raw = load_raw(
        env={
            "STOCKWIRE__INVENTORY__PORT": "9081",
            "STOCKWIRE__CHANNEL_NOTIFIER__HOST": "0.0.0.0",
            "STOCKWIRE__CONSOLE__INGRESS_URL": "http://ingress.internal:80",
            "STOCKWIRE__CONSOLE__PORT": "9999",
        }
    )
    settings = with_peer_urls(load_section(raw, "console", ConsoleSettings), raw)
    assert settings.port == 9999
    assert settings.inventory_url == "http://127.0.0.1:9081"
    assert settings.channel_notifier_url == "http://127.0.0.1:8082"
    assert settings.ingress_url == "http://ingress.internal:80"


def test_an_unknown_key_is_refused_with_the_nearest_one() -> None:
    raw = load_raw(env={"STOCKWIRE__CONSOLE__PROT": "1"})
    with pytest.raises(ConfigError, match=r"unknown key \[console\] prot .*did you mean port"):
        check_known(raw, {"console": ConsoleSettings})
    with pytest.raises(ConfigError, match="did you mean port"):
        load_section(raw, "console", ConsoleSettings)
