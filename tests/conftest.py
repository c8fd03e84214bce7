"""Fixtures shared by every test: a real nats-server per session, JetStream reset per test, PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from libs.config import TopologySettings
from libs.natsserver import NatsServer, find_binary
from libs.topology import apply_topology
from tests.support import NatsCluster

POSTGRES_DSN = os.environ.get("STOCKWIRE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A real nats-server with JetStream on a free port and a temporary store, for the whole session."""
    if find_binary() is None:
        with _docker_nats() as url:
            host, port = url.removeprefix("nats://").split(":")
            yield NatsServer(store_dir=tmp_path_factory.mktemp("unused"), host=host, port=int(port))
        return
    server = NatsServer(store_dir=tmp_path_factory.mktemp("nats-store")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test's own, for tests that stop, kill or restart it."""
    server = NatsServer(store_dir=tmp_path / "nats").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three nats-servers of this test's own, clustered on loopback, for tests that kill nodes."""
    if find_binary() is None:
        pytest.skip("a cluster needs the nats-server binary")
    cluster = NatsCluster(tmp_path / "cluster").start()
    try:
        yield cluster
    finally:
        cluster.stop()


@contextlib.contextmanager
def _docker_nats() -> Iterator[str]:
    """Only where no binary exists: testcontainers' NATS image, started with JetStream (``-js``)."""
    try:
        from testcontainers.nats import NatsContainer  # type: ignore[import-not-found]
    except ImportError:
        pytest.skip("no nats-server binary and testcontainers is not installed")
    if shutil.which("docker") is None:
        pytest.skip("no nats-server binary and no Docker")
    container = NatsContainer().with_command("-js")
    try:
        container.start()
    except Exception as exc:
        pytest.skip(f"no nats-server binary and Docker did not start NATS: {exc}")
    try:
        yield container.nats_uri()
    finally:
        container.stop()


@pytest.fixture
def topology_settings() -> TopologySettings:
    return TopologySettings(duplicate_window_s=120.0)


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url, name="stockwire-tests")
    try:
        yield client
    finally:
        await client.close()


_STORE_NOT_READY = 10049


@pytest.fixture
async def js(nc: Client, topology_settings: TopologySettings) -> JetStreamContext:
    """JetStream with the declared topology, emptied of everything earlier tests left."""
    context = nc.jetstream(timeout=5)
    streams = await context.streams_info()
    for info in streams:
        await context.delete_stream(info.config.name)
    # nats-server answers a delete before its file store is gone; re-creating the stream in that moment
    # fails with "error creating store for stream" (10049). Try again until it takes, within a deadline.
    deadline = time.monotonic() + 15.0
    while True:
        try:
            await apply_topology(context, topology_settings)
            return context
        except nats.js.errors.ServerError as exc:
            if exc.err_code != _STORE_NOT_READY or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.05)


def _postgres_answers() -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", 5432)) == 0


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database on the machine's server; skipped with a reason if none answers."""
    if not _postgres_answers():
        pytest.skip("PostgreSQL does not answer on 127.0.0.1:5432")
    import asyncpg

    name = f"stockwire_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = POSTGRES_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)
    finally:
        admin = await asyncpg.connect(POSTGRES_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
