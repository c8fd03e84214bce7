"""One log format for every process, so that ``stockwire up``'s prefixed output lines up; or, with
``[logging] format = "json"``, one JSON object a line that carries the trace id while a span is current.

Either way a record's message cannot break its line: what a client sent (a path, a header, an id, a body)
often ends up in one, and a line break in it would let the client write a line of its own into the log.
Both formatters escape control characters in the message (see :func:`escape_controls`); a traceback keeps
its line breaks and loses its other control characters."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from typing import Literal

__all__ = ["LOG_LEVELS", "JsonFormatter", "TextFormatter", "escape_controls", "setup_logging"]

_TEXT_FORMAT = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# C0, DEL, C1 and the two Unicode line and paragraph separators: every code point that ends a line for
# some reader (str.splitlines, a terminal, a log shipper) or moves the cursor of a terminal.
_CONTROLS = [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]


def _escape(code: int) -> str:
    char = chr(code)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


# Backslashes are left as they are: a message that quotes a value itself (``%r``) is not doubled.
_ESCAPES = {code: _escape(code) for code in _CONTROLS}
_ESCAPES_BUT_NEWLINE = {code: text for code, text in _ESCAPES.items() if code != ord("\n")}


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    r"""``text`` with each control character written as an escape: ``\n``, ``\r``, ``\t``, ``\xNN`` (the rest
    of C0, DEL, C1) and ``\u2028``, ``\u2029``; printable text (backslashes included) as it is.
    ``keep_newlines``: line feeds stay (a traceback's lines)."""
    return text.translate(_ESCAPES_BUT_NEWLINE if keep_newlines else _ESCAPES)


class TextFormatter(logging.Formatter):
    """A :class:`logging.Formatter` whose line is one line: the formatted message escaped
    (:func:`escape_controls`), the traceback and stack that follow it keeping their line breaks."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The line of ``record`` (time, level, logger, message), control characters escaped."""
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: logging._SysExcInfoType) -> str:
        """The traceback, its lines kept and other control characters escaped."""
        return escape_controls(super().formatException(ei), keep_newlines=True)

    def formatStack(self, stack_info: str) -> str:
        """The stack, its lines kept and other control characters escaped."""
        return escape_controls(super().formatStack(stack_info), keep_newlines=True)


class JsonFormatter(TextFormatter):
    """``{"ts", "level", "logger", "message"}``, plus ``trace_id`` and ``span_id`` when a span is current
    (tracing on, see :mod:`libs.tracing`) or the record names its event's (``extra=`` of
    :func:`libs.tracing.event_log_ids`), ``exc_info`` for an exception and ``stack_info`` for a stack. The
    message is escaped as the text format escapes it, so that a viewer showing it shows one line."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object for ``record``, on one line."""
        from libs.tracing import current_ids

        line: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": escape_controls(record.getMessage()),
        }
        # A line about one event of a batch names that event's context (libs.tracing.event_log_ids).
        given = getattr(record, "trace_id", None)
        ids = (given, getattr(record, "span_id", "")) if isinstance(given, str) else current_ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
"""The levels ``STOCKWIRE_LOG_LEVEL`` takes (any case)."""


def setup_logging(level: str | None = None, fmt: Literal["text", "json"] = "text") -> None:
    """Configure the root logger once per process: ``level``, else ``STOCKWIRE_LOG_LEVEL``, else INFO (one
    of :data:`LOG_LEVELS`; another ends the process with one line on stderr, exit status 2);
    ``fmt``: ``[logging] format``. Every logger of the process (uvicorn's and Litestar's too) writes
    through the root's one handler and so through :class:`TextFormatter` or :class:`JsonFormatter`."""
    chosen = (level or os.environ.get("STOCKWIRE_LOG_LEVEL") or "INFO").upper()
    if chosen not in LOG_LEVELS:
        # Before any configuration is read, so said as every configuration error is said, not as a traceback.
        from libs.config import ConfigError, config_error_line

        problem = ConfigError(f"STOCKWIRE_LOG_LEVEL={chosen!r} is not a log level; one of {', '.join(LOG_LEVELS)}")
        print(config_error_line(problem), file=sys.stderr, flush=True)
        raise SystemExit(2)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(_TEXT_FORMAT))
    logging.basicConfig(level=chosen, handlers=[handler], force=True)
    # The access log of every request drowns the lines that matter.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("nats").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
