"""The protocol between the control plane, its instances and their work processes, declared once.

Three hops use it. The control plane answers an instance's claim with a :class:`ClaimReply`
whose :class:`WorkSpec` the instance hands, as it is, to a work process. The work process sends
back :data:`WorkEvent` s (progress, metric, log, checkpoint) over its pipe and ends with a
:class:`Result` or a :class:`Failure` (a warm one, run_as_process false, then a :class:`Done`). The
instance forwards the events to the control plane as :class:`ReportedEvent` s, and sends
:class:`Heartbeat` s and a :class:`Finish` per attempt (with the attempt's last events).

The API validates requests with these models and the instance builds its requests and reads the
answers with them, so the two sides cannot drift apart. Unknown fields are refused.
"""
from __future__ import annotations

import json
import math
import numbers
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from trainfaas.services.core.statuses import InstanceStatus, Outcome

ID = Field(max_length=32)
INT32 = 2**31 - 1
"""The largest attempt number or process id a message may carry: every integer of a request is bounded."""

TRAIN_MODEL = "train_model"
EVALUATE_MODEL = "evaluate_model"
PREDICT_MODEL = "predict_model"
MODEL_FUNCTIONS: frozenset[str] = frozenset({EVALUATE_MODEL, PREDICT_MODEL})
"""The functions that run a trained model (they leave its status as it is); submitted through the model's endpoints."""
FUNCTIONS: frozenset[str] = frozenset({TRAIN_MODEL, EVALUATE_MODEL, PREDICT_MODEL, "noop"})
"""The functions an execution may call; trainfaas.functions.run maps each name to its code."""


