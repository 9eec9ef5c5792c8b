"""Why a waiting execution has not started: its place in its service's queue, what holds the
service or its project back, and when it may start.

An execution's place is its ``queued_at`` (when it last entered pending or rerun; ties by id):
the order its service's instances take executions from the queue. Its position is one COUNT of
the waiting executions of its service before it; the estimate is a pure function of the
service's recent run times (:func:`estimate_wait`).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from trainfaas.services.control import quotas
from trainfaas.services.control.services import service_health
from trainfaas.services.core.settings import Settings
from trainfaas.services.core.statuses import LIVE_INSTANCE, WAITING_EXECUTION, ExecutionStatus
from trainfaas.services.store.records import Execution, Instance, Service, now_s

HISTORY = 20
"""How many of the service's latest successful executions the estimate takes its run time from."""


@dataclass(frozen=True)
class Estimate:
    wait_s: float | None  # None: no estimate (``reason`` says why)
    reason: str


def estimate_wait(durations: list[float], ahead: int, running: int, slots: int) -> Estimate:
    """How long until an execution with ``ahead`` executions before it starts, when ``running``
    executions occupy some of the service's ``slots`` (instances × concurrency) and each takes the
    median of ``durations`` (recent run times, seconds): that median × the executions that must
    end first / the slots that run them in parallel."""
    if slots <= 0:
        return Estimate(None, "no instance may run it (max_instances is 0)")
    if not durations:
        return Estimate(None, "no history: no execution of this service has succeeded yet")
    median = statistics.median(durations)
    must_end = ahead + running - slots + 1
    if must_end <= 0:
        return Estimate(0.0, "a slot is free: it starts when an instance takes it from the queue")
    return Estimate(round(median * must_end / slots, 1),
                    f"median run time {median:.0f} s of the last {len(durations)} successful executions × {must_end}"
                    f" to end first / {slots} slots")


def blocker(service: Service, live: int, running: int, ahead: int, project_full: str | None) -> tuple[str | None, str]:
    """What keeps the execution waiting beyond its turn: (code, words); (None, words) when nothing
    but the executions ahead of it does."""
    if service.paused:
        return "paused", "service paused: nothing starts until it is resumed"
    if service.error_reason:
        code = "crash_loop" if service.error_reason.startswith("crash loop") else "failed_start"
        return code, service.error_reason
    if service.max_instances == 0:
        return "no_instances_allowed", "max_instances is 0: no instance may run it"
    if project_full:
        return "project_running_limit", project_full
    if live == 0:
        return "starting", "no instance is running yet: the scheduler starts one"
    if live >= service.max_instances and ahead + running >= live * service.concurrency:
        return "at_max_instances", f"all {live} instances (max_instances) are busy: it starts when a running execution ends"
    return None, "its turn comes as the executions ahead of it start"


def _project_full(settings: Settings, project: str) -> str | None:
    limits = quotas.limits_of(settings, project)
    if limits.running < limits.max_running:
        return None
    return f"project {project} runs {limits.running} executions, its limit (max_running {limits.max_running})"


def _durations(service: str) -> list[float]:
    rows = (Execution.select(Execution.started_at, Execution.finished_at)
            .where((Execution.service == service) & (Execution.status == ExecutionStatus.SUCCESS)
                   & Execution.started_at.is_null(False) & Execution.finished_at.is_null(False))
            .order_by(Execution.finished_at.desc()).limit(HISTORY))
    return [max(0.0, row.finished_at - row.started_at) for row in rows]


def waiting(settings: Settings, execution: Execution) -> dict[str, Any] | None:
    """Why ``execution`` waits, or None when it is not waiting (pending or rerun)."""
    if execution.status not in WAITING_EXECUTION:
        return None
    service = Service.get_by_id(execution.service_id)
    place = execution.queued_at if execution.queued_at is not None else execution.created_at
    queue = Execution.select().where((Execution.service == service.name) & Execution.status.in_(sorted(WAITING_EXECUTION)))
    ahead = queue.where((Execution.queued_at < place) | ((Execution.queued_at == place) & (Execution.id < execution.id))).count()
    running = Execution.select().where((Execution.service == service.name) & (Execution.status == ExecutionStatus.IN_PROGRESS)).count()
    live = Instance.select().where((Instance.service == service.name) & Instance.status.in_(sorted(LIVE_INSTANCE))).count()
    queued = queue.count()
    health, health_reason = service_health(service.error_reason, service.paused, queued, live, service.max_instances)
    code, reason = blocker(service, live, running, ahead, _project_full(settings, execution.project))
    if code in ("paused", "no_instances_allowed", "project_running_limit"):
        estimate = Estimate(None, f"no estimate while it is held: {reason}")
    else:
        estimate = estimate_wait(_durations(service.name), ahead, running, max(live, service.max_instances) * service.concurrency)
    return {
        "position": ahead + 1, "queued": queued, "service": service.name, "health": health, "health_reason": health_reason,
        "blocked_by": code, "reason": reason, "instances": live, "max_instances": service.max_instances,
        "concurrency": service.concurrency, "running": running, "estimated_wait_s": estimate.wait_s,
        "estimated_start_at": None if estimate.wait_s is None else now_s() + estimate.wait_s, "estimate_reason": estimate.reason,
    }
