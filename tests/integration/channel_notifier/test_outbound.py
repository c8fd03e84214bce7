"""The guarded HTTP/1.1 transport against a scripted raw server: framing, keep-alive, limits, TLS.

Every test runs twice: through an httpx client on the transport, and through ``GuardedTransport.post``,
the path the channel-notifier's sender takes (no httpx request or response objects).
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from libs.outbound import GuardedTransport, guarded_client
from libs.urlpolicy import UrlPolicy, UrlRefused
from tests.support import eventually

Script = Callable[[bytes], list[bytes]]
POLICY = UrlPolicy(("127.0.0.1", "localhost"))


class RawServer:
    """Answers each request with the byte chunks ``script`` returns (b"" closes the connection)."""

    def __init__(self, script: Script, delay_s: float = 0.0) -> None:
        self.script = script
        self.delay_s = delay_s
        self.connections = 0
        self.open = 0
        self.max_open = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> RawServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ssl_context)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                for chunk in self.script(request):
                    if chunk == b"":
                        writer.close()
                        return
                    writer.write(chunk)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., asyncio.Future[RawServer]]]:
    servers: list[RawServer] = []

    async def make(script: Script, delay_s: float = 0.0, ssl_context: ssl.SSLContext | None = None) -> RawServer:
        server = await RawServer(script, delay_s).start(ssl_context)
        servers.append(server)
        return server

    yield make  # type: ignore[misc]
    for server in servers:
        await server.stop()


async def _closed_by(server: RawServer) -> bool:
    return server.open == 0


async def _refuses(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


def ok(body: bytes = b"ok", extra: bytes = b"") -> Script:
    return lambda _request: [b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)]


@dataclass(frozen=True)
class Answer:
    status_code: int
    headers: httpx.Headers
    content: bytes


class DirectClient:
    """``GuardedTransport.post`` behind the small part of httpx's client API these tests use."""

    def __init__(self, transport: GuardedTransport, connect_timeout_s: float, request_timeout_s: float) -> None:
        self.transport = transport
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s

    async def __aenter__(self) -> DirectClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.transport.aclose()

    async def post(self, url: str, *, content: bytes, headers: dict[str, str] | None = None) -> Answer:
        raw = await self.transport.post(
            httpx.URL(url),
            content,
            {"accept-encoding": "identity", **(headers or {})},
            connect_timeout=self.connect_timeout_s,
            read_timeout=self.request_timeout_s,
        )
        return Answer(raw.status, httpx.Headers(raw.headers), raw.content)


Opener = Callable[..., "httpx.AsyncClient | DirectClient"]


@pytest.fixture(params=["httpx", "direct"])
def client(request: pytest.FixtureRequest) -> Opener:
    """Opens a client on a fresh GuardedTransport, through httpx or through ``post`` (the sender's path)."""

    def open_client(
        policy: UrlPolicy = POLICY,
        *,
        connect_timeout_s: float = 1.0,
        request_timeout_s: float = 2.0,
        max_connections: int = 4,
        **options: object,
    ) -> httpx.AsyncClient | DirectClient:
        if request.param == "httpx":
            return guarded_client(
                policy,
                connect_timeout_s=connect_timeout_s,
                request_timeout_s=request_timeout_s,
                max_connections=max_connections,
                **options,  # type: ignore[arg-type]
            )
        transport = GuardedTransport(policy, max_connections=max_connections, **options)  # type: ignore[arg-type]
        return DirectClient(transport, connect_timeout_s, request_timeout_s)

    return open_client


async def test_keep_alive_connection_is_reused_and_request_is_well_formed(serve, client: Opener) -> None:  # type: ignore[no-untyped-def]
    server = await serve(ok(b'{"ok":true}'))
    async with client() as http:
        for n in range(3):
            response = await http.post(f"http://127.0.0.1:{server.port}/hook?x={n}", content=b"abc", headers={"a": "b"})
            assert (response.status_code, response.content) == (200, b'{"ok":true}')
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /hook?x=0 HTTP/1.1\r\n")
    assert b"\r\ncontent-length: 3\r\n" in first.lower() and first.endswith(b"\r\n\r\nabc")
    assert b"\r\na: b\r\n" in first and b"accept-encoding: identity" in first.lower()


