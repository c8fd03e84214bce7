"""``stockwire deadletter`` as an operator runs it, against the configured NATS: the table, one dead letter's
headers and body, replays with their per-item lines and summary, and the exit statuses of the README."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from libs.natsserver import NatsServer, free_port
from libs.topology import COMMERCE, DEADLETTER
from tests.support import dead_letter, stored_message

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[3]


def _run(nats_url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STOCKWIRE")}
    env = {**clean, "STOCKWIRE_NATS_URL": nats_url, "STOCKWIRE_LOG_LEVEL": "ERROR"}
    return subprocess.run(
        [sys.executable, "-m", "stockwire", "deadletter", *args], env=env, capture_output=True, timeout=60, cwd=ROOT
    )


async def cli(nats_url: str, *args: str) -> tuple[int, str, str]:
    done = await asyncio.to_thread(_run, nats_url, *args)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_list_prints_a_table_and_json_with_filters(js: JetStreamContext, nats_server: NatsServer) -> None:
    await dead_letter(js, event_id="e1", reason="malformed: data.lines: expected a list")
    await dead_letter(js, event_id="m1", consumer="mailer", reason="smtp refused")

    status, out, err = await cli(nats_server.url, "list")
    assert status == 0, err
    header, first, second, summary = out.splitlines()
    assert header.split()[:3] == ["SEQ", "STORED", "(UTC)"]
    assert first.split()[0] == "1" and "inventory" in first and "shop:e1" in first and "malformed" in first
    assert second.split()[0] == "2" and "mailer" in second and "COMMERCE:" in second
    assert summary == "2 dead letters (read 2); the end of DEADLETTER (sequence 2)"

    status, out, _ = await cli(nats_server.url, "list", "--consumer", "mailer", "--json")
    page = json.loads(out)
    assert status == 0 and [r["event_id"] for r in page["deadletters"]] == ["m1"]
    assert page["next_seq"] is None and page["scanned"] == 1


async def test_show_prints_headers_and_the_pretty_body_and_raw_writes_the_bytes(
    js: JetStreamContext, nats_server: NatsServer
) -> None:
    body = b'{"id":"e1","data":{"sku":"\xc3\x84"}}'
    seq = await dead_letter(js, event_id="e1", body=body, reason="bad \x1b[2J sku")
    status, out, err = await cli(nats_server.url, "show", str(seq))
    assert status == 0, err
    assert out.startswith(f"Dead letter {seq} (deadletter.inventory.commerce.shop.order.created), stored 20")
    assert "  Stockwire-Original-Msg-Id: shop:e1\n" in out and "  Nats-Msg-Id: deadletter:inventory:COMMERCE:" in out
    assert "\x1b" not in out and "bad \\x1b[2J sku" in out, "control characters are shown escaped"
    assert out.endswith(f'Body ({len(body)} bytes):\n{{\n  "id": "e1",\n  "data": {{\n    "sku": "Ä"\n  }}\n}}\n')

    raw = await asyncio.to_thread(_run, nats_server.url, "show", str(seq), "--raw")
    assert raw.returncode == 0 and raw.stdout == body

    status, _, err = await cli(nats_server.url, "show", "99")
    assert status == 1 and err.strip() == "stockwire deadletter: no dead letter at DEADLETTER sequence 99"


async def test_replay_prints_each_outcome_and_a_summary(js: JetStreamContext, nats_server: NatsServer) -> None:
    good = await dead_letter(js, event_id="e1")
    gone = await dead_letter(js, event_id="e2", stream="GONE")

    status, out, _ = await cli(nats_server.url, "replay", str(good), "--dry-run")
    assert status == 0
    assert out.splitlines() == [
        f"seq {good}: would replay to commerce.shop.order.created as replay:{good}:shop:e1",
        "would replay 1, skipped 0, failed 0 (dry run: nothing published)",
    ]
    assert (await js.stream_info(COMMERCE)).state.messages == 0

    status, out, _ = await cli(nats_server.url, "replay", str(good))
    assert status == 0 and out.splitlines()[0] == (
        f"seq {good}: replayed to commerce.shop.order.created as replay:{good}:shop:e1 (COMMERCE seq 1)"
    )
    _subject, headers, _body = await stored_message(js, COMMERCE, 1)
    assert headers["Stockwire-Replay-Of"] == str(good) and headers["Stockwire-Original-Msg-Id"] == "shop:e1"

    status, out, _ = await cli(nats_server.url, "replay", "--all")
    assert status == 1, "a dead letter was skipped"
    assert out.splitlines() == [
        f"seq {good}: duplicate: replay:{good}:shop:e1 is already in COMMERCE at seq 1",
        f"seq {gone}: skipped: original stream GONE does not exist",
        "replayed 0, duplicate 1, skipped 1, failed 0; read 2, the end of DEADLETTER",
    ]
    assert (await js.stream_info(COMMERCE)).state.messages == 1

    status, out, _ = await cli(nats_server.url, "replay", "--all", "--reason", "expected a list", "--json")
    report = json.loads(out)
    assert status == 1 and report["summary"]["duplicate"] == 1 and report["summary"]["skipped"] == 1


async def test_discard_records_the_reason_and_a_second_discard_is_missing(
    js: JetStreamContext, nats_server: NatsServer
) -> None:
    seq = await dead_letter(js, event_id="e1")
    status, out, _ = await cli(nats_server.url, "discard", str(seq), "--reason", "test order")
    assert status == 0 and out.splitlines() == [f"discarded: {seq}"]
    record = (await js.stream_info(DEADLETTER)).state.last_seq
    subject, headers, _body = await stored_message(js, DEADLETTER, record)
    assert subject == "deadletter.discarded.inventory" and headers["Stockwire-Discard-Reason"] == "test order"
    assert headers["Stockwire-Discarded-By"].startswith("cli")

    status, out, _ = await cli(nats_server.url, "discard", str(seq), "--reason", "again", "--json")
    assert status == 1 and json.loads(out) == {"discarded": [], "missing": [seq]}


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["replay"], "name the dead letters to replay: SEQ... or --all"),
        (["replay", "1", "--all"], "not both"),
        (["replay", "1", "--consumer", "inventory"], "go with --all"),
        (["discard", "1", "--reason", "  "], "reason must be 1 to 500 characters"),
        (["list", "--subject", "commerce.>.x"], "'>' must be the last token"),
        (["list", "--since", "2026-12-02T00:00:00Z", "--until", "2026-12-01T00:00:00Z"], "since must be before"),
    ],
)
async def test_arguments_that_do_not_fit_are_one_line_and_exit_2_without_nats(args: list[str], complaint: str) -> None:
    status, out, err = await cli(f"nats://127.0.0.1:{free_port()}", *args)
    assert status == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("stockwire deadletter ") and complaint in line


async def test_no_nats_is_exit_3_and_no_deadletter_stream_is_exit_2(
    js: JetStreamContext, nats_server: NatsServer
) -> None:
    status, _, err = await cli(f"nats://127.0.0.1:{free_port()}", "list", "--nats-timeout", "0.5")
    assert status == 3 and "did not answer within 0.5s" in err and "Traceback" not in err
    await js.delete_stream(DEADLETTER)
    status, _, err = await cli(nats_server.url, "list")
    assert status == 2 and err.strip().endswith("stream DEADLETTER does not exist (run `stockwire topology apply`)")
