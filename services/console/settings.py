"""The ``[console]`` section of the configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from libs.config import Count, Port, Positive

__all__ = ["PEER_DEFAULTS", "ConsoleSettings", "with_peer_urls"]

PEER_DEFAULTS: dict[str, tuple[str, int]] = {
    "ingress": ("ingress_url", 8080),
    "inventory": ("inventory_url", 8081),
    "channel-notifier": ("channel_notifier_url", 8082),
    "outbox-relay": ("outbox_relay_url", 8083),
}
"""Each service the console reads: its URL key here and its default port (the services' own defaults,
written again because a service never imports another)."""


@dataclass(frozen=True)
class ConsoleSettings:
    host: str = "127.0.0.1"
    port: Port = 8084
    # Where the other services answer; empty: their configured [<service>] host and port (loopback for a
    # wildcard address), else their default port on 127.0.0.1.
    ingress_url: str = ""
    inventory_url: str = ""
    channel_notifier_url: str = ""
    outbox_relay_url: str = ""
    session_ttl_s: Positive = 8 * 3600.0
    """A login lasts this long."""
    refresh_s: Positive = 2.0
    """How often the overview refreshes itself."""
    request_timeout_s: Positive = 3.0
    """Each call to another service's API."""
    overview_budget_s: Positive = 0.15
    """How long an overview refresh waits for each service and JetStream; a slower answer is shown at
    the next refresh (the last one is shown meanwhile, marked), so a refresh stays quick under load."""
    search_scan: Count = 5000
    """COMMERCE messages one event search reads at most."""
    login_failures: Count = 5
    """Failed logins one client address may make within ``login_window_s``; then it waits (429)."""
    login_window_s: Positive = 60.0


def _url(host: str, port: int) -> str:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def with_peer_urls(settings: ConsoleSettings, raw: Mapping[str, Any]) -> ConsoleSettings:
    """``settings`` with each empty peer URL filled from that service's configured section in ``raw``
    (the merged configuration tree), else from its default port."""

    def url(service: str) -> str:
        key, default_port = PEER_DEFAULTS[service]
        given = str(getattr(settings, key))
        if given:
            return given
        section = raw.get(service.replace("-", "_"), {})
        section = section if isinstance(section, Mapping) else {}
        try:
            port = int(section.get("port", default_port))
        except (TypeError, ValueError):
            port = default_port
        return _url(str(section.get("host", "127.0.0.1")), port)

    return replace(
        settings,
        ingress_url=url("ingress"),
        inventory_url=url("inventory"),
        channel_notifier_url=url("channel-notifier"),
        outbox_relay_url=url("outbox-relay"),
    )
