"""A function that does nothing and returns its input: for dispatch tests and benchmarks."""
from __future__ import annotations

from typing import Any

from trainfaas.functions.context import ProcessContext
from trainfaas.services.core.protocol import WorkSpec


def noop(context: ProcessContext, job: WorkSpec) -> dict[str, Any]:
    context.progress(100.0, "done")
    return {"input": job.input}
