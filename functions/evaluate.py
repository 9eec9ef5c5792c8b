"""``evaluate_model``: score a trained model on a subset of a data set with its architecture's adapter."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from trainfaas.adapters.base import ModelAdapter
from trainfaas.adapters.catalog import get_adapter
from trainfaas.functions.context import ProcessContext
from trainfaas.services.core.protocol import WorkSpec


def loaded_adapter(context: ProcessContext, job: WorkSpec) -> ModelAdapter:
    """The adapter of ``job.model``'s architecture, with the saved model the job names loaded."""
    assert job.model is not None, f"{job.function} needs a model"
    adapter_cls = get_adapter(job.model.architecture, job.adapters)
    adapter = adapter_cls(job.model.architecture, job.model.labels, job.input.get("configuration") or {}, context)
    context.progress(0.0, f"loading model {job.model.id}")
    adapter.load(Path(job.input["model_path"]))
    return adapter


def evaluate_model(context: ProcessContext, job: WorkSpec) -> dict[str, Any]:
    """Score the model on the ``subset`` of ``job.data_path``; return the task's metrics."""
    adapter = loaded_adapter(context, job)
    subset = str(job.input.get("subset") or "validation")
    Path(job.output_path).mkdir(parents=True, exist_ok=True)
    context.progress(10.0, f"evaluating on the {subset} subset")
    metrics = adapter.evaluate(Path(str(job.data_path)), subset=subset, output_path=Path(job.output_path))
    context.progress(100.0, "evaluated")
    return {"metrics": metrics, "task": adapter.task_of(adapter.architecture), "labels": adapter.labels,
            "dataset": job.data_path, "subset": subset}
