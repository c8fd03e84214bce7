"""The consumers' one retry schedule, as numbers."""

from __future__ import annotations

from libs.consumer import retry_delay_s, retry_schedule


def test_the_schedule_doubles_from_half_a_second_and_is_capped() -> None:
    assert retry_schedule(8) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    assert retry_delay_s(9) == 60.0 and retry_delay_s(30) == 60.0
    assert retry_schedule(1) == []


def test_the_schedule_follows_a_custom_delay() -> None:
    assert retry_schedule(4, lambda n: float(n)) == [1.0, 2.0, 3.0]
