"""Request bodies, validated at the edge. Unknown fields are rejected, never ignored."""
from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _only_as_process(value: bool | None) -> bool | None:
    # Running adapter code inside the instance would hand it the instance's token and lose
    # timeouts that can really stop it; every execution runs in its own monitored process.
    if value is False:
        raise ValueError("only true is supported: each execution runs in a separate, monitored work process")
    return value


class ExecutionSettings(Strict):
    """Per-execution settings; each one not given is copied from the service."""

    timeout_s: float | None = Field(None, gt=0, le=30 * 86400, description="Reset the attempt after this long.")
    drain_time_s: float | None = Field(None, ge=0, le=86400, description="Grace to finish when an instance stops.")
    on_reset: Literal["rerun", "fail"] | None = Field(None, description="What a reset does: rerun or fail (aborted).")
    max_attempts: int | None = Field(None, ge=1, le=100, description="Attempts including the first.")
    run_as_process: bool | None = Field(None, description="Run in a separate monitored work process (always true).")

    _run_as_process = field_validator("run_as_process")(_only_as_process)


class ModelCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    project: str | None = Field(None, max_length=100, description="Default: the token's project, or default.")
    architecture: str = Field(min_length=1, max_length=100)
    task: str | None = Field(None, max_length=50)
    labels: list[str] | None = Field(None, max_length=100000)
    configuration: dict[str, Any] | None = None
    from_model: str | None = Field(
        None, max_length=32,
        description="Fine-tune: the id of a trained model of the same architecture whose weights, labels and"
                    " configuration this model starts from (given labels and options override the copied ones).",
    )


class TrainRequest(Strict):
    dataset: str | None = Field(None, min_length=1, max_length=4096, description="Data set directory inside a data root, or its name relative to the first data root.")
    configuration: dict[str, Any] | None = None
    execution: ExecutionSettings | None = None


class FunctionRequest(Strict):
    function: str = Field(min_length=1, max_length=100)
    project: str | None = Field(None, max_length=100, description="Default: the token's project, or default.")
    input: dict[str, Any] = Field(default_factory=dict)
    execution: ExecutionSettings | None = None


class ServicePatch(Strict):
    concurrency: int | None = Field(None, ge=1, le=64)
    instance_type: str | None = Field(None, min_length=1, max_length=50)
    backend: Literal["process", "docker", "swarm"] | None = None
    scaling_type: Literal["fixed", "autoscale"] | None = None
    min_instances: int | None = Field(None, ge=0, le=1000)
    max_instances: int | None = Field(None, ge=0, le=1000)
    queue_length: int | None = Field(None, ge=1, le=100000)
    polling_interval_s: float | None = Field(None, ge=1, le=3600)
    cooldown_s: float | None = Field(None, ge=0, le=86400)
    paused: bool | None = None
    timeout_s: float | None = Field(None, gt=0, le=30 * 86400)
    drain_time_s: float | None = Field(None, ge=0, le=86400)
    on_reset: Literal["rerun", "fail"] | None = None
    max_attempts: int | None = Field(None, ge=1, le=100)
    run_as_process: bool | None = None

    _run_as_process = field_validator("run_as_process")(_only_as_process)


class InstanceRegister(Strict):
    service: str = Field(min_length=1, max_length=150)
    instance_id: str | None = Field(None, max_length=32)
    host: str = Field("", max_length=255)
    pid: int | None = None
    backend: str = Field("process", max_length=20)


class Claim(Strict):
    execution_id: str = Field(max_length=32)
    attempt: int = Field(ge=1)


class RunningEntry(Strict):
    execution_id: str = Field(max_length=32)
    attempt: int = Field(ge=1)
    pid: int | None = Field(None, description="The work process that runs the attempt.")


class Heartbeat(Strict):
    status: Literal["running", "full", "terminating"] = "running"
    running: list[RunningEntry] = Field(default_factory=list)


class Event(Strict):
    execution_id: str = Field(max_length=32)
    attempt: int = Field(ge=1)
    kind: Literal["progress", "metric", "log", "checkpoint"]
    at: float
    data: list[Any]


class Report(Strict):
    events: list[Event] = Field(max_length=10000)


class Finish(Strict):
    attempt: int = Field(ge=1)
    outcome: Literal["success", "failed", "reset", "terminated"]
    reason: str = Field("", max_length=10000)
    error: str | None = Field(None, max_length=100000)
    traceback: str | None = Field(None, max_length=1000000)
    output: dict[str, Any] | None = None


