"""Run a service's ASGI app: uvicorn with uvloop and httptools (measured fastest here; see bench/)."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

import uvicorn
from litestar import Litestar

from libs.config import StockwireSettings, load_service_config
from libs.logs import setup_logging
from libs.metrics import reset_multiprocess_dir
from libs.tracing import setup_service_telemetry

T = TypeVar("T")

__all__ = ["GC_THRESHOLDS", "SERVER_PROCESS_ENV", "serve", "service_app", "service_name"]

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
        http="httptools",
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
