from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.subjects import (
    check_subject_filter,
    decode_token,
    encode_token,
    event_type_levels,
    inventory_subject,
    is_publish_subject,
    is_safe_event_type,
    subject_matches,
)

_FORBIDDEN = set(".*> \t\r\n")


@given(st.text(min_size=1))
def test_any_text_round_trips_through_a_token(text: str) -> None:
    token = encode_token(text)
    assert decode_token(token) == text
    assert not (_FORBIDDEN & set(token))
    assert token.isprintable() and token.isascii()


@given(st.text(min_size=1), st.text(min_size=1))
def test_different_texts_never_share_a_token(a: str, b: str) -> None:
    if a != b:
        assert encode_token(a) != encode_token(b)


def test_safe_skus_are_kept_readable() -> None:
    assert encode_token("SKU-123_a") == "SKU-123_a"
    assert encode_token("a.b*c>d e~") == "a~2Eb~2Ac~3Ed~20e~7E"
    assert inventory_subject("reserved", "TSHIRT.RED L") == "inventory.reserved.TSHIRT~2ERED~20L"


def test_empty_and_malformed_tokens_are_refused() -> None:
    with pytest.raises(ValueError):
        encode_token("")
    with pytest.raises(ValueError):
        decode_token("abc~zz")


@pytest.mark.parametrize(
    ("event_type", "safe"),
    [
        ("order.created", True),
        ("inventory.received", True),
        ("payment_v2.ok-1", True),
        ("Order.Created", False),
        ("order..created", False),
        ("order.*", False),
        ("order.>", False),
        ("order created", False),
        ("", False),
        (".order", False),
        (7, False),
        (None, False),
    ],
)
def test_event_types_must_be_safe_subject_levels(event_type: object, safe: bool) -> None:
    assert is_safe_event_type(event_type) is safe


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        ("a.b", "a.b", True),
        ("a.b", "a.b.c", False),
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", False),
        ("a.*.c", "a.b.c", True),
        ("a.>", "a.b.c", True),
        ("a.>", "a", False),
        (">", "a", True),
        ("*.b", "a.c", False),
    ],
)
def test_subject_filters_match_as_nats_does(pattern: str, subject: str, matches: bool) -> None:
    assert subject_matches(check_subject_filter(pattern), subject) is matches


@given(st.lists(st.text(alphabet="abc-_", min_size=1, max_size=3), min_size=1, max_size=4))
def test_a_literal_subject_filter_matches_itself_only(tokens: list[str]) -> None:
    subject = ".".join(tokens)
    assert subject_matches(subject, subject)
    assert not subject_matches(subject, subject + ".x")
    assert subject_matches(subject + ".>", subject + ".x")


@pytest.mark.parametrize("bad", ["", "a..b", "a.>.b", "a.b*", "a b", ".a", "a.\t", "a."])
def test_a_malformed_subject_filter_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        check_subject_filter(bad)


def test_only_wildcard_free_subjects_can_be_published_to() -> None:
    assert is_publish_subject("commerce.shop.order.created")
    for bad in ("", "a.*.b", "a.>", "a..b", "a b", "a."):
        assert not is_publish_subject(bad), bad


@pytest.mark.parametrize(
    ("event_type", "separator", "levels"),
    [
        ("order.created", ".", "order.created"),
        ("payment_intent.succeeded", ".", "payment_intent.succeeded"),
        ("orders/create", "/", "orders.create"),
        ("inventory_levels/update", "/", "inventory_levels.update"),
        ("app/uninstalled", "/", "app.uninstalled"),
        ("orders/create", ".", None),  # '/' is no level separator there, nor a token character
        ("orders.create", "/", None),  # a '.' would make two spellings share a subject
        ("orders/create.x", "/", None),
        ("Orders/Create", "/", None),
        ("orders//create", "/", None),
        ("orders/>", "/", None),
        ("/".join(["a"] * 9), "/", None),
        (7, "/", None),
        (None, ".", None),
    ],
)
def test_event_type_levels_map_a_separator_to_subject_levels(
    event_type: object, separator: str, levels: str | None
) -> None:
    assert event_type_levels(event_type, separator) == levels
    if levels is not None:
        assert is_safe_event_type(levels)
        assert levels.replace(".", separator) == event_type, "the producer's spelling comes back"
