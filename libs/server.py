"""Run a service's ASGI app: uvicorn with uvloop and httptools (measured fastest here; see bench/)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

import msgspec
import uvicorn
from litestar import Litestar
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from libs.config import StockwireSettings, load_service_config
from libs.http import error_body
from libs.logs import setup_logging
from libs.metrics import reset_multiprocess_dir
from libs.tracing import setup_service_telemetry

T = TypeVar("T")

__all__ = [
    "GC_THRESHOLDS",
    "REQUEST_TIMEOUT_S",
    "SERVER_PROCESS_ENV",
    "HttpProtocol",
    "serve",
    "service_app",
    "service_name",
]

log = logging.getLogger("stockwire.http")

SERVER_PROCESS_ENV = "STOCKWIRE_SERVER_PROCESS"
"""Set by :func:`serve` (and so inherited by its workers): the app is the process's one long-lived app,
whose garbage collector :func:`service_app` may tune. An app built inside another process (a test's
client) leaves that process's collector as it is."""

GC_THRESHOLDS = (10_000, 50, 50)
"""The cyclic garbage collector's thresholds in a service (CPython's default: 700, 10, 10). A service
allocates a few thousand container objects per request or batch, nearly all freed by reference
counting; with the default, objects alive at a young collection (requests in flight) are promoted and
scanned again by the older ones. Measured in ``bench.flash_sale`` at 10,000 orders/min, 2 cores, seconds
spent collecting over one step with the heap frozen after start (see :func:`service_app`): default
thresholds, ingress 0.63 and inventory 0.63 (1.02 and 0.79 without the freeze); these, 0.16 and 0.43."""


REQUEST_TIMEOUT_S = 30.0
"""The longest a request may take to arrive whole, from its first byte to the end of its body: far above
what a webhook or an API call needs on any link, and a bound on how long a client that stops sending
(or sends a byte now and then) holds a connection and the task waiting for its body."""


def _answer(status: bytes, code: str, detail: str) -> bytes:
    body = msgspec.json.encode(error_body(code, detail))
    head = b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
    return head + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools) with every service's rules at the wire: what the parser
    refuses (a malformed request line, header or ``Content-Length``, two lengths) is answered 400 with
    the JSON ``{error, detail}`` of every other refusal, not uvicorn's plain text; and a request that has
    not arrived whole :attr:`request_timeout_s` seconds after its first byte is answered 408 (when the
    app has not begun an answer) and its connection closed, so the app's wait for the body ends."""

    request_timeout_s: float = REQUEST_TIMEOUT_S

    _request_timer: asyncio.TimerHandle | None = None

    def on_message_begin(self) -> None:
        """A request's first byte: its clock starts (:attr:`request_timeout_s`)."""
        super().on_message_begin()
        self._disarm()
        self._request_timer = self.loop.call_later(self.request_timeout_s, self._request_too_slow)

    def on_message_complete(self) -> None:
        """The request's last byte: in time, so its clock stops."""
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection ended (``exc``: why, None for a close): no clock runs for it any longer."""
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """What the parser refused (``msg``: uvicorn's text, not sent): 400 ``bad_request`` as JSON, then
        the connection closed (what follows on it cannot be told from the bad request)."""
        self._disarm()
        detail = "the request is not valid HTTP/1.1 (its request line, a header, or the length of its body)"
        self.transport.write(_answer(b"400 Bad Request", "bad_request", detail))
        self.transport.close()

    def _disarm(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_too_slow(self) -> None:
        self._request_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.info("request from %s not whole within %gs: 408, connection closed", client, self.request_timeout_s)
        if cycle is None or not cycle.response_started:
            detail = f"the request did not arrive whole within {self.request_timeout_s:g} seconds"
            self.transport.write(_answer(b"408 Request Timeout", "request_timeout", detail))
        self.transport.close()


def service_name(app_factory: str) -> str:
    """``services.channel_notifier.app:create_app`` → ``channel_notifier``; ``pkg.mod:f`` → ``mod``."""
    parts = app_factory.partition(":")[0].split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "services" else parts[-1]


def serve(
    app_factory: str,
    *,
    host: str,
    port: int,
    workers: int = 1,
    data_dir: str | Path = ".data",
    log_format: Literal["text", "json"] = "text",
) -> None:
    """Serve ``module:factory``; with several workers, metrics are aggregated across processes.

    The workers' metrics live in ``<data_dir>/metrics/<service>-<port>`` (emptied here, before any
    worker starts), or in ``PROMETHEUS_MULTIPROC_DIR`` when the environment names one (its ``*.db``
    files are removed). ``service`` is the package of ``services.<service>.app:...`` factories, else
    the factory's module name.
    """
    setup_logging(fmt=log_format)
    os.environ[SERVER_PROCESS_ENV] = "1"
    explicit = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if explicit:
        for stale in Path(explicit).glob("*.db"):
            stale.unlink()
    else:
        # Emptied with one worker too: a directory an earlier start with more workers left behind.
        metrics_dir = reset_multiprocess_dir(data_dir, service_name(app_factory), port, create=workers > 1)
        if workers > 1:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    uvicorn.run(
        app_factory,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http=HttpProtocol,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        server_header=False,
    )


def service_app(section: str, settings_cls: type[T], build: Callable[[StockwireSettings, T], Litestar]) -> Litestar:
    """What a service's uvicorn factory does: logging, the shared settings and the service's own
    ``[section]`` read from the file and the environment (a configuration that cannot be used ends the
    process, see :func:`libs.config.load_service_config`), telemetry, then ``build(shared, settings)``;
    in a server process (:data:`SERVER_PROCESS_ENV`), the garbage collector set to :data:`GC_THRESHOLDS`
    and the heap frozen once the app has started."""
    setup_logging()
    shared, settings = load_service_config(section, settings_cls)
    setup_service_telemetry(shared, section)
    app = build(shared, settings)
    if os.environ.get(SERVER_PROCESS_ENV):
        app.on_startup.append(_freeze_the_heap)
        gc.set_threshold(*GC_THRESHOLDS)
    return app


def _freeze_the_heap(_: Litestar) -> None:
    # Once started (after the lifespans' set-up), what exists lives as long as the process: the modules,
    # the app, the settings, the compiled profiles. Frozen, the collector never scans it again.
    gc.collect()
    gc.freeze()
