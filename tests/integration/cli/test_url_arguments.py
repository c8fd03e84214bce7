"""A URL argument no command could use is an argument error: argparse's usage line and status 2, before
anything is read, sent or opened (a failed request was status 3, a store that would not open a traceback)."""

from __future__ import annotations

import pytest

from stockwire.cli import main as stockwire


@pytest.mark.parametrize(
    "argv",
    [
        ["send", "--url", "garbage", "inventory.received", "{}"],
        ["send", "--url", "ftp://127.0.0.1:8080", "inventory.received", "{}"],
        ["send", "--url", "http://127.0.0.1:99999", "inventory.received", "{}"],
        ["send", "--url", "http://", "inventory.received", "{}"],
        ["sim", "--ingress-url", "127.0.0.1:8080"],
        ["sim", "--inventory-url", "localhost"],
        ["ledger", "verify", "--database-url", "mysql://x/y"],
        ["ledger", "rebuild", "--database-url", "inventory.db"],
        ["audit", "order", "o-1", "--database-url", "postgresql2://u:s3cret@h/db"],
    ],
)
def test_a_url_argument_no_command_could_use_is_an_argument_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        stockwire(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument --" in err and "Traceback" not in err
    assert "s3cret" not in err  # a password in a refused URL is not echoed


def test_the_urls_the_commands_use_pass_the_argument_check() -> None:
    from stockwire.commands._options import database_url_argument, http_url_argument

    for url in ("http://127.0.0.1:8080", "https://ingress.example:443/", "http://[::1]:8080"):
        assert http_url_argument(url) == url
    for url in ("sqlite:///x.db", "postgresql://u@h/db", "postgres://h/d"):
        assert database_url_argument(url) == url
