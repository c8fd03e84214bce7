from __future__ import annotations

import re

import pytest

from libs.urlpolicy import DEFAULT_ALLOW_HOSTS, UrlPolicy, UrlRefused, system_resolver, url_pattern, vet_url

DEFAULT = UrlPolicy(DEFAULT_ALLOW_HOSTS)


def resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, _port: int) -> list[str]:
        if host not in table:
            raise OSError(f"no such host {host}")
        return table[host]

    return resolve


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.1/hook", "https_required"),
        ("https://10.0.0.1/hook", "address_not_allowed"),
        ("https://192.168.1.20/hook", "address_not_allowed"),
        ("https://169.254.169.254/latest/meta-data", "address_not_allowed"),
        ("https://0.0.0.0/", "address_not_allowed"),
        ("https://[::]/", "address_not_allowed"),
        ("https://[fe80::1]/", "address_not_allowed"),
        ("https://[fd00::1]/", "address_not_allowed"),
        ("https://[::ffff:10.0.0.1]/", "address_not_allowed"),
        ("https://100.64.0.1/", "address_not_allowed"),
        ("https://224.0.0.1/", "address_not_allowed"),
        ("https://127.0.0.2/", "address_not_allowed"),
        ("http://example.com/hook", "https_required"),
        ("ftp://example.com/hook", "scheme_not_allowed"),
        ("file:///etc/passwd", "scheme_not_allowed"),
        ("https://user:pw@example.com/hook", "credentials_in_url"),
        ("https:///nohost", "invalid_url"),
        ("https://example.com:99999/", "invalid_url"),
        ("https://exa mple.com/", "invalid_url"),
        ("https://example.com/hook\x7f", "invalid_url"),
        ("https://example.com/" + "a" * 8000, "invalid_url"),
        ("https://a..b/hook", "invalid_url"),
        ("https://.example/hook", "invalid_url"),
        ("https://" + "a" * 64 + ".example/hook", "invalid_url"),
        ("https://" + "a." * 127 + "example/hook", "invalid_url"),
        ("", "invalid_url"),
    ],
)
def test_refused_without_dns(url: str, reason: str) -> None:
    with pytest.raises(UrlRefused) as refused:
        DEFAULT.check_url(url)
    assert refused.value.reason == reason
    assert refused.value.detail


def test_private_address_error_says_what_it_is() -> None:
    with pytest.raises(UrlRefused, match=r"10\.0\.0\.1 is a private address"):
        DEFAULT.check_url("https://10.0.0.1/hook")
    with pytest.raises(UrlRefused, match="link-local"):
        DEFAULT.check_url("https://169.254.169.254/")


@pytest.mark.parametrize(
    "url", ["http://localhost:8000/hook", "http://127.0.0.1:9/hook", "http://[::1]:9/x", "http://LOCALHOST./hook"]
)
def test_default_allow_list_permits_local_http(url: str) -> None:
    target = DEFAULT.check_url(url)
    assert target.allowed_host


def test_public_https_is_fine_and_port_defaults() -> None:
    target = DEFAULT.check_url("https://8.8.8.8/hook")
    assert (target.host, target.port, target.allowed_host) == ("8.8.8.8", 443, False)


def test_allow_list_accepts_networks() -> None:
    policy = UrlPolicy(("10.20.0.0/16", "hooks.internal"))
    assert policy.check_url("http://10.20.3.4/x").allowed_host
    with pytest.raises(UrlRefused):
        policy.check_url("https://10.21.0.1/x")
    with pytest.raises(UrlRefused):  # a name is allowed by its name, not by where it points
        policy.check_addresses("svc.internal", ["10.20.9.9"])
    assert policy.check_addresses("hooks.internal", ["10.20.9.9"]) == ["10.20.9.9"]
    assert policy.check_url("http://hooks.internal/x").allowed_host


def test_empty_allow_list_refuses_loopback() -> None:
    policy = UrlPolicy(())
    with pytest.raises(UrlRefused, match="https is required"):
        policy.check_url("http://127.0.0.1/x")
    with pytest.raises(UrlRefused, match="loopback"):
        policy.check_url("https://127.0.0.1/x")


async def test_name_resolving_to_private_address_is_refused() -> None:
    resolve = resolver({"evil.example": ["93.184.216.34", "10.1.2.3"], "good.example": ["93.184.216.34"]})
    with pytest.raises(UrlRefused) as refused:
        await vet_url("https://evil.example/hook", DEFAULT, resolve)
    assert refused.value.reason == "address_not_allowed"
    assert "evil.example resolves to 10.1.2.3, a private address" in refused.value.detail
    target = await vet_url("https://good.example/hook", DEFAULT, resolve)
    assert target.host == "good.example"


