from __future__ import annotations

import pytest

from libs.signing import generate_standard_secret
from services.channel_notifier.domain.channel import (
    Channel,
    ChannelError,
    ChannelFilters,
    jetstream_consumer_name,
    jetstream_filter_subjects,
    validate_buffer,
    validate_kind_filters,
    validate_name,
    validate_secret,
    visible_available,
)


@pytest.mark.parametrize(("available", "buffer", "seen"), [(10, 0, 10), (10, 3, 7), (3, 3, 0), (2, 5, 0), (0, 0, 0)])
def test_buffer_is_withheld_and_never_goes_negative(available: int, buffer: int, seen: int) -> None:
    assert visible_available(available, buffer) == seen


def test_empty_sku_filter_matches_everything() -> None:
    filters = ChannelFilters.build()
    assert filters.matches("availability", "ANY-sku.1")
    assert not filters.matches("reserved", "ANY-sku.1")


def test_sku_patterns_are_case_sensitive_globs() -> None:
    filters = ChannelFilters.build(["TSHIRT-*", "MUG-0?", "exact.sku"])
    assert filters.matches_sku("TSHIRT-RED-L")
    assert filters.matches_sku("MUG-01")
    assert filters.matches_sku("exact.sku")
    assert not filters.matches_sku("tshirt-red")
    assert not filters.matches_sku("MUG-010")
    assert not filters.matches_sku("exactXsku")


def test_filters_refuse_unknown_kinds_and_bad_patterns() -> None:
    with pytest.raises(ChannelError, match="unknown event kinds"):
        ChannelFilters.build(kinds=["availability", "teleported"])
    with pytest.raises(ChannelError):
        ChannelFilters.build(skus=[""])
    with pytest.raises(ChannelError):
        ChannelFilters.build(kinds=[])


def test_webhooks_take_availability_only() -> None:
    validate_kind_filters("webhook", ChannelFilters.build())
    validate_kind_filters("jetstream", ChannelFilters.build(kinds=["reserved", "availability"]))
    with pytest.raises(ChannelError, match="availability changes only"):
        validate_kind_filters("webhook", ChannelFilters.build(kinds=["reserved"]))
    with pytest.raises(ChannelError):
        validate_kind_filters("carrier-pigeon", ChannelFilters.build())


def test_jetstream_subjects_from_literal_skus_are_encoded_tokens() -> None:
    filters = ChannelFilters.build(["SKU-1", "a.b c"], ["availability", "reserved"])
    assert jetstream_filter_subjects(filters) == [
        "inventory.availability.SKU-1",
        "inventory.availability.a~2Eb~20c",
        "inventory.reserved.SKU-1",
        "inventory.reserved.a~2Eb~20c",
    ]


def test_jetstream_subjects_with_wildcards_take_the_whole_kind() -> None:
    assert jetstream_filter_subjects(ChannelFilters.build(["SKU-*"])) == ["inventory.availability.>"]
    assert jetstream_filter_subjects(ChannelFilters.build()) == ["inventory.availability.>"]


@pytest.mark.parametrize("name", ["storefront", "b2b", "mk-1", "a_b", "0"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "Storefront", "a.b", "a b", "-x", "x" * 65, None, 5])
def test_invalid_names(name: object) -> None:
    with pytest.raises(ChannelError) as error:
        validate_name(name)
    assert error.value.code == "invalid_name"


def test_consumer_names_cannot_collide_with_the_service_consumers() -> None:
    assert jetstream_consumer_name("notifier") == "chan-notifier"
    assert jetstream_consumer_name("notifier") != "channel-notifier"


def test_buffer_validation() -> None:
    assert validate_buffer(5, "webhook") == 5
    assert validate_buffer(2**31 - 1, "webhook") == 2**31 - 1
    for bad in (-1, 1.5, True, "3", 2**31, 2**63, 2**64):
        with pytest.raises(ChannelError):
            validate_buffer(bad, "webhook")
    with pytest.raises(ChannelError, match="jetstream channel"):
        validate_buffer(2, "jetstream")
    assert validate_buffer(0, "jetstream") == 0


def test_secret_validation() -> None:
    secret = generate_standard_secret()
    assert validate_secret(secret) == secret
    for bad in ("plain", "whsec_!!!", "whsec_c2hvcnQ=", None):
        with pytest.raises(ChannelError) as error:
            validate_secret(bad)
        assert error.value.code == "invalid_secret"


def test_channel_wants_only_when_webhook_and_matching() -> None:
    webhook = Channel(1, "a", "webhook", "http://localhost/x", ("whsec_hidden",), ChannelFilters.build(["A*"]))
    pulled = Channel(2, "b", "jetstream", None, (), ChannelFilters.build())
    assert webhook.wants("A1") and not webhook.wants("B1")
    assert not pulled.wants("A1")
    assert "whsec_hidden" not in repr(webhook)
