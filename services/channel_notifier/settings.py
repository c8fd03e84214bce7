"""The ``[channel-notifier]`` section of the configuration, and the channels it may declare."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from libs.config import Bounds, Count, DatabaseUrl, NonNegative, Port, Positive
from libs.urlpolicy import DEFAULT_ALLOW_HOSTS
from services.channel_notifier.domain.channel import MAX_BUFFER

__all__ = ["ChannelNotifierSettings", "DeclaredChannel", "DeclaredFilters"]


@dataclass(frozen=True)
class DeclaredFilters:
    skus: list[str] = field(default_factory=list)
    """SKU patterns (``*``, ``?``, ``[...]`` as in shell globs); empty: every SKU."""
    kinds: list[str] = field(default_factory=lambda: ["availability"])


@dataclass(frozen=True)
class DeclaredChannel:
    """A channel created (or brought in line) at start-up: ``[[channel-notifier.channels]]``."""

    name: str
    kind: str = "webhook"
    url: str | None = None
    secret: str | None = None
    secrets: list[str] = field(default_factory=list)
    filters: DeclaredFilters = field(default_factory=DeclaredFilters)
    buffer: Annotated[int, Bounds(ge=0, le=MAX_BUFFER)] = 0
    """Units withheld from this channel; 0: none."""
    enabled: bool = True

    def all_secrets(self) -> list[str]:
        return [*([self.secret] if self.secret else []), *self.secrets]

    def __repr__(self) -> str:  # secrets never reach a log line
        return f"DeclaredChannel(name={self.name!r}, kind={self.kind!r}, url={self.url!r})"


@dataclass(frozen=True)
class ChannelNotifierSettings:
    host: str = "127.0.0.1"
    port: Port = 8082
    # Empty: a SQLite file under the data dir; postgresql://… for several replicas.
    database_url: DatabaseUrl = ""
    allow_hosts: list[str] = field(default_factory=lambda: list(DEFAULT_ALLOW_HOSTS))

    # Retries: full jitter, attempt n waits uniform(0, min(cap, base * 2**n)).
    retry_base_s: Positive = 0.5
    retry_cap_s: Positive = 60.0
    max_attempts: Count = 15
    give_up_after_s: Positive = 3600.0
    retry_after_max_s: Positive = 3600.0
    """The longest ``Retry-After`` honoured; a longer one is cut to this."""

    connect_timeout_s: Positive = 2.0
    request_timeout_s: Positive = 5.0
    """The whole request: connect, send, wait and read the answer."""
    max_response_bytes: Count = 64 * 1024

    breaker_failure_threshold: Count = 5
    """Consecutive failures that open a channel's circuit."""
    breaker_open_s: Positive = 5.0
    """How long the circuit stays open before one probe; doubles after each failed probe."""
    breaker_open_max_s: Positive = 60.0

    concurrency: Count = 8
    """Deliveries in flight per channel (and its HTTP connection pool size)."""
    lease_margin_s: NonNegative = 5.0
    """A claimed delivery is leased for connect + request timeout + this; another worker may take it after."""
    poll_interval_s: Positive = 1.0
    """How often an idle worker looks for due deliveries that no local event announced (other replicas)."""

    fetch_batch: Count = 256
    fetch_wait_s: Positive = 1.0
    """How long an idle fetch from INVENTORY waits for a message before asking again; a message stored
    meanwhile is handed over at once (:class:`libs.pull.PullRequests`), so this adds no latency."""
    fetch_linger_s: NonNegative = 0.02
    """A batch shorter than ``fetch_batch`` waits this long for more (:class:`libs.consumer.PullConsumer`)."""
    kv_concurrency: Count = 64

    registry_refresh_s: Positive = 5.0
    """How often the channel registry is re-read (changes made through another replica)."""
    pending_gauge_interval_s: Positive = 2.0

    max_request_bytes: Count = 64 * 1024
    replay_max_messages: Count = 1_000_000

    channels: list[DeclaredChannel] = field(default_factory=list)

    def __repr__(self) -> str:
        return (
            f"ChannelNotifierSettings(host={self.host!r}, port={self.port}, "
            f"database={'configured' if self.database_url else 'sqlite'}, channels={[c.name for c in self.channels]})"
        )