async def test_name_resolving_to_loopback_is_refused_unless_allowed() -> None:
    resolve = resolver({"rebind.example": ["127.0.0.1"]})
    with pytest.raises(UrlRefused, match="loopback"):
        await vet_url("https://rebind.example/hook", DEFAULT, resolve)
    allowed = UrlPolicy(("rebind.example",))
    assert (await vet_url("https://rebind.example/hook", allowed, resolve)).allowed_host


async def test_unresolvable_name_is_refused() -> None:
    with pytest.raises(UrlRefused) as refused:
        await vet_url("https://nowhere.example/hook", DEFAULT, resolver({}))
    assert refused.value.reason == "unresolvable_host"


async def test_allowed_host_is_not_resolved() -> None:
    async def fail(host: str, port: int) -> list[str]:
        raise AssertionError("an allowed host needs no resolution")

    assert (await vet_url("http://localhost:1/x", DEFAULT, fail)).allowed_host


# -- addresses that embed or translate to an IPv4 address are judged by that IPv4 -------------------

EMBEDDED_IPV4 = [
    # (IPv6 address, the IPv4 it reaches, the form named in the refusal)
    ("64:ff9b::a9fe:a9fe", "169.254.169.254", "NAT64"),  # RFC 6052 well-known prefix
    ("64:ff9b::10.0.0.1", "10.0.0.1", "NAT64"),
    ("64:ff9b::7f00:1", "127.0.0.1", "NAT64"),
    ("64:ff9b:1::a9fe:a9fe", "169.254.169.254", "local-use NAT64"),  # RFC 8215, /96 inside the /48
    ("64:ff9b:1:a9fe:a9:fe00::", "169.254.169.254", "local-use NAT64"),  # a /48 prefix, u octet skipped
    ("64:ff9b:1:0:a:0:100::", "10.0.0.1", "local-use NAT64"),  # a /64 prefix
    ("::a9fe:a9fe", "169.254.169.254", "IPv4-compatible"),
    ("::127.0.0.1", "127.0.0.1", "IPv4-compatible"),
    ("::ffff:a9fe:a9fe", "169.254.169.254", "IPv4-mapped"),
    ("::ffff:0:a9fe:a9fe", "169.254.169.254", "IPv4-translated"),  # RFC 2765
    ("::ffff:0:10.1.2.3", "10.1.2.3", "IPv4-translated"),
    ("2002:a9fe:a9fe::1", "169.254.169.254", "6to4"),
    ("2002:7f00:1:1::", "127.0.0.1", "6to4"),
    ("2001:0:a9fe:a9fe::", "169.254.169.254", "Teredo"),  # the server's IPv4
    ("2001:0:808:808:0:0:f5ff:fffe", "10.0.0.1", "Teredo"),  # the client's IPv4, stored inverted
    ("2a00:1450::5efe:a00:1", "10.0.0.1", "ISATAP"),
    ("2a00:1450::200:5efe:c0a8:101", "192.168.1.1", "ISATAP"),
]


@pytest.mark.parametrize(("address", "ipv4", "form"), EMBEDDED_IPV4)
def test_ipv6_forms_embedding_a_private_ipv4_are_refused(address: str, ipv4: str, form: str) -> None:
    with pytest.raises(UrlRefused) as refused:
        DEFAULT.check_url(f"https://[{address}]/hook")
    assert refused.value.reason == "address_not_allowed"
    assert f"{form} address" in refused.value.detail and ipv4 in refused.value.detail


@pytest.mark.parametrize(("address", "ipv4", "form"), EMBEDDED_IPV4)
async def test_a_name_resolving_to_an_ipv6_form_of_a_private_ipv4_is_refused(
    address: str, ipv4: str, form: str
) -> None:
    with pytest.raises(UrlRefused) as refused:
        await vet_url("https://nat64.example/hook", DEFAULT, resolver({"nat64.example": [address]}))
    assert refused.value.reason == "address_not_allowed"
    assert f"nat64.example resolves to {address}, " in refused.value.detail
    assert f"{form} address" in refused.value.detail and ipv4 in refused.value.detail
    with pytest.raises(UrlRefused):
        DEFAULT.check_addresses("nat64.example", ["93.184.216.34", address])


@pytest.mark.parametrize(
    "address",
    ["64:ff9b::808:808", "::ffff:0:808:808", "2002:808:808::1", "2a00:1450::200:5efe:808:808", "2a00:1450::1"],
)
def test_ipv6_forms_embedding_a_public_ipv4_are_judged_public(address: str) -> None:
    assert DEFAULT.check_url(f"https://[{address}]/hook").literal_address is not None
    assert DEFAULT.check_addresses("public.example", [address]) == [address]


