"""The context a function and its adapter report through, inside the work process.

Everything goes over a one-way pipe to the instance that monitors this process, as the events of
trainfaas.services.core.protocol encoded as JSON (:func:`encode`): the instance only ever decodes
JSON of the protocol, never a pickle, so nothing a work process sends can run code in the instance.
The work process holds no token, no database URL and no Redis URL.
"""
from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from trainfaas.services.core.files import atomic_link_or_copy
from trainfaas.services.core.protocol import MAX_WORK_MESSAGE_BYTES, Checkpoint, Log, Metric, Progress

NAME_LENGTH = 100  # figures and legends longer than this are cut, as the database keeps them


def encode(message: BaseModel) -> bytes:
    """``message`` as the instance reads it: JSON (NaN and infinity as JavaScript writes them, which
    the protocol then drops or stores as null). Raises ValueError for what JSON cannot carry."""
    try:
        return json.dumps(message.model_dump(mode="json"), allow_nan=True).encode()
    except (TypeError, RecursionError) as exc:
        raise ValueError(str(exc)) from exc


class ProcessContext:
    """:class:`adapters.base.TrainContext` for a monitored work process. Never raises: a value
    the protocol refuses (a NaN metric, say) is dropped rather than failing the training."""

    def __init__(self, conn: Connection, stop_event: Any, resume_checkpoint: str | None = None,
                 base_model: str | None = None, output_path: str | None = None) -> None:
        self._conn = conn
        self._stop_event = stop_event
        self._parent_pid = os.getppid()
        self.resume_checkpoint = Path(resume_checkpoint) if resume_checkpoint else None
        self.base_model = Path(base_model) if base_model else None
        self._kept = Path(output_path).absolute() / "checkpoints" if output_path else None

    def send(self, message: BaseModel) -> None:
        """Send one protocol message to the instance (the work process's last one is its result).
        One that JSON cannot carry, or larger than the instance reads, is dropped."""
        try:
            data = encode(message)
        except ValueError:
            return
        if len(data) > MAX_WORK_MESSAGE_BYTES:
            return
        try:
            self._conn.send_bytes(data)
        except (BrokenPipeError, OSError):
            pass  # the instance is gone; should_stop() will say so

    def _report(self, build: Callable[[], BaseModel]) -> None:
        try:
            event = build()
        except (ValidationError, TypeError, ValueError):
            return
        self.send(event)

    def progress(self, percent: float, message: str = "") -> None:
        self._report(lambda: Progress(percent=max(0.0, min(100.0, float(percent))), message=str(message)))

    def metric(self, figure: str, legend: str, x: float, y: float) -> None:
        def build() -> Metric:
            sample = Metric(figure=str(figure)[:NAME_LENGTH], legend=str(legend)[:NAME_LENGTH], x=x, y=y)
            if not sample.is_finite:
                raise ValueError("a chart cannot draw NaN or infinity")  # dropped, like any refused value
            return sample

        self._report(build)

    def checkpoint(self, path: str | Path, step: int, metrics: dict[str, float] | None = None, best: bool | None = None) -> None:
        """Report a checkpoint; a file is kept as ``<output>/checkpoints/step-<step>.<suffix>``, which later
        checkpoints never overwrite (see :func:`keep`)."""
        def build() -> Checkpoint:
            clean = {str(k): float(v) for k, v in (metrics or {}).items() if math.isfinite(float(v))}
            source = Path(path).resolve()
            is_best = source.stem == "best" if best is None else bool(best)
            kept = keep(source, int(step), self._kept) if self._kept is not None else source
            return Checkpoint(path=str(kept), step=int(step), metrics=clean, best=is_best)

        self._report(build)

    def log(self, message: str) -> None:
        self._report(lambda: Log(line=str(message)))

    def should_stop(self) -> bool:
        """True once the instance asks this attempt to stop, or when the instance has died."""
        return bool(self._stop_event.is_set()) or os.getppid() != self._parent_pid


def keep(source: Path, step: int, folder: Path) -> Path:
    """The immutable copy of checkpoint file ``source`` of ``step`` in ``folder``, made now (a hard link
    where the file system has them, else a copy, written atomically) unless the step has one already;
    ``source`` itself when it is a folder (one of its own per step) or cannot be kept."""
    if not source.is_file():
        return source
    target = folder / f"step-{step:012d}{source.suffix}"
    if target.exists():
        return target
    try:
        atomic_link_or_copy(source, target)
    except OSError:
        return source
    return target


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
