"""Request and response bodies of the API, validated at the edge. Unknown fields are rejected,
never ignored. The domain's own types (execution settings, service changes) come from
trainfaas.services.control and the instances' messages from trainfaas.services.core.protocol."""
from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from trainfaas.services.api.usage_schemas import AttemptUsage, Waiting
from trainfaas.services.control.executions import ExecutionSettings
from trainfaas.services.core.statuses import ExecutionStatus, InstanceStatus, ModelStatus, Outcome


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    project: str | None = Field(None, max_length=100, description="Default: the token's project, or default.")
    architecture: str = Field(min_length=1, max_length=100)
    task: str | None = Field(None, max_length=50)
    labels: list[str] | None = Field(None, max_length=100000)
    configuration: dict[str, Any] | None = None
    from_model: str | None = Field(
        None, max_length=32,
        description="Fine-tune: the id of a trained or pre-trained (imported) model of the same architecture whose weights, labels and"
                    " configuration this model starts from (given labels and options override the copied ones).",
    )


class ModelClone(Strict):
    """Changes to what a clone copies; the rest is the source model's."""

    name: str | None = Field(None, min_length=1, max_length=200, description="Default: <source name>-clone.")
    labels: list[str] | None = Field(None, max_length=100000)
    configuration: dict[str, Any] | None = Field(None, description="Options merged over the source model's.")
    dataset: str | None = Field(None, min_length=1, max_length=4096,
                                description="The data set the clone's trainings take by default (default: the source's, or its last training's).")


class TrainFields(Strict):
    """What a training is given, through POST /models/{id}/train or as a train_model function's input."""

    dataset: str | None = Field(None, min_length=1, max_length=4096, description="Data set directory inside a data root, or its name relative to the first data root.")
    configuration: dict[str, Any] | None = None


class TrainRequest(TrainFields):
    execution: ExecutionSettings | None = None
    datasets: dict[Literal["train", "validation", "test"], str] | None = Field(
        None, description="Separate registered data sets per subset (name, name@3 or name@alias), instead of dataset;"
                          " for the architectures that take them (image classification: train and validation).")
    blueprint: str | None = Field(
        None, min_length=1, max_length=100,
        description="Take options, execution settings and data set from this blueprint of the model's project"
                    " (or the built-in quick or full); what the request gives wins.")


class TrainInput(TrainFields):
    """The input of a train_model function run through POST /services/{name}/executions."""

    model_id: str = Field(min_length=1, max_length=32, description="The model to train.")


class FunctionRequest(Strict):
    function: str = Field(min_length=1, max_length=100)
    project: str | None = Field(None, max_length=100, description="Default: the token's project, or default.")
    input: dict[str, Any] = Field(default_factory=dict)
    execution: ExecutionSettings | None = None


MAX_BATCH = 1000


class BatchRequest(Strict):
    executions: list[FunctionRequest] = Field(min_length=1, max_length=MAX_BATCH,
                                              description=f"1 to {MAX_BATCH} executions, each what POST /services/{{name}}/executions takes.")


# ---- requests of projects and tokens ---------------------------------------------------------

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,99}$"


class ProjectCreate(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="Lower-case letters, digits, '.', '_' and '-'.")
    description: str = Field("", max_length=2000)


QUOTA = 100_000  # the largest per-project limit an admin may set


class ProjectPatch(Strict):
    """Changes to a project; each field not given stays as it is. A limit given as null goes back
    to the server's default (TRAINFAAS_PROJECT_MAX_QUEUED, TRAINFAAS_PROJECT_MAX_RUNNING)."""

    description: str | None = Field(None, max_length=2000)
    max_queued: int | None = Field(None, ge=0, le=QUOTA, description="Most executions waiting (created, pending, rerun); null: the default.")
    max_running: int | None = Field(None, ge=0, le=QUOTA, description="Most executions running at once; null: the default.")


class TokenCreate(Strict):
    scope: Literal["read", "write", "admin", "metrics"] = Field(description="read or write one project; admin: every project,"
                                                                           " services, tokens; metrics: GET /metrics only.")
    project: str | None = Field(None, pattern=NAME_PATTERN, description="Required for read and write; ignored for admin and metrics.")
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
    status: ModelStatus | None = None
    project: str | None = Field(None, max_length=100, description="Only this project's (admin tokens see all).")


_ONE_STATUS = "|".join(status.value for status in ExecutionStatus)
EXECUTION_STATUS = rf"^({_ONE_STATUS})(,({_ONE_STATUS}))*$"


