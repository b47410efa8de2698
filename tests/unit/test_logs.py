"""Tests for structured logging: one JSON object per line, extras kept, kopf's noise dropped."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from modelroute.logs import JsonFormatter, configure

CREATED = 1735732800.25  # 2025-01-01T12:00:00.250Z


def record(msg: str = "probe failed", *args: Any, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord(
        "modelroute.probing.prober", logging.WARNING, __file__, 1, msg, args, None
    )
    rec.created = CREATED
    rec.__dict__.update(extra)
    return rec


def formatted(rec: logging.LogRecord) -> dict[str, Any]:
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    entry: dict[str, Any] = json.loads(line)
    return entry


def test_base_fields() -> None:
    entry = formatted(record("backend %s is %s", "vendor", "down"))
    assert entry == {
        "time": "2025-01-01T12:00:00.250+00:00",
        "level": "WARNING",
        "logger": "modelroute.probing.prober",
        "message": "backend vendor is down",
    }


def test_extras_are_kept() -> None:
    entry = formatted(record(namespace="ai", route="chat", backend="vendor", reason="HTTP 503"))
    assert {k: entry[k] for k in ("namespace", "route", "backend", "reason")} == {
        "namespace": "ai",
        "route": "chat",
        "backend": "vendor",
        "reason": "HTTP 503",
    }


@pytest.mark.parametrize("dropped", ["settings", "k8s_skip"])
def test_kopf_extras_are_dropped(dropped: str) -> None:
    entry = formatted(record(**{dropped: object(), "route": "chat"}))
    assert dropped not in entry
    assert entry["route"] == "chat"


def test_standard_attributes_are_not_repeated() -> None:
    entry = formatted(record())
    for attribute in ("args", "msg", "levelno", "pathname", "lineno", "created", "taskName"):
        assert attribute not in entry


def test_non_json_extras_are_stringified() -> None:
    entry = formatted(record(since=datetime(2025, 1, 1, tzinfo=UTC)))
    assert entry["since"] == "2025-01-01 00:00:00+00:00"


def test_exception_is_one_line_of_json() -> None:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        rec = record("multi\nline message")
        rec.exc_info = sys.exc_info()
    entry = formatted(rec)
    assert entry["message"] == "multi\nline message"
    assert "RuntimeError: boom" in entry["exception"]
    assert "Traceback" in entry["exception"]


@contextmanager
def restored_logging() -> Iterator[None]:
    names = ("", "aiohttp.access", "kopf.objects")
    loggers = [logging.getLogger(name or None) for name in names]
    saved = [(logger, list(logger.handlers), logger.level) for logger in loggers]
    try:
        yield
    finally:
        for logger, handlers, level in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)


def test_configure_json(capsys: pytest.CaptureFixture[str]) -> None:
    with restored_logging():
        configure("json", "info")
        root = logging.getLogger()
        assert len(root.handlers) == 1
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        assert root.level == logging.INFO
        assert logging.getLogger("aiohttp.access").level == logging.WARNING
        assert logging.getLogger("kopf.objects").level == logging.WARNING
        logging.getLogger("modelroute.test").info("hello", extra={"route": "chat"})
        logging.getLogger("modelroute.test").debug("hidden")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert (entry["message"], entry["route"], entry["level"]) == ("hello", "chat", "INFO")


def test_configure_text(capsys: pytest.CaptureFixture[str]) -> None:
    with restored_logging():
        configure("text", "DEBUG")
        assert logging.getLogger().level == logging.DEBUG
        logging.getLogger("modelroute.test").debug("hello")
    err = capsys.readouterr().err
    assert "DEBUG modelroute.test hello" in err
    assert not err.lstrip().startswith("{")
