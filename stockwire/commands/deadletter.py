"""``stockwire deadletter list|show|replay|discard``: what the DEADLETTER stream holds, putting it back, and
discarding it with a recorded reason.

Talks to the configured NATS (``[nats]``, ``STOCKWIRE_NATS_URL``) through :mod:`libs.deadletters`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import json
import sys
from collections.abc import Callable
from typing import Any

from nats.js import JetStreamContext

from libs.bus import connect_within, jetstream
from libs.config import load_settings
from libs.deadletters import (
    MAX_DISCARD,
    MAX_DISCARD_REASON,
    MAX_LIMIT,
    MAX_REPLAY,
    MAX_SCAN,
    MAX_SEQ,
    DeadLetter,
    DeadLetterFilter,
    DeadLetterMessage,
    DeadLetterNotFound,
    DeadLetterStreamMissing,
    DeadLettersUnavailable,
    ReplayOutcome,
    ReplayReport,
    ReplayResult,
    check_discard_reason,
    discard_deadletters,
    list_deadletters,
    replay_deadletters,
    replay_matching,
    show_deadletter,
)

__all__ = ["register"]

# Exit statuses: 0 done, 1 nothing at that sequence (show, discard) or a dead letter skipped or failed (replay),
# 2 bad arguments or configuration (no DEADLETTER stream included), 3 NATS did not answer.
NOT_DONE = 1
BAD_ARGUMENTS = 2
UNREACHABLE = 3
_PROG = "stockwire deadletter"
_NOT_DONE = (ReplayOutcome.SKIPPED, ReplayOutcome.FAILED)


def _whole(high: int, what: str = "a whole number") -> Callable[[str], int]:
    """An argparse type: a whole number from 1 to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not 1 <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not {what} from 1 to {high}")
        return value

    return parse


_sequence = _whole(MAX_SEQ, "a DEADLETTER sequence")


