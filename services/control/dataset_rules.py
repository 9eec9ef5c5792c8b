"""What a training takes from registered data sets: the reference it names (``name``, ``name@3``,
``name@alias``) resolved to one version, the constraints that version must meet, and the record of
the versions the execution trains on.

Constraints are set per data set and per project (a data set's own override its project's, rule by
rule) and checked at submission, each refusal a 422 naming the rule. One check always runs: the data
set's task and format must be what the architecture trains on.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import peewee
from pydantic import BaseModel, ConfigDict, Field

from trainfaas.adapters.base import ModelAdapter
from trainfaas.services.control.dataset_versions import NAME, get_dataset, version
from trainfaas.services.core.errors import ConfigError, NotFound
from trainfaas.services.store.database import database
from trainfaas.services.store.records import Dataset, DatasetRules, DatasetUse, DatasetVersion, Model, now_s

REFERENCE = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]{0,99})(?:@(?P<ref>[A-Za-z0-9][A-Za-z0-9_.-]{0,63}))?")
SPLIT_ROLES = ("train", "validation", "test")
SPLIT_FORMAT = "image-labels"
EXPECTED_SUBSETS = {"image-folder": ("train", "validation")}  # a format's subsets that count as empty when missing


class Constraints(BaseModel):
    """Rules a data set version must meet before a training of it is queued; each unset rule is off."""

    model_config = ConfigDict(extra="forbid")

    min_per_label: int | None = Field(None, ge=1, le=10**9, description="Fewest samples every label of the training subset must have.")
    max_label_share: float | None = Field(None, gt=0, le=1, description="Largest share (0..1] of the training subset one label may take.")
    no_empty_subset: bool | None = Field(None, description="Refuse a version with a subset that has no samples.")
    labels_match_model: bool | None = Field(None, description="The data set's labels must be the model's (when the model has labels).")


def project_constraints(project: str) -> dict[str, Any]:
    row = DatasetRules.get_or_none(DatasetRules.project == project)
    return dict(row.constraints) if row is not None else {}


def set_project_constraints(project: str, constraints: Constraints) -> dict[str, Any]:
    values = constraints.model_dump(exclude_none=True)
    with database.atomic():
        updated = DatasetRules.update(constraints=values, updated_at=now_s()).where(DatasetRules.project == project).execute()
        if not updated:
            try:
                with database.atomic():
                    DatasetRules.create(project=project, constraints=values)
            except peewee.IntegrityError:  # set by a racing request: this one is the last word
                DatasetRules.update(constraints=values, updated_at=now_s()).where(DatasetRules.project == project).execute()
    return values


def set_constraints(dataset: Dataset, constraints: Constraints) -> dict[str, Any]:
    values = constraints.model_dump(exclude_none=True)
    Dataset.update(constraints=values).where(Dataset.id == dataset.id).execute()
    return values


@dataclass
class Chosen:
    """One version a training reads, as which subset (``all``: the whole folder), and how it was named."""

    dataset: Dataset
    version: DatasetVersion
    reference: str
    subset: str = "all"

    def record(self) -> dict[str, Any]:
        return {"dataset_id": self.dataset.id, "name": self.dataset.name, "number": self.version.number, "version_id": self.version.id,
                "digest": self.version.digest, "reference": self.reference, "path": self.dataset.path}


def lookup(project: str, text: str, field: str = "dataset") -> Chosen | None:
    """The version ``text`` names when it is a data set reference in ``project``; None for a plain path."""
    match = REFERENCE.fullmatch(text)
    if match is None:
        return None
    try:
        dataset = get_dataset(match["name"], project, deleted=False)
    except NotFound:
        if match["ref"] is None:
            return None  # a folder under the first data root, as before data sets were registered
        raise ConfigError(f"project {project} has no data set {match['name']}",
                          {field: "a registered data set name (name, name@3, name@alias) or a folder in the data roots"}) from None
    if not NAME.fullmatch(dataset.name) or dataset.name != match["name"]:
        return None  # an id prefix, not a name: a path, as before
    try:
        chosen = version(dataset, match["ref"] or "latest")
    except NotFound:
        raise ConfigError(f"data set {dataset.name} has no version {match['ref']}",
                          {field: f"a version number, latest or an alias of {dataset.name}"}) from None
    return Chosen(dataset, chosen, f"{dataset.name}@{chosen.number}")


def training_counts(subsets: dict[str, dict[str, int]]) -> dict[str, int]:
    """Samples per label of the subset a training learns from: train, else the only one, else all together."""
    if "train" in subsets:
        return subsets["train"]
    if len(subsets) == 1:
        return next(iter(subsets.values()))
    total: dict[str, int] = {}
    for counts in subsets.values():
        for label, count in counts.items():
            total[label] = total.get(label, 0) + count
    return total


def check(chosen: Chosen, adapter: type[ModelAdapter], model: Model, field: str = "dataset") -> None:
    """Refuse (422 naming the rule) a version the model's architecture cannot train on or that breaks a constraint."""
    dataset, found = chosen.dataset, chosen.version
    task = adapter.task_of(model.architecture)
    if dataset.task and dataset.task != task:
        raise ConfigError(f"rule task: data set {dataset.name} is for {dataset.task}, {model.architecture} trains {task}",
                          {field: f"a data set for task {task}"})
    wanted = SPLIT_FORMAT if chosen.subset != "all" else adapter.dataset_format
    if wanted is not None and found.format != "files" and wanted not in found.format.split("+"):
        raise ConfigError(f"rule format: {chosen.reference} is a {found.format} data set, {model.architecture} reads {wanted}",
                          {field: f"a {wanted} data set"})
    rules = {**project_constraints(model.project), **(dataset.constraints or {})}
    counts = training_counts(found.subsets) if chosen.subset == "all" else found.subsets.get("all", {})
    _check_rules(rules, chosen, counts, model, field)


