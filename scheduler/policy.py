"""Scheduling decisions as pure functions: no I/O, the clock passed in, tested with a fake one.

``decide()`` answers "how many instances should this service have now?" from what was observed,
the service's configuration and the history of earlier decisions. The fleet keeper acts on the
answer; ``choose_to_stop()`` picks which instances go (idle first, never a busy one unless the
service must shrink below its busy instances).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from trainfaas.services.control.services import service_health as service_health  # its old home: still importable here
from trainfaas.services.core.statuses import InstanceStatus


@dataclass(frozen=True)
class ServiceConfig:
    scaling_type: str
    min_instances: int
    max_instances: int
    paused: bool = False
    queue_length: int = 1
    concurrency: int = 1
    cooldown_s: float = 300.0
    crash_limit: int = 3
    crash_window_s: float = 300.0
    backoff_base_s: float = 10.0
    backoff_max_s: float = 600.0


@dataclass(frozen=True)
class InstanceState:
    id: str
    status: str
    busy: bool


@dataclass(frozen=True)
class Observed:
    queued: int
    running: int
    instances: tuple[InstanceState, ...]
    failures: tuple[float, ...] = ()  # when instances of this service failed (crash, start failure)
    last_failure_reason: str = ""

    @property
    def active(self) -> tuple[InstanceState, ...]:
        """Instances that count towards the size: all but those already terminating."""
        return tuple(i for i in self.instances if i.status != InstanceStatus.TERMINATING)


@dataclass(frozen=True)
class History:
    """What earlier decisions left behind. ``target`` None means no decision yet."""

    target: int | None = None
    changed_at: float = 0.0
    below_since: float | None = None


@dataclass(frozen=True)
class Decision:
    desired: int
    action: str  # scale-up, scale-down, hold, pause, backoff, steady
    reason: str
    history: History
    may_start: bool = True
    health: str = "ok"
    health_reason: str = ""
    forced: bool = False  # busy instances may be drained (max lowered, paused)
    details: dict[str, float] = field(default_factory=dict)
    # When this decision may change by the clock alone (a hold's cooldown ends, a backoff ends):
    # the fleet keeper decides again then, without waiting for its next polling interval.
    review_at: float | None = None


def demand(observed: Observed, config: ServiceConfig) -> int:
    """Instances the work needs: one per ``queue_length`` × ``concurrency`` executions."""
    per_instance = max(1, config.queue_length * config.concurrency)
    return math.ceil((observed.queued + observed.running) / per_instance)


def backoff_until(failures: tuple[float, ...], config: ServiceConfig, now: float) -> float | None:
    """When starts may resume after a crash loop (``crash_limit`` failures within the window)."""
    recent = sorted(t for t in failures if now - t <= config.crash_window_s)
    if len(recent) < config.crash_limit:
        return None
    excess = len(recent) - config.crash_limit
    return recent[-1] + min(config.backoff_max_s, config.backoff_base_s * 2**excess)


def decide(observed: Observed, config: ServiceConfig, now: float, history: History) -> Decision:
    """The desired size of a service and why. Pure."""
    current = len(observed.active)
    previous = history.target if history.target is not None else current
    if config.paused:
        return Decision(0, "pause", "service paused", History(0, now if previous else history.changed_at), forced=True)
    if config.scaling_type == "fixed":
        wanted, why = min(config.min_instances, config.max_instances), "fixed size"
    else:
        need = demand(observed, config)
        wanted = max(config.min_instances, min(config.max_instances, need))
        why = f"{observed.queued} queued + {observed.running} running need {need}"
    decision = _apply_cooldown(wanted, previous, config, now, history, why)
    resume_at = backoff_until(observed.failures, config, now)
    if resume_at is not None:
        reason = f"crash loop: {len([t for t in observed.failures if now - t <= config.crash_window_s])} instance failures within {config.crash_window_s:.0f} s"
        if observed.last_failure_reason:
            reason += f" (last: {observed.last_failure_reason})"
        if now < resume_at:
            return replace(decision, may_start=False, action="backoff" if decision.desired > current else decision.action,
                           review_at=min(resume_at, decision.review_at or resume_at), health="error",
                           health_reason=f"{reason}; next start in {resume_at - now:.0f} s")
        return replace(decision, health="error", health_reason=reason)
    return decision


def _apply_cooldown(wanted: int, previous: int, config: ServiceConfig, now: float, history: History, why: str) -> Decision:
    if wanted > previous:
        return Decision(wanted, "scale-up", why, History(wanted, now, None))
    if wanted == previous:
        return Decision(wanted, "steady", why, History(previous, history.changed_at, None))
    if previous > config.max_instances:
        # Lowering max is an order, not a hint: shrink now (busy instances drain, never die).
        return Decision(wanted, "scale-down", f"max_instances lowered to {config.max_instances}", History(wanted, now, None), forced=True)
    below_since = history.below_since if history.below_since is not None else now
    if now - below_since >= config.cooldown_s and now - history.changed_at >= config.cooldown_s:
        return Decision(wanted, "scale-down", f"{why}; low for {now - below_since:.0f} s", History(wanted, now, None))
    wait_s = config.cooldown_s - min(now - below_since, now - history.changed_at)
    return Decision(previous, "hold", f"{why}; holding {previous} for {wait_s:.0f} s more (cooldown)",
                    History(previous, history.changed_at, below_since), review_at=now + wait_s)


def choose_to_stop(instances: tuple[InstanceState, ...], count: int, forced: bool = False) -> list[str]:
    """Pick up to ``count`` instances to stop: idle ones first; busy ones only when ``forced``
    (they then drain: stop pulling, finish within their drain time)."""
    ordered = sorted(instances, key=lambda inst: (inst.busy, inst.status != InstanceStatus.INITIALIZING))
    if not forced:
        ordered = [inst for inst in ordered if not inst.busy]
    return [inst.id for inst in ordered[:count]]


def desired_instances(observed: Observed, config: ServiceConfig, now: float, history: History | None = None) -> int:
    """Just the number of :func:`decide`."""
    return decide(observed, config, now, history or History()).desired
