"""A service's uvicorn factory sets the garbage collector up for a long-lived server."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from litestar import Litestar, get
from litestar.testing import TestClient

from libs.config import StockwireSettings
from libs.server import GC_THRESHOLDS, SERVER_PROCESS_ENV, service_app


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


@pytest.fixture
def greeter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Litestar]:
    monkeypatch.chdir(tmp_path)  # no stockwire.toml here
    monkeypatch.delenv("STOCKWIRE_CONFIG", raising=False)

    @get("/")
    async def greet() -> str:
        return "hi"

    def build(shared: StockwireSettings, settings: _Settings) -> Litestar:
        return Litestar([greet])

    return lambda: service_app("greeter", _Settings, build)


def test_in_a_server_process_the_heap_is_frozen_once_started_and_young_collections_are_rarer(
    collector: None, greeter: Callable[[], Litestar], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SERVER_PROCESS_ENV, "1")  # as serve() sets it
    app = greeter()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() == 0, "frozen at start, not when built"
    with TestClient(app) as client:
        assert client.get("/").text == "hi"
        assert gc.get_freeze_count() > 1000, "what existed at start is out of the collector's scans"


def test_an_app_built_in_another_process_leaves_its_collector_alone(
    collector: None, greeter: Callable[[], Litestar], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SERVER_PROCESS_ENV, raising=False)
    thresholds = gc.get_threshold()
    with TestClient(greeter()) as client:
        assert client.get("/").text == "hi"
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0
