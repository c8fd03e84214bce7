"""A stack refuses to start, before starting anything, when a port it would listen on is taken: another
process's service would answer its health checks and ``stockwire up`` would announce it as its own."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from libs.natsserver import can_listen, free_port
from libs.processes import STOP_SIGNALS
from stockwire.cli import main as stockwire
from stockwire.stack import Stack


@contextmanager
def _listening() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_port_a_service_would_take_is_named_and_nothing_starts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with _listening() as taken:
        stack = Stack(data_dir=data_dir, services=("ingress",), ports={"ingress": taken}, nats_port=free_port())
        with pytest.raises(RuntimeError, match=rf"127\.0\.0\.1:{taken} \(ingress\)"):
            stack.start()
    assert stack.nats is None and not stack.children and not data_dir.exists()


def test_the_embedded_nats_port_is_checked_too(tmp_path: Path) -> None:
    with _listening() as taken:
        stack = Stack(data_dir=tmp_path / "data", services=(), nats_port=taken)
        with pytest.raises(RuntimeError, match=rf"127\.0\.0\.1:{taken} \(nats-server\)"):
            stack.start()
    assert stack.nats is None


def test_up_says_so_in_one_line_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    handlers = {stop: signal.getsignal(stop) for stop in STOP_SIGNALS}  # up takes them over
    try:
        with _listening() as taken:
            status = stockwire(["up", "--data-dir", str(tmp_path / "data"), "--nats-port", str(taken)])
    finally:
        for stop, handler in handlers.items():
            signal.signal(stop, handler)
    err = capsys.readouterr().err.strip()
    assert status == 1
    assert err.startswith("stockwire up: another process listens on") and f":{taken} (nats-server)" in err
    assert "\n" not in err and "Stockwire is up." not in capsys.readouterr().out


def test_a_port_is_free_again_once_its_listener_has_gone() -> None:
    with _listening() as port:
        assert not can_listen("127.0.0.1", port)
    assert can_listen("127.0.0.1", port)
