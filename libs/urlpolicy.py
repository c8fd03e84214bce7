"""Outbound URL policy: where a service may send HTTP requests that someone else configured.

A URL registered through an API (a channel's webhook) must not turn the service into a proxy into the
private network (SSRF). The rules:

- ``https`` is required, except for hosts on the allow-list;
- the host must not be, or resolve to, a private, loopback, link-local, unspecified, multicast or
  otherwise non-global address, unless the host (or the address) is on the allow-list; an IPv6
  address that embeds or translates to IPv4 (NAT64, 6to4, Teredo, IPv4-mapped/-compatible...) is
  judged by that IPv4 (:func:`embedded_ipv4`: ``ipaddress`` calls most of these global);
- a host spelt as numbers other than a dotted quad (``2852039166``, ``0x7f.1``, ``0251.0376.0251.0376``)
  is refused, saying which address it means (:func:`numeric_host_address`);
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
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna

__all__ = [
    "DEFAULT_ALLOW_HOSTS",
    "MAX_URL_LENGTH",
    "IPAddress",
    "Resolver",
    "UrlPolicy",
    "UrlRefused",
    "UrlTarget",
    "embedded_ipv4",
    "numeric_host_address",
    "system_resolver",
    "url_pattern",
    "vet_url",
]

DEFAULT_ALLOW_HOSTS = ("localhost", "127.0.0.1", "::1")
MAX_URL_LENGTH = 8000
"""The longest URL accepted: what RFC 9110 (4.1) asks every HTTP party to support; the client takes 65,536."""

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
    """A URL read for the policy: scheme, host (IDNA-encoded, brackets removed) and port."""

    url: str
    scheme: str
    host: str
    port: int
    allowed_host: bool
    """The host is on the allow-list by name or address: plain http and private addresses are fine."""

    @property
    def literal_address(self) -> IPAddress | None:
        """The host as an IP address when it is written as one (a zone id dropped), else None."""
        return _parse_address(self.host)


def _parse_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _normalise_host(host: str) -> str:
    host = host.strip().lower().removeprefix("[").removesuffix("]")
    if not host.isascii() and ":" not in host:
        # Encoded as the HTTP client encodes it (httpx uses the idna package), so the policy judges the
        # host the client will connect to: "127。0。0。1" is 127.0.0.1.
        try:
            host = idna.encode(host).decode("ascii").lower()
        except (idna.IDNAError, UnicodeError):
            pass  # left as written: check_url refuses a host the client cannot encode
    return host.rstrip(".")


_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_ISATAP_IID = 0x00005EFE
_ISATAP_IID_MASK = 0xFCFFFFFF  # the u and g bits of the interface id may be set (RFC 5214, 6.1)


def _v4(value: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(value & 0xFFFFFFFF)


def _rfc6052_candidates(value: int) -> list[ipaddress.IPv4Address]:
    """The IPv4 address at each place RFC 6052 (2.2) may put it after a prefix of /96, /64, /56 or /48.

    The length of a local-use NAT64 prefix is the operator's choice and cannot be read from the address;
    bits 64..71 (the "u" octet) are skipped.
    """
    octets = value.to_bytes(16, "big")
    return [
        ipaddress.IPv4Address(octets[12:16]),
        ipaddress.IPv4Address(octets[9:13]),
        ipaddress.IPv4Address(octets[7:8] + octets[9:12]),
        ipaddress.IPv4Address(octets[6:8] + octets[9:11]),
    ]


def embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, list[ipaddress.IPv4Address]]:
    """The IPv4 addresses a packet to ``address`` ends up reaching, and the name of the form, or ``("", [])``.

    Forms: IPv4-mapped ``::ffff:a.b.c.d`` and IPv4-compatible ``::a.b.c.d`` (RFC 4291, 2.5.5),
    IPv4-translated ``::ffff:0:a.b.c.d`` (RFC 2765), NAT64 ``64:ff9b::/96`` and the local-use
    ``64:ff9b:1::/48`` (RFC 6052, RFC 8215; every place the IPv4 may sit), 6to4 ``2002:AABB:CCDD::/48``
    (RFC 3056), Teredo ``2001::/32`` (RFC 4380: the server's IPv4 and the client's, stored inverted)
    and ISATAP interface ids ``…:0:5efe:a.b.c.d`` / ``…:200:5efe:a.b.c.d`` (RFC 5214). ``::`` and
    ``::1`` are the IPv6 unspecified and loopback addresses, not IPv4-compatible ones.
    A NAT64 network-specific prefix (any prefix an operator picks) cannot be recognised from the
    address alone.
    """
    value = int(address)
    if address.ipv4_mapped is not None:
        return "an IPv4-mapped address", [address.ipv4_mapped]
    if address in _IPV4_TRANSLATED:
        return "an IPv4-translated address", [_v4(value)]
    if address in _IPV4_COMPATIBLE and value > 1:
        return "an IPv4-compatible address", [_v4(value)]
    if address in _NAT64_WELL_KNOWN:
        return "a NAT64 address", [_v4(value)]
    if address in _NAT64_LOCAL_USE:
        return "a local-use NAT64 address", _rfc6052_candidates(value)
    if address.sixtofour is not None:
        return "a 6to4 address", [address.sixtofour]
    if address.teredo is not None:
        server, client = address.teredo
        return "a Teredo address", [server, client]
    if (value >> 32) & _ISATAP_IID_MASK == _ISATAP_IID:
        return "an ISATAP address", [_v4(value)]
    return "", []


def _ipv4_class(address: IPAddress) -> str | None:
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


def _address_class(address: IPAddress) -> str | None:
    """Why ``address`` is not a public destination (``"a private address"``...), or None when it is one.

    An IPv6 address that embeds or translates to IPv4 addresses is judged by those (every one of them
    must be public), then by itself.
    """
    if isinstance(address, ipaddress.IPv6Address):
        form, embedded = embedded_ipv4(address)
        if address in _NAT64_LOCAL_USE:
            # Whichever prefix length the operator chose, it is a gateway into their own network.
            meanings = ", ".join(dict.fromkeys(str(inner) for inner in embedded))
            return f"{form} (of {meanings}, by prefix length), not routed on the internet"
        for inner in embedded:
            kind = _ipv4_class(inner)
            if kind is not None:
                return f"{form} of {inner}, {_a(kind)} address"
    kind = _ipv4_class(address)
    return None if kind is None else f"{_a(kind)} address"


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _whatwg_number(label: str) -> int | None:
    if label.startswith(("0x", "0X")):
        digits, base = label[2:], 16
    elif len(label) > 1 and label.startswith("0"):
        digits, base = label[1:], 8
    else:
        digits, base = label, 10
    if not digits:
        return 0 if base == 16 else None
    allowed = "0123456789abcdefABCDEF"[: 10 if base == 10 else 8 if base == 8 else 22]
    if len(digits) > 40 or any(ch not in allowed for ch in digits):
        return None
    return int(digits, base)


def numeric_host_address(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a host spelt as numbers means (WHATWG URL "IPv4 parser", as ``inet_aton`` reads it).

    ``2852039166``, ``0251.0376.0251.0376``, ``169.254.43518``, ``0xa9fea9fe`` and ``169.254.169.0254``
    all name an IPv4 address although :mod:`ipaddress` calls them names; a resolver would connect to it.
    Returns None when ``host`` is a name. Raises :class:`UrlRefused` (``invalid_url``) for a host that
    ends in a number but is no valid address (``1.2.3.4.5``, ``256.1.1.1``, ``4294967296``).
    """
    labels = host.split(".")
    last = labels[-1]
    if not (last.isascii() and (last.isdigit() or (last[:2] in ("0x", "0X") and _whatwg_number(last) is not None))):
        return None
    numbers = [_whatwg_number(label) for label in labels]
    if len(labels) > 4 or any(n is None for n in numbers):
        raise UrlRefused("invalid_url", f"{host!r} is neither a host name nor an IPv4 address")
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        raise UrlRefused("invalid_url", f"{host!r} is neither a host name nor an IPv4 address")
    value = values[-1]
    for index, number in enumerate(values[:-1]):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


