"""The fake channel itself (stockwire.demo.sinks): what tests, benchmarks and the demo rely on."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from libs.contracts import utc_now_iso
from libs.signing import generate_standard_secret
from services.channel_notifier.domain.payload import signed_headers
from stockwire.demo.sinks import ChannelSink, SinkHost, SinkServer, SinkSpec


def _signed(secret: str, sku: str, version: int, available: int) -> tuple[bytes, dict[str, str]]:
    body = (
        f'{{"type":"availability.changed","sku":"{sku}","available":{available},'
        f'"version":{version},"occurred_at":"{utc_now_iso()}"}}'
    ).encode()
    return body, signed_headers([secret], f"msg_{sku}_{version}", body, int(time.time()))


async def test_any_secret_verifies_and_an_older_version_never_replaces_a_newer() -> None:
    old, new = generate_standard_secret(), generate_standard_secret()
    server = await SinkServer(ChannelSink("rotating", [old, new])).start()
    sink = server.sink
    try:
        async with httpx.AsyncClient(trust_env=False) as http:
            for secret, version, available in ((new, 2, 5), (old, 1, 9), (old, 2, 4)):
                body, headers = _signed(secret, "K", version, available)
                assert (await http.post(server.url, content=body, headers=headers)).status_code == 200
            body, headers = _signed(generate_standard_secret(), "K", 3, 0)
            refused = await http.post(server.url, content=body, headers=headers)
    finally:
        await server.stop()
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_signature"
    # Version 1 came after 2 and was ignored; 2 again replaced the figure (a buffer change resends it).
    assert sink.cache == {"K": (2, 4)}
    assert sink.backwards() == {"K": [2, 1, 2]}
    assert sink.delivered == 3 and sink.bad_signatures == 1
    assert sink.counts["stale_or_repeated"] == 2


async def test_control_port_reads_changes_stops_and_restarts_a_sink() -> None:
    secret, token = generate_standard_secret(), "control-token"
    spec = SinkSpec("shop", 0, (secret,))
    host = SinkHost([spec], control_port=0, token=token)
    server = host.servers["shop"]
    stopping = asyncio.Event()
    running = asyncio.create_task(host.run(stopping))
    control = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{host.control_server.port}",
        headers={"authorization": f"Bearer {token}"},
        trust_env=False,
    )
    try:
        deadline = time.monotonic() + 10
        while not (host.control_server.running and server.running):
            assert time.monotonic() < deadline, "sink host did not start"
            await asyncio.sleep(0.01)
        assert (await control.get("/healthz")).json()["listening"] == ["shop"]
        assert (await control.get("/state/shop", headers={"authorization": "Bearer wrong"})).status_code == 401
        assert (await control.get("/state/nobody")).status_code == 404

        async with httpx.AsyncClient(trust_env=False) as http:
            body, headers = _signed(secret, "S", 1, 7)
            assert (await http.post(server.url, content=body, headers=headers)).status_code == 200
            assert (await control.get("/count/shop")).json() == {"requests": 1, "delivered": 1, "skus": 1}
            state = (await control.get("/state/shop")).json()
            assert state["cache"] == {"S": {"available": 7, "version": 1}} and state["arrivals_total"] == 1
            assert (await control.get("/stats/shop")).json()["backwards"] == {}

            bad = await control.post("/control/shop", json={"fail_ratio": 2})
            assert bad.status_code == 400 and bad.json()["error"] == "bad_request"
            changed = await control.post("/control/shop", json={"status": 429, "retry_after": "3"})
            assert changed.json()["status"] == 429 and changed.json()["fail_ratio"] == 0.0
            body, headers = _signed(secret, "S", 2, 6)
            busy = await http.post(server.url, content=body, headers=headers)
            assert busy.status_code == 429 and busy.headers["retry-after"] == "3"

            assert (await control.post("/control/shop", json={"listening": False})).json()["listening"] is False
            with pytest.raises(httpx.ConnectError):
                await http.post(server.url, content=body, headers=headers)
            await control.post("/control/shop", json={"listening": True, "status": 200})
            assert (await http.post(server.url, content=body, headers=headers)).status_code == 200

            assert (await control.post("/reset/shop")).status_code == 200
            assert (await control.get("/count/shop")).json() == {"requests": 0, "delivered": 0, "skus": 0}
    finally:
        await control.aclose()
        stopping.set()
        await asyncio.wait_for(running, 15)
