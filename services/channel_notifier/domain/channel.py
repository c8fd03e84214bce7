"""Channels: what one is, which updates it wants, and what it is allowed to see."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from libs.contracts import INVENTORY_KINDS
from libs.subjects import encode_token

__all__ = [
    "AVAILABILITY",
    "CHANNEL_KINDS",
    "CHANNEL_NAME_PATTERN",
    "MAX_BUFFER",
    "MAX_PATTERNS",
    "MAX_PATTERN_LENGTH",
    "SECRET_PATTERN",
    "Channel",
    "ChannelError",
    "ChannelFilters",
    "KindMismatch",
    "is_channel_consumer",
    "jetstream_consumer_name",
    "jetstream_filter_subjects",
    "validate_buffer",
    "validate_kind_filters",
    "validate_name",
    "validate_secret",
    "visible_available",
]

AVAILABILITY = "availability"
CHANNEL_KINDS = ("webhook", "jetstream")
CHANNEL_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_GLOB = re.compile(r"[*?\[]")
MAX_PATTERNS = 256
MAX_BUFFER = 2**31 - 1
"""The most units a channel may withhold: what the store's INTEGER column holds (PostgreSQL: 32 bits)."""
MAX_PATTERN_LENGTH = 256
_SECRET_PREFIX = "whsec_"
_B64 = "[A-Za-z0-9+/]"
_QUADS = rf"(?:{_B64}{{4}})"
SECRET_PATTERN = (
    rf"^{_SECRET_PREFIX}(?:{_QUADS}{{8,20}}(?:{_B64}{{2}}==|{_B64}{{3}}=)?|{_QUADS}{{21}}(?:{_B64}{{2}}==)?)$"
)
"""What :func:`validate_secret` takes, for the OpenAPI document: ``whsec_`` and base64 of 24 to 64 bytes."""
_JETSTREAM_PREFIX = "chan-"


