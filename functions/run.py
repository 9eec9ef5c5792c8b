"""The work process: runs one attempt of one execution and reports over a pipe.

The instance starts this from a fork server (CUDA does not survive fork) and watches it: an exit
without a result is turned into a reason (signal, exit code, OOM) by the instance. Everything
sent over the pipe is a message of trainfaas.services.core.protocol, as JSON bytes (see
trainfaas.functions.context.encode): the instance never unpickles what a work process sends.

When the instance runs as root, the work process becomes the work user
(trainfaas.functions.isolation) before it imports the adapter: adapter code never runs as root.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from trainfaas.adapters.catalog import get_adapter
from trainfaas.functions.context import LogWriter, ProcessContext, encode
from trainfaas.functions.isolation import WorkUser, drop_privileges, unreachable, work_environment
from trainfaas.services.core.processes import end_with_parent, keep_freed_memory, release_freed_memory
from trainfaas.services.core.protocol import (
    EVALUATE_MODEL,
    MAX_WORK_MESSAGE_BYTES,
    PREDICT_MODEL,
    TRAIN_MODEL,
    Done,
    Failure,
    Log,
    Result,
    WorkSpec,
    finite,
)
from trainfaas.services.core.references import resolve as resolve_reference

MAX_SPEC_BYTES = 64 * 1024 * 1024  # the most a spec from the instance may hold
__all__ = ["CODE", "WorkSpec", "execute", "resolve", "run_attempt", "serve_warm", "standby", "work"]

# The code of each function in trainfaas.services.core.protocol.FUNCTIONS.
CODE: dict[str, str] = {
    TRAIN_MODEL: "trainfaas.functions.train:train_model",
    EVALUATE_MODEL: "trainfaas.functions.evaluate:evaluate_model",
    PREDICT_MODEL: "trainfaas.functions.predict:predict_model",
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
    end_with_parent(signal.SIGKILL)


def standby(conn: Connection, stop_event: Any, architecture: str | None, adapters: str, user: WorkUser | None = None) -> None:
    """Entry point of a pre-started work process: become the work user, import the service's
    adapter (torch and all) while idle, then wait for the one spec to run. EOF on the pipe means
    it is not needed."""
    try:
        drop_privileges(user)  # before any adapter code; it also clears the parent-death signal, so first
        refused = None
    except OSError as exc:
        refused = f"the work process could not become the work user {user.label if user else ''}: {exc}"
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is the instance's to handle
    if architecture and refused is None:
        try:
            get_adapter(architecture, adapters)
        except Exception:  # noqa: BLE001 - the attempt itself will report it
            pass
    try:
        spec = WorkSpec.model_validate_json(conn.recv_bytes(MAX_SPEC_BYTES))
    except (EOFError, OSError, ValueError):
        return
    if refused is not None:  # no adapter code runs as root: the attempt fails, saying why
        ProcessContext(conn, stop_event).send(Failure(error="PermissionError", message=refused))
        sys.exit(1)
    if spec.warm:
        serve_warm(spec, conn, stop_event, user)
    else:
        work(spec, conn, stop_event, user)


def serve_warm(spec: WorkSpec, conn: Connection, stop_event: Any, user: WorkUser | None = None) -> None:
    """run_as_process false: run ``spec``, then each next spec its instance sends, in this process,
    until EOF. Each attempt starts from the environment the process had before its first one, and
    ends with a Done message after its Result or Failure. The function's own exit (or a crash)
    ends the process: the instance fails that attempt and starts another process for the next."""
    environment = dict(os.environ)
    served = 0
    while True:
        served += 1
        os.environ.clear()
        os.environ.update(environment)
        context = ProcessContext(conn, stop_event)
        context.send(Log(line=f"warm work process {os.getpid()}: attempt {served} in it"))
        run_attempt(spec, conn, stop_event, user)
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__  # nothing printed from now on goes to this attempt
        release_freed_memory()  # an idle warm process does not hold its last attempt's peak
        context.send(Done(execution_id=spec.execution_id, attempt=spec.attempt))
        try:
            spec = WorkSpec.model_validate_json(conn.recv_bytes(MAX_SPEC_BYTES))
        except (EOFError, OSError, ValueError):
            return


def check_access(spec: WorkSpec, user: WorkUser | None) -> None:
    """Raise PermissionError, saying what to change, if the work user cannot write the attempt's
    output directory or read its data set, checkpoint or base model."""
    needs = [(spec.output_path, True, "output directory"), (spec.data_path, False, "data set"),
             (spec.resume_checkpoint, False, "checkpoint to resume from"), (spec.base_model, False, "base model")]
    for path, write, what in needs:
        why = unreachable(Path(path), write) if path else None
        if why:
            who = f"the work user {user.label}" if user is not None else f"uid {os.getuid()}"
            raise PermissionError(f"{who} cannot {'write' if write else 'read'} the {what} {path}: {why}; the data roots must be"
                                  " readable by the work user, and every directory above them and above the home searchable"
                                  " (docs/security.md#work-processes)")


def work(spec: WorkSpec, conn: Connection, stop_event: Any, user: WorkUser | None = None) -> None:
    """Run one attempt and report over ``conn``. Exit code 0 with a Result means success."""
    if run_attempt(spec, conn, stop_event, user):
        sys.exit(1)
    conn.close()


def run_attempt(spec: WorkSpec, conn: Connection, stop_event: Any, user: WorkUser | None = None) -> int:
    """Run one attempt and send its Result (returns 0) or Failure (returns 1) over ``conn``. The
    function's own non-zero sys.exit goes on up: its exit code is the report."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is the instance's to handle
    keep_freed_memory()  # a training step reuses the last one's memory instead of faulting in fresh pages
    context = ProcessContext(conn, stop_event, spec.resume_checkpoint, spec.base_model, spec.output_path)
    if user is not None:
        work_environment(Path(spec.output_path))
    sys.stdout = LogWriter(context, sys.__stdout__)
    sys.stderr = LogWriter(context, sys.__stderr__)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s", force=True)
    try:
        check_access(spec, user)
        # JSON has no NaN or infinity (a diverged loss): such a final figure is stored as null.
        result = Result(output=finite(resolve(spec.function)(context, spec)), stopped=False)
    except MemoryError:
        context.send(Failure(error="MemoryError", message="out of memory in the work process", traceback=traceback.format_exc()))
        return 1
    except BaseException as exc:  # noqa: BLE001 - everything the function raises is its failure
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            context.send(Failure(error="SystemExit", message="the function called sys.exit(0) without returning a result"))
            return 1
        if isinstance(exc, SystemExit):
            raise  # the exit code is the report; the instance reads it
        context.send(Failure(error=type(exc).__name__, message=str(exc) or type(exc).__name__, traceback=traceback.format_exc()))
        return 1
    try:
        size = len(encode(result))  # as it goes to its instance, and on to the control plane
    except ValueError as exc:
        # Its instance could not send it to the control plane: the function's own fault, said here.
        context.send(Failure(error="TypeError", message=f"the function returned a result that is not JSON: {exc}"))
        return 1
    if size > MAX_WORK_MESSAGE_BYTES:
        context.send(Failure(error="ValueError", message=f"the function returned a result of {size} bytes as JSON,"
                                                         f" over the {MAX_WORK_MESSAGE_BYTES} its instance reads"))
        return 1
    context.send(result.model_copy(update={"stopped": context.should_stop()}))
    return 0
