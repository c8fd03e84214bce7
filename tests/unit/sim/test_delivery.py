from __future__ import annotations

import random
from collections import Counter

import pytest

from stockwire.sim.config import ProducerConfig
from stockwire.sim.delivery import Copy, backoff_delay, delivery_sequence, retryable, send_offsets
from stockwire.sim.plan import Webhook

WEBHOOKS = [Webhook(f"e{i}", "order.created", {"order_id": f"o{i}"}) for i in range(5000)]


def test_without_faults_the_sequence_is_the_plan() -> None:
    config = ProducerConfig(duplicate_rate=0, reorder_rate=0)
    sequence = delivery_sequence(WEBHOOKS, config, random.Random(1))
    assert [d.webhook for d in sequence] == WEBHOOKS
    assert {d.copy for d in sequence} == {Copy.ORIGINAL}


def test_duplicates_follow_their_original_at_the_configured_share() -> None:
    config = ProducerConfig(duplicate_rate=0.2, reorder_rate=0, reorder_window=5)
    sequence = delivery_sequence(WEBHOOKS, config, random.Random(2))
    copies = Counter(d.copy for d in sequence)
    assert copies[Copy.ORIGINAL] == len(WEBHOOKS)
    assert copies[Copy.DUPLICATE] / len(WEBHOOKS) == pytest.approx(0.2, abs=0.02)
    first_seen: dict[str, int] = {}
    for index, delivery in enumerate(sequence):
        if delivery.copy is Copy.ORIGINAL:
            first_seen[delivery.webhook.event_id] = index
        else:
            assert delivery.webhook.event_id in first_seen


def test_reordering_moves_a_share_of_events_behind_later_ones_within_the_window() -> None:
    config = ProducerConfig(duplicate_rate=0, reorder_rate=0.1, reorder_window=8)
    sequence = delivery_sequence(WEBHOOKS, config, random.Random(3))
    positions = {d.webhook.event_id: i for i, d in enumerate(sequence)}
    moved = [i for i, w in enumerate(WEBHOOKS) if positions[w.event_id] > i]
    assert 0.07 < len(moved) / len(WEBHOOKS) < 0.13
    assert all(positions[WEBHOOKS[i].event_id] - i <= 9 for i in moved)
    assert sorted(positions.values()) == list(range(len(WEBHOOKS)))


def test_forged_copies_are_added_when_asked() -> None:
    config = ProducerConfig(duplicate_rate=0, reorder_rate=0, forged_rate=0.05)
    sequence = delivery_sequence(WEBHOOKS, config, random.Random(4))
    assert Counter(d.copy for d in sequence)[Copy.FORGED] == pytest.approx(250, abs=60)


def test_offsets_follow_the_rate_and_the_burst() -> None:
    config = ProducerConfig(rate=100, burst_at=0.5, burst_share=0.2, burst_factor=5)
    offsets = send_offsets(1000, config)
    assert offsets[0] == 0 and offsets == sorted(offsets)
    assert offsets[500] == pytest.approx(5.0)
    assert offsets[700] - offsets[500] == pytest.approx(200 / 500)
    assert offsets[999] - offsets[700] == pytest.approx(299 / 100)
    assert send_offsets(10, ProducerConfig(rate=0)) == [0.0] * 10


def test_backoff_grows_to_the_cap_with_jitter() -> None:
    config = ProducerConfig(backoff_base_s=0.1, backoff_max_s=2.0)
    rng = random.Random(5)
    assert 0.05 <= backoff_delay(1, config, rng) <= 0.1
    assert 0.2 <= backoff_delay(3, config, rng) <= 0.4
    assert all(1.0 <= backoff_delay(n, config, rng) <= 2.0 for n in range(6, 40))


def test_which_answers_are_worth_retrying() -> None:
    assert retryable(None) and retryable(503) and retryable(500) and retryable(429)
    assert not retryable(401) and not retryable(422) and not retryable(404)
