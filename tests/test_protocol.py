"""The typed protocol between control plane, instance and work process, and the instance's
reading of how a work process ended. Pure pieces: a real pipe, no server."""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
from typing import Any

import pytest
import requests
from pydantic import ValidationError

from trainfaas.functions.context import ProcessContext, encode
from trainfaas.functions.run import CODE, work
from trainfaas.services.core.protocol import (
    FUNCTIONS,
    Checkpoint,
    ClaimReply,
    Failure,
    Finish,
    Log,
    Metric,
    ModelRef,
    Progress,
    Report,
    ReportedEvent,
    Result,
    WorkSpec,
    decode_work_message,
    finite,
)
from trainfaas.services.core.statuses import Outcome
from trainfaas.services.worker.control_plane import retryable
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
        sent.append(decode_work_message(ours.recv_bytes()))
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
    # A NaN sample is valid on the wire; it is dropped where it is stored.
    assert not Metric(figure="f", legend="l", x=1, y=float("nan")).is_finite


def test_a_claim_reply_carries_the_work_spec_both_sides_read() -> None:
    spec = WorkSpec(execution_id="e", attempt=2, function="train_model", input={"configuration": {}}, output_path="/out",
                    model=ModelRef(id="m", architecture="sleep", labels=["a"]), resume_checkpoint="/c")
    reply = ClaimReply(spec=spec, timeout_s=60, drain_time_s=5, run_as_process=True)
    assert ClaimReply.model_validate(reply.model_dump(mode="json")).spec == spec


def test_figures_that_are_not_numbers_become_null_wherever_they_are_nested() -> None:
    nan, inf = float("nan"), float("inf")
    assert finite({"loss": nan, "acc": 0.5, "per_class": [1.0, -inf, {"x": inf}], "n": 3, "s": "nan", "ok": True}) == \
        {"loss": None, "acc": 0.5, "per_class": [1.0, None, {"x": None}], "n": 3, "s": "nan", "ok": True}
    numpy = pytest.importorskip("numpy")
    plain = finite({"loss": numpy.float32("nan"), "acc": numpy.float32(0.5), "n": numpy.int64(3)})
    assert plain == {"loss": None, "acc": 0.5, "n": 3} and type(plain["acc"]) is float and type(plain["n"]) is int
    # What the API reads: Python's JSON parser takes NaN and Infinity; they are stored as null.
    wire = '{"attempt": 1, "outcome": "success", "output": {"metrics": {"loss": NaN, "top": [Infinity, 1]}}}'
    assert Finish.model_validate(json.loads(wire)).output == {"metrics": {"loss": None, "top": [None, 1]}}
    assert Checkpoint.model_validate(json.loads('{"path": "/c", "step": 1, "metrics": {"loss": -Infinity, "a": 1}}')).metrics == \
        {"loss": None, "a": 1.0}


def test_an_instance_sends_no_figure_that_is_not_a_number() -> None:
    ours, theirs = multiprocessing.Pipe()
    run = Running("e", 1, process=None, conn=ours, stop_event=None, deadline=0.0, drain_time_s=0.0)
    theirs.send_bytes(encode(Metric(figure="loss", legend="train", x=1, y=float("nan"))))
    theirs.send_bytes(encode(Metric(figure="loss", legend="train", x=2, y=0.5)))
    theirs.send_bytes(encode(Result(output={"metrics": {"loss": float("nan"), "steps": 2.0}}, stopped=False)))
    events = run.receive()
    assert [(event.event.x, event.event.y) for event in events] == [(2, 0.5)]  # type: ignore[union-attr]
    assert run.result is not None and run.result.output == {"metrics": {"loss": None, "steps": 2.0}}
    json.dumps(run.result.output, allow_nan=False)


def test_only_a_call_that_can_succeed_later_is_retried() -> None:
    def answered(status: int) -> requests.HTTPError:
        response = requests.Response()
        response.status_code = status
        return requests.HTTPError(response=response)

    assert retryable(requests.ConnectionError()) and retryable(requests.Timeout()) and retryable(answered(503))
    assert not retryable(answered(422)) and not retryable(requests.exceptions.InvalidJSONError())


def dead_pid() -> int:
    """The pid of a process that has ended and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def ended(result: Result | None = None, error: Failure | None = None, stop_reason: str | None = None,
          server_pid: int | None = None) -> Running:
    return Running("e", 1, process=None, conn=None, stop_event=None, deadline=0.0, drain_time_s=0.0,  # type: ignore[arg-type]
                   result=result, error=error, stop_reason=stop_reason, oom_kills_before=10**9,
                   server_pid=os.getpid() if server_pid is None else server_pid)


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
    (ended(), 255, Outcome.FAILED, "code 255 without a result"),  # its fork server saw it exit 255
    (ended(server_pid=dead_pid()), 255, Outcome.RESET, "fork server was killed"),  # nobody saw how it ended
    (ended(), None, Outcome.RESET, "exit was not observed"),
])
def test_how_a_work_process_ended_becomes_an_outcome_and_a_reason(run: Running, exitcode: int | None, outcome: Outcome, words: Any) -> None:
    assert describe_exit(run, exitcode)[0] == outcome and words in describe_exit(run, exitcode)[1]


def test_a_result_its_instance_could_not_send_is_the_functions_failure() -> None:
    """A result that is not JSON (an object numpy or torch returned, say) ends the attempt with a
    reason from the work process, instead of failing in its instance on the way out."""
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    spec = WorkSpec(execution_id="e", attempt=1, function="noop", input={"tensor": object()}, output_path="/nowhere")
    process = context.Process(target=work, args=(spec, theirs, context.Event()))
    process.start()
    theirs.close()
    process.join(30)
    sent = []
    with contextlib.suppress(EOFError):  # the pipe ends where the work process closed it
        while ours.poll():
            sent.append(decode_work_message(ours.recv_bytes()))
    assert process.exitcode == 1 and isinstance(sent[-1], Failure) and "not JSON" in sent[-1].message, sent
