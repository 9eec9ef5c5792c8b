"""The typed protocol between control plane, instance and work process, and the instance's
reading of how a work process ended. Pure pieces: a real pipe, no server."""
from __future__ import annotations

import multiprocessing
import signal
from typing import Any

import pytest
from pydantic import ValidationError

from trainfaas.functions.context import ProcessContext
from trainfaas.functions.run import CODE
from trainfaas.services.core.protocol import (
    FUNCTIONS,
    Checkpoint,
    ClaimReply,
    Failure,
    Log,
    Metric,
    ModelRef,
    Progress,
    Report,
    ReportedEvent,
    Result,
    WorkSpec,
)
from trainfaas.services.core.statuses import Outcome
from trainfaas.services.worker.exits import USER, describe_exit
from trainfaas.services.worker.work_process import Running


def test_every_function_the_control_plane_accepts_has_its_code() -> None:
    assert set(CODE) == FUNCTIONS


def test_a_work_process_context_sends_typed_events_and_never_raises() -> None:
    ours, theirs = multiprocessing.Pipe()
    context = ProcessContext(theirs, multiprocessing.Event())
    context.progress(140, "over")
    context.metric("loss" * 50, "train", 1, 0.5)
    context.metric("loss", "train", 2, float("nan"))  # dropped, not sent as NaN
    context.metric("loss", "train", "not a number", 1.0)  # type: ignore[arg-type]  # dropped
    context.checkpoint("ckpt.pt", 3, {"val": 0.9, "broken": float("inf")})
    context.log("a line")
    sent = []
    while ours.poll():
        sent.append(ours.recv())
    assert [type(event) for event in sent] == [Progress, Metric, Checkpoint, Log]
    assert sent[0].percent == 100.0 and len(sent[1].figure) == 100
    assert sent[2].metrics == {"val": 0.9} and sent[2].path.endswith("ckpt.pt")


def test_reported_events_travel_as_json_by_kind_and_unknown_fields_are_refused() -> None:
    events = [Progress(percent=5, message="m"), Metric(figure="f", legend="l", x=1, y=2), Log(line="x"),
              Checkpoint(path="/c", step=1, metrics={"a": 1.0})]
    reported = [ReportedEvent(execution_id="e", attempt=1, at=1.0, event=event) for event in events]
    wire = Report(events=[event.model_dump(mode="json") for event in reported]).model_dump(mode="json")
    assert [item["event"]["kind"] for item in wire["events"]] == ["progress", "metric", "log", "checkpoint"]
    # the control plane reads each event on its own, so one malformed event spoils no other
    assert [ReportedEvent.model_validate(item) for item in Report.model_validate(wire).events] == reported
    with pytest.raises(ValidationError):
        ReportedEvent.model_validate({"execution_id": "e", "attempt": 1, "at": 1.0, "event": {"kind": "log", "data": ["x"]}})
    with pytest.raises(ValidationError):
        Metric(figure="f", legend="l", x=1, y=float("nan"))


def test_a_claim_reply_carries_the_work_spec_both_sides_read() -> None:
    spec = WorkSpec(execution_id="e", attempt=2, function="train_model", input={"configuration": {}}, output_path="/out",
                    model=ModelRef(id="m", architecture="sleep", labels=["a"]), resume_checkpoint="/c")
    reply = ClaimReply(spec=spec, timeout_s=60, drain_time_s=5, run_as_process=True)
    assert ClaimReply.model_validate(reply.model_dump(mode="json")).spec == spec


def ended(result: Result | None = None, error: Failure | None = None, stop_reason: str | None = None) -> Running:
    return Running("e", 1, process=None, conn=None, stop_event=None, deadline=0.0, drain_time_s=0.0,  # type: ignore[arg-type]
                   result=result, error=error, stop_reason=stop_reason, oom_kills_before=10**9)


@pytest.mark.parametrize(("run", "exitcode", "outcome", "words"), [
    (ended(Result(output={}, stopped=False)), 0, Outcome.SUCCESS, "succeeded"),
    (ended(Result(output={}, stopped=True), stop_reason=USER), 0, Outcome.TERMINATED, "stopped by user"),
    (ended(Result(output={}, stopped=True), stop_reason="timeout: over"), 0, Outcome.RESET, "timeout"),
    (ended(error=Failure(error="ValueError", message="bad")), 1, Outcome.FAILED, "ValueError: bad"),
    (ended(error=Failure(error="MemoryError", message="oom")), 1, Outcome.FAILED, "out of memory"),
    (ended(), -signal.SIGKILL, Outcome.RESET, "SIGKILL"),
    (ended(), -signal.SIGSEGV, Outcome.FAILED, "crashed with SIGSEGV"),
    (ended(stop_reason=USER), -signal.SIGKILL, Outcome.TERMINATED, "stopped by user"),
    (ended(), 3, Outcome.FAILED, "code 3 without a result"),
])
def test_how_a_work_process_ended_becomes_an_outcome_and_a_reason(run: Running, exitcode: int, outcome: Outcome, words: Any) -> None:
    assert describe_exit(run, exitcode)[0] == outcome and words in describe_exit(run, exitcode)[1]
