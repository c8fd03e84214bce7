"""Every response of every service names at most one charset: Prometheus reads ``/metrics``' Content-Type with
Go's ``mime.ParseMediaType``, which refuses a parameter given twice, and so would a strict browser or proxy."""

from __future__ import annotations

from typing import Any

import pytest

# (service, path) of each kind of text answer: metrics, the console's HTML pages (missing ones too), its assets.
_TEXT_ANSWERS = [
    *((service, "/metrics") for service in ("ingress", "inventory", "channel-notifier", "outbox-relay", "console")),
    ("console", "/login"),
    ("console", "/nope"),
    ("console", "/static/console.css"),
]


def _parameters(content_type: str) -> list[str]:
    """The names of a media type's parameters, lower-cased, as often as each is given."""
    return [part.partition("=")[0].strip().lower() for part in content_type.split(";")[1:]]


@pytest.mark.parametrize(("service", "path"), _TEXT_ANSWERS)
async def test_a_text_answer_names_its_charset_once(services: dict[str, Any], service: str, path: str) -> None:
    answer = await services[service].get(path)
    names = _parameters(answer.headers["content-type"])
    assert len(names) == len(set(names)), answer.headers["content-type"]
    if answer.headers["content-type"].startswith("text/"):
        assert names.count("charset") == 1, answer.headers["content-type"]


async def test_metrics_and_pages_keep_their_media_types(services: dict[str, Any]) -> None:
    metrics = await services["inventory"].get("/metrics")
    assert metrics.headers["content-type"] == "text/plain; version=1.0.0; charset=utf-8"
    page = await services["console"].get("/login")
    assert page.headers["content-type"] == "text/html; charset=utf-8" and "<form" in page.text
