"""The three demo channels: their sink process, and their registration with the channel-notifier."""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from libs.natsserver import free_port
from libs.processes import ChildProcess
from libs.signing import generate_standard_secret

from .sinks import DEMO_EXTRA_MISSING, SinkSpec

__all__ = ["DEMO_CHANNELS", "AsyncSinkReader", "DemoChannel", "SinkProcess", "register_channels"]


@dataclass(frozen=True)
class DemoChannel:
    name: str
    buffer: int = 0
    """Units withheld from this channel (the notifier subtracts them from what it shows)."""
    description: str = ""


DEMO_CHANNELS: tuple[DemoChannel, ...] = (
    DemoChannel("storefront", 0, "the shop's own site"),
    DemoChannel("marketplace", 3, "a marketplace; 3 units held back so it never sells the last ones"),
    DemoChannel("b2b", 0, "the wholesale portal"),
)


class SinkProcess:
    """``python -m stockwire.demo.sinks`` as a child process, and a client for its control port."""

    def __init__(
        self,
        channels: Sequence[DemoChannel] = DEMO_CHANNELS,
        *,
        sink: TextIO | None = None,
        log_dir: Path | None = None,
        colour_index: int = 5,
    ) -> None:
        # Refuse here, in the command's own process, rather than in a child whose log nobody reads.
        try:
            import standardwebhooks  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(DEMO_EXTRA_MISSING) from exc
        self.channels = list(channels)
        self.specs = [SinkSpec(c.name, free_port(), (generate_standard_secret(),)) for c in self.channels]
        self.control_port = free_port()
        self.token = secrets.token_urlsafe(18)
        spec = {"control_port": self.control_port, "token": self.token, "sinks": [s.as_json() for s in self.specs]}
        self.child = ChildProcess(
            "sinks",
            [sys.executable, "-m", "stockwire.demo.sinks", json.dumps(spec)],
            sink=sink,
            colour_index=colour_index,
            log_path=str(log_dir / "sinks.log") if log_dir else None,
        )
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.control_port}",
            headers={"authorization": f"Bearer {self.token}"},
            timeout=10,
        )

    def url(self, name: str) -> str:
        spec = next(s for s in self.specs if s.name == name)
        return f"http://127.0.0.1:{spec.port}/webhook"

    def secret(self, name: str) -> str:
        return next(s for s in self.specs if s.name == name).secrets[0]

    def start(self, timeout_s: float = 20.0) -> SinkProcess:
        self.child.start()
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.child.alive():
                raise RuntimeError(
                    f"the sink process exited with status {self.child.returncode()}:\n{self.child.recent_output()}"
                )
            try:
                listening = self.client.get("/healthz").json().get("listening", [])
                if len(listening) == len(self.specs):
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sinks did not listen within {timeout_s}s")
            time.sleep(0.05)

    def stop(self) -> None:
        self.child.stop()
        self.client.close()

    def state(self, name: str, since: int = 0) -> dict[str, Any]:
        response = self.client.get(f"/state/{name}", params={"since": since})
        response.raise_for_status()
        return dict(response.json())

    def control(self, name: str, **change: Any) -> dict[str, Any]:
        response = self.client.post(f"/control/{name}", json=change)
        response.raise_for_status()
        return dict(response.json())


def register_channels(notifier_url: str, admin_token: str, sinks: SinkProcess, timeout_s: float = 10.0) -> None:
    """``POST /channels`` for every demo channel (a 409 — it exists — is brought in line with PATCH)."""
    headers = {"authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=notifier_url, headers=headers, timeout=timeout_s) as client:
        for channel in sinks.channels:
            document = {
                "name": channel.name,
                "kind": "webhook",
                "url": sinks.url(channel.name),
                "secret": sinks.secret(channel.name),
                "buffer": channel.buffer,
            }
            response = client.post("/channels", json=document)
            if response.status_code == 409:
                patch = {"url": document["url"], "secrets": [document["secret"]], "buffer": channel.buffer}
                response = client.patch(f"/channels/{channel.name}", json=patch)
            if not response.is_success:
                raise RuntimeError(f"registering channel {channel.name}: {response.status_code} {response.text[:300]}")


class AsyncSinkReader:
    """Reads the sinks' state from inside an event loop."""

    def __init__(self, sinks: SinkProcess) -> None:
        self.sinks = sinks
        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{sinks.control_port}",
            headers={"authorization": f"Bearer {sinks.token}"},
            timeout=10,
        )

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.client.request(method, path, **kwargs)
        response.raise_for_status()
        return dict(response.json())

    async def state(self, name: str, since: int = 0) -> dict[str, Any]:
        return await self._call("GET", f"/state/{name}", params={"since": since})

    async def stats(self, name: str) -> dict[str, Any]:
        """Requests, deliveries, bad signatures, versions gone backwards and every delivery's latency."""
        return await self._call("GET", f"/stats/{name}")

    async def count(self, name: str) -> dict[str, Any]:
        return await self._call("GET", f"/count/{name}")

    async def reset(self, name: str) -> dict[str, Any]:
        return await self._call("POST", f"/reset/{name}")

    async def control(self, name: str, **change: Any) -> dict[str, Any]:
        return await self._call("POST", f"/control/{name}", json=change)

    async def caches(self) -> dict[str, dict[str, tuple[int, int]]]:
        out = {}
        for channel in self.sinks.channels:
            state = await self.state(channel.name, since=1 << 40)
            out[channel.name] = {sku: (v["available"], v["version"]) for sku, v in state["cache"].items()}
        return out

    async def close(self) -> None:
        await self.client.aclose()