def sendable(value: Any) -> Any:
    """``value`` with every NUL character (U+0000) in its strings and keys, however deeply nested,
    replaced by U+FFFD: the API refuses NUL (PostgreSQL stores none), and a log line or traceback
    that printed one is still worth keeping."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {sendable(key): sendable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [sendable(item) for item in value]
    return value


def finite(value: Any) -> Any:
    """``value`` with every NaN and infinity, however deeply nested in lists and dicts, turned
    into None: JSON has no such numbers, so a figure that is not one is stored as null. Other
    numbers (numpy's, say) become plain ints and floats, which JSON can carry."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


class Message(BaseModel):
    """A message of the protocol: unknown fields are an error, never ignored."""

    model_config = ConfigDict(extra="forbid")


# ---- what an attempt runs --------------------------------------------------------------------


class ModelRef(Message):
    """The model a training trains."""

    id: str
    architecture: str
    labels: list[str] = Field(default_factory=list)


class WorkSpec(Message):
    """Everything a work process needs to run one attempt; built by the control plane at claim."""

    execution_id: str
    attempt: int
    function: str
    input: dict[str, Any] = Field(default_factory=dict)
    output_path: str
    data_path: str | None = None
    model: ModelRef | None = None
    resume_checkpoint: str | None = Field(None, description="The checkpoint of an interrupted attempt to resume from.")
    base_model: str | None = Field(None, description="Fine-tuning: the saved model directory training starts from.")
    adapters: str = Field("", description="Extra adapter references (the TRAINFAAS_ADAPTERS setting).")
    warm: bool = Field(False, description="run_as_process false: the work process stays for the next attempt its"
                                          " instance gives it, and ends this one with a Done message.")


class Claim(Message):
    execution_id: str = ID
    attempt: int = Field(ge=1, le=INT32)


class ClaimReply(Message):
    """What to run, and the limits to run it under."""

    spec: WorkSpec
    timeout_s: float
    drain_time_s: float
    run_as_process: bool
    project: str = Field("", description="The execution's project: a warm work process serves one project only.")


# ---- what a work process reports -------------------------------------------------------------


class Progress(Message):
    kind: Literal["progress"] = "progress"
    percent: float = Field(ge=0, le=100)
    message: str = ""


class Metric(Message):
    kind: Literal["metric"] = "metric"
    figure: str = Field(max_length=100)
    legend: str = Field(max_length=100)
    x: float = Field(description="A NaN or infinity is accepted here and dropped when stored (see is_finite).")
    y: float

    @property
    def is_finite(self) -> bool:
        """Whether both coordinates are numbers a chart can draw (a diverged loss is NaN)."""
        return math.isfinite(self.x) and math.isfinite(self.y)


class Log(Message):
    kind: Literal["log"] = "log"
    line: str


class Checkpoint(Message):
    kind: Literal["checkpoint"] = "checkpoint"
    path: str
    step: int = Field(ge=0, le=2**62)
    metrics: dict[str, float | None] = Field(default_factory=dict, description="A NaN or infinity is stored as null.")
    best: bool = Field(False, description="Whether it is the best checkpoint so far by the adapter's monitored figure.")

    @field_validator("metrics")
    @classmethod
    def _finite_metrics(cls, metrics: dict[str, float | None]) -> Any:
        return finite(metrics)


WorkEvent = Annotated[Progress | Metric | Log | Checkpoint, Field(discriminator="kind")]


class Result(Message):
    """The last message of a work process whose function returned."""

    kind: Literal["result"] = "result"
    output: dict[str, Any]
    stopped: bool = Field(description="Whether the attempt had been asked to stop when the function returned.")


class Failure(Message):
    """The last message of a work process whose function raised."""

    kind: Literal["failure"] = "failure"
    error: str = Field(description="The exception's type name.")
    message: str
    traceback: str = ""


class Done(Message):
    """The end of one attempt in a warm work process (the spec's ``warm``), after its Result or
    Failure: the process now waits for the next spec. Its instance reuses only a process that sent it."""

    kind: Literal["done"] = "done"
    execution_id: str
    attempt: int


WorkMessage = Annotated[Progress | Metric | Log | Checkpoint | Result | Failure | Done, Field(discriminator="kind")]
"""What a work process sends its instance: JSON of one of these, never a pickle."""
MAX_WORK_MESSAGE_BYTES = 32 * 1024 * 1024
"""The largest message an instance reads from a work process; a larger one fails the attempt."""
_WORK_MESSAGE: TypeAdapter[Any] = TypeAdapter(WorkMessage)


def decode_work_message(data: bytes) -> Progress | Metric | Log | Checkpoint | Result | Failure | Done:
    """The message a work process sent as ``data``; ValueError if it is not JSON of the protocol."""
    try:
        decoded = json.loads(data)
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    try:
        return _WORK_MESSAGE.validate_python(decoded)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise ValueError(f"not a message of the protocol: {exc.errors(include_url=False, include_input=False)[:3]}") from None


# ---- what an instance sends the control plane ------------------------------------------------


class ReportedEvent(Message):
    """A work process's event, as its instance forwards it."""

    execution_id: str = ID
    attempt: int = Field(ge=1, le=INT32)
    at: float = Field(ge=0, le=2**40, allow_inf_nan=False, description="Epoch seconds.")
    event: WorkEvent


class Report(Message):
    events: list[dict[str, Any]] = Field(
        max_length=10000, description="ReportedEvent s, as JSON: the control plane checks each on its own, so one"
                                       " malformed event is refused by itself and the others are stored.")


class RefusedEvent(Message):
    index: int = Field(description="The event's position in the report's events.")
    why: str


class ReportReply(Message):
    refused: dict[str, str] = Field(description="Execution id -> why its events were refused: the attempt is no longer"
                                                " this instance's, so its work is to stop.")
    rejected: list[RefusedEvent] = Field(default_factory=list, description="Events refused one by one (malformed, or a"
                                         " checkpoint outside its attempt's directory): sending them again will not help.")


class RunningEntry(Message):
    execution_id: str = ID
    attempt: int = Field(ge=1, le=INT32)
    pid: int | None = Field(None, ge=0, le=INT32, description="The work process that runs the attempt.")


class Heartbeat(Message):
    status: Literal[InstanceStatus.RUNNING, InstanceStatus.FULL, InstanceStatus.TERMINATING] = InstanceStatus.RUNNING
    running: list[RunningEntry] = Field(default_factory=list)


class HeartbeatReply(Message):
    """What the instance is to do with its work: see trainfaas.services.control.instances.heartbeat."""

    stop: list[str] = Field(default_factory=list)
    abandon: list[str] = Field(default_factory=list)
    paused: bool = False
    drain: bool = False
    unknown: list[str] = Field(default_factory=list, description="Entries of the heartbeat that are no attempt this instance claimed: ignored.")


class UsageSummary(Message):
    """What an attempt's work process and its children used, as its instance measured them."""

    samples: int = Field(ge=0, le=INT32, description="How many times the instance measured.")
    peak_rss_mb: float | None = Field(None, ge=0, le=2**40, allow_inf_nan=False,
                                      description="Peak resident memory, MB (the processes' sum).")
    mean_cpu_percent: float | None = Field(None, ge=0, le=100, allow_inf_nan=False,
                                           description="Mean CPU use, in percent of the cores the work process may use.")
    peak_gpu_mem_mb: float | None = Field(None, ge=0, le=2**40, allow_inf_nan=False, description="Peak GPU memory, MB; null: no GPU used.")
    mean_gpu_util: float | None = Field(None, ge=0, le=100, allow_inf_nan=False, description="Mean GPU utilisation, percent.")


class Finish(Message):
    attempt: int = Field(ge=1, le=INT32)
    outcome: Literal[Outcome.SUCCESS, Outcome.FAILED, Outcome.RESET, Outcome.TERMINATED]
    reason: str = Field("", max_length=10000)
    error: str | None = Field(None, max_length=100000)
    traceback: str | None = Field(None, max_length=1000000)
    output: dict[str, Any] | None = Field(None, description="A NaN or infinity in it is stored as null.")
    usage: UsageSummary | None = Field(None, description="What the work process used; null where it was not measured.")
    events: list[dict[str, Any]] = Field(default_factory=list, max_length=10000, description="The attempt's last events not"
                                         " reported yet, as ReportedEvent s of this attempt: stored, as a report's are, before"
                                         " it ends (one round trip instead of a report and a finish); others are left out.")

    @field_validator("output")
    @classmethod
    def _finite_output(cls, output: dict[str, Any] | None) -> Any:
        return finite(output)


FINISHED_PER_CLAIM = 16
"""The most finishes one claim carries (see :class:`ClaimAfter`)."""


class Finished(Message):
    """An attempt's Finish, sent with the next claim."""

    execution_id: str = ID
    finish: Finish


class Refusal(Message):
    """Why the control plane refused one part of a call: the status, code and message it would have
    answered that part alone with."""

    status: int
    code: str
    message: str


class FinishAnswer(Message):
    execution_id: str
    attempt: int
    refused: Refusal | None = None


class ClaimAfter(Message):
    """Record how these attempts ended (each as its own finish call would), then claim the next one:
    one round trip where an instance that runs short executions one after another needs two."""

    finished: list[Finished] = Field(max_length=FINISHED_PER_CLAIM)
    claim: Claim


class ClaimAfterReply(Message):
    """Each finish's answer, in order, and the claim's: what to run, or why not (``refused``)."""

    finished: list[FinishAnswer]
    claim: ClaimReply | None = None
    refused: Refusal | None = None


class InstanceRegister(Message):
    service: str = Field(min_length=1, max_length=150)
    instance_id: str | None = Field(None, max_length=32)
    host: str = Field("", max_length=255)
    pid: int | None = Field(None, ge=0, le=INT32)
    backend: str = Field("process", max_length=20)


class Deregister(Message):
    reason: str = Field("exited", max_length=2000)
