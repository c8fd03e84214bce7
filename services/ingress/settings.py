"""The ``[ingress]`` section of the configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from libs.config import Count, DatabaseUrl, NonNegative, Port, Positive

__all__ = ["IngressSettings"]


@dataclass(frozen=True)
class IngressSettings:
    verifies_signatures: ClassVar[bool] = True
    """Ingress checks every webhook's signature: each source it serves needs a secret."""

    host: str = "127.0.0.1"
    port: Port = 8080
    workers: Count = 1
    # Empty: a SQLite file under the data dir. The spool must be local to the pod (it is what keeps
    # events when the network is away), so PostgreSQL is allowed but rarely right here.
    database_url: DatabaseUrl = ""
    max_body_bytes: Count = 256 * 1024
    publish_timeout_s: Positive = 2.0
    # At start, an event waits up to this long for the first NATS connection instead of being spooled:
    # a spooled event holds every later one behind it until the relay drains the spool.
    startup_wait_s: NonNegative = 2.0
    spool_depth_interval_s: Positive = 2.0
