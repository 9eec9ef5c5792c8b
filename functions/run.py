"""The work process: runs one attempt of one execution and reports over a pipe.

The instance starts this by *spawn* (CUDA does not survive fork) and watches it: an exit
without a result is turned into a reason (signal, exit code, OOM) by the instance.
"""
from __future__ import annotations

import ctypes
import dataclasses
import logging
import signal
import sys
import traceback
from collections.abc import Callable
from importlib import import_module
from multiprocessing.connection import Connection
from typing import Any

from trainfaas.functions.context import LogWriter, ProcessContext

FUNCTIONS: dict[str, str] = {
    "train_model": "trainfaas.functions.train:train_model",
    "noop": "trainfaas.functions.noop:noop",
}


@dataclasses.dataclass
class WorkSpec:
    """Everything a work process needs; built by the control plane when an attempt is claimed."""

    execution_id: str
    attempt: int
    function: str
    input: dict[str, Any]
    output_path: str
    data_path: str | None = None
    model: dict[str, Any] | None = None
    resume_checkpoint: str | None = None
    base_model: str | None = None  # fine-tuning: the saved model directory training starts from
    adapters: str = ""  # extra adapter references (the TRAINFAAS_ADAPTERS setting)


def execute(execution_id: str) -> None:
    """What an rq job on a trainfaas queue names. trainfaas instances claim executions from the
    control plane and never run this; a plain ``rq worker`` pointed at the queue would."""
    raise RuntimeError(
        f"execution {execution_id} belongs to trainfaas: run `trainfaas instance --service <queue>` "
        "instead of an rq worker on this queue"
    )


def resolve(function: str) -> Callable[[ProcessContext, WorkSpec], dict[str, Any]]:
    module, _, name = FUNCTIONS[function].partition(":")
    return getattr(import_module(module), name)  # type: ignore[no-any-return]


def _die_with_parent() -> None:
    # A SIGKILLed instance cannot stop its work processes; the kernel does it for us, so an
    # orphan never keeps training (and writing files) for an attempt that was already reset.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def standby(conn: Connection, stop_event: Any, architecture: str | None, adapters: str) -> None:
    """Entry point of a pre-started work process: import the service's adapter (torch and all)
    while idle, then wait for the one spec to run. EOF on the pipe means it is not needed."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is the instance's to handle
    if architecture:
        try:
            from trainfaas.adapters.catalog import get_adapter

            get_adapter(architecture, adapters)
        except Exception:  # noqa: BLE001 - the attempt itself will report it
            pass
    try:
        spec = conn.recv()
    except (EOFError, OSError):
        return
    work(spec, conn, stop_event)


def work(spec: dict[str, Any], conn: Connection, stop_event: Any) -> None:
    """Run one attempt and report over ``conn``. Exit code 0 with a result event means success."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is the instance's to handle
    job = WorkSpec(**spec)
    context = ProcessContext(conn, stop_event, job.resume_checkpoint, job.base_model)
    sys.stdout = LogWriter(context, sys.__stdout__)
    sys.stderr = LogWriter(context, sys.__stderr__)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s", force=True)
    try:
        output = resolve(job.function)(context, job)
    except MemoryError:
        conn.send(("error", "MemoryError", "out of memory in the work process", traceback.format_exc()))
        sys.exit(1)
    except BaseException as exc:  # noqa: BLE001 - everything the function raises is its failure
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            conn.send(("error", "SystemExit", "the function called sys.exit(0) without returning a result", ""))
            sys.exit(1)
        if isinstance(exc, SystemExit):
            raise  # the exit code is the report; the instance reads it
        conn.send(("error", type(exc).__name__, str(exc) or type(exc).__name__, traceback.format_exc()))
        sys.exit(1)
    conn.send(("result", output, context.should_stop()))
    conn.close()
