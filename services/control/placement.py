"""Where a rerun runs when it asks for another instance type.

An instance type belongs to a service (``Service.instance_type``), and an architecture's trainings
go to its one service ``mgmt-train-<architecture>``. A rerun that asks for ``instance_type`` T goes
to the service of the same architecture on T: the architecture's own service when it runs on T,
else its sibling ``<service>--<T>`` (``mgmt-train-resnet18--gpu-1``), created on first use with
the architecture service's backend and concurrency, autoscaling like a service a first training
creates (between TRAINFAAS_NEW_SERVICE_MIN_INSTANCES and _MAX_INSTANCES: to zero when idle). The
execution moves to that service (its queue and instances); later reruns stay there unless they ask
again. An admin tunes a sibling like any service.
"""
from __future__ import annotations

import re

import peewee

from trainfaas.services.core.errors import ConfigError
from trainfaas.services.core.settings import Settings
from trainfaas.services.store.database import database
from trainfaas.services.store.records import Service

SEPARATOR = "--"
TYPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,49}")


def known_types(settings: Settings) -> str:
    return ", ".join(sorted(settings.instance_types))


def service_on_type(settings: Settings, service: Service, instance_type: str) -> Service:
    """The service of ``service``'s architecture that runs on ``instance_type``, created as needed
    (call it inside the transaction that moves the execution). ConfigError naming ``instance_type``
    and the known types for a type this server does not know."""
    if instance_type not in settings.instance_types:
        raise ConfigError(f"unknown instance type {instance_type!r}", {"instance_type": f"one of: {known_types(settings)}"})
    if service.instance_type == instance_type:
        return service
    base = Service.get_or_none(Service.name == service.name.split(SEPARATOR)[0]) or service
    if base.instance_type == instance_type:
        return base
    if not TYPE_NAME.fullmatch(instance_type) or len(base.name) + len(SEPARATOR) + len(instance_type) > 150:
        raise ConfigError(f"instance type {instance_type!r} cannot name a service", {"instance_type": "a type named with letters,"
                          " digits, '.', '_' and '-'"})
    name = f"{base.name}{SEPARATOR}{instance_type}"
    sibling = Service.get_or_none(Service.name == name)
    if sibling is None:
        high = max(1, settings.new_service_max_instances)
        try:
            with database.atomic():  # a savepoint: a sibling created meanwhile by another rerun is taken instead
                sibling = Service.create(name=name, architecture=base.architecture, instance_type=instance_type, backend=base.backend,
                                         concurrency=base.concurrency, scaling_type="autoscale",
                                         min_instances=min(settings.new_service_min_instances, high), max_instances=high,
                                         timeout_s=base.timeout_s, drain_time_s=base.drain_time_s, on_reset=base.on_reset,
                                         max_attempts=base.max_attempts, run_as_process=base.run_as_process)
        except peewee.IntegrityError:
            sibling = Service.get_by_id(name)
    if sibling.instance_type != instance_type:
        raise ConfigError(f"service {name} has been set to run on {sibling.instance_type}", {"instance_type": f"{sibling.instance_type},"
                          f" or set service {name} back to {instance_type}"})
    return sibling
