"""Removing an execution from training: it is stopped, through the state machine, if it has not
ended, and marked ``removed``, which leaves it out of default listings. Its rows and files stay
until it is deleted; a rerun brings it back into the listings."""
from __future__ import annotations

from trainfaas.services.control import executions
from trainfaas.services.core.errors import InvalidTransition
from trainfaas.services.core.statuses import TERMINAL_EXECUTION
from trainfaas.services.store.records import Execution


def remove(execution_id: str) -> Execution:
    """Stop ``execution_id`` unless it has ended (see executions.terminate) and mark it removed."""
    execution = Execution.get_by_id(execution_id)
    if execution.status not in TERMINAL_EXECUTION and not execution.stop_requested:
        try:
            executions.terminate(execution.id)
        except InvalidTransition:
            pass  # it ended meanwhile: nothing to stop
    Execution.update(removed=True).where(Execution.id == execution.id).execute()
    return Execution.get_by_id(execution.id)
