"""Run a service's ASGI app: uvicorn with uvloop and httptools (measured fastest here; see bench/)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import uvicorn

from libs.logs import setup_logging

__all__ = ["serve"]


def serve(app_factory: str, *, host: str, port: int, workers: int = 1, data_dir: str | Path = ".data") -> None:
    """Serve ``module:factory``; with several workers, metrics are aggregated across processes."""
    setup_logging()
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = Path(data_dir) / "metrics"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"{port}-", dir=metrics_dir)
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
