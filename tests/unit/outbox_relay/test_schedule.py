"""Retry backoff and the idle poll interval."""

from __future__ import annotations

import random

from libs.backoff import Backoff
from services.outbox_relay.schedule import IdlePoll, retry_backoff


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter() -> None:
    backoff = retry_backoff(initial_s=0.1, maximum_s=2.0)
    rng = random.Random(7)
    for attempt, ceiling in [(0, 0.1), (1, 0.2), (2, 0.4), (4, 1.6), (5, 2.0), (40, 2.0)]:
        for _ in range(50):
            delay = backoff.delay(attempt, rng)
            assert ceiling * 0.75 - 1e-9 <= delay <= ceiling + 1e-9


def test_backoff_without_jitter_is_exact() -> None:
    assert Backoff(0.5, 10.0, jitter=0.0).delay(3) == 4.0


def test_idle_poll_grows_while_empty_and_resets_on_rows() -> None:
    poll = IdlePoll(minimum_s=0.01, maximum_s=0.05)
    assert [poll.found_nothing() for _ in range(5)] == [0.01, 0.02, 0.04, 0.05, 0.05]
    poll.found_rows()
    assert poll.found_nothing() == 0.01
