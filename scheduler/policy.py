"""Scheduling decisions as pure functions: no I/O, time passed in."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceConfig:
    scaling_type: str
    min_instances: int
    max_instances: int
    paused: bool = False


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


def desired_instances(observed: Observed, config: ServiceConfig, now: float) -> int:
    """How many instances the service should have now.

    ``fixed`` keeps ``min_instances`` (clamped to ``max_instances``); a paused service has none.
    """
    del observed, now  # the fixed policy needs neither; autoscaling will
    if config.paused:
        return 0
    return max(0, min(config.min_instances, config.max_instances))


def choose_to_stop(instances: tuple[InstanceState, ...], count: int) -> list[str]:
    """Pick ``count`` instances to stop: idle ones first, busy ones (to drain) only if needed."""
    ordered = sorted(instances, key=lambda inst: (inst.busy, inst.status != "initializing"))
    return [inst.id for inst in ordered[:count]]
