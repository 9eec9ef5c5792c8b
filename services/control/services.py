"""Services: one per architecture, created on first use; their settings and their health."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from trainfaas.adapters.catalog import get_adapter
from trainfaas.services.core.errors import ConfigError
from trainfaas.services.core.protocol import TRAIN_MODEL
from trainfaas.services.core.settings import Settings
from trainfaas.services.store import queues
from trainfaas.services.store.database import database
from trainfaas.services.store.records import Service, now_s

RUN_AS_PROCESS = ("true: each execution in a fresh work process; false: in a work process kept warm between executions of"
                  " the same project and function (a training only where its service's run_as_process is false)")


def check_run_as_process(function: str, value: bool, service: Service) -> None:
    """ConfigError (422, naming run_as_process) for a training asked to run in a warm work process
    on a service that did not opt in: a training holds the GPU and its memory for hours, and what it
    leaves behind in a reused process (CUDA state, threads, memory) would go on to the next one."""
    if function == TRAIN_MODEL and value is False and service.run_as_process is not False:
        raise ConfigError("run_as_process false is for short functions (noop, predict_model, evaluate_model): a training runs"
                          f" in a fresh work process unless its service {service.name} sets run_as_process false",
                          {"execution.run_as_process": "true for train_model, unless the service's run_as_process is false"})


class ServicePatch(BaseModel):
    """Changes to a service's settings; each one not given stays as it is."""

    model_config = ConfigDict(extra="forbid")

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
    timeout_s: float | None = Field(None, gt=0, le=30 * 86400, description="At most TRAINFAAS_MAX_TIMEOUT_S (default 24 h).")
    drain_time_s: float | None = Field(None, ge=0, le=86400)
    on_reset: Literal["rerun", "fail"] | None = None
    max_attempts: int | None = Field(None, ge=1, le=10)
    run_as_process: bool | None = Field(None, description=RUN_AS_PROCESS)


def timeout_range(settings: Settings) -> str:
    """What a timeout_s may be on this server, as a ConfigError's field says it."""
    return f"greater than 0 and at most {settings.max_timeout_s:g} seconds (TRAINFAAS_MAX_TIMEOUT_S)"


def get_service(name: str) -> Service:
    return Service.by_key(Service.name, name,  # type: ignore[no-any-return]
                          missing=f"service {name} does not exist; services are created by the first training of an architecture")


def ensure_service(settings: Settings, architecture: str, by_training: bool = False) -> Service:
    """The architecture's service, created on first use. Safe under concurrency; an existing
    service is returned as it is. One a training creates (``by_training``) autoscales between
    TRAINFAAS_NEW_SERVICE_MIN_INSTANCES (0: it scales to zero when idle) and
    TRAINFAAS_NEW_SERVICE_MAX_INSTANCES (1); one an admin creates has the fixed defaults, then
    the admin's patch."""
    get_adapter(architecture, settings.adapters)
    name = queues.service_name(architecture)
    service = Service.get_or_none(Service.name == name)
    if service is None:
        high = settings.new_service_max_instances
        sizing = dict(scaling_type="autoscale", min_instances=min(settings.new_service_min_instances, high), max_instances=high)
        try:
            with database.atomic():
                service = Service.create(name=name, architecture=architecture, **(sizing if by_training else {}))
        except Exception:  # noqa: BLE001 - another request created it first
            service = Service.get_by_id(name)
    return service


def check_service_patch(service: Service, patch: ServicePatch, settings: Settings | None = None) -> dict[str, Any]:
    """The changes ``patch`` makes to ``service``; ConfigError if they do not fit together."""
    changes = patch.model_dump(exclude_none=True)
    if settings is not None and "instance_type" in changes and changes["instance_type"] not in settings.instance_types:
        raise ConfigError(f"unknown instance type {changes['instance_type']!r}",
                          {"instance_type": f"one of: {', '.join(sorted(settings.instance_types))}"})
    if settings is not None and changes.get("timeout_s", 0) > settings.max_timeout_s:
        raise ConfigError(f"timeout_s {changes['timeout_s']:g} is longer than this server allows",
                          {"timeout_s": timeout_range(settings)})
    low = changes.get("min_instances", service.min_instances)
    high = changes.get("max_instances", service.max_instances)
    if low > high:
        raise ConfigError("min_instances is above max_instances", {"min_instances": f"must be <= max_instances ({high})"})
    return changes


AUTOSCALER_FIELDS = ("max_instances", "queue_length", "polling_interval_s", "cooldown_s")


def describe_scaling(service: Service) -> str:
    """What the service's instances will do, in words: "keeps 1 instance", "scales 0–3 on ..."."""
    if service.scaling_type == "fixed":
        kept = min(service.min_instances, service.max_instances)
        text = f"keeps {kept} instance{'' if kept == 1 else 's'}"
    else:
        low = service.min_instances
        text = (f"scales {low}–{service.max_instances} on queue length {service.queue_length} (checked every "
                f"{service.polling_interval_s:g} s), back to {low} after {service.cooldown_s:g} s idle")
    return f"paused; once resumed it {text}" if service.paused else text


def patch_warnings(service: Service, changes: dict[str, Any]) -> list[str]:
    """What in an applied patch will not do what it seems to: autoscaler settings on a service
    that stays fixed, and a fixed service left with no instance."""
    if service.scaling_type != "fixed":
        return []
    warnings = []
    # A fixed service keeps min(min_instances, max_instances): a max above the min does nothing.
    inert = [name for name in AUTOSCALER_FIELDS if name in changes
             and (name != "max_instances" or service.max_instances > service.min_instances)]
    if inert:
        warnings.append(f"{', '.join(inert)} take{'s' if len(inert) == 1 else ''} effect only with scaling_type autoscale; "
                        f"this service is fixed and {describe_scaling(service)}. "
                        'Set "scaling_type": "autoscale" (trainfaas services set NAME --scaling-type autoscale) to scale on its queue.')
    if min(service.min_instances, service.max_instances) == 0:
        warnings.append("a fixed service with 0 instances runs nothing: its executions wait until min_instances is raised "
                        "or it autoscales")
    return warnings


def update_service(service: Service, patch: ServicePatch, settings: Settings | None = None) -> Service:
    changes = check_service_patch(service, patch, settings)
    if changes:
        Service.update(**changes, updated_at=now_s()).where(Service.name == service.name).execute()
    return Service.get_by_id(service.name)


def service_health(error_reason: str | None, paused: bool, waiting: int, live_instances: int, max_instances: int) -> tuple[str, str]:
    """(indicator, reason) shown for a service: error, warning or ok."""
    if error_reason:
        return "error", error_reason
    if paused and waiting:
        return "warning", f"service paused: {waiting} pending executions get stuck in the queue until it is resumed"
    if waiting and max_instances == 0:
        return "warning", f"max_instances is 0: {waiting} pending executions get stuck in the queue"
    if waiting and live_instances == 0:
        return "warning", f"inactive: no instance is running while {waiting} executions wait"
    return "ok", ""


def configure_service(settings: Settings, name: str, patch: ServicePatch) -> Service:
    """Apply ``patch`` to the service called ``name``. A service of a known architecture can be
    set up before its first training; a patch that is refused creates no service."""
    service = Service.get_or_none(Service.name == name)
    if service is None and name.startswith(queues.SERVICE_PREFIX):
        architecture = name.removeprefix(queues.SERVICE_PREFIX)
        # Check the patch against the defaults first: a rejected patch creates no service.
        check_service_patch(Service(name=name, architecture=architecture), patch, settings)
        service = ensure_service(settings, architecture)
    return update_service(service or get_service(name), patch, settings)
