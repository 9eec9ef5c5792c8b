"""A function that does nothing and returns its input and the pid of the work process that ran
it: for dispatch tests and benchmarks (with run_as_process false, executions share a pid)."""
from __future__ import annotations

import os
from typing import Any

from trainfaas.functions.context import ProcessContext
from trainfaas.services.core.protocol import WorkSpec


def noop(context: ProcessContext, job: WorkSpec) -> dict[str, Any]:
    context.progress(100.0, "done")
    return {"input": job.input, "pid": os.getpid()}
