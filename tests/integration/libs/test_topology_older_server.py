"""``stockwire topology apply`` against a nats-server older than a declared setting (2.11: no atomic batch
publish, ``allow_atomic`` unknown to it) names what the server does not keep and never reports it as an
update: the server answers a create or an update without the field, and said nothing before 2.12."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext

from libs.bus import stream_allows_atomic
from libs.config import TopologySettings
from libs.natsserver import NatsServer
from libs.topology import COMMERCE, KV_EVENT_IDS, apply_topology, kv_stream
from tests.support import ROOT, tool_binary

OLDER_VERSION = "2.11.11"
OLDER_CANDIDATES = (ROOT / ".tools" / f"nats-server-{OLDER_VERSION}" / "nats-server",)
"""Where ``make tools`` unpacks it (the Makefile's ``OLD_NATS_SERVER``); ``STOCKWIRE_OLD_NATS_SERVER`` overrides."""


@pytest.fixture
def older_server(tmp_path: Path) -> Iterator[NatsServer]:
    binary = tool_binary(f"nats-server-{OLDER_VERSION}", "STOCKWIRE_OLD_NATS_SERVER", OLDER_CANDIDATES)
    server = NatsServer(store_dir=tmp_path / "store", binary=binary).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def older_js(older_server: NatsServer) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(older_server.url, name="stockwire-tests")
    try:
        assert nc.connected_server_version.minor == 11  # the server this test is about
        yield nc.jetstream(timeout=5)
    finally:
        await nc.close()


async def test_apply_names_what_an_older_server_does_not_keep(
    older_js: JetStreamContext, topology_settings: TopologySettings, caplog: pytest.LogCaptureFixture
) -> None:
    first = await apply_topology(older_js, topology_settings)
    streams_and_buckets = [line for line in first if not line.startswith("created consumer")]
    assert len(streams_and_buckets) == 6, first
    for line in streams_and_buckets:
        assert line.startswith(("created stream", "created kv")), line
        assert "this nats-server does not keep allow_atomic" in line and "2.12" in line, line
    consumers = [line for line in first if line.startswith("created consumer")]
    assert len(consumers) == 2 and not any("does not keep" in line for line in consumers), first

    again = await apply_topology(older_js, topology_settings)
    assert not any(line.startswith("updated") for line in again), again
    assert all("up to date" in line for line in again), again
    assert sum("does not keep allow_atomic" in line for line in again) == 6, again

    # What every sender asks before an atomic batch: these streams take none, so messages go one by one,
    # and the log does not send the operator to an apply that cannot help on this server.
    with caplog.at_level(logging.INFO, logger="stockwire.bus"):
        assert await stream_allows_atomic(older_js, COMMERCE, "COMMERCE") is False
        assert await stream_allows_atomic(older_js, kv_stream(KV_EVENT_IDS), "kv event-ids") is False
    assert caplog.text.count("where nats-server is 2.12 or later): one message at a time") == 2, caplog.text
