"""``train_model``: one attempt of training a model with its architecture's adapter."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from trainfaas.adapters.catalog import get_adapter
from trainfaas.functions.context import ProcessContext
from trainfaas.services.core.protocol import WorkSpec


def train_model(context: ProcessContext, job: WorkSpec) -> dict[str, Any]:
    """Train ``job.model`` on ``job.data_path`` into ``job.output_path``; save the model there.

    The configuration was validated by the API; it is validated again here because an adapter
    may run under a newer version than the one that accepted the request.
    """
    assert job.model is not None, "train_model needs a model"
    adapter_cls = get_adapter(job.model.architecture, job.adapters)
    configuration = job.input.get("configuration", {})
    adapter = adapter_cls(job.model.architecture, job.model.labels, configuration, context)
    output_path = Path(job.output_path)
    output_path.mkdir(parents=True, exist_ok=True)
    data_path = Path(job.data_path) if job.data_path else None
    context.progress(0.0, f"training {job.model.architecture}")
    metrics = adapter.train(data_path, output_path, **adapter.configuration)
    model_dir = output_path / "model"
    adapter.save(model_dir)
    if not context.should_stop():
        context.progress(100.0, "trained")
    return {"metrics": metrics, "labels": adapter.labels, "model_path": str(model_dir.resolve()), "configuration": adapter.configuration}

