"""Real processes for the console's browser tests: NATS, the five services (the console among them), a
channel endpoint that fails on demand, and headless Chromium driven through chromedriver (Selenium).

Chromium is Debian's ``chromium`` and ``chromium-driver`` packages (``make tools`` installs them); when
either is missing the tests fail saying so: they are never skipped."""

from __future__ import annotations

import http.server
import io
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from libs.natsserver import free_port
from stockwire.demo.run import demo_env
from stockwire.stack import DEFAULT_PORTS, Stack

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = ROOT / ".data" / "screenshots"
CHROMIUM = os.environ.get("STOCKWIRE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("STOCKWIRE_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


class _Discard(io.StringIO):
    def write(self, text: str) -> int:
        return len(text)


@dataclass
class FlakyEndpoint:
    """A channel's webhook endpoint on loopback: answers 500 while ``failing``, else 200; counts requests."""

    failing: bool = True
    received: list[int] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self) -> FlakyEndpoint:
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                status = 500 if endpoint.failing else 200
                endpoint.received.append(status)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture(scope="module")
def console_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        **demo_env(600.0),
        # A failing channel gives a delivery up after two attempts, so a test can retry it.
        "STOCKWIRE__CHANNEL_NOTIFIER__MAX_ATTEMPTS": "2",
        "STOCKWIRE__CHANNEL_NOTIFIER__RETRY_BASE_S": "0.1",
        "STOCKWIRE__CONSOLE__REFRESH_S": "1",
    }
    stack = Stack(
        data_dir=tmp_path_factory.mktemp("console") / "stack",
        ports={name: free_port() for name in DEFAULT_PORTS},
        nats_port=free_port(),
        env=env,
        sink=_Discard(),
    )
    try:
        stack.start(60)
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def flaky_endpoint() -> Iterator[FlakyEndpoint]:
    endpoint = FlakyEndpoint().start()
    try:
        yield endpoint
    finally:
        endpoint.stop()


def _require(path: str, package: str) -> None:
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"{path} is missing: the console's browser tests need Debian's {package} package "
            f"(`make tools` installs it: apt-get install -y chromium chromium-driver)",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium at 1280x800, from the system packages; Selenium downloads nothing."""
    _require(CHROMIUM, "chromium")
    _require(CHROMEDRIVER, "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="stockwire-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (*CHROMIUM_ARGS, f"--user-data-dir={profile}", "--window-size=1280,800"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.implicitly_wait(5)  # an element looked for appears once its page has loaded
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
