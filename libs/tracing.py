"""OpenTelemetry traces across the services (docs/architecture.md, "Traces").

One process sets tracing up once (:func:`setup_tracing`, from ``[tracing]``); every other function here
is meant to be called behind :func:`enabled`, which is a global read. While tracing is off (the
default) nothing of OpenTelemetry is imported, no span is made and no header is read or written, so
the hot paths pay one ``if``.

Context travels as W3C Trace Context (``traceparent``/``tracestate``,
:data:`libs.contracts.HEADER_TRACEPARENT`) through OpenTelemetry's own propagator: in the webhook's
HTTP headers, in NATS message headers, in outbox rows' headers and in outbound channel webhooks.

Exporters: ``otlp`` (OTLP over HTTP; the ``otlp`` extra, imported only when chosen), ``file`` (one JSON
span a line, appended: several processes may share the file) and ``console`` (stderr).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from libs.config import ConfigError, StockwireSettings, TracingSettings, config_error_line
from libs.contracts import HEADER_TRACEPARENT

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "current_ids",
    "enabled",
    "event_log_ids",
    "flush",
    "has_context",
    "inject",
    "mark_error",
    "setup_service_telemetry",
    "setup_tracing",
    "shutdown_tracing",
    "span",
    "start_span",
]

log = logging.getLogger("stockwire.tracing")

_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_propagator: TraceContextTextMapPropagator | None = None
_lock = threading.Lock()


def enabled() -> bool:
    """Whether this process traces: false until :func:`setup_tracing` turned it on."""
    return _tracer is not None


def _span_document(span: ReadableSpan) -> dict[str, Any]:
    """The fields of ``ReadableSpan.to_json`` that say what happened (times in ns since the epoch), built
    for msgspec: to_json costs several times as much, paid by every process that exports."""
    context = span.context
    parent = span.parent
    return {
        "name": span.name,
        "context": {
            "trace_id": f"0x{context.trace_id:032x}" if context else None,
            "span_id": f"0x{context.span_id:016x}" if context else None,
        },
        "kind": str(span.kind),
        "parent_id": f"0x{parent.span_id:016x}" if parent else None,
        "start_time": span.start_time,
        "end_time": span.end_time,
        "status": {"status_code": span.status.status_code.name, "description": span.status.description},
        "attributes": dict(span.attributes or {}),
        "events": [
            {"name": e.name, "timestamp": e.timestamp, "attributes": dict(e.attributes or {})} for e in span.events
        ],
        "resource": {"attributes": dict(span.resource.attributes)},
    }


def _file_exporter(path: Path) -> SpanExporter:
    import msgspec
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    encoder = msgspec.json.Encoder()

    class FileSpanExporter(SpanExporter):
        """One JSON span a line, appended; each batch is one ``write`` of whole lines (``O_APPEND``), so
        processes sharing the file interleave whole lines."""

        def __init__(self) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            lines = b"".join(encoder.encode(_span_document(span)) + b"\n" for span in spans)
            try:
                os.write(self._fd, lines)
            except OSError as exc:
                log.warning("spans not written to %s: %s", path, exc)
                return SpanExportResult.FAILURE
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            with contextlib.suppress(OSError):
                os.close(self._fd)

    return FileSpanExporter()


def _exporter(settings: TracingSettings, data_dir: str) -> SpanExporter:
    if settings.exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigError(
                "[tracing] exporter = 'otlp' needs the otlp extra: pip install 'stockwire[otlp]'"
            ) from None
        return OTLPSpanExporter(endpoint=settings.endpoint or None)
    if settings.exporter == "file":
        return _file_exporter(Path(settings.path) if settings.path else Path(data_dir) / "traces.jsonl")
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    return ConsoleSpanExporter(out=sys.stderr)


def setup_tracing(settings: TracingSettings, service: str, data_dir: str = ".data") -> bool:
    """Turn tracing on in this process as ``settings`` says (``service``: ``ingress``, ``inventory``…);
    returns whether it is on. Does nothing for ``exporter = "none"``. Raises :class:`ConfigError` when the
    chosen exporter cannot be built (the ``otlp`` extra is not installed)."""
    global _tracer, _provider, _propagator
    if settings.exporter == "none":
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    with _lock:
        if _tracer is not None:
            return True
        provider = TracerProvider(
            resource=Resource.create({"service.name": f"{settings.service_prefix}{service}"}),
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
        )
        provider.add_span_processor(BatchSpanProcessor(_exporter(settings, data_dir)))
        with contextlib.suppress(Exception):  # a provider set earlier in this process stays
            trace.set_tracer_provider(provider)
        _provider, _propagator = provider, TraceContextTextMapPropagator()
        _tracer = provider.get_tracer("stockwire")
    atexit.register(shutdown_tracing)
    log.info("tracing on: %s exporter, service %s%s", settings.exporter, settings.service_prefix, service)
    return True


def flush(timeout_s: float = 5.0) -> None:
    """Export the spans buffered so far (blocking, at most ``timeout_s``); nothing while tracing is off."""
    provider = _provider
    if provider is not None:
        provider.force_flush(int(timeout_s * 1000))


def shutdown_tracing() -> None:
    """Export what is buffered and turn tracing off (at exit, and in tests)."""
    global _tracer, _provider
    with _lock:
        provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


def _parent(headers: Mapping[str, str] | None) -> Any:
    if headers is None or _propagator is None:
        return None
    return _propagator.extract(headers)


@contextlib.contextmanager
def span(
    name: str,
    *,
    parent: Mapping[str, str] | None = None,
    kind: str = "internal",
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """A span, current while the block runs: the child of the current span, or of the context in
    ``parent`` (headers holding ``traceparent``) when given. Call only when :func:`enabled`."""
    assert _tracer is not None, "tracing is off"
    from opentelemetry.trace import SpanKind

    with _tracer.start_as_current_span(
        name, context=_parent(parent), kind=SpanKind[kind.upper()], attributes=attributes
    ) as current:
        yield current


def start_span(
    name: str,
    *,
    parent: Mapping[str, str] | None = None,
    kind: str = "internal",
    attributes: Mapping[str, Any] | None = None,
) -> Span:
    """A span that is not made current; the caller ends it (``span.end()``). Call only when :func:`enabled`."""
    assert _tracer is not None, "tracing is off"
    from opentelemetry.trace import SpanKind

    return _tracer.start_span(name, context=_parent(parent), kind=SpanKind[kind.upper()], attributes=attributes)


def inject(headers: MutableMapping[str, str], of: Span | None = None) -> MutableMapping[str, str]:
    """Write the trace context of ``of`` (else the current span) into ``headers`` (``traceparent``, and
    ``tracestate`` when there is one); returns ``headers``. Nothing is written while tracing is off."""
    if _propagator is None:
        return headers
    if of is None:
        _propagator.inject(headers)
    else:
        from opentelemetry.trace import set_span_in_context

        _propagator.inject(headers, context=set_span_in_context(of))
    return headers


def mark_error(of: Span, description: str) -> None:
    """Set the status of ``of`` to error, with ``description`` (a failed attempt that raised nothing)."""
    from opentelemetry.trace import Status, StatusCode

    of.set_status(Status(StatusCode.ERROR, description))


def has_context(headers: Mapping[str, str]) -> bool:
    """Whether ``headers`` carry a trace context (a ``traceparent``)."""
    return HEADER_TRACEPARENT in headers


def current_ids() -> tuple[str, str] | None:
    """The current span's (trace id, span id) in hex, or None (tracing off, or no span current)."""
    if _tracer is None:
        return None
    from opentelemetry.trace import get_current_span

    context = get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


def event_log_ids(headers: Mapping[str, str] | None) -> dict[str, str]:
    """``extra=`` for a log line about one event of a batch, where no span of the event's is current: the
    ``trace_id`` and ``span_id`` of the context ``headers`` carry (their ``traceparent``), which
    :class:`libs.logs.JsonFormatter` writes instead of the current span's. Empty while tracing is off, or
    when ``headers`` carry no valid context."""
    if _tracer is None or not headers:
        return {}
    match = _TRACEPARENT.fullmatch(headers.get(HEADER_TRACEPARENT, ""))
    if match is None or not int(match[1], 16) or not int(match[2], 16):
        return {}
    return {"trace_id": match[1], "span_id": match[2]}


def setup_service_telemetry(shared: StockwireSettings, service: str) -> None:
    """A service process's logging (``[logging]``) and tracing (``[tracing]``), at the start of its app
    factory. An exporter that cannot be built ends the process as a configuration error does: one line on
    stderr, exit status 2."""
    from libs.logs import setup_logging

    setup_logging(fmt=shared.logging.format)
    try:
        setup_tracing(shared.tracing, service, shared.data_dir)
    except ConfigError as exc:
        print(config_error_line(exc, service), file=sys.stderr, flush=True)
        raise SystemExit(2) from None
