"""A service whose port is taken says why and exits, whether NATS answers or not: no NATS connection
left to be torn down with the event loop (tracebacks after the reason), no connect that outlives the
cancel of its task (a process that never exits)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from libs.natsserver import NatsServer
from tests.support import eventually, service_process

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    "service",
    [
        ("ingress", "ingress"),
        ("inventory", "inventory"),
        ("channel_notifier", "channel-notifier"),
        ("outbox_relay", "outbox-relay"),
    ],
)
@pytest.mark.parametrize("nats", ["answering", "absent"])
async def test_a_port_in_use_ends_the_service_with_the_reason_and_nothing_after(
    nats: str, service: tuple[str, str], nats_server: NatsServer, tmp_path: Path
) -> None:
    log = tmp_path / "service.log"
    url = nats_server.url if nats == "answering" else "nats://127.0.0.1:1"
    port, child = service_process(*service, nats_url=url, data_dir=tmp_path / "data", log=log, settings={})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        child.start()
        try:

            async def exited() -> bool:
                return not child.alive()

            await eventually(exited, timeout=30, what=f"{service[0]} exited")
        finally:
            child.kill()
    output = log.read_text("utf-8", "replace")
    assert child.returncode() != 0
    assert "address already in use" in output
    assert "Traceback" not in output and "Task was destroyed" not in output, output
