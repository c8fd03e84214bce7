from __future__ import annotations

import pytest

from libs.urlpolicy import DEFAULT_ALLOW_HOSTS, UrlPolicy, UrlRefused, vet_url

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
