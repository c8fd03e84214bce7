"""The notifier's memo of trace context by (SKU, version), for its delivery attempts."""

from __future__ import annotations

from services.channel_notifier.tracecontext import TraceMemo


def test_keeps_the_trace_context_only_and_forgets_the_oldest() -> None:
    memo = TraceMemo(capacity=2)
    memo.put("A", 1, {"traceparent": "00-a-b-01", "tracestate": "k=v", "Nats-Msg-Id": "x"})
    memo.put("B", 1, {"Nats-Msg-Id": "y"})  # no context: nothing kept
    assert memo.get("A", 1) == {"traceparent": "00-a-b-01", "tracestate": "k=v"}
    assert memo.get("B", 1) is None
    memo.put("B", 2, {"traceparent": "00-c-d-01"})
    memo.put("C", 3, {"traceparent": "00-e-f-01"})
    assert memo.get("A", 1) is None and memo.get("C", 3) == {"traceparent": "00-e-f-01"}
