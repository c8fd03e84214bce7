"""libs.tracing and the JSON log format: off costs nothing, on propagates W3C trace context."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs import tracing
from libs.config import ConfigError, TracingSettings, load_raw, load_settings
from libs.contracts import HEADER_TRACEPARENT, HEADER_TRACESTATE
from libs.logs import JsonFormatter

ROOT = Path(__file__).resolve().parents[3]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "spans.jsonl"
    assert tracing.setup_tracing(TracingSettings(exporter="file", path=str(path)), "test")
    try:
        yield path
    finally:
        tracing.shutdown_tracing()


def _spans(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_off_imports_nothing_of_opentelemetry_and_writes_no_header() -> None:
    script = textwrap.dedent(
        """
        import sys
        from libs import tracing
        from libs.config import TracingSettings
        import services.ingress.app, services.inventory.app, services.outbox_relay.app
        import services.channel_notifier.app
        assert tracing.setup_tracing(TracingSettings(), "ingress") is False
        assert not tracing.enabled() and tracing.current_ids() is None
        assert tracing.inject({}) == {}
        loaded = sorted(name for name in sys.modules if name.startswith("opentelemetry"))
        assert not loaded, loaded
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_the_header_names_are_the_propagators() -> None:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    assert TraceContextTextMapPropagator().fields == {HEADER_TRACEPARENT, HEADER_TRACESTATE}


def test_a_span_continues_the_callers_trace_and_passes_its_own_context_on(traced: Path) -> None:
    with tracing.span("outer", parent={HEADER_TRACEPARENT: PARENT, HEADER_TRACESTATE: "k=v"}, kind="server") as outer:
        headers = dict(tracing.inject({}))
        ids = tracing.current_ids()
    later = tracing.start_span("later", parent=headers, attributes={"stockwire.kinds": ["received"]})
    carried = dict(tracing.inject({}, of=later))
    later.end()
    tracing.shutdown_tracing()
    assert ids == (TRACE_ID, f"{outer.get_span_context().span_id:016x}")
    assert headers[HEADER_TRACEPARENT] == f"00-{TRACE_ID}-{ids[1]}-01"
    assert headers[HEADER_TRACESTATE] == "k=v"
    assert carried[HEADER_TRACEPARENT].split("-")[1] == TRACE_ID
    spans = {span["name"]: span for span in _spans(traced)}
    assert spans["outer"]["parent_id"] == "0x00f067aa0ba902b7"
    assert spans["later"]["parent_id"] == f"0x{ids[1]}"
    assert spans["later"]["attributes"] == {"stockwire.kinds": ["received"]}
    assert spans["outer"]["resource"]["attributes"]["service.name"] == "stockwire-test"  # type: ignore[index]


def test_no_caller_context_starts_a_trace(traced: Path) -> None:
    with tracing.span("root", parent={}):
        ids = tracing.current_ids()
    assert ids is not None and ids[0] != TRACE_ID


def test_json_log_lines_carry_the_trace_id_while_a_span_is_current(traced: Path) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("stockwire.test.tracing")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("outside")
        with tracing.span("work", parent={HEADER_TRACEPARENT: PARENT}):
            logger.warning("inside %s", "a span")
    finally:
        logger.removeHandler(handler)
    outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert outside["message"] == "outside" and "trace_id" not in outside
    assert inside["message"] == "inside a span" and inside["trace_id"] == TRACE_ID
    assert len(inside["span_id"]) == 16 and inside["level"] == "WARNING"


def test_a_line_about_one_event_carries_that_events_ids(traced: Path) -> None:
    ids = tracing.event_log_ids({HEADER_TRACEPARENT: PARENT})
    assert ids == {"trace_id": TRACE_ID, "span_id": "00f067aa0ba902b7"}
    for headers in [None, {}, {HEADER_TRACEPARENT: "00-ignored"}, {HEADER_TRACEPARENT: f"00-{'0' * 32}-{'1' * 16}-01"}]:
        assert tracing.event_log_ids(headers) == {}
    record = logging.LogRecord("stockwire.test", logging.WARNING, __file__, 1, "event %s", ("e1",), None)
    record.__dict__.update(ids)
    with tracing.span("batch", parent={}):  # the record's own ids win over the current span's
        line = json.loads(JsonFormatter().format(record))
    assert (line["trace_id"], line["span_id"], line["message"]) == (TRACE_ID, "00f067aa0ba902b7", "event e1")


def test_a_line_about_one_event_carries_nothing_while_tracing_is_off() -> None:
    assert tracing.event_log_ids({HEADER_TRACEPARENT: PARENT}) == {}


def test_tracing_and_logging_sections_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "stockwire.toml"
    config.write_text('[tracing]\nexporter = "file"\npaht = "x"\n')
    with pytest.raises(ConfigError, match=r"unknown key \[tracing\] paht.*did you mean path"):
        load_settings(load_raw(config, env={}))
    with pytest.raises(ConfigError, match="sample_ratio"):
        load_settings(load_raw(None, env={"STOCKWIRE__TRACING__SAMPLE_RATIO": "1.5"}))
    with pytest.raises(ConfigError, match="exporter"):
        load_settings(load_raw(None, env={"STOCKWIRE__TRACING__EXPORTER": "jaeger"}))
    settings = load_settings(
        load_raw(None, env={"STOCKWIRE__TRACING__EXPORTER": "otlp", "STOCKWIRE__LOGGING__FORMAT": "json"})
    )
    assert (settings.tracing.exporter, settings.logging.format) == ("otlp", "json")
    assert load_settings(load_raw(None, env={})).tracing.exporter == "none"


def test_the_otlp_exporter_is_imported_only_when_chosen_and_missing_it_is_a_config_error() -> None:
    script = textwrap.dedent(
        """
        import sys
        from libs import tracing
        from libs.config import ConfigError, TracingSettings
        tracing.setup_tracing(TracingSettings(exporter="file", path="/dev/null"), "x")
        assert "opentelemetry.exporter.otlp.proto.http" not in sys.modules
        tracing.shutdown_tracing()
        sys.modules["opentelemetry.exporter.otlp.proto.http.trace_exporter"] = None
        try:
            tracing.setup_tracing(TracingSettings(exporter="otlp"), "x")
        except ConfigError as exc:
            print(exc)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "stockwire[otlp]" in proc.stdout, proc.stdout


def test_otlp_exports_to_the_configured_endpoint() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from libs.tracing import _exporter

    exporter = _exporter(TracingSettings(exporter="otlp", endpoint="http://collector:4318/v1/traces"), ".data")
    assert isinstance(exporter, OTLPSpanExporter)
    assert exporter._endpoint == "http://collector:4318/v1/traces"
