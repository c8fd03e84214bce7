"""The two local dev sources: configured together, each with its own persisted secret and profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.config import ConfigError, StockwireSettings, load_raw, load_settings
from libs.profiles import source_profile
from stockwire.stack import DEV_CE_SOURCE, DEV_SOURCE, Stack, dev_source_secret, source_secret


def test_the_stack_configures_both_dev_sources_with_their_profiles_and_secrets(tmp_path: Path) -> None:
    env = Stack(data_dir=tmp_path).service_env("ingress")
    sources = load_settings(load_raw(env=env)).sources
    assert set(sources) == {DEV_SOURCE, DEV_CE_SOURCE}
    assert source_profile(DEV_SOURCE, sources[DEV_SOURCE]).name == "stockwire"
    assert source_profile(DEV_CE_SOURCE, sources[DEV_CE_SOURCE]).name == "commerce-engine"
    shop, store = sources[DEV_SOURCE].secrets, sources[DEV_CE_SOURCE].secrets
    assert shop == [dev_source_secret(tmp_path)] and store == [dev_source_secret(tmp_path, DEV_CE_SOURCE)]
    assert shop != store
    # Persisted: a restarted stack signs with the same secrets.
    assert Stack(data_dir=tmp_path).service_env("inventory")["STOCKWIRE__SOURCES__STORE__SECRETS"] == store[0]


def test_no_dev_source_is_configured_when_the_operator_configured_sources(tmp_path: Path) -> None:
    env = Stack(data_dir=tmp_path, configure_dev_source=False).service_env("ingress")
    assert not any(name.startswith("STOCKWIRE__SOURCES__") for name in env)


def test_clients_find_either_dev_source_secret_and_only_those(tmp_path: Path) -> None:
    unconfigured = StockwireSettings()
    with pytest.raises(ConfigError, match="no secret for source 'store'"):
        source_secret(unconfigured, DEV_CE_SOURCE, tmp_path)
    Stack(data_dir=tmp_path).service_env("ingress")
    assert source_secret(unconfigured, DEV_CE_SOURCE, tmp_path).secret == dev_source_secret(tmp_path, DEV_CE_SOURCE)
    assert source_secret(unconfigured, DEV_SOURCE, tmp_path).secret == dev_source_secret(tmp_path)
    with pytest.raises(ConfigError, match="'shop' and 'store' dev sources"):
        source_secret(unconfigured, "erp", tmp_path)
    with pytest.raises(ValueError, match="not a dev source"):
        dev_source_secret(tmp_path, "erp")
