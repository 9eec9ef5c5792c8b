"""``train_model``: one attempt of training a model with its architecture's adapter."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from trainfaas.adapters.catalog import get_adapter
from trainfaas.adapters.manifest import differences
from trainfaas.functions.context import ProcessContext
from trainfaas.services.core.errors import DatasetError
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
    check_versions(context, job.input.get("dataset_manifests") or [])
    context.progress(0.0, f"training {job.model.architecture}")
    split = {subset: Path(path) for subset, path in (job.input.get("datasets") or {}).items()}
    metrics = adapter.train_split(split, output_path, **adapter.configuration) if split else \
        adapter.train(data_path, output_path, **adapter.configuration)
    model_dir = output_path / "model"
    adapter.save(model_dir)
    if not context.should_stop():
        context.progress(100.0, "trained")
    return {"metrics": metrics, "labels": adapter.labels, "model_path": str(model_dir.resolve()), "configuration": adapter.configuration}



def check_versions(context: ProcessContext, versions: list[dict[str, Any]]) -> None:
    """Fail, before the adapter reads, when a data set version's files changed since it was taken.

    Every file of the manifest is compared by size (one stat) and, where the size agrees, by SHA-256:
    at most the version's bytes are read, which taking the version bounded (TRAINFAAS_DATASET_VERSION_MAX_BYTES)."""
    for version in versions:
        context.progress(0.0, f"checking data set {version['reference']} ({len(version['files'])} files)")
        count, names = differences(Path(version["path"]), version["files"])
        if count:
            raise DatasetError(f"data set {version['reference']} changed: {count} file{'s' if count > 1 else ''} differ"
                               f"{'s' if count == 1 else ''}, e.g. {names[0]}; take a new version (trainfaas datasets versions"
                               " --take) and train on it", {"dataset": f"the files of {version['reference']} as they were taken"})
