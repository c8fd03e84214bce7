"""The one backoff schedule: ceilings, jitter shares, bounds."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.backoff import Backoff, backoff_ceiling, backoff_delay


def test_the_ceiling_doubles_up_to_the_cap() -> None:
    assert [backoff_ceiling(n, 0.5, 10.0) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff_ceiling(-3, 0.5, 10.0) == 0.5
    assert backoff_ceiling(10**9, 0.5, 10.0) == 10.0


@given(
    st.integers(min_value=-5, max_value=10**6),
    st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    st.integers(min_value=0, max_value=2**32),
)
def test_a_delay_takes_at_most_its_jitter_share_off_the_ceiling(attempt: int, jitter: float, seed: int) -> None:
    ceiling = backoff_ceiling(attempt, 0.1, 30.0)
    delay = backoff_delay(attempt, 0.1, 30.0, jitter=jitter, rng=random.Random(seed))
    assert ceiling * (1 - jitter) - 1e-12 <= delay <= ceiling


def test_full_jitter_spreads_over_the_whole_range() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(3, 1.0, 8.0, rng=rng) for _ in range(2000)]
    assert min(delays) < 0.5 and max(delays) > 7.5


def test_without_jitter_the_delay_is_the_ceiling() -> None:
    assert Backoff(0.5, 10.0, jitter=0.0).delay(3) == 4.0


@pytest.mark.parametrize(
    ("base", "cap", "jitter"), [(0.0, 1.0, 1.0), (2.0, 1.0, 1.0), (0.1, 1.0, 1.5), (0.1, 1.0, -0.1)]
)
def test_an_impossible_schedule_is_refused(base: float, cap: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        Backoff(base, cap, jitter=jitter)
