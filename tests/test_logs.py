"""Text logs keep one entry per line whatever a client put into a message."""

from __future__ import annotations

import logging
import sys

from avidence.server import logs

FORGED = "2026-12-06 13:00:00,000 INFO avidence.evidence evidence.purged id=ev_FORGED"


def _text_formatter() -> logging.Formatter:
    """The formatter `setup` installs for text logs. The root logger and the levels `setup`
    sets on others are restored after: later tests read the access log through caplog."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    others = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    try:
        logs.setup(fmt="text")
        formatter = root.handlers[0].formatter
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, was in others.items():
            logging.getLogger(name).setLevel(was)
        for name in set(logging.root.manager.loggerDict) - set(others):
            logging.getLogger(name).setLevel(logging.NOTSET)
    assert formatter is not None
    return formatter


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.makeLogRecord(
        {"name": "avidence.http", "levelno": logging.WARNING, "levelname": "WARNING",
         "msg": msg, "args": args}
    )


def test_a_line_feed_from_a_client_cannot_forge_a_log_entry() -> None:
    line = _text_formatter().format(
        _record("http.error status=404 message=no such transfer %s", f"x\n{FORGED}\r\x00\x1b[2K")
    )
    assert "\n" not in line and "\r" not in line and "\x00" not in line and "\x1b" not in line
    assert f"no such transfer x\\x0a{FORGED}\\x0d\\x00\\x1b[2K" in line


def test_unicode_line_separators_and_c1_controls_are_escaped_tabs_kept() -> None:
    line = _text_formatter().format(_record("a\u2028b\u2029c\x85d\te"))
    assert line.endswith("a\\u2028b\\u2029c\\x85d\te")


def test_a_traceback_keeps_its_lines() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("failed id=%s", "x\ny")
        record.exc_info = sys.exc_info()
    text = _text_formatter().format(record)
    first, rest = text.split("\n", 1)
    assert first.endswith("failed id=x\\x0ay")
    assert rest.startswith("Traceback") and "ValueError: boom" in rest