class Deregister(Strict):
    reason: str = Field("exited", max_length=2000)


# ---- requests of projects and tokens ---------------------------------------------------------

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,99}$"


class ProjectCreate(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="Lower-case letters, digits, '.', '_' and '-'.")
    description: str = Field("", max_length=2000)


class TokenCreate(Strict):
    scope: Literal["read", "write", "admin"] = Field(description="read or write one project; admin: every project, services, tokens.")
    project: str | None = Field(None, pattern=NAME_PATTERN, description="Required for read and write; ignored for admin.")
    name: str = Field("", max_length=200, description="What the token is for.")


# ---- list queries ----------------------------------------------------------------------------


class ListQuery(Strict):
    """Query string of every list: a page of ``limit`` items after ``cursor``, matching ``q``."""

    limit: int = Field(50, ge=1, le=500, description="Items per page.")
    cursor: str | None = Field(None, max_length=500, description="The next_cursor of the previous page.")


class ModelQuery(ListQuery):
    q: str | None = Field(None, max_length=200, description="Part of the name, or the exact id.")
    name: str | None = Field(None, max_length=200, description="Exact name.")
    architecture: str | None = Field(None, max_length=100)
    status: Literal["created", "pending", "training", "trained", "failed"] | None = None
    project: str | None = Field(None, max_length=100, description="Only this project's (admin tokens see all).")


EXECUTION_STATUS = r"^(created|pending|in-progress|success|failed|terminated|aborted|rerun)(,(created|pending|in-progress|success|failed|terminated|aborted|rerun))*$"


class ExecutionQuery(ListQuery):
    q: str | None = Field(None, max_length=200, description="Part of the name, or the exact id.")
    status: str | None = Field(None, pattern=EXECUTION_STATUS, description="One status or several, comma-separated.")
    service: str | None = Field(None, max_length=150)
    model: str | None = Field(None, max_length=32, description="The model id.")
    project: str | None = Field(None, max_length=100, description="Only this project's (admin tokens see all).")
    created_after: float | None = Field(None, description="Epoch seconds.")
    created_before: float | None = Field(None, description="Epoch seconds.")


class ServiceQuery(ListQuery):
    q: str | None = Field(None, max_length=150, description="Part of the service name.")
    architecture: str | None = Field(None, max_length=100)


class NamedListQuery(ListQuery):
    q: str | None = Field(None, max_length=200, description="Part of the name, or the exact id.")


class LogQuery(ListQuery):
    limit: int = Field(1000, ge=1, le=10000, description="Lines per page.")
    after: int = Field(0, ge=0, le=2**62, description="Only lines with a larger id (same as a cursor).")


# ---- responses -------------------------------------------------------------------------------

Timestamp = Field(None, description="ISO 8601, UTC.")


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(Out):
    code: str = Field(description="Machine-readable: invalid, not_found, unauthorized, forbidden, conflict, ...")
    message: str = Field(description="What went wrong and what to do.")
    fields: dict[str, str] = Field(default_factory=dict, description="Field path -> what is allowed there.")


class ErrorBody(Out):
    error: ErrorDetail


class Health(Out):
    status: Literal["ok"]


class ModelOut(Out):
    id: str
    project: str
    name: str
    architecture: str
    task: str
    labels: list[str]
    configuration: dict[str, Any]
    status: str
    service: str
    artifact_path: str | None
    metrics: dict[str, Any]
    base_model: str | None = Field(None, description="The model this one was fine-tuned from, if any.")
    created_at: str | None = Timestamp
    updated_at: str | None = Timestamp


class StatusLogEntry(Out):
    status: str
    at: str | None = Timestamp
    message: str
    attempt: int
    instance: str | None


class AttemptOut(Out):
    number: int
    instance: str | None
    started_at: str | None = Timestamp
    ended_at: str | None = Timestamp
    outcome: str | None
    reason: str | None


class ExecutionSummary(Out):
    id: str
    project: str
    name: str
    status: str
    function: str
    progress: float
    message: str
    attempt: int
    max_attempts: int
    timeout_s: float
    drain_time_s: float
    on_reset: str
    run_as_process: bool
    service: str
    model_id: str | None
    stop_requested: bool
    created_at: str | None = Timestamp
    started_at: str | None = Timestamp
    finished_at: str | None = Timestamp
    duration_s: float | None
    error: str | None


