"""Retry backoff and the idle poll interval."""

from __future__ import annotations

import random

from libs.backoff import Backoff
from services.outbox_relay.schedule import ChangeCheck, IdlePoll, retry_backoff


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


def test_a_change_check_looks_seldom_while_nothing_changes() -> None:
    check = ChangeCheck(shortest_s=0.02, longest_s=0.25)
    assert check.pause_s == 0.02
    assert [check.looked(changed=False, nudged=False) for _ in range(5)] == [0.04, 0.08, 0.16, 0.25, 0.25]


def test_a_commit_no_nudge_announced_brings_the_next_look_close() -> None:
    check = ChangeCheck(shortest_s=0.02, longest_s=0.25)
    for _ in range(4):
        check.looked(changed=False, nudged=False)
    assert check.looked(changed=True, nudged=False) == 0.02  # a writer that does not nudge: keep watching


def test_commits_the_writers_nudges_announce_let_the_looks_thin_out() -> None:
    check = ChangeCheck(shortest_s=0.02, longest_s=0.25)
    assert [check.looked(changed=True, nudged=True) for _ in range(3)] == [0.04, 0.08, 0.16]


def test_a_longest_pause_below_the_shortest_keeps_the_shortest() -> None:
    check = ChangeCheck(shortest_s=0.05, longest_s=0.01)
    assert check.looked(changed=False, nudged=False) == 0.05
