"""Every area of the API, one blueprint each. Importing this module registers every endpoint
(trainfaas.services.api.registry.ENDPOINTS); a new blueprint is listed here."""
from __future__ import annotations

from flask import Blueprint

from trainfaas.services.api import (
    architectures,
    blueprints,
    checkpoints,
    compare,
    datasets,
    executions,
    health,
    inference,
    instances,
    metrics,
    model_files,
    models,
    projects,
    services,
    webhooks,
)
from trainfaas.services.api.registry import ENDPOINTS

__all__ = ["AREAS", "ENDPOINTS"]

AREAS: list[Blueprint] = [health.bp, models.bp, model_files.bp, executions.bp, services.bp, instances.bp, projects.bp, architectures.bp,
                         compare.bp, blueprints.bp, checkpoints.bp, inference.bp, webhooks.bp, metrics.bp,
                         datasets.bp]