def _check_rules(rules: dict[str, Any], chosen: Chosen, counts: dict[str, int], model: Model, field: str) -> None:
    name = chosen.reference
    if not chosen.version.subsets:
        return  # a format whose labels the paths do not tell: the adapter's own check stands
    if rules.get("no_empty_subset"):
        expected = dict.fromkeys(EXPECTED_SUBSETS.get(chosen.version.format, ()), {})
        empty = sorted(subset for subset, labels in {**expected, **chosen.version.subsets}.items() if sum(labels.values()) == 0)
        if empty:
            raise ConfigError(f"rule no_empty_subset: {name} has empty subsets: {', '.join(empty)}",
                              {field: "a version whose every subset has samples (constraint no_empty_subset)"})
    if (least := rules.get("min_per_label")) is not None:
        short = sorted(label for label, count in counts.items() if count < least)
        if short:
            raise ConfigError(f"rule min_per_label: {name} has fewer than {least} samples of {', '.join(short[:5])}",
                              {field: f"at least {least} samples of every label (constraint min_per_label)"})
    if (share := rules.get("max_label_share")) is not None and counts:
        total = sum(counts.values())
        top, most = max(counts.items(), key=lambda item: item[1])
        if total and most / total > share:
            raise ConfigError(f"rule max_label_share: label {top} is {most / total:.0%} of {name}, more than {share:.0%}",
                              {field: f"no label over {share:g} of the training subset (constraint max_label_share)"})
    if rules.get("labels_match_model") and model.labels and set(counts) != set(model.labels):
        raise ConfigError(f"rule labels_match_model: the labels of {name} are not model {model.id}'s",
                          {field: "a data set whose labels are the model's (constraint labels_match_model)"})


def record_uses(execution_id: str, chosen: list[Chosen]) -> None:
    for item in chosen:
        DatasetUse.create(execution=execution_id, dataset=item.dataset, version=item.version, subset=item.subset)


def manifests(execution_input: dict[str, Any]) -> list[dict[str, Any]]:
    """What the work process of a training checks before its adapter reads: each version's folder and manifest."""
    records = list((execution_input.get("dataset_versions") or {}).items())
    out = []
    for subset, record in records:
        row = DatasetVersion.get_or_none(DatasetVersion.id == record.get("version_id"))
        if row is not None:
            out.append({"subset": subset, "reference": record.get("reference"), "path": record.get("path"), "files": row.manifest})
    return out


@dataclass
class TrainingData:
    """What a training's input says of its data (``dataset``, ``datasets``, ``dataset_versions``) and the versions it reads."""

    input: dict[str, Any]
    chosen: list[Chosen]


def split_training(adapter: type[ModelAdapter], model: Model, datasets: dict[str, str]) -> TrainingData:
    """A training on separate data sets per subset: each a registered image-labels data set (``<label>/<image>``)."""
    roles = tuple(getattr(adapter, "split_subsets", ()))
    if not roles:
        raise ConfigError(f"{model.architecture} trains on one data set folder, not separate data sets per subset",
                          {"datasets": "not supported by this architecture: give dataset instead"})
    unknown = sorted(set(datasets) - set(roles))
    missing = [role for role in roles if role not in datasets]
    if unknown or missing:
        raise ConfigError(f"{model.architecture} takes separate data sets for {', '.join(roles)}",
                          {"datasets": f"exactly the subsets {', '.join(roles)}"})
    chosen = []
    for role in roles:
        field = f"datasets.{role}"
        found = lookup(model.project, datasets[role], field)
        if found is None:
            raise ConfigError(f"{datasets[role]!r} is no registered data set", {field: "a registered data set: name, name@3 or name@alias"})
        found.subset = role
        check(found, adapter, model, field)
        chosen.append(found)
    train_labels = set(chosen[0].version.subsets.get("all", {}))
    for item in chosen[1:]:
        extra = sorted(set(item.version.subsets.get("all", {})) - train_labels)
        if extra:
            raise ConfigError(f"{item.reference} has labels the training data set lacks: {', '.join(extra[:5])}",
                              {f"datasets.{item.subset}": f"a data set whose labels are among those of {chosen[0].reference}"})
    return TrainingData({"dataset": None, "datasets": {item.subset: item.dataset.path for item in chosen},
                         "dataset_versions": {item.subset: item.record() for item in chosen}}, chosen)