class ChannelError(ValueError):
    """A channel definition that cannot be accepted; ``code`` is stable, ``detail`` says why."""

    def __init__(self, code: str, detail: str, **extra: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.extra = extra


class KindMismatch(ChannelError):
    """A value the channel's kind cannot take (a jetstream channel's URL, secret or buffer, a webhook
    channel's ledger kinds): 422 in a new channel's definition, 409 in a change to a stored channel."""


@dataclass(frozen=True, slots=True)
class ChannelFilters:
    skus: tuple[str, ...] = ()
    """Shell-style SKU patterns (case-sensitive); empty matches every SKU."""
    kinds: tuple[str, ...] = (AVAILABILITY,)

    @classmethod
    def build(cls, skus: Iterable[str] | None = None, kinds: Iterable[str] | None = None) -> ChannelFilters:
        sku_list = tuple(dict.fromkeys(skus or ()))
        kind_list = tuple(dict.fromkeys(kinds if kinds is not None else (AVAILABILITY,)))
        if len(sku_list) > MAX_PATTERNS:
            raise ChannelError("invalid_filters", f"at most {MAX_PATTERNS} SKU patterns")
        for pattern in sku_list:
            if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_LENGTH:
                raise ChannelError(
                    "invalid_filters", f"a SKU pattern must be a non-empty string of at most {MAX_PATTERN_LENGTH}"
                )
        if not kind_list:
            raise ChannelError("invalid_filters", "filters.kinds must name at least one kind")
        unknown = [k for k in kind_list if k not in INVENTORY_KINDS]
        if unknown:
            raise ChannelError(
                "invalid_filters", f"unknown event kinds {unknown}; known kinds: {', '.join(INVENTORY_KINDS)}"
            )
        return cls(sku_list, kind_list)

    def matches_sku(self, sku: str) -> bool:
        return not self.skus or any(fnmatchcase(sku, pattern) for pattern in self.skus)

    def matches(self, kind: str, sku: str) -> bool:
        return kind in self.kinds and self.matches_sku(sku)

    @property
    def literal_skus(self) -> bool:
        """Every pattern names one SKU exactly (no wildcards), so each maps to one subject."""
        return bool(self.skus) and not any(_GLOB.search(p) for p in self.skus)

    def as_dict(self) -> dict[str, list[str]]:
        return {"skus": list(self.skus), "kinds": list(self.kinds)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ChannelFilters:
        data = data or {}
        return cls(tuple(data.get("skus") or ()), tuple(data.get("kinds") or (AVAILABILITY,)))


@dataclass(frozen=True, slots=True)
class Channel:
    id: int
    name: str
    kind: str
    url: str | None
    secrets: tuple[str, ...] = field(repr=False, default=())
    filters: ChannelFilters = field(default_factory=ChannelFilters)
    buffer: int = 0
    enabled: bool = True
    disabled_reason: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def is_webhook(self) -> bool:
        return self.kind == "webhook"

    @property
    def delivers(self) -> bool:
        """The notifier pushes to it (a jetstream channel pulls on its own)."""
        return self.is_webhook and self.enabled

    def wants(self, sku: str) -> bool:
        return self.is_webhook and self.filters.matches(AVAILABILITY, sku)


def visible_available(available: int, buffer: int) -> int:
    """What a channel is shown: the units it may sell, after the units withheld from it."""
    return max(0, available - max(0, buffer))


def validate_name(name: object) -> str:
    if not isinstance(name, str) or not CHANNEL_NAME_PATTERN.fullmatch(name):
        raise ChannelError(
            "invalid_name", "a channel name is 1-64 characters of [a-z0-9_-], starting with a letter or digit"
        )
    return name


def validate_buffer(buffer: object, kind: str) -> int:
    if isinstance(buffer, bool) or not isinstance(buffer, int) or not 0 <= buffer <= MAX_BUFFER:
        raise ChannelError("invalid_buffer", f"buffer must be a whole number of units from 0 to {MAX_BUFFER}")
    if kind == "jetstream" and buffer:
        raise KindMismatch(
            "invalid_buffer",
            "a jetstream channel reads the INVENTORY stream as published, so a buffer cannot apply; use 0",
        )
    return buffer


def validate_secret(secret: object) -> str:
    """A Standard Webhooks secret: ``whsec_`` and 24 to 64 random bytes in base64."""
    if not isinstance(secret, str) or not secret.startswith(_SECRET_PREFIX):
        raise ChannelError("invalid_secret", "a secret is 'whsec_' followed by base64 of 24 to 64 random bytes")
    try:
        key = base64.b64decode(secret[len(_SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ChannelError("invalid_secret", "the part after 'whsec_' is not valid base64") from None
    if not 24 <= len(key) <= 64:
        raise ChannelError("invalid_secret", f"a secret must hold 24 to 64 bytes, this one holds {len(key)}")
    return secret


def validate_kind_filters(kind: str, filters: ChannelFilters) -> None:
    if kind not in CHANNEL_KINDS:
        raise ChannelError("invalid_kind", f"kind must be one of {', '.join(CHANNEL_KINDS)}")
    if kind == "webhook" and filters.kinds != (AVAILABILITY,):
        raise KindMismatch(
            "invalid_filters",
            "webhook channels receive availability changes only (filters.kinds = ['availability']); "
            "use a jetstream channel for ledger events",
        )


def jetstream_consumer_name(channel_name: str) -> str:
    """The durable consumer on INVENTORY a jetstream channel pulls from."""
    return f"{_JETSTREAM_PREFIX}{channel_name}"


def is_channel_consumer(durable: str) -> bool:
    return durable.startswith(_JETSTREAM_PREFIX)


def jetstream_filter_subjects(filters: ChannelFilters) -> list[str]:
    """Subjects for the channel's consumer: one per (kind, SKU) when SKUs are literal, else per kind.

    With wildcard SKU patterns the consumer carries every SKU of its kinds (subjects cannot express a
    glob inside a token); the channel applies its patterns when it reads.
    """
    kinds: Sequence[str] = filters.kinds
    if filters.literal_skus:
        return [f"inventory.{kind}.{encode_token(sku)}" for kind in kinds for sku in filters.skus]
    return [f"inventory.{kind}.>" for kind in kinds]