async def test_chunked_and_close_delimited_and_informational_answers(serve, client: Opener) -> None:  # type: ignore[no-untyped-def]
    chunked = await serve(
        lambda _r: [
            b"HTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n",
            b"3\r\nabc\r\n",
            b"2\r\nde\r\n0\r\n\r\n",
        ]
    )
    until_close = await serve(lambda _r: [b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it", b""])
    informational = await serve(lambda _r: [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"])
    async with client() as http:
        response = await http.post(f"http://127.0.0.1:{chunked.port}/", content=b"x")
        assert (response.status_code, response.content) == (202, b"abcde")
        response = await http.post(f"http://127.0.0.1:{until_close.port}/", content=b"x")
        assert (response.status_code, response.content) == (200, b"all of it")
        response = await http.post(f"http://127.0.0.1:{until_close.port}/", content=b"x")
        assert response.status_code == 200
        response = await http.post(f"http://127.0.0.1:{informational.port}/", content=b"x")
        assert response.status_code == 204
    assert until_close.connections == 2  # "connection: close" is not reused


async def test_headers_like_retry_after_reach_the_caller(serve, client: Opener) -> None:  # type: ignore[no-untyped-def]
    server = await serve(lambda _r: [b"HTTP/1.1 429 Too Many\r\nretry-after: 7\r\ncontent-length: 0\r\n\r\n"])
    async with client() as http:
        response = await http.post(f"http://127.0.0.1:{server.port}/", content=b"x")
    assert (response.status_code, response.headers["retry-after"]) == (429, "7")


async def test_oversized_answer_is_cut_and_its_connection_dropped(serve, client: Opener) -> None:  # type: ignore[no-untyped-def]
    server = await serve(ok(b"x" * 10_000))
    async with client(connect_timeout_s=1, request_timeout_s=2, max_connections=2, max_response_bytes=1000) as http:
        for _ in range(2):
            response = await http.post(f"http://127.0.0.1:{server.port}/", content=b"x")
            assert response.status_code == 200 and len(response.content) <= 1000
    assert server.connections == 2


async def test_oversized_headers_are_refused_and_their_connection_dropped(serve, client: Opener) -> None:  # type: ignore[no-untyped-def]
    huge = await serve(ok(extra=b"x-filler: " + b"x" * 70_000 + b"\r\n"))
    many = await serve(ok(extra=b"".join(b"x-%d: %s\r\n" % (n, b"y" * 100) for n in range(1000))))
    fine = await serve(ok(extra=b"retry-after: " + b"9" * 5000 + b"\r\n"))
    async with client() as http:
        for server in (huge, many):
            with pytest.raises(httpx.RemoteProtocolError, match="headers exceed"):
                await http.post(f"http://127.0.0.1:{server.port}/", content=b"x")
        response = await http.post(f"http://127.0.0.1:{fine.port}/", content=b"x")
        assert len(response.headers["retry-after"]) == 5000


async def test_idle_connection_closed_by_the_server_is_replaced_transparently(serve, client: Opener) -> None:  # type: ignore[no-untyped-def]
    answers = iter(
        [[b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n1", b""], [b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n2"]]
    )
    server = await serve(lambda _r: next(answers))
    async with client() as http:
        assert (await http.post(f"http://127.0.0.1:{server.port}/", content=b"x")).content == b"1"
        await eventually(lambda: _closed_by(server), what="the server closed the idle connection")
        assert (await http.post(f"http://127.0.0.1:{server.port}/", content=b"x")).content == b"2"
    assert server.connections == 2


async def test_timeouts_and_refused_connections(serve, client: Opener) -> None:  # type: ignore[no-untyped-def]
    silent = await serve(lambda _r: [], delay_s=0)
    async with client(connect_timeout_s=1, request_timeout_s=0.3, max_connections=1) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(f"http://127.0.0.1:{silent.port}/", content=b"x")
        closed_port = silent.port
        await silent.stop()
        await eventually(lambda: _refuses(closed_port), what="the stopped server refuses connections")
        with pytest.raises(httpx.ConnectError):
            await http.post(f"http://127.0.0.1:{closed_port}/", content=b"x")
        # The slot of each failed request was given back.
        server = await serve(ok())
        assert (await http.post(f"http://127.0.0.1:{server.port}/", content=b"x")).status_code == 200


async def test_concurrency_is_bounded_by_max_connections(serve, client: Opener) -> None:  # type: ignore[no-untyped-def]
    server = await serve(ok(), delay_s=0.1)
    async with client(max_connections=2) as http:
        results = await asyncio.gather(*(http.post(f"http://127.0.0.1:{server.port}/", content=b"x") for _ in range(6)))
    assert [r.status_code for r in results] == [200] * 6
    assert server.max_open <= 2


async def test_policy_is_enforced_before_any_connection(serve, client: Opener) -> None:  # type: ignore[no-untyped-def]
    server = await serve(ok())
    strict = UrlPolicy(())
    async with client(strict, connect_timeout_s=1, request_timeout_s=1, max_connections=1) as http:
        with pytest.raises(UrlRefused):
            await http.post(f"http://127.0.0.1:{server.port}/", content=b"x")
        with pytest.raises(UrlRefused, match="loopback"):
            await http.post(f"https://127.0.0.1:{server.port}/", content=b"x")
    assert server.connections == 0


def _certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_verifies_the_certificate_against_the_host_name(serve, tmp_path: Path, client: Opener) -> None:  # type: ignore[no-untyped-def]
    cert, key = _certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    server = await serve(ok(b"secure"), ssl_context=server_tls)
    trusting = ssl.create_default_context(cafile=str(cert))
    async with client(connect_timeout_s=2, request_timeout_s=2, max_connections=1, ssl_context=trusting) as http:
        response = await http.post(f"https://localhost:{server.port}/", content=b"x")
        assert response.content == b"secure"
        with pytest.raises(httpx.ConnectError):  # the certificate names localhost, not 127.0.0.1
            await http.post(f"https://127.0.0.1:{server.port}/", content=b"x")
