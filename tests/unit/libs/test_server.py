"""A service's uvicorn factory sets the garbage collector up for a long-lived server."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from litestar import Litestar, get
from litestar.testing import TestClient

from libs.config import StockwireSettings
from libs.server import GC_THRESHOLDS, service_app


@dataclass(frozen=True)
class _Settings:
    greeting: str = "hello"


@pytest.fixture
def collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_the_heap_is_frozen_once_the_app_has_started_and_young_collections_are_rarer(
    collector: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no stockwire.toml here
    monkeypatch.delenv("STOCKWIRE_CONFIG", raising=False)

    @get("/")
    async def greet() -> str:
        return "hi"

    def build(shared: StockwireSettings, settings: _Settings) -> Litestar:
        return Litestar([greet])

    app = service_app("greeter", _Settings, build)
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() == 0, "frozen at start, not when built"
    with TestClient(app) as client:
        assert client.get("/").text == "hi"
        assert gc.get_freeze_count() > 1000, "what existed at start is out of the collector's scans"
