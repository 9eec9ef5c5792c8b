"""Response shapes of an attempt's resource usage and of why an execution waits."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AttemptUsage(BaseModel):
    """What an attempt's work process and its children used, measured by its instance every
    TRAINFAAS_USAGE_INTERVAL_S seconds (the samples: figure ``system`` of the execution's metrics)."""

    model_config = ConfigDict(extra="forbid")

    samples: int = Field(description="How many times the instance measured.")
    peak_rss_mb: float | None = Field(description="Peak resident memory, MB (the processes' sum).")
    mean_cpu_percent: float | None = Field(description="Mean CPU use, in percent of the cores the work process may use.")
    peak_gpu_mem_mb: float | None = Field(description="Peak GPU memory, MB; null: it used no GPU (or none was seen).")
    mean_gpu_util: float | None = Field(description="Mean utilisation of the GPUs it used, percent.")


Blocker = Literal["paused", "crash_loop", "failed_start", "no_instances_allowed", "project_running_limit", "starting", "at_max_instances"]


class Waiting(BaseModel):
    """Why a pending (or rerun) execution has not started yet."""

    model_config = ConfigDict(extra="forbid")

    position: int = Field(description="1-based place in its service's queue, in the order instances take executions.")
    queued: int = Field(description="Executions waiting in its service's queue.")
    service: str
    health: Literal["ok", "warning", "error"] = Field(description="The service's health, as GET /services/{name} shows it.")
    health_reason: str
    blocked_by: Blocker | None = Field(description="What holds it beyond its turn; null: only the executions ahead of it.")
    reason: str = Field(description="The same, in words.")
    instances: int = Field(description="Live instances of the service.")
    max_instances: int
    concurrency: int = Field(description="Executions each instance runs at once.")
    running: int = Field(description="Executions of the service running now.")
    estimated_wait_s: float | None = Field(description="Seconds until it starts, estimated from the service's recent run times;"
                                                        " null when there is no estimate (see estimate_reason).")
    estimated_start_at: str | None = Field(None, description="ISO 8601, UTC: now + estimated_wait_s.")
    estimate_reason: str = Field(description="How the estimate was made, or why there is none.")
