"""Ingress as a process that cannot start: it says why and exits, without leaving its NATS connection's
tasks to be torn down with the event loop (tracebacks after the reason)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from libs.natsserver import NatsServer
from tests.support import eventually, service_process

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("nats", ["answering", "absent"])
async def test_a_port_in_use_ends_ingress_with_the_reason_and_nothing_after(
    nats: str, nats_server: NatsServer, tmp_path: Path
) -> None:
    log = tmp_path / "ingress.log"
    url = nats_server.url if nats == "answering" else "nats://127.0.0.1:1"
    port, child = service_process("ingress", "ingress", nats_url=url, data_dir=tmp_path / "data", log=log, settings={})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        child.start()
        try:

            async def exited() -> bool:
                return not child.alive()

            await eventually(exited, timeout=30, what="ingress exited")
        finally:
            child.kill()
    output = log.read_text("utf-8", "replace")
    assert child.returncode() != 0
    assert "address already in use" in output
    assert "Traceback" not in output and "Task was destroyed" not in output, output
