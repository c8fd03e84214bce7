"""What a client sends never writes a line of its own into a service's log: the real apps, logging as
``setup_logging`` configures a process, asked for paths that hold line breaks and other control characters;
every record they write is one line, whichever logger writes it."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from tests.support import service_log

from .conftest import AUTH

FORGED = "2026-12-07 00:00:00,000 ERROR forged.line: hello"
# A line break, then the other control characters a path can carry, percent-encoded as a client sends them.
CONTROLS = "%0a" + FORGED.replace(" ", "%20") + "%0d%09%00%1b[2J%7f%c2%85%e2%80%a8%e2%80%a9"
ESCAPED = r"\n" + FORGED + r"\r\t\x00\x1b[2J\x7f\x85\u2028\u2029"


# (service, method, path, headers, status)
_REQUESTS: list[tuple[str, str, str, dict[str, str], int]] = [
    ("inventory", "GET", f"/skus/A{CONTROLS}", {}, 404),
    ("inventory", "GET", "/skus/%00", {}, 404),
    ("channel-notifier", "GET", f"/channels/x{CONTROLS}", AUTH, 404),
    ("channel-notifier", "GET", f"/nope{CONTROLS}", {}, 404),
    ("outbox-relay", "GET", f"/nope{CONTROLS}", {}, 404),
    ("console", "GET", f"/nope{CONTROLS}", {}, 404),
    # Ingress's own logger names the source it refuses.
    ("ingress", "POST", f"/webhooks/x{CONTROLS}", {"content-type": "application/json"}, 404),
]


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_no_request_writes_a_line_of_its_own(services: dict[str, Any], fmt: Literal["text", "json"]) -> None:
    with service_log(fmt) as out:
        for service, method, path, headers, status in _REQUESTS:
            answer = await services[service].request(method, path, headers=headers, content=b"{}")
            assert answer.status_code == status, (service, path, answer.text)
    text = out.getvalue()
    lines = text.splitlines()
    loggers = {"stockwire.http", "stockwire.ingress"}
    assert {logger for logger in loggers if any(f"{logger}" in line for line in lines)} == loggers
    assert not any(line.startswith(FORGED) for line in lines), text
    assert not any(ch in text for ch in "\r\t\x00\x1b\x7f\x85\u2028\u2029"), text
    for path in ("/skus/A", "/channels/x", "/nope"):
        assert any(f"{path}{ESCAPED}".replace("\\", "\\\\" if fmt == "json" else "\\") in line for line in lines)
