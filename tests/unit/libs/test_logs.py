"""The log formats of every process: whatever a message holds (a client's path, header, id or body), a record
is one line, its control characters escaped; a traceback keeps its own lines."""

from __future__ import annotations

import json
import logging

import pytest

from libs.logs import JsonFormatter, TextFormatter, escape_controls, setup_logging
from tests.support import service_log

# Each of these ends a line for some reader (str.splitlines, a terminal, a log shipper) or drives a terminal.
CONTROLS = "\n\r\t\x00\x0b\x0c\x1b[31m\x1c\x7f\x85\x9b\u2028\u2029"
FORGED = "\n2026-12-07 00:00:00,000 ERROR forged.line: hello"


def _raise(text: str) -> None:
    raise ValueError(text)


def test_escape_controls_writes_each_control_character_as_an_escape() -> None:
    assert escape_controls(CONTROLS) == r"\n\r\t\x00\x0b\x0c\x1b[31m\x1c\x7f\x85\x9b\u2028\u2029"
    assert escape_controls("a\nb\tc", keep_newlines=True) == "a\nb\\tc"
    # Printable text stays as it is, a backslash too: a value quoted by its call (%r) is not doubled.
    assert escape_controls("SKU-1 é ü 字 \\n 'x'") == "SKU-1 é ü 字 \\n 'x'"


@pytest.mark.parametrize("logger", ["stockwire.http", "stockwire.console", "uvicorn.error", "litestar"])
def test_a_text_record_is_one_line_whatever_its_message_holds(logger: str) -> None:
    with service_log("text") as out:
        logging.getLogger(logger).warning("GET /skus/%s -> 404", f"A{FORGED}{CONTROLS}")
        logging.getLogger(logger).warning("quoted by the call: %r", "A\nB")
    first, second = out.getvalue().splitlines()
    assert first.endswith(
        rf"WARNING {logger}: GET /skus/A\n2026-12-07 00:00:00,000 ERROR forged.line: hello"
        r"\n\r\t\x00\x0b\x0c\x1b[31m\x1c\x7f\x85\x9b\u2028\u2029 -> 404"
    )
    assert second.endswith(r"quoted by the call: 'A\nB'")  # repr's escape, not escaped again
    assert all(ch.isprintable() for ch in out.getvalue().replace("\n", ""))


def test_a_traceback_keeps_its_lines_under_an_escaped_message() -> None:
    with service_log("text") as out:
        try:
            _raise("bad \x1b[2J value")
        except ValueError:
            logging.getLogger("stockwire.http").exception("GET %s failed", "/x\nFORGED", stack_info=True)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith(r"ERROR stockwire.http: GET /x\nFORGED failed")
    assert lines[1] == "Traceback (most recent call last):"
    assert any(line.strip().startswith("_raise(") for line in lines)
    assert r"ValueError: bad \x1b[2J value" in lines
    assert "Stack (most recent call last):" in lines
    assert not any(line.startswith("FORGED") for line in lines)


def test_a_json_record_is_one_valid_object_its_message_escaped() -> None:
    with service_log("json") as out:
        logging.getLogger("stockwire.console").info("GET /channels/%s -> 404", f"x{FORGED}{CONTROLS}")
        try:
            _raise("bad\rvalue")
        except ValueError:
            logging.getLogger("uvicorn.error").exception("GET /nope\u2028FORGED failed")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["logger"] == "stockwire.console"
    assert first["message"] == (
        r"GET /channels/x\n2026-12-07 00:00:00,000 ERROR forged.line: hello"
        r"\n\r\t\x00\x0b\x0c\x1b[31m\x1c\x7f\x85\x9b\u2028\u2029 -> 404"
    )
    assert second["message"] == r"GET /nope\u2028FORGED failed"
    trace = second["exc_info"].splitlines()
    assert trace[0] == "Traceback (most recent call last):" and trace[-1] == r"ValueError: bad\rvalue"


def test_a_record_formatted_directly_is_escaped_too() -> None:
    record = logging.LogRecord("stockwire.x", logging.INFO, __file__, 1, "id %s", ("a\x00b",), None)
    assert TextFormatter("%(message)s").format(record) == r"id a\x00b"
    assert json.loads(JsonFormatter().format(record))["message"] == r"id a\x00b"


def test_an_unknown_log_level_is_one_configuration_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STOCKWIRE_LOG_LEVEL", "loud")
    with pytest.raises(SystemExit) as stopped:
        setup_logging()
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err == "stockwire: configuration error: STOCKWIRE_LOG_LEVEL='LOUD' is not a log level; one of " + (
        "DEBUG, INFO, WARNING, ERROR, CRITICAL\n"
    )


def test_every_log_level_name_is_taken_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        for name in ("debug", "Warning", "ERROR"):
            monkeypatch.setenv("STOCKWIRE_LOG_LEVEL", name)
            setup_logging()
            assert root.level == logging.getLevelName(name.upper())
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
