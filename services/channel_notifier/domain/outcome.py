"""How one delivery attempt ended, from what the channel answered (or did not)."""

from __future__ import annotations

import enum

__all__ = ["AttemptOutcome", "classify_status"]


class AttemptOutcome(enum.StrEnum):
    DELIVERED = "delivered"
    GONE = "gone"
    """410: the channel asks never to be called again; it is disabled."""
    HTTP_ERROR = "http_error"
    TIMEOUT = "timeout"
    NETWORK_ERROR = "network_error"
    REFUSED = "refused"
    """The URL policy refused the destination at delivery time; nothing was sent."""
    ERROR = "error"
    """Something unexpected failed while attempting (a bug, a URL the client cannot send): a failure like any."""
    GAVE_UP = "gave_up"


def classify_status(status_code: int) -> AttemptOutcome:
    if 200 <= status_code < 300:
        return AttemptOutcome.DELIVERED
    if status_code == 410:
        return AttemptOutcome.GONE
    # Redirects are not followed (the new location was never vetted) and count as failures.
    return AttemptOutcome.HTTP_ERROR