class ExecutionOut(ExecutionSummary):
    input: dict[str, Any]
    output: dict[str, Any] | None
    traceback: str | None
    status_log: list[StatusLogEntry]
    attempts: list[AttemptOut]


class ServiceOut(Out):
    name: str
    architecture: str
    concurrency: int
    instance_type: str
    backend: str
    scaling_type: str
    min_instances: int
    max_instances: int
    queue_length: int
    polling_interval_s: float
    cooldown_s: float
    paused: bool
    timeout_s: float
    drain_time_s: float
    on_reset: str
    max_attempts: int
    run_as_process: bool
    queue: int | None = Field(description="Entries on the Redis queue; null when Redis cannot be reached.")
    pending: int
    running: int
    instances: int
    instance_statuses: dict[str, int]
    health: Literal["ok", "warning", "error"]
    health_reason: str
    created_at: str | None = Timestamp
    updated_at: str | None = Timestamp


class EventOut(Out):
    id: int
    at: str | None = Timestamp
    queued: int
    running: int
    instances: int
    desired: int
    action: str
    reason: str


class InstanceOut(Out):
    id: str
    service: str
    backend: str
    status: str
    host: str
    pid: int | None
    heartbeat: str | None = Timestamp
    started_at: str | None = Timestamp
    ended_at: str | None = Timestamp
    restart_count: int
    last_exit_reason: str | None
    running: list[dict[str, Any]]


class InstanceRegistered(InstanceOut):
    token: str = Field(description="The instance's own token; shown once.")
    concurrency: int


class MetricOut(Out):
    figure: str
    legend: str
    x: float
    y: float
    attempt: int
    at: str | None = Timestamp


class LogOut(Out):
    id: int
    attempt: int
    at: str | None = Timestamp
    line: str


class ArtifactOut(Out):
    id: int
    kind: str
    path: str
    step: int | None
    metrics: dict[str, Any]
    attempt: int
    at: str | None = Timestamp


class ProjectOut(Out):
    name: str
    description: str
    created_at: str | None = Timestamp


class TokenOut(Out):
    id: str
    scope: Literal["read", "write", "admin"]
    project: str | None
    name: str
    created_at: str | None = Timestamp
    revoked_at: str | None = Timestamp


class TokenCreated(TokenOut):
    token: str = Field(description="The secret. Shown only here, once: it is stored only as a hash.")


class ClaimOut(Out):
    spec: dict[str, Any]
    timeout_s: float
    drain_time_s: float
    run_as_process: bool


class ReportOut(Out):
    refused: dict[str, str] = Field(description="Execution id -> why its events were refused.")


class HeartbeatOut(Out):
    stop: list[str]
    abandon: list[str]
    paused: bool
    drain: bool


class DeregisterOut(Out):
    status: Literal["exited"]


Item = TypeVar("Item", bound=BaseModel)


class Page(Out, Generic[Item]):
    """One page of a list, in a stable order; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[Item]
    next_cursor: str | None = Field(description="null on the last page.")


# ---- the architecture catalog -------------------------------------------------------------------


class ArchitectureQuery(ListQuery):
    task: str | None = Field(None, max_length=50, description="Only this task (classification, detection, …).")
    q: str | None = Field(None, max_length=200, description="Part of the architecture's name (any case).")


class ArchitectureOut(Out):
    architecture: str
    task: str
    adapter: str = Field(description="The adapter class, as module:Class.")
    source: str = Field(description="builtin, entry-point or setting (TRAINFAAS_ADAPTERS).")
    service: str = Field(description="The service that trains it: mgmt-train-<architecture>.")
    dataset_format: str | None = Field(description="The data set layout its adapter reads; null when it needs none.")
    parameters: int | None = Field(description="Trainable parameters of the reference configuration; null without a torch model.")
    size_class: Literal["small", "medium", "large"] | None = Field(
        description="small < 10,000,000 ≤ medium ≤ 30,000,000 < large parameters.")
    checkpoint_mb: float | None = Field(description="Size of a checkpoint of its weights, in MB (10^6 bytes).")


class ArchitectureDetail(ArchitectureOut):
    options: dict[str, Any] = Field(description="The adapter's declared options as JSON Schema: types, ranges, defaults.")