@dataclass(frozen=True)
class UrlPolicy:
    """Where outbound requests may go: public addresses over https, plus what ``allow_hosts`` lists (host
    names, addresses or CIDR networks), which may also use plain http and private ranges."""

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
        """A policy allowing ``hosts``: each a host name, an address or a CIDR network (empty entries ignored)."""
        return cls(tuple(hosts))

    def address_allowed(self, address: IPAddress) -> bool:
        """``address`` (or the IPv4 an IPv4-mapped address carries) is inside a listed network."""
        networks: tuple[IPNetwork, ...] = self._networks  # type: ignore[attr-defined]
        candidates = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(candidate in network for candidate in candidates for network in networks)

    def host_allowed(self, host: str) -> bool:
        """``host`` is listed by name, or is an address inside a listed network."""
        host = _normalise_host(host)
        if host in self._names:  # type: ignore[attr-defined]
            return True
        address = _parse_address(host)
        return address is not None and self.address_allowed(address)

    def check_url(self, url: str) -> UrlTarget:
        """The checks that need no DNS: scheme, host, credentials, https unless allowed."""
        if not isinstance(url, str) or not url.strip():
            raise UrlRefused("invalid_url", "the URL is empty")
        if len(url) > MAX_URL_LENGTH:
            raise UrlRefused("invalid_url", f"the URL is longer than {MAX_URL_LENGTH} characters")
        if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
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
        if not host.isascii():
            raise UrlRefused("invalid_url", f"the host {host!r} is not a valid international domain name")
        if ":" not in host and (len(host) > 253 or any(not 0 < len(label) <= 63 for label in host.split("."))):
            raise UrlRefused("invalid_url", f"the host {host!r} has an empty or over-long label (RFC 1035)")
        if _parse_address(host) is None:
            meant = numeric_host_address(host)
            if meant is not None:
                # Refused even when public or allowed: a client and the policy must never read it differently.
                kind = _address_class(meant)
                if kind is not None:
                    raise UrlRefused("address_not_allowed", f"{host} means {meant}, {kind}, which is not allowed")
                raise UrlRefused("invalid_url", f"{host} means the IPv4 address {meant}: write it as {meant}")
        allowed = self.host_allowed(host)
        if scheme != "https" and not allowed:
            raise UrlRefused(
                "https_required", f"https is required for {host!r}; plain http only for hosts on allow_hosts"
            )
        address = _parse_address(host)
        if address is not None and not allowed:
            kind = _address_class(address)
            if kind is not None:
                raise UrlRefused("address_not_allowed", f"{host} is {kind}, which is not allowed")
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
                    "address_not_allowed", f"{target_host} resolves to {text}, {kind}, which is not allowed"
                )
        return list(addresses)


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (IPv4 and IPv6); raises ``OSError`` only."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:  # the idna codec refuses the name (an empty or over-long label)
        raise OSError(f"not a valid host name: {exc}") from None
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


