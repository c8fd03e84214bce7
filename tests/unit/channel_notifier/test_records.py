"""What a delivery attempt keeps: its number, time, answer, latency and an error safe to show."""

from __future__ import annotations

from services.channel_notifier.domain.records import (
    ATTEMPTS_KEPT,
    MAX_ATTEMPT_ERROR,
    AttemptRecord,
    DeliveryAttempt,
    attempt_slot,
    redact_error,
)

SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"


def test_an_error_never_keeps_the_channels_secrets_or_a_urls_credentials_and_query() -> None:
    text = (
        f"ConnectError: https://user:hunter22@shop.example/hook?token=abc&sig=def failed; key {SECRET}; "
        f"bare {SECRET.removeprefix('whsec_')}"
    )
    kept = redact_error(text, [SECRET])
    assert kept is not None
    assert "hunter22" not in kept and "token=abc" not in kept and "QUJDREVG" not in kept
    assert "https://[redacted]@shop.example/hook?[redacted]" in kept
    assert kept.count("[redacted]") == 4


def test_an_error_is_bounded_and_none_stays_none() -> None:
    assert redact_error(None) is None
    assert redact_error("") == ""
    assert len(redact_error("x" * 5000) or "") == MAX_ATTEMPT_ERROR
    # A short secret (a test value, say) is no reason to mangle every error that contains its letters.
    assert redact_error("HTTP 500", ["0"]) == "HTTP 500"


def test_an_attempts_record_has_its_latency_in_milliseconds_and_its_error_redacted() -> None:
    record = AttemptRecord.of(2, 100.0, 0.1234567, "http_error", 500, f"boom {SECRET}", [SECRET])
    assert (record.attempt, record.started_at, record.latency_ms, record.status_code) == (2, 100.0, 123.457, 500)
    assert record.error == "boom [redacted]" and record.outcome == "http_error"
    assert AttemptRecord.of(1, 0.0, -1.0, "delivered", 200, None).latency_ms == 0.0


def test_a_rows_attempts_fill_a_ring_of_the_newest() -> None:
    slots = [attempt_slot(seq) for seq in range(1, 3 * ATTEMPTS_KEPT + 1)]
    assert len(set(slots)) == ATTEMPTS_KEPT
    # The last ATTEMPTS_KEPT attempts sit in distinct slots: each new one replaces the oldest kept.
    assert sorted(slots[-ATTEMPTS_KEPT:]) == list(range(ATTEMPTS_KEPT))
    assert attempt_slot(ATTEMPTS_KEPT + 5) == attempt_slot(5)


def test_an_attempt_as_the_api_shows_it() -> None:
    shown = DeliveryAttempt(7, 3, 12, AttemptRecord(1, 5.0, 9.5, "delivered", 200)).as_dict("shop")
    assert shown == {
        "delivery_id": 7,
        "channel": "shop",
        "seq": 12,
        "attempt": 1,
        "started_at": 5.0,
        "status_code": 200,
        "latency_ms": 9.5,
        "error": None,
        "outcome": "delivered",
    }
