"""Request bodies, validated at the edge. Unknown fields are rejected, never ignored."""
from __future__ import annotations

from typing import Any, Literal

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
    architecture: str = Field(min_length=1, max_length=100)
    task: str | None = Field(None, max_length=50)
    labels: list[str] | None = Field(None, max_length=100000)
    configuration: dict[str, Any] | None = None


class TrainRequest(Strict):
    dataset: str | None = Field(None, min_length=1, max_length=4096, description="Data set directory or name under home/datasets.")
    configuration: dict[str, Any] | None = None
    execution: ExecutionSettings | None = None


class FunctionRequest(Strict):
    function: str = Field(min_length=1, max_length=100)
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
