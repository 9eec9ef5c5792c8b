"""Process logs as text or as JSON lines (``TRAINFAAS_LOG_FORMAT=json``), with the fields that
place a line: ``service``, ``instance``, ``execution_id`` and ``attempt`` where they apply.

A process binds what holds for all its lines (an instance: its service and id) with
:func:`bind`; a line about one attempt carries ``extra=attempt_fields(execution_id, attempt)``.
"""
from __future__ import annotations

import logging
import sys
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

FIELDS = ("service", "instance", "execution_id", "attempt")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_bound: dict[str, Any] = {}


class ContextFilter(logging.Filter):
    """Adds the process's bound fields to each record that does not carry its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _bound.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class TextFormatter(logging.Formatter):
    """The text format, with the fields a record carries appended as ``key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{name}={getattr(record, name)}" for name in FIELDS if getattr(record, name, None) is not None)
        return f"{line} [{fields}]" if fields else line


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(TEXT_FORMAT.replace(": ", " "), rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                             timestamp=False)
    return TextFormatter(TEXT_FORMAT)


def configure(level: int, log_format: str = "text", stream: IO[str] | None = None) -> None:
    """Send every log line of this process to ``stream`` (stderr) in ``log_format``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(True)  # a library's warning is a line in the same format


def bind(**fields: Any) -> None:
    """Fields every later line of this process carries (None removes one)."""
    for name, value in fields.items():
        if value is None:
            _bound.pop(name, None)
        else:
            _bound[name] = value


def attempt_fields(execution_id: str, attempt: int) -> dict[str, Any]:
    """The ``extra`` of a line about one attempt of an execution."""
    return {"execution_id": execution_id, "attempt": attempt}
