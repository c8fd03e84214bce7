"""Dead letters: list and show what the DEADLETTER stream holds, and replay it to its original subject.

- :mod:`.records`: a dead letter as read (:class:`DeadLetter`, :func:`parse_record`) and the filters
  (:class:`DeadLetterFilter`); pure.
- :mod:`.reading`: :func:`list_deadletters` (a bounded scan, paged by sequence) and :func:`show_deadletter`.
- :mod:`.replay`: :func:`replay_deadletters` (by sequence) and :func:`replay_matching` (by filters).
- :mod:`.discard`: :func:`discard_deadletters` (by sequence, with a reason): each recorded on
  ``deadletter.discarded.<consumer>``, then deleted.

Errors: ``ValueError`` for arguments out of range, :class:`DeadLetterNotFound`, and
:class:`DeadLettersUnavailable` when NATS does not answer (:class:`DeadLetterStreamMissing`, one of them,
when there is no DEADLETTER stream).
"""

from __future__ import annotations

from .discard import (
    MAX_DISCARD,
    MAX_DISCARD_REASON,
    DiscardReport,
    check_discard_reason,
    discard_deadletters,
)
from .reading import (
    MAX_LIMIT,
    MAX_SCAN,
    MAX_SEQ,
    DeadLetterError,
    DeadLetterNotFound,
    DeadLetterStreamMissing,
    DeadLettersUnavailable,
    Page,
    list_deadletters,
    show_deadletter,
)
from .records import MAX_REASON_FILTER, DeadLetter, DeadLetterFilter, DeadLetterMessage, parse_record
from .replay import (
    MAX_REPLAY,
    ReplayOutcome,
    ReplayPlan,
    ReplayReport,
    ReplayResult,
    replay_deadletters,
    replay_matching,
    replay_plan,
)

__all__ = [
    "MAX_DISCARD",
    "MAX_DISCARD_REASON",
    "MAX_LIMIT",
    "MAX_REASON_FILTER",
    "MAX_REPLAY",
    "MAX_SCAN",
    "MAX_SEQ",
    "DeadLetter",
    "DeadLetterError",
    "DeadLetterFilter",
    "DeadLetterMessage",
    "DeadLetterNotFound",
    "DeadLetterStreamMissing",
    "DeadLettersUnavailable",
    "DiscardReport",
    "Page",
    "ReplayOutcome",
    "ReplayPlan",
    "ReplayReport",
    "ReplayResult",
    "check_discard_reason",
    "discard_deadletters",
    "list_deadletters",
    "parse_record",
    "replay_deadletters",
    "replay_matching",
    "replay_plan",
    "show_deadletter",
]
