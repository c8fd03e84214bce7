"""The lease state machine (libs.lease): a standby can only win after the holder stopped calling itself leader."""

from __future__ import annotations

import pytest

from libs.lease import Acquire, Inspect, LeaseRecord, LeaseState, Renew, Role, Wait

TTL = 4.0


def _leader(now: float = 0.0) -> LeaseState:
    state = LeaseState("me", TTL)
    assert state.next_action(now) == Inspect()
    assert state.observed_absent(now) == Acquire(None)
    state.acquired(revision=1, sent_at=now)
    return state


def test_acquire_an_absent_key_then_renew_every_quarter_ttl() -> None:
    state = _leader()
    assert state.is_leader(0.1)
    assert state.next_action(0.5) == Wait(TTL / 4)
    assert state.next_action(TTL / 4) == Renew(1)
    state.renewed(revision=7, sent_at=TTL / 4)
    assert state.next_action(TTL / 4 + 0.01) == Wait(TTL / 2)
    assert state.is_leader(TTL + 0.1), "validity runs from the last renewal"


def test_leadership_ends_before_a_standby_may_take_over() -> None:
    leader = _leader(now=10.0)
    standby = LeaseState("other", TTL)
    # The standby first sees the holder's revision no earlier than it was written.
    assert isinstance(standby.observed(1, LeaseRecord("me", TTL), now=10.0), Wait)
    # The leader cannot renew (NATS away) and gives up before the standby's ttl has passed.
    leader.failed(11.0)
    assert leader.is_leader(13.0)
    assert not leader.is_leader(10.0 + TTL - leader.margin_s)
    assert isinstance(standby.observed(1, LeaseRecord("me", TTL), now=13.9), Wait)
    assert standby.observed(1, LeaseRecord("me", TTL), now=14.0) == Acquire(1), "same revision for a whole ttl"
    leader.failed(14.5)
    assert leader.role is Role.STANDBY


def test_a_changing_revision_restarts_the_standbys_count() -> None:
    standby = LeaseState("other", TTL)
    standby.observed(1, LeaseRecord("me", TTL), now=0.0)
    standby.observed(2, LeaseRecord("me", TTL), now=3.5)
    assert isinstance(standby.observed(2, LeaseRecord("me", TTL), now=5.0), Wait)
    assert standby.observed(2, LeaseRecord("me", TTL), now=7.5) == Acquire(2)


def test_a_longer_ttl_written_by_the_holder_is_honoured() -> None:
    standby = LeaseState("other", 1.0)
    standby.observed(3, LeaseRecord("slow", 10.0), now=0.0)
    assert isinstance(standby.observed(3, LeaseRecord("slow", 10.0), now=5.0), Wait)
    assert standby.observed(3, LeaseRecord("slow", 10.0), now=10.0) == Acquire(3)


def test_a_refused_renewal_steps_down_at_once() -> None:
    state = _leader()
    state.rejected(now=1.0)
    assert not state.is_leader(1.0)
    assert state.next_action(1.0) == Inspect()


def test_a_renewal_whose_answer_was_lost_is_recognised_as_ours() -> None:
    state = _leader()
    state.rejected(now=1.0)  # our update went through but we believed otherwise
    assert state.observed(2, LeaseRecord("me", TTL), now=1.1) == Renew(2)
    assert state.role is Role.LEADER
    assert not state.is_leader(TTL), "validity still comes from the last renewal we saw confirmed"


def test_after_lapsing_it_carries_on_only_by_compare_and_set_on_its_revision() -> None:
    state = _leader()
    state.failed(TTL + 1)  # lapsed while NATS did not answer
    assert state.role is Role.STANDBY
    action = state.next_action(TTL + 5)
    assert action == Renew(1), "succeeds only if nobody wrote the key meanwhile"
    state.rejected(TTL + 5)
    assert state.next_action(TTL + 5) == Inspect()


def test_release_and_bad_ttl() -> None:
    state = _leader()
    state.released()
    assert not state.is_leader(0.1)
    with pytest.raises(ValueError):
        LeaseState("x", 0)
