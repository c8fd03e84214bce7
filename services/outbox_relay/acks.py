"""What the PubAcks of one published batch mean for its rows. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Ack", "BatchOutcome", "settle_batch"]


@dataclass(frozen=True, slots=True)
class Ack:
    """JetStream stored the message (``duplicate``: it already had that ``Nats-Msg-Id``)."""

    stream: str
    seq: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    published: list[int] = field(default_factory=list)  # row ids JetStream holds now: mark them
    new: int = 0
    duplicates: int = 0
    failed: list[int] = field(default_factory=list)  # row ids to publish again, in id order
    first_error: str | None = None
    stored_after_failure: int = 0  # new messages stored after an earlier row of the batch failed

    @property
    def ok(self) -> bool:
        return not self.failed


def settle_batch(ids: Sequence[int], results: Sequence[Ack | BaseException | None]) -> BatchOutcome:
    """``results[i]`` is row ``ids[i]``'s PubAck, the error it got, or ``None`` (no answer in time).

    Every acknowledged row is published, whatever happened to its neighbours. A row that failed is
    published again later, after the rows that did go through; ``stored_after_failure`` counts the
    new messages that may therefore have overtaken it (on one connection the server stores in the
    order it receives, so this needs the server itself to have refused a message and accepted the
    next, which the caller reports).
    """
    if len(ids) != len(results):
        raise ValueError("one result per row")
    published: list[int] = []
    failed: list[int] = []
    new = duplicates = stored_after_failure = 0
    first_error: str | None = None
    for row_id, result in zip(ids, results, strict=True):
        if isinstance(result, Ack):
            published.append(row_id)
            if result.duplicate:
                duplicates += 1
            else:
                new += 1
                if failed:
                    stored_after_failure += 1
            continue
        failed.append(row_id)
        if first_error is None:
            first_error = "no PubAck in time" if result is None else f"{type(result).__name__}: {result}".rstrip(": ")
    return BatchOutcome(published, new, duplicates, failed, first_error, stored_after_failure)
