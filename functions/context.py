"""The context a function and its adapter report through, inside the work process.

Everything goes over a one-way pipe to the instance that monitors this process; the work
process holds no token, no database URL and no Redis URL.
"""
from __future__ import annotations

import io
import math
import os
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any


class ProcessContext:
    """:class:`adapters.base.TrainContext` for a monitored work process. Never raises."""

    def __init__(self, conn: Connection, stop_event: Any, resume_checkpoint: str | None = None,
                 base_model: str | None = None) -> None:
        self._conn = conn
        self._stop_event = stop_event
        self._parent_pid = os.getppid()
        self.resume_checkpoint = Path(resume_checkpoint) if resume_checkpoint else None
        self.base_model = Path(base_model) if base_model else None

    def _send(self, *event: Any) -> None:
        try:
            self._conn.send(event)
        except (BrokenPipeError, OSError):
            pass  # the instance is gone; should_stop() will say so

    def progress(self, percent: float, message: str = "") -> None:
        self._send("progress", max(0.0, min(100.0, float(percent))), str(message))

    def metric(self, figure: str, legend: str, x: float, y: float) -> None:
        if math.isfinite(float(y)):
            self._send("metric", str(figure), str(legend), float(x), float(y))

    def checkpoint(self, path: str | Path, step: int, metrics: dict[str, float] | None = None) -> None:
        clean = {k: float(v) for k, v in (metrics or {}).items() if math.isfinite(float(v))}
        self._send("checkpoint", str(Path(path).resolve()), int(step), clean)

    def log(self, message: str) -> None:
        self._send("log", str(message))

    def should_stop(self) -> bool:
        """True once the instance asks this attempt to stop, or when the instance has died."""
        return bool(self._stop_event.is_set()) or os.getppid() != self._parent_pid


class LogWriter(io.TextIOBase):
    """A text stream that forwards complete lines to the context's log (for print and logging)."""

    def __init__(self, context: ProcessContext, mirror: Any = None) -> None:
        self._context = context
        self._mirror = mirror
        self._buffer = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self._mirror is not None:
            self._mirror.write(text)
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            if line.strip():
                self._context.log(line.rstrip("\r"))
        return len(text)

    def flush(self) -> None:
        if self._mirror is not None:
            self._mirror.flush()
