"""Outbound URL policy: where a service may send HTTP requests that someone else configured.

A URL registered through an API (a channel's webhook) must not turn the service into a proxy into the
private network (SSRF). The rules:

- ``https`` is required, except for hosts on the allow-list;
- the host must not be, or resolve to, a private, loopback, link-local, unspecified, multicast or
  otherwise non-global address, unless the host (or the address) is on the allow-list;
- no credentials in the URL (they would end up in logs and listings).

The allow-list holds host names (``localhost``), IP addresses (``127.0.0.1``, ``::1``) and networks
(``10.20.0.0/16``), matched against the host as written in the URL: a name is allowed by listing the
name, never by resolving into an allowed address (else any name pointing at 127.0.0.1 would pass).

Everything here is pure except :func:`vet_url`, which takes the resolver as an argument so tests
inject one; the same checks run again when a connection is made (see :mod:`libs.outbound`), because
a name can resolve differently later (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_ALLOW_HOSTS",
    "IPAddress",
    "Resolver",
    "UrlPolicy",
    "UrlRefused",
    "UrlTarget",
    "system_resolver",
    "vet_url",
]

DEFAULT_ALLOW_HOSTS = ("localhost", "127.0.0.1", "::1")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port) -> addresses``; raises ``OSError`` when the name does not resolve."""


class UrlRefused(ValueError):
    """The URL breaks the policy; ``reason`` is a stable code, the message says why in words."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class UrlTarget:
    url: str
    scheme: str
    host: str
    port: int
    allowed_host: bool
    """The host is on the allow-list by name or address: plain http and private addresses are fine."""

    @property
    def literal_address(self) -> IPAddress | None:
        return _parse_address(self.host)


def _parse_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _normalise_host(host: str) -> str:
    return host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")


def _address_class(address: IPAddress) -> str | None:
    """Why ``address`` is not a public destination, or None when it is one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _address_class(address.ipv4_mapped)
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "non-global"
    return None


@dataclass(frozen=True)
class UrlPolicy:
    allow_hosts: tuple[str, ...] = DEFAULT_ALLOW_HOSTS

    def __post_init__(self) -> None:
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in self.allow_hosts:
            text = _normalise_host(entry)
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                names.add(text)
        object.__setattr__(self, "_names", frozenset(names))
        object.__setattr__(self, "_networks", tuple(networks))

    @classmethod
    def from_hosts(cls, hosts: Iterable[str]) -> UrlPolicy:
        return cls(tuple(hosts))

    def address_allowed(self, address: IPAddress) -> bool:
        networks: tuple[IPNetwork, ...] = self._networks  # type: ignore[attr-defined]
        candidates = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(candidate in network for candidate in candidates for network in networks)

    def host_allowed(self, host: str) -> bool:
        host = _normalise_host(host)
        if host in self._names:  # type: ignore[attr-defined]
            return True
        address = _parse_address(host)
        return address is not None and self.address_allowed(address)

    def check_url(self, url: str) -> UrlTarget:
        """The checks that need no DNS: scheme, host, credentials, https unless allowed."""
        if not isinstance(url, str) or not url.strip():
            raise UrlRefused("invalid_url", "the URL is empty")
        if any(ch.isspace() or ord(ch) < 32 for ch in url):
            raise UrlRefused("invalid_url", "the URL contains white space or control characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise UrlRefused("invalid_url", f"the URL cannot be parsed: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise UrlRefused("scheme_not_allowed", f"the URL scheme must be https, not {parts.scheme or 'none'!r}")
        host = _normalise_host(parts.hostname or "")
        if not host:
            raise UrlRefused("invalid_url", "the URL has no host")
        if parts.username is not None or parts.password is not None:
            raise UrlRefused("credentials_in_url", "the URL must not carry credentials (user:password@)")
        allowed = self.host_allowed(host)
        if scheme != "https" and not allowed:
            raise UrlRefused(
                "https_required", f"https is required for {host!r}; plain http only for hosts on allow_hosts"
            )
        address = _parse_address(host)
        if address is not None and not allowed:
            kind = _address_class(address)
            if kind is not None:
                raise UrlRefused("address_not_allowed", f"{host} is a {kind} address, which is not allowed")
        return UrlTarget(url, scheme, host, port or (443 if scheme == "https" else 80), allowed)

    def check_addresses(self, target_host: str, addresses: Sequence[str]) -> list[str]:
        """The resolved addresses of ``target_host`` that may be connected to; refuses if any is not allowed.

        Refusing the whole name when one address is private (rather than filtering) keeps a name that
        mixes public and internal records from reaching the internal one on some attempt.
        """
        if self.host_allowed(target_host):
            return list(addresses)
        if not addresses:
            raise UrlRefused("unresolvable_host", f"{target_host} does not resolve to any address")
        for text in addresses:
            address = _parse_address(text)
            if address is None:
                raise UrlRefused("unresolvable_host", f"{target_host} resolved to {text!r}, not an address")
            kind = _address_class(address)
            if kind is not None:
                raise UrlRefused(
                    "address_not_allowed", f"{target_host} resolves to {text}, a {kind} address, which is not allowed"
                )
        return list(addresses)


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (IPv4 and IPv6)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


async def vet_url(url: str, policy: UrlPolicy, resolve: Resolver = system_resolver) -> UrlTarget:
    """Every check, the name resolved: what registration runs before accepting a URL."""
    target = policy.check_url(url)
    if target.allowed_host or target.literal_address is not None:
        return target
    try:
        addresses = await resolve(target.host, target.port)
    except OSError as exc:
        raise UrlRefused("unresolvable_host", f"{target.host} does not resolve: {exc}") from None
    policy.check_addresses(target.host, addresses)
    return target
