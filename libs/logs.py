"""One log format for every process, so that ``stockwire up``'s prefixed output lines up; or, with
``[logging] format = "json"``, one JSON object a line that carries the trace id while a span is current."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from typing import Literal

__all__ = ["JsonFormatter", "setup_logging"]

_TEXT_FORMAT = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message"}``, plus ``trace_id`` and ``span_id`` when a span is current
    (tracing on, see :mod:`libs.tracing`) or the record names its event's (``extra=`` of
    :func:`libs.tracing.event_log_ids`), and ``exc_info`` for an exception."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object for ``record``, on one line."""
        from libs.tracing import current_ids

        line: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # A line about one event of a batch names that event's context (libs.tracing.event_log_ids).
        given = getattr(record, "trace_id", None)
        ids = (given, getattr(record, "span_id", "")) if isinstance(given, str) else current_ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def setup_logging(level: str | None = None, fmt: Literal["text", "json"] = "text") -> None:
    """Configure the root logger once per process: ``level``, else ``STOCKWIRE_LOG_LEVEL``, else INFO;
    ``fmt``: ``[logging] format``."""
    chosen = (level or os.environ.get("STOCKWIRE_LOG_LEVEL") or "INFO").upper()
    if fmt == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=chosen, handlers=[handler], force=True)
    else:
        logging.basicConfig(level=chosen, format=_TEXT_FORMAT, force=True)
    # The access log of every request drowns the lines that matter.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("nats").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
