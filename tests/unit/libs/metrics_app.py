"""A minimal ASGI app for the multiprocess-metrics tests: each worker reports one live gauge with its
pid, and ``/metrics`` answers with the aggregated exposition (``libs.metrics.render_metrics``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import Counter, Gauge

from libs.metrics import CONTENT_TYPE_LATEST, render_metrics

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Message, Receive, Send], Awaitable[None]]

# liveall: one series per live worker, labelled with its pid.
WORKER_UP = Gauge("metrics_test_worker_up", "1 per running worker", multiprocess_mode="liveall")
STARTS = Counter("metrics_test_worker_starts_total", "Workers started")


def create_app() -> App:
    WORKER_UP.set(1)
    STARTS.inc()

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = render_metrics()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode())]})
        await send({"type": "http.response.body", "body": body})

    return app