class ExecutionQuery(ListQuery):
    q: str | None = Field(None, max_length=200, description="Part of the name, or the exact id.")
    include_removed: bool = Field(False, description="Also list the executions removed from training.")
    status: str | None = Field(None, pattern=EXECUTION_STATUS, description="One status or several, comma-separated.")
    service: str | None = Field(None, max_length=150)
    model: str | None = Field(None, max_length=32, description="The model id.")
    project: str | None = Field(None, max_length=100, description="Only this project's (admin tokens see all).")
    created_after: float | None = Field(None, allow_inf_nan=False, description="Epoch seconds.")
    created_before: float | None = Field(None, allow_inf_nan=False, description="Epoch seconds.")


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
    code: str = Field(description="Machine-readable: invalid, not_found, unauthorized, forbidden, conflict, quota_exceeded, ...")
    message: str = Field(description="What went wrong and what to do.")
    fields: dict[str, str] = Field(default_factory=dict, description="Field path -> what is allowed there.")


class ErrorBody(Out):
    error: ErrorDetail


class Stamped(Out):
    """An object with the times it was created and last changed."""

    created_at: str | None = Timestamp
    updated_at: str | None = Timestamp


class Health(Out):
    status: Literal["ok"]


class MetricsText(Out):
    """Documents GET /metrics, whose answer is the Prometheus text format, not JSON."""


class Ready(Out):
    status: Literal["ready"]
    database: Literal["ok"]
    redis: Literal["ok"]


class ModelOut(Stamped):
    id: str
    project: str
    name: str
    architecture: str
    task: str
    labels: list[str]
    configuration: dict[str, Any]
    status: ModelStatus
    service: str
    artifact_path: str | None
    metrics: dict[str, Any]
    base_model: str | None = Field(None, description="The model this one was fine-tuned from, if any.")
    cloned_from: str | None = Field(None, description="The model this one was cloned from, if any.")
    dataset: str | None = Field(None, description="The data set its trainings take when they name none (a clone's).")
    source_execution: str | None = Field(None, description="A model made from a checkpoint: the execution that wrote it.")
    source_step: int | None = Field(None, description="A model made from a checkpoint: the step it was written after.")
    imported_from: str | None = Field(None, description="Imported weights: the file or folder they came from.")
    status_message: str | None = Field(None, description="What the status leaves out: a last training that failed or stopped,"
                                                          " and whose weights the model keeps.")


class StatusLogEntry(Out):
    status: ExecutionStatus
    at: str | None = Timestamp
    message: str
    attempt: int
    instance: str | None


class AttemptOut(Out):
    number: int
    instance: str | None
    started_at: str | None = Timestamp
    ended_at: str | None = Timestamp
    outcome: Outcome | None
    reason: str | None
    usage: AttemptUsage | None = Field(None, description="What its work process used; null where it was not measured.")


class ExecutionSummary(Out):
    id: str
    project: str
    name: str
    status: ExecutionStatus
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
    removed: bool = Field(False, description="Removed from training: left out of the execution list unless include_removed=true.")
    keep_checkpoints: int | None = Field(None, description="Checkpoints kept besides the best; null: the server's default.")
    created_at: str | None = Timestamp
    started_at: str | None = Timestamp
    finished_at: str | None = Timestamp
    duration_s: float | None
    error: str | None


class BatchOut(Out):
    ids: list[str] = Field(description="The executions' ids, in the order of the request's items.")
    count: int
    service: str


class ExecutionOut(ExecutionSummary):
    input: dict[str, Any]
    output: dict[str, Any] | None
    traceback: str | None
    status_log: list[StatusLogEntry]
    attempts: list[AttemptOut]
    waiting: Waiting | None = Field(None, description="GET /executions/{id} of a pending or rerun execution: why it has not started.")


class ServiceOut(Stamped):
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
    scaling: str = Field(description='What its instances will do, in words: "keeps 1 instance", "scales 0–3 on queue length 1 …".')
    warnings: list[str] = Field(default_factory=list, description="Only in the answer to a change: what in it will not do"
                                                                 " what it seems to (autoscaler settings on a fixed service).")


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
    status: str = Field(description="An InstanceStatus; a database of an older version may hold others.")
    host: str
    pid: int | None
    heartbeat: str | None = Timestamp
    started_at: str | None = Timestamp
    ended_at: str | None = Timestamp
    restart_count: int
    last_exit_reason: str | None
    running: list[dict[str, Any]] = Field(description="The attempts it runs; for a read or write token, only those of its project.")
    other_running: int = Field(0, description="How many attempts of other projects it runs (listed to admin tokens only).")