def _instant(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time (e.g. 2026-12-01T10:00:00Z)") from None


def _selection_arguments(parser: argparse.ArgumentParser, *, limit_high: int, default_limit: int) -> None:
    parser.add_argument("--consumer", help="the consumer that gave up (e.g. inventory)")
    parser.add_argument(
        "--subject",
        help="the original subject: a NATS filter (commerce.*.order.>) or a prefix of whole tokens (commerce.shop)",
    )
    parser.add_argument("--reason", help="a substring of the reason, any case")
    parser.add_argument("--since", type=_instant, help="stored at or after this time (ISO 8601; no offset: UTC)")
    parser.add_argument("--until", type=_instant, help="stored before this time (ISO 8601; no offset: UTC)")
    parser.add_argument("--start-seq", type=_sequence, default=1, help="start at this DEADLETTER sequence (default 1)")
    parser.add_argument(
        "--limit", type=_whole(limit_high), default=default_limit, help=f"at most this many (1 to {limit_high})"
    )
    parser.add_argument(
        "--scan",
        type=_whole(MAX_SCAN),
        default=10_000,
        help=f"read at most this many dead letters (default 10000, at most {MAX_SCAN})",
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "deadletter",
        help="list, show, replay or discard what the DEADLETTER stream holds",
        description="list: the dead letters (a table, or --json), oldest first, with filters. show SEQ: one dead "
        "letter's headers and body. replay SEQ... | --all: publish dead letters again to their original subject "
        "with the original headers (the replay id makes a second replay within the duplicate window a duplicate). "
        "discard SEQ... --reason TEXT: record each on deadletter.discarded.<consumer>, then delete it. "
        "Exit status: 0 done, 1 no dead letter at SEQ (show, discard) or one skipped or failed (replay), 2 bad "
        "arguments or "
        "configuration (or no DEADLETTER stream), 3 NATS did not answer within --nats-timeout.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--nats-timeout", type=float, default=10.0, help="seconds to wait for NATS (default 10)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="<action>")

    def action(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, parents=[common], help=summary, description=description)
        sub.set_defaults(func=run)
        return sub

    listing = action(
        "list",
        "the dead letters, oldest first",
        "A table of dead letters: sequence, time, consumer, original subject and sequence, delivery count, "
        "original message id and reason; --json prints them with the paging cursor (next_seq).",
    )
    _selection_arguments(listing, limit_high=MAX_LIMIT, default_limit=100)
    listing.add_argument("--json", action="store_true", help="print one JSON document")

    show = action(
        "show",
        "one dead letter: headers and body",
        "One dead letter by its DEADLETTER sequence: what it is, every stored header, and its body "
        "(pretty-printed JSON when it is JSON). --raw writes the body's bytes and nothing else.",
    )
    show.add_argument("seq", type=_sequence, help="the DEADLETTER sequence")
    output = show.add_mutually_exclusive_group()
    output.add_argument("--raw", action="store_true", help="write the body exactly as stored, nothing else")
    output.add_argument("--json", action="store_true", help="print one JSON document (body as text and base64)")

    replay = action(
        "replay",
        "publish dead letters again to their original subject",
        f"Replays the dead letters named by sequence (at most {MAX_REPLAY}), or with --all those the filters "
        "take (as list does, --limit at a time). Prints one line per dead letter (replayed, duplicate, would "
        "replay, skipped with why, failed) and a summary. --dry-run publishes nothing.",
    )
    replay.add_argument("seqs", type=_sequence, nargs="*", metavar="SEQ", help="DEADLETTER sequences")
    replay.add_argument("--all", action="store_true", help="every dead letter the filters take")
    _selection_arguments(replay, limit_high=MAX_REPLAY, default_limit=100)
    replay.add_argument("--dry-run", action="store_true", help="say what would be published; publish nothing")
    replay.add_argument("--json", action="store_true", help="print one JSON document")

    discard = action(
        "discard",
        "delete dead letters, recording why",
        f"Discards the dead letters named by sequence (at most {MAX_DISCARD}): each is recorded on "
        "deadletter.discarded.<consumer> in DEADLETTER (its headers, the SHA-256 of its body, the reason, who and "
        "when), then deleted. Prints the sequences discarded and those holding no dead letter.",
    )
    discard.add_argument("seqs", type=_sequence, nargs="+", metavar="SEQ", help="DEADLETTER sequences")
    discard.add_argument(
        "--reason", required=True, help=f"why they are discarded (1 to {MAX_DISCARD_REASON} printable characters)"
    )
    discard.add_argument("--json", action="store_true", help="print one JSON document")


# -- output --------------------------------------------------------------------------------------------------


def _printable(text: str, keep: str = "") -> str:
    """``text`` safe for a terminal: control characters (an escape sequence in a reason, say) shown escaped."""
    return "".join(c if c.isprintable() or c in keep else repr(c)[1:-1] for c in text)


def _cut(text: str | None, width: int) -> str:
    shown = _printable(text or "-")
    return shown if len(shown) <= width else shown[: width - 1] + "…"


_COLUMNS = (
    ("SEQ", 0),
    ("STORED (UTC)", 0),
    ("CONSUMER", 20),
    ("ORIGINAL SUBJECT", 44),
    ("FROM", 24),
    ("DELIV", 0),
    ("ORIGINAL MSG ID", 36),
    ("REASON", 80),
)


def _row(record: DeadLetter) -> list[str]:
    origin = f"{record.original_stream or '?'}:{record.original_seq if record.original_seq is not None else '?'}"
    cells = [
        str(record.seq),
        record.time.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        record.consumer,
        record.original_subject,
        origin,
        "-" if record.delivery_count is None else str(record.delivery_count),
        record.original_msg_id,
        record.reason,
    ]
    return [_cut(cell, width) if width else (cell or "-") for cell, (_, width) in zip(cells, _COLUMNS, strict=True)]


def _print_table(records: list[DeadLetter]) -> None:
    rows = [[name for name, _ in _COLUMNS], *(_row(r) for r in records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _continue_hint(next_seq: int | None, end: str) -> str:
    return f"more from --start-seq {next_seq}" if next_seq is not None else end


def _pretty_body(body: bytes) -> str:
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body.decode("utf-8", errors="backslashreplace")


def _print_message(message: DeadLetterMessage) -> None:
    r = message.record
    print(f"Dead letter {r.seq} ({_printable(r.subject)}), stored {r.time.isoformat(timespec='microseconds')}")
    facts = [
        ("consumer", r.consumer),
        ("reason", r.reason),
        ("original subject", r.original_subject),
        ("original stream", f"{r.original_stream} seq {r.original_seq}" if r.original_stream else None),
        ("original msg id", r.original_msg_id),
        ("delivery count", None if r.delivery_count is None else str(r.delivery_count)),
        ("replay of", None if r.replay_of is None else f"dead letter {r.replay_of}"),
        ("event", " ".join(x for x in (r.source, r.event_type, r.event_id) if x) or None),
    ]
    for name, value in facts:
        if value is not None:
            print(f"  {name + ':':<18}{_printable(value)}")
    print("Headers:")
    for name, value in message.headers.items():
        print(f"  {_printable(name)}: {_printable(value)}")
    print(f"Body ({r.body_size} bytes):")
    print(_printable(_pretty_body(message.body), keep="\n\t"))


def _result_line(result: ReplayResult) -> str:
    where = f"{result.subject} as {result.msg_id}"
    if result.outcome is ReplayOutcome.REPLAYED:
        text = f"replayed to {where} ({result.stream} seq {result.stream_seq})"
    elif result.outcome is ReplayOutcome.DUPLICATE:
        text = f"duplicate: {result.msg_id} is already in {result.stream} at seq {result.stream_seq}"
    elif result.outcome is ReplayOutcome.WOULD_REPLAY:
        text = f"would replay to {where}"
    else:
        text = f"{result.outcome.value}: {result.detail}"
    return f"seq {result.seq}: {_printable(text)}"


def _print_report(report: ReplayReport, *, dry_run: bool, filtered: bool) -> None:
    for result in report.results:
        print(_result_line(result))
    counts = report.counts()
    shown = [ReplayOutcome.WOULD_REPLAY] if dry_run else [ReplayOutcome.REPLAYED, ReplayOutcome.DUPLICATE]
    summary = ", ".join(f"{o.value.replace('_', ' ')} {counts[o.value]}" for o in [*shown, *_NOT_DONE])
    if dry_run:
        summary += " (dry run: nothing published)"
    if report.stopped:
        summary += "; stopped at the failure (running it again is safe)"
    elif filtered:
        summary += f"; read {report.scanned}, " + _continue_hint(report.next_seq, "the end of DEADLETTER")
    print(summary)


# -- actions -------------------------------------------------------------------------------------------------


async def _list(js: JetStreamContext, _max_payload: int, args: argparse.Namespace, filters: DeadLetterFilter) -> int:
    page = await list_deadletters(js, filters, start_seq=args.start_seq, limit=args.limit, max_scan=args.scan)
    if args.json:
        print(json.dumps(page.as_dict(), indent=2))
        return 0
    _print_table(page.records)
    end = f"the end of DEADLETTER (sequence {page.last_seq})"
    print(f"{len(page.records)} dead letters (read {page.scanned}); {_continue_hint(page.next_seq, end)}")
    return 0


async def _show(js: JetStreamContext, _max_payload: int, args: argparse.Namespace, _filters: DeadLetterFilter) -> int:
    message = await show_deadletter(js, args.seq)
    if args.raw:
        sys.stdout.buffer.write(message.body)
        sys.stdout.buffer.flush()
    elif args.json:
        print(json.dumps(message.as_dict(), indent=2))
    else:
        _print_message(message)
    return 0


async def _replay(js: JetStreamContext, max_payload: int, args: argparse.Namespace, filters: DeadLetterFilter) -> int:
    if args.all:
        report = await replay_matching(
            js,
            filters,
            max_payload=max_payload,
            start_seq=args.start_seq,
            limit=args.limit,
            max_scan=args.scan,
            dry_run=args.dry_run,
        )
    else:
        report = await replay_deadletters(js, args.seqs, max_payload=max_payload, dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, **report.as_dict()}, indent=2))
    else:
        _print_report(report, dry_run=args.dry_run, filtered=args.all)
    counts = report.counts()
    return NOT_DONE if any(counts[o.value] for o in _NOT_DONE) else 0


def _who() -> str:
    """Who a discard record names: ``cli (<login name>)``, or ``cli`` when there is none."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        return "cli"
    return f"cli ({user})" if user.isprintable() else "cli"


async def _discard(js: JetStreamContext, _max_payload: int, args: argparse.Namespace, _f: DeadLetterFilter) -> int:
    report = await discard_deadletters(js, args.seqs, reason=args.reason, by=_who())
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(f"discarded: {' '.join(map(str, report.discarded)) or '-'}")
        if report.missing:
            print(f"no dead letter at: {' '.join(map(str, report.missing))}")
    return NOT_DONE if report.missing else 0


_ACTIONS = {"list": _list, "show": _show, "replay": _replay, "discard": _discard}


def _filters(args: argparse.Namespace) -> DeadLetterFilter:
    """The filters of ``list`` and ``replay --all``; raises ``ValueError`` for arguments that do not fit."""
    given = {name: getattr(args, name, None) for name in ("consumer", "subject", "reason", "since", "until")}
    if args.action == "replay":
        if bool(args.seqs) == bool(args.all):
            raise ValueError("name the dead letters to replay: SEQ... or --all (with filters), not both")
        if args.seqs and any(value is not None for value in given.values()):
            raise ValueError("filters (--consumer, --subject, --reason, --since, --until) go with --all")
        if len(set(args.seqs)) > MAX_REPLAY:
            raise ValueError(f"at most {MAX_REPLAY} sequences at a time")
    if args.action == "discard":
        check_discard_reason(args.reason)
        if len(set(args.seqs)) > MAX_DISCARD:
            raise ValueError(f"at most {MAX_DISCARD} sequences at a time")
    return DeadLetterFilter(**given)


async def _run(args: argparse.Namespace, filters: DeadLetterFilter) -> int:
    settings = load_settings()
    nc = await connect_within(settings.nats, "stockwire-deadletter", args.nats_timeout)
    if nc is None:
        servers = ",".join(settings.nats.servers)
        print(f"{_PROG}: NATS at {servers} did not answer within {args.nats_timeout:g}s", file=sys.stderr)
        return UNREACHABLE
    try:
        return await _ACTIONS[args.action](jetstream(nc), nc.max_payload, args, filters)
    except DeadLetterStreamMissing as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return BAD_ARGUMENTS
    except DeadLettersUnavailable as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return UNREACHABLE
    except DeadLetterNotFound as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return NOT_DONE
    finally:
        await nc.close()


def run(args: argparse.Namespace) -> int:
    try:
        filters = _filters(args)
    except ValueError as exc:
        print(f"{_PROG} {args.action}: {exc}", file=sys.stderr)
        return BAD_ARGUMENTS
    return asyncio.run(_run(args, filters))