_PORT = r"(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
# Host names of ASCII labels whose last starts with a letter (a name of numbers would be read as an
# address); no `--` (IDNA reserves it at the third place); a label of at most 62 characters, at most 4 labels.
_LABEL = r"[A-Za-z0-9]{1,20}(?:-[A-Za-z0-9]{1,20}){0,2}"
_NAME = rf"(?:{_LABEL}\.){{0,3}}[A-Za-z][A-Za-z0-9]{{0,19}}(?:-[A-Za-z0-9]{{1,20}}){{0,2}}"
_REST = r"(?:[/?#][^\s\u0000-\u001f\u007f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)?"


def url_pattern(allow_hosts: Iterable[str] = DEFAULT_ALLOW_HOSTS) -> str:
    """A JSON Schema ``pattern`` for the URLs the policy can take, as far as a document can say it:
    ``https://`` with a host name or an IPv4 address, or ``http://`` with a host of ``allow_hosts`` listed
    by name or address (networks are left out); a port, then a path, query or fragment without white
    space or control characters. What it cannot say: where a name resolves to, and the class of an
    address (private, loopback...); :func:`vet_url` refuses those with ``unresolvable_host`` and
    ``address_not_allowed``. An IPv6 address is taken by the policy but not by the pattern."""
    listed: list[str] = []
    for entry in allow_hosts:
        host = _normalise_host(entry)
        if not host or "/" in host:
            continue
        address = _parse_address(host)
        listed.append(rf"\[{re.escape(host)}\]" if isinstance(address, ipaddress.IPv6Address) else re.escape(host))
    https = rf"https://(?:{_NAME}|{_OCTET}(?:\.{_OCTET}){{3}}{''.join('|' + h for h in listed)})"
    http = rf"|http://(?:{'|'.join(listed)})" if listed else ""
    return rf"^(?:{https}{http}){_PORT}{_REST}$"
