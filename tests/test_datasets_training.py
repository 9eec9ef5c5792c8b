"""Trainings on registered data sets through the real API on SQLite and PostgreSQL: references
(name, name@3, name@alias), the version an execution records, constraints, separate data sets per
subset, and deletion of a data set that trainings read."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.test_datasets_versions import data_root, redis_url, register, shapes, write_folder
from trainfaas.services.store.records import DatasetUse, Execution

__all__ = ["redis_url"]  # the one-Redis fixture of the versions tests


def model(client: Any, architecture: str = "resnet18", **extra: Any) -> str:
    response = client.post("/api/v1/models", json={"name": "m", "architecture": architecture, **extra})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]  # type: ignore[no-any-return]


def train(client: Any, model_id: str, **body: Any) -> Any:
    return client.post(f"/api/v1/models/{model_id}/train", json={"configuration": {"max_steps": 1}, **body})


def test_a_training_names_a_version_by_name_number_or_alias_and_its_execution_records_it(api: Any) -> None:
    folder = shapes(api)
    dataset = register(api.client, "shapes", folder).get_json()
    (folder / "train" / "a" / "9.png").write_bytes(b"more")
    api.client.post("/api/v1/datasets/shapes/versions")
    api.client.put("/api/v1/datasets/shapes/aliases/train", json={"version": 1})
    model_id = model(api.client)
    for reference, number in (("shapes", 2), ("shapes@1", 1), ("shapes@train", 1), ("shapes@latest", 2)):
        response = train(api.client, model_id, dataset=reference)
        assert response.status_code == 202, response.get_json()
        execution = api.client.get(f"/api/v1/executions/{response.get_json()['id']}").get_json()
        recorded = execution["input"]["dataset_versions"]["all"]
        assert (recorded["dataset_id"], recorded["number"], recorded["reference"]) == (dataset["id"], number, f"shapes@{number}")
        assert len(recorded["digest"]) == 64 and execution["input"]["dataset"] == str(folder.resolve())
        assert api.client.post(f"/api/v1/executions/{execution['id']}/terminate").status_code == 202
    assert DatasetUse.select().count() == 4


def test_a_plain_folder_still_trains_and_records_no_version(api: Any) -> None:
    shapes(api, "loose")
    response = train(api.client, model(api.client), dataset="loose")
    assert response.status_code == 202, response.get_json()
    assert "dataset_versions" not in response.get_json()["input"] and DatasetUse.select().count() == 0


@pytest.mark.parametrize("reference", ["shapes@9", "shapes@nope", "nope@1"])
def test_an_unknown_version_or_data_set_is_refused_naming_dataset(api: Any, reference: str) -> None:
    register(api.client, "shapes", shapes(api))
    response = train(api.client, model(api.client), dataset=reference)
    assert response.status_code == 422 and "dataset" in response.get_json()["error"]["fields"], response.get_json()
    assert Execution.select().count() == 0


def test_another_projects_data_set_cannot_be_trained_on_until_shared(api: Any) -> None:
    from tests.test_api_access import project_tokens
    a, b = api.as_(project_tokens(api, "a")["write"]), api.as_(project_tokens(api, "b")["write"])
    dataset = register(a, "private", shapes(api)).get_json()
    model_b = model(b)
    refused = train(b, model_b, dataset="private@1")
    assert refused.status_code == 422 and "dataset" in refused.get_json()["error"]["fields"]
    api.client.post(f"/api/v1/datasets/{dataset['id']}/shares", json={"project": "b"})
    assert train(b, model_b, dataset="private@1").status_code == 202


@pytest.mark.parametrize("where, constraints, rule", [
    ("dataset", {"min_per_label": 3}, "min_per_label"),
    ("project", {"max_label_share": 0.5}, "max_label_share"),
    ("dataset", {"labels_match_model": True}, "labels_match_model"),
])
def test_a_constraint_refuses_the_training_naming_the_rule(api: Any, where: str, constraints: dict[str, Any], rule: str) -> None:
    register(api.client, "shapes", shapes(api))
    url = "/api/v1/datasets/shapes/constraints" if where == "dataset" else "/api/v1/projects/default/dataset-constraints"
    assert api.client.put(url, json=constraints).get_json()["constraints"] == constraints
    response = train(api.client, model(api.client, labels=["a", "z"]), dataset="shapes")
    assert response.status_code == 422 and f"rule {rule}" in response.get_json()["error"]["message"], response.get_json()
    assert Execution.select().count() == 0


def test_a_data_sets_own_constraints_override_its_projects_rule_by_rule(api: Any) -> None:
    register(api.client, "shapes", shapes(api))
    api.client.put("/api/v1/projects/default/dataset-constraints", json={"max_label_share": 0.5, "no_empty_subset": True})
    api.client.put("/api/v1/datasets/shapes/constraints", json={"max_label_share": 0.75})
    assert train(api.client, model(api.client), dataset="shapes").status_code == 202
    bad = api.client.put("/api/v1/datasets/shapes/constraints", json={"max_label_share": 2, "min_per_label": 0})
    assert bad.status_code == 422 and {"max_label_share", "min_per_label"} <= set(bad.get_json()["error"]["fields"])


def test_no_empty_subset_task_and_format_are_checked_before_anything_is_queued(api: Any) -> None:
    register(api.client, "half", write_folder(data_root(api) / "half", {"train": {"a": 2, "b": 2}}))
    api.client.put("/api/v1/datasets/half/constraints", json={"no_empty_subset": True})
    register(api.client, "boxes", shapes(api, "boxes"), task="detection")
    register(api.client, "flat", flat(api, "flat", {"a": 3, "b": 2}))
    model_id = model(api.client)
    for reference, rule in (("half", "no_empty_subset"), ("boxes", "task"), ("flat", "format")):
        response = train(api.client, model_id, dataset=reference)
        assert response.status_code == 422 and f"rule {rule}" in response.get_json()["error"]["message"], response.get_json()
    assert Execution.select().count() == 0


def flat(api: Any, name: str, counts: dict[str, int]) -> Path:
    """An image-labels data set: ``<label>/<image>``, one subset."""
    root = data_root(api) / name
    for label, count in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            (root / label / f"{index}.png").write_bytes(f"{name}{label}{index}".encode())
    return root


def test_separate_data_sets_per_subset_train_an_image_classifier_and_each_version_is_recorded(api: Any) -> None:
    register(api.client, "tr", flat(api, "tr", {"a": 3, "b": 2}))
    register(api.client, "va", flat(api, "va", {"a": 1, "b": 1}))
    api.client.put("/api/v1/datasets/va/aliases/val", json={"version": 1})
    response = train(api.client, model(api.client), datasets={"train": "tr", "validation": "va@val"})
    assert response.status_code == 202, response.get_json()
    given = response.get_json()["input"]
    assert set(given["datasets"]) == {"train", "validation"} and given["dataset"] is None
    assert {k: v["reference"] for k, v in given["dataset_versions"].items()} == {"train": "tr@1", "validation": "va@1"}
    assert DatasetUse.select().count() == 2


@pytest.mark.parametrize("architecture, datasets, field", [
    ("sleep", {"train": "tr", "validation": "va"}, "datasets"),
    ("yolov8n", {"train": "tr", "validation": "va"}, "datasets"),
    ("resnet18", {"train": "tr"}, "datasets"),
    ("resnet18", {"train": "tr", "validation": "/etc"}, "datasets.validation"),
    ("resnet18", {"train": "tr", "validation": "more"}, "datasets.validation"),
    ("resnet18", {"train": "shapes", "validation": "va"}, "datasets.train"),
])
def test_separate_data_sets_are_refused_where_unsupported_or_wrong(api: Any, architecture: str, datasets: dict[str, str], field: str) -> None:
    register(api.client, "tr", flat(api, "tr", {"a": 3, "b": 2}))
    register(api.client, "va", flat(api, "va", {"a": 1}))
    register(api.client, "more", flat(api, "more", {"a": 1, "c": 1}))
    register(api.client, "shapes", shapes(api))
    response = train(api.client, model(api.client, architecture), datasets=datasets, configuration={})
    assert response.status_code == 422 and field in response.get_json()["error"]["fields"], response.get_json()
    assert Execution.select().count() == 0


def test_a_data_set_trainings_read_is_deleted_only_with_force_and_its_versions_stay_readable(api: Any) -> None:
    dataset = register(api.client, "shapes", shapes(api)).get_json()
    execution = train(api.client, model(api.client), dataset="shapes@1").get_json()
    refused = api.client.delete("/api/v1/datasets/shapes")
    assert refused.status_code == 409 and refused.get_json()["error"]["fields"]["execution_id"] == execution["id"]
    forced = api.client.delete("/api/v1/datasets/shapes", query_string={"force": "true"})
    assert forced.status_code == 200 and forced.get_json()["kept"] is True
    assert api.client.get("/api/v1/datasets").get_json()["items"] == []
    shown = api.client.get(f"/api/v1/datasets/{dataset['id']}").get_json()
    assert shown["deleted_at"] is not None and shown["latest"]["number"] == 1
    assert api.client.get(f"/api/v1/datasets/{dataset['id']}/versions/1").get_json()["files"] == 7
    assert [d["id"] for d in api.client.get("/api/v1/datasets", query_string={"deleted": "true"}).get_json()["items"]] == [dataset["id"]]
    refused_training = train(api.client, model(api.client), dataset="shapes@1")
    assert refused_training.status_code == 422
    assert register(api.client, "shapes", data_root(api) / "shapes").status_code == 201  # the name is free again
    unused = register(api.client, "other", shapes(api, "other")).get_json()
    assert api.client.delete(f"/api/v1/datasets/{unused['id']}").get_json()["kept"] is False
    assert api.client.get(f"/api/v1/datasets/{unused['id']}").status_code == 404


def test_a_clone_and_a_blueprint_keep_the_reference_of_a_registered_data_set(api: Any) -> None:
    register(api.client, "shapes", shapes(api))
    source = model(api.client)
    clone = api.client.post(f"/api/v1/models/{source}/clone", json={"dataset": "shapes@1"}).get_json()
    execution = api.client.post(f"/api/v1/models/{clone['id']}/train", json={"configuration": {"max_steps": 1}}).get_json()
    assert execution["input"]["dataset_versions"]["all"]["reference"] == "shapes@1", execution
    assert api.client.get(f"/api/v1/executions/{execution['id']}/config").get_json()["dataset"] == "shapes@1"
