"""The work process: runs one attempt of one execution and reports over a pipe.

The instance starts this from a fork server (CUDA does not survive fork) and watches it: an exit
without a result is turned into a reason (signal, exit code, OOM) by the instance. Everything
sent over the pipe is a message of trainfaas.services.core.protocol.
"""
from __future__ import annotations

import ctypes
import logging
import signal
import sys
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from trainfaas.adapters.catalog import get_adapter
from trainfaas.functions.context import LogWriter, ProcessContext
from trainfaas.services.core.protocol import TRAIN_MODEL, Failure, Result, WorkSpec, finite
from trainfaas.services.core.references import resolve as resolve_reference

__all__ = ["CODE", "WorkSpec", "execute", "resolve", "standby", "work"]

# The code of each function in trainfaas.services.core.protocol.FUNCTIONS.
CODE: dict[str, str] = {
    TRAIN_MODEL: "trainfaas.functions.train:train_model",
    "noop": "trainfaas.functions.noop:noop",
}


def execute(execution_id: str) -> None:
    """What an rq job on a trainfaas queue names. trainfaas instances claim executions from the
    control plane and never run this; a plain ``rq worker`` pointed at the queue would."""
    raise RuntimeError(
        f"execution {execution_id} belongs to trainfaas: run `trainfaas instance --service <queue>` "
        "instead of an rq worker on this queue"
    )


def resolve(function: str) -> Callable[[ProcessContext, WorkSpec], dict[str, Any]]:
    return resolve_reference(CODE[function], "function")  # type: ignore[no-any-return]


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
            get_adapter(architecture, adapters)
        except Exception:  # noqa: BLE001 - the attempt itself will report it
            pass
    try:
        spec = conn.recv()
    except (EOFError, OSError):
        return
    work(spec, conn, stop_event)


def work(spec: WorkSpec, conn: Connection, stop_event: Any) -> None:
    """Run one attempt and report over ``conn``. Exit code 0 with a Result means success."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is the instance's to handle
    context = ProcessContext(conn, stop_event, spec.resume_checkpoint, spec.base_model)
    sys.stdout = LogWriter(context, sys.__stdout__)
    sys.stderr = LogWriter(context, sys.__stderr__)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s", force=True)
    try:
        # JSON has no NaN or infinity (a diverged loss): such a final figure is stored as null.
        result = Result(output=finite(resolve(spec.function)(context, spec)), stopped=False)
    except MemoryError:
        context.send(Failure(error="MemoryError", message="out of memory in the work process", traceback=traceback.format_exc()))
        sys.exit(1)
    except BaseException as exc:  # noqa: BLE001 - everything the function raises is its failure
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            context.send(Failure(error="SystemExit", message="the function called sys.exit(0) without returning a result"))
            sys.exit(1)
        if isinstance(exc, SystemExit):
            raise  # the exit code is the report; the instance reads it
        context.send(Failure(error=type(exc).__name__, message=str(exc) or type(exc).__name__, traceback=traceback.format_exc()))
        sys.exit(1)
    try:
        result.model_dump(mode="json")  # as its instance will send it
    except ValueError as exc:
        # Its instance could not send it to the control plane: the function's own fault, said here.
        context.send(Failure(error="TypeError", message=f"the function returned a result that is not JSON: {exc}"))
        sys.exit(1)
    context.send(result.model_copy(update={"stopped": context.should_stop()}))
    conn.close()