class InstanceRegistered(InstanceOut):
    token: str = Field(description="The instance's own token; shown once.")
    concurrency: int


class Recorded(Out):
    """Something an attempt reported, with when it arrived."""

    attempt: int
    at: str | None = Timestamp


class MetricOut(Recorded):
    figure: str
    legend: str
    x: float
    y: float


class LogOut(Recorded):
    id: int
    line: str


class ArtifactOut(Recorded):
    id: int
    kind: str
    path: str
    step: int | None
    metrics: dict[str, Any]


class ProjectLimits(Out):
    """A project's quotas in force and its usage now."""

    max_queued: int = Field(description="Most executions waiting (created, pending, rerun); one more is refused with 429.")
    max_running: int = Field(description="Most executions running at once; the others stay pending.")
    max_queued_source: Literal["project", "default"] = Field(description="project: set by an admin; default: the server's setting.")
    max_running_source: Literal["project", "default"]
    queued: int = Field(description="Executions waiting now.")
    running: int = Field(description="Executions running now.")


class ProjectOut(Out):
    name: str
    description: str
    created_at: str | None = Timestamp
    limits: ProjectLimits


class TokenOut(Out):
    id: str
    scope: Literal["read", "write", "admin", "metrics"]
    project: str | None
    name: str
    created_at: str | None = Timestamp
    revoked_at: str | None = Timestamp


class TokenCreated(TokenOut):
    token: str = Field(description="The secret. Shown only here, once: it is stored only as a hash.")


class DeregisterOut(Out):
    status: Literal[InstanceStatus.EXITED, InstanceStatus.LOST, InstanceStatus.FAILED]


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


# ---- compare ---------------------------------------------------------------------------------


class CompareQuery(Strict):
    executions: str = Field(min_length=1, max_length=400, description="2 to 10 execution ids (or unique prefixes), comma-separated.")
    max_points: int = Field(500, ge=1, le=5000, description="At most this many steps per series, thinned evenly.")


class ComparedExecution(Out):
    id: str
    name: str
    status: str
    model_id: str | None
    service: str


class ComparedRow(Out):
    key: str
    values: list[Any] = Field(description="One value per execution, in the order asked (null where it has none).")
    differs: bool


class AlignedSeries(Out):
    figure: str
    legend: str
    x: list[float] = Field(description="The steps any of the executions reported.")
    y: list[list[float | None]] = Field(description="Per execution, its value at each step (null where it has none).")


class Comparison(Out):
    samples_left_out: int = Field(description="Older metric samples not read (at most 50,000 of each execution are).")
    executions: list[ComparedExecution]
    configuration: list[ComparedRow]
    metrics: list[ComparedRow]
    series: list[AlignedSeries]


# ---- blueprints ------------------------------------------------------------------------------


class TrainingConfig(Strict):
    """What a training runs with: its architecture, data set, adapter options and execution settings."""

    architecture: str = Field(min_length=1, max_length=100)
    dataset: str | None = Field(None, min_length=1, max_length=4096, description="A data set inside a data root, or null.")
    configuration: dict[str, Any] = Field(default_factory=dict, description="Adapter options.")
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)


class TrainingConfigOut(Out):
    architecture: str | None
    dataset: str | None
    configuration: dict[str, Any]
    execution: dict[str, Any]


class BlueprintCreate(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="Lower-case letters, digits, '.', '_' and '-'; not quick or full.")
    project: str | None = Field(None, max_length=100, description="Default: the token's project, or default.")
    description: str = Field("", max_length=2000)
    from_execution: str | None = Field(None, min_length=1, max_length=32, description="Save what this training ran with.")
    config: TrainingConfig | None = Field(None, description="Or save this configuration.")
    replace: bool = Field(False, description="Replace a saved blueprint of the same name.")


class BlueprintQuery(ListQuery):
    project: str | None = Field(None, max_length=100, description="Default: the token's project, or default.")


class BlueprintShowQuery(Strict):
    project: str | None = Field(None, max_length=100, description="Default: the token's project, or default.")
    architecture: str | None = Field(None, min_length=1, max_length=100, description="For the built-in blueprints (full needs it).")


class OptionOut(Out):
    name: str
    type: str | list[str]
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: list[Any] | None = None
    nullable: bool
    description: str


class BlueprintOut(TrainingConfigOut):
    name: str
    project: str
    description: str
    built_in: bool
    source_execution: str | None
    created_at: str | None = Timestamp
    options: list[OptionOut] | None = Field(None, description="Every option described (the full blueprint).")
