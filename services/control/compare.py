"""Executions side by side: their configurations with the keys that differ marked, their final
metrics, and each metric series aligned by step.

The pure parts (:func:`flatten`, :func:`side_by_side`, :func:`aligned`) take plain values; only
:func:`compare` reads the database.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from trainfaas.services.control.executions import get_execution
from trainfaas.services.core.errors import ConfigError
from trainfaas.services.store.records import Execution, MetricSample

MIN_COMPARED, MAX_COMPARED = 2, 10
MAX_SAMPLES_READ = 50_000  # per execution: the newest, so that one request reads a bounded number of rows
SETTINGS = ("timeout_s", "drain_time_s", "max_attempts", "on_reset")
Series = dict[str, Any]


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``; lists and scalars are leaves."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def side_by_side(columns: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per key of any column, sorted: the values in column order (None where a column
    lacks the key) and whether they differ."""
    keys = sorted(set().union(*columns))
    rows = []
    for key in keys:
        values = [column.get(key) for column in columns]
        rows.append({"key": key, "values": values, "differs": any(value != values[0] for value in values[1:])})
    return rows


def aligned(samples: Sequence[Iterable[tuple[str, str, float, float]]], max_points: int) -> list[Series]:
    """Per (figure, legend), the steps any execution reported and each execution's value at each
    (None where it has none; the later sample wins at a repeated step), thinned evenly to at most
    ``max_points`` steps, the first and last kept."""
    per_execution: list[dict[tuple[str, str], dict[float, float]]] = []
    for rows in samples:
        series: dict[tuple[str, str], dict[float, float]] = {}
        for figure, legend, x, y in rows:
            series.setdefault((figure, legend), {})[x] = y
        per_execution.append(series)
    out = []
    for figure, legend in sorted(set().union(*per_execution)):
        steps = sorted(set().union(*(series.get((figure, legend), {}) for series in per_execution)))
        steps = _thinned(steps, max_points)
        values = [[series.get((figure, legend), {}).get(x) for x in steps] for series in per_execution]
        out.append({"figure": figure, "legend": legend, "x": steps, "y": values})
    return out


def _thinned(steps: list[float], limit: int) -> list[float]:
    if len(steps) <= limit:
        return steps
    if limit == 1:
        return steps[-1:]
    last = len(steps) - 1
    return [steps[round(i * last / (limit - 1))] for i in range(limit)]


def configuration_of(execution: Execution) -> dict[str, Any]:
    """What decided the execution's outcome: function, service, data set, adapter options and execution settings."""
    given = execution.input or {}
    flat = {"function": execution.function, "service": execution.service_id, "dataset": given.get("dataset")}
    flat.update(flatten(given.get("configuration") or {}, "configuration."))
    flat.update({f"execution.{name}": getattr(execution, name) for name in SETTINGS})
    return flat


def final_metrics(execution: Execution) -> dict[str, Any]:
    metrics = (execution.output or {}).get("metrics") if isinstance(execution.output, dict) else None
    return {key: value for key, value in (metrics or {}).items() if isinstance(value, (int, float)) or value is None}


def resolve(given: str, project: str | None) -> list[Execution]:
    """The executions named by ``given`` (comma-separated ids or unique prefixes), within ``project``
    (None: any). ConfigError naming ``executions`` unless 2 to 10 distinct ones of one project."""
    names = [name.strip() for name in given.split(",") if name.strip()]
    if not MIN_COMPARED <= len(names) <= MAX_COMPARED:
        raise ConfigError(f"compare {MIN_COMPARED} to {MAX_COMPARED} executions, not {len(names)}",
                          {"executions": f"{MIN_COMPARED} to {MAX_COMPARED} comma-separated execution ids"})
    executions = [get_execution(name, project) for name in names]
    if len({execution.id for execution in executions}) != len(executions):
        raise ConfigError("an execution is named twice", {"executions": "distinct execution ids"})
    if len({execution.project for execution in executions}) != 1:
        raise ConfigError("the executions belong to different projects", {"executions": "executions of one project"})
    return executions


def compare(given: str, project: str | None, max_points: int) -> dict[str, Any]:
    """The comparison of the executions ``given`` names (see :func:`resolve`)."""
    executions = resolve(given, project)
    samples, left_out = [], 0
    for execution in executions:
        rows = (MetricSample.select(MetricSample.figure, MetricSample.legend, MetricSample.x, MetricSample.y)
                .where(MetricSample.execution == execution.id))
        newest = list(rows.order_by(MetricSample.attempt.desc(), MetricSample.id.desc()).limit(MAX_SAMPLES_READ).tuples())
        if len(newest) == MAX_SAMPLES_READ:
            left_out += rows.count() - MAX_SAMPLES_READ
        samples.append(newest[::-1])
    return {
        "samples_left_out": left_out,
        "executions": [{"id": e.id, "name": e.name, "status": e.status, "model_id": e.model_id, "service": e.service_id}
                       for e in executions],
        "configuration": side_by_side([configuration_of(execution) for execution in executions]),
        "metrics": side_by_side([final_metrics(execution) for execution in executions]),
        "series": aligned(samples, max_points),
    }