def test_the_ipv6_loopback_and_unspecified_addresses_are_not_ipv4_compatible_ones() -> None:
    with pytest.raises(UrlRefused, match="is an unspecified address"):
        DEFAULT.check_url("https://[::]/")
    with pytest.raises(UrlRefused, match="is a loopback address"):
        UrlPolicy(()).check_url("https://[::1]/")


# -- IPv4 addresses spelt other than as a dotted quad mean the address a resolver would connect to ----


@pytest.mark.parametrize(
    ("host", "means"),
    [
        ("2852039166", "169.254.169.254"),  # one decimal number
        ("0251.0376.0251.0376", "169.254.169.254"),  # octal parts
        ("169.254.43518", "169.254.169.254"),  # the last part fills the remaining bytes
        ("169.16689662", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("0xA9.0xFE.0xA9.0xFE", "169.254.169.254"),
        ("169.254.169.0254", "169.254.169.172"),  # a leading zero is octal
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("10.1", "10.0.0.1"),
    ],
)
@pytest.mark.parametrize("scheme", ["https", "http"])
def test_numeric_spellings_are_judged_by_the_address_they_mean(scheme: str, host: str, means: str) -> None:
    for policy in (DEFAULT, UrlPolicy(("127.0.0.1", "10.0.0.0/8", "169.254.0.0/16"))):
        with pytest.raises(UrlRefused) as refused:
            policy.check_url(f"{scheme}://{host}/hook")
        assert refused.value.reason in ("address_not_allowed", "https_required"), refused.value.detail
        if refused.value.reason == "address_not_allowed":
            assert f"means {means}, " in refused.value.detail


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(ch) - ord("0") + 0xFF10) if ch.isdigit() else ch for ch in text)


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("169\u3002254\u3002169\u3002254", "address_not_allowed"),  # ideographic full stops: dots to the client
        (_fullwidth("169.254.169.254"), "invalid_url"),  # full-width digits: the client refuses the name
        ("exa\u200bmple.com", "invalid_url"),  # a zero-width space
    ],
)
def test_unicode_hosts_are_judged_as_the_client_encodes_them(host: str, reason: str) -> None:
    with pytest.raises(UrlRefused) as refused:
        DEFAULT.check_url(f"https://{host}/hook")
    assert refused.value.reason == reason
    if reason == "address_not_allowed":
        assert "169.254.169.254" in refused.value.detail and "link-local" in refused.value.detail
    assert DEFAULT.check_url("https://b\u00fccher.example/").host == "xn--bcher-kva.example"


@pytest.mark.parametrize("host", ["134744072", "0x8080808", "8.8.2056"])
def test_numeric_spellings_of_public_addresses_are_refused_as_ambiguous(host: str) -> None:
    with pytest.raises(UrlRefused) as refused:
        DEFAULT.check_url(f"https://{host}/hook")
    assert refused.value.reason == "invalid_url"
    assert "write it as 8.8.8.8" in refused.value.detail


@pytest.mark.parametrize("host", ["1.2.3.4.5", "256.1.1.1", "4294967296", "1.2.3.0x", "ex.123", "1.08"])
def test_hosts_ending_in_a_number_that_are_no_address_are_refused(host: str) -> None:
    with pytest.raises(UrlRefused) as refused:
        DEFAULT.check_url(f"https://{host}/hook")
    assert refused.value.reason == "invalid_url"


@pytest.mark.parametrize("host", ["example.com", "1e100.net", "123.example", "0x.example", "xn--bcher-kva.example"])
def test_names_with_digits_stay_names(host: str) -> None:
    assert DEFAULT.check_url(f"https://{host}/hook").literal_address is None


async def test_the_system_resolver_raises_only_os_errors() -> None:
    with pytest.raises(OSError, match="not a valid host name"):
        await system_resolver("a" * 64 + ".example", 443)


@pytest.mark.parametrize(
    ("url", "in_pattern"),
    [
        ("https://shop.example/hook?a=1#x", True),
        ("https://93.184.215.14:8443", True),
        ("http://localhost:8080/x", True),
        ("http://127.0.0.1/", True),
        ("http://[::1]:1/", True),
        ("http://example.com/", False),
        ("https://user:pw@shop.example/", False),
        ("https://2130706433/", False),
        ("https://0x7f.1/", False),
        ("https://shop.example/a b", False),
        ("ftp://shop.example/", False),
        ("https://shop.example:99999/", False),
    ],
)
def test_a_url_the_pattern_takes_passes_the_checks_without_dns(url: str, in_pattern: bool) -> None:
    """The document's pattern is never looser than the policy's checks that need no DNS."""
    assert bool(re.fullmatch(url_pattern(DEFAULT_ALLOW_HOSTS), url)) is in_pattern
    if in_pattern:
        DEFAULT.check_url(url)
    else:
        with pytest.raises(UrlRefused):
            DEFAULT.check_url(url)
