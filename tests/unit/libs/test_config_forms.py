"""Text settings of a given form: every store's database URL and the NATS server URLs are refused, in one
line naming the key, where it was set and the form it should have, when no store or client could use
them (a password in a URL is never echoed)."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from libs.config import ConfigError, field_form, load_raw, load_section, load_settings
from stockwire.stack import section_classes

_EMPTY_ENV: dict[str, str] = {}


def _database_fields() -> list[tuple[str, tuple[str, ...]]]:
    """(section, path to a database_url) for every section, nested dataclasses (the relay's outboxes) too."""
    found: list[tuple[str, tuple[str, ...]]] = []

    def walk(section: str, cls: type, path: tuple[str, ...]) -> None:
        hints = typing.get_type_hints(cls, include_extras=True)
        for f in dataclasses.fields(cls):
            if f.name == "database_url":
                found.append((section, (*path, f.name)))
                assert field_form(hints[f.name]) is not None, f"[{section}] {f.name} declares no form"
            inner = typing.get_args(hints[f.name])
            for candidate in (hints[f.name], *inner):
                if dataclasses.is_dataclass(candidate) and isinstance(candidate, type):
                    walk(section, candidate, (*path, f.name))

    for section, cls in section_classes().items():
        walk(section, cls, ())
    return found


def test_every_database_url_declares_its_form() -> None:
    assert len(_database_fields()) >= 4  # ingress, inventory, the relay and its outboxes, the notifier


def _load(tmp_path: Path, text: str, section: str | None = None) -> object:
    config = tmp_path / "stockwire.toml"
    config.write_text(text)
    raw = load_raw(config, env=_EMPTY_ENV)
    if section is None:
        return load_settings(raw)
    return load_section(raw, section, section_classes()[section])


@pytest.mark.parametrize("section", ["ingress", "inventory", "channel-notifier"])
@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite://relative.db", "inventory.db", "http://db/x"])
def test_a_database_url_no_store_can_use_is_refused(tmp_path: Path, section: str, url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f'[{section}]\ndatabase_url = "{url}"\n', section)
    message = str(caught.value)
    assert message.startswith(f"[{section}] database_url = {url!r} (in ") and "\n" not in message
    assert "is not a database Stockwire can use" in message


def test_an_outboxs_database_url_is_checked_too(tmp_path: Path) -> None:
    text = '[outbox-relay]\noutboxes = [{name = "inventory", database_url = "mysql://x/y"}]\n'
    with pytest.raises(ConfigError, match=r"database_url = 'mysql://x/y' .*is not a database"):
        _load(tmp_path, text, "outbox-relay")


@pytest.mark.parametrize(
    "url", ["", "sqlite:///data/x.db", "sqlite+aiosqlite:////abs/x.db", "postgres://u@h/db", "postgresql+asyncpg://h/d"]
)
def test_the_database_urls_the_stores_use_are_taken(tmp_path: Path, url: str) -> None:
    _load(tmp_path, f'[inventory]\ndatabase_url = "{url}"\n', "inventory")


def test_a_password_in_a_refused_url_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, '[inventory]\ndatabase_url = "mysql://stock:s3cret@db/inventory"\n', "inventory")
    assert "s3cret" not in str(caught.value) and "mysql://stock:***@db/inventory" in str(caught.value)


@pytest.mark.parametrize("url", ["http://nats:4222", "nats://127.0.0.1:99999", "nats://h:0", "nats://:4222", "nats://"])
def test_a_nats_url_no_client_can_dial_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f'[nats]\nservers = ["nats://ok:4222", "{url}"]\n')
    message = str(caught.value)
    assert "[nats.servers] [1]" in message and repr(url) in message and "is not a NATS server URL" in message


@pytest.mark.parametrize("url", ["nats://h:4222", "tls://h", "ws://h:80", "wss://user:pw@h:443", "127.0.0.1:4222"])
def test_the_nats_urls_a_client_dials_are_taken(tmp_path: Path, url: str) -> None:
    _load(tmp_path, f'[nats]\nservers = ["{url}"]\n')
