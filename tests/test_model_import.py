"""Importing weights a user already has, on SQLite and PostgreSQL through the real app: a torchvision
state dict (uploaded or named by a path in the data roots) and an ultralytics checkpoint become a
pre-trained model a new model fine-tunes from; weights that do not fit are refused naming the first
layer; a pickle that would run code is refused and does not run; an oversized upload, a path outside
the data roots and another project's token are refused, and a refused import leaves nothing behind."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision

from tests.test_api_access import project_tokens
from tests.test_checkpoint_loading import plant
from trainfaas.services.store.records import Model


def state_file(folder: Path, architecture: str = "resnet18", classes: int = 3, name: str = "weights.pt") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = torchvision.models.get_model(architecture, weights=None, num_classes=classes)
    torch.save(model.state_dict(), folder / name)
    return folder / name


def upload(client: Any, path: Path, **fields: Any) -> Any:
    data: dict[str, Any] = {key: value for key, value in fields.items()}
    data["weights"] = (io.BytesIO(path.read_bytes()), path.name)
    return client.post("/api/v1/models/import", data=data, content_type="multipart/form-data")


def imported_folders(api: Any) -> list[str]:
    folder = Path(api.settings.home) / "models"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_an_uploaded_state_dict_becomes_a_pre_trained_model_that_a_new_model_fine_tunes_from(api: Any, tmp_path: Path) -> None:
    response = upload(api.client, state_file(tmp_path), architecture="resnet18", labels=["cat", "dog", "owl"])
    assert response.status_code == 201, response.get_json()
    model = response.get_json()
    assert (model["status"], model["labels"], model["imported_from"], model["name"]) == ("pre-trained", ["cat", "dog", "owl"], "weights.pt", "weights")
    saved = torch.load(Path(model["artifact_path"]) / "model.pt", weights_only=True)
    original = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert saved["labels"] == ["cat", "dog", "owl"] and torch.equal(saved["model"]["fc.weight"], original["fc.weight"])
    assert imported_folders(api) == [model["id"]]  # the upload's spool file is gone

    child = api.client.post("/api/v1/models", json={"name": "tuned", "architecture": "resnet18", "from_model": model["id"]})
    assert child.status_code == 201, child.get_json()
    assert (child.get_json()["base_model"], child.get_json()["labels"]) == (model["id"], ["cat", "dog", "owl"])
    train = api.client.post(f"/api/v1/models/{model['id']}/train", json={"dataset": "x"})
    assert train.status_code in (409, 422) and Model.get_by_id(model["id"]).status == "pre-trained"


def test_a_path_inside_the_data_roots_is_imported_and_labels_default_to_the_head(api: Any) -> None:
    state_file(Path(api.settings.home) / "data" / "weights", classes=4, name="r18.pth")
    response = api.client.post("/api/v1/models/import", json={"architecture": "resnet18", "path": "weights/r18.pth", "name": "r"})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["labels"] == ["class_0", "class_1", "class_2", "class_3"]


@pytest.mark.parametrize("architecture, body, field, says", [
    ("resnet50", {"architecture": "resnet18"}, "weights", "layer layer1.0.conv1.weight: expected shape [64, 64, 3, 3], got [64, 64, 1, 1]"),
    ("resnet18", {"architecture": "resnet18", "labels": ["a", "b"]}, "labels", "3 labels"),
    ("resnet18", {"architecture": "resnet18", "labels": ["a", "a", "b"]}, "labels", "distinct"),
    ("resnet18", {"architecture": "sleep"}, "architecture", "imports weights"),
    ("resnet18", {"architecture": "nope"}, "architecture", "one of"),
])
def test_weights_that_do_not_fit_are_refused_naming_the_field_and_leave_nothing(api: Any, tmp_path: Path, architecture: str,
                                                                                body: dict[str, Any], field: str, says: str) -> None:
    response = upload(api.client, state_file(tmp_path, architecture), **body)
    assert response.status_code == 422 and says in response.get_json()["error"]["fields"][field], response.get_json()
    assert Model.select().count() == 0 and imported_folders(api) == []


def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(api: Any, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    for architecture in ("resnet18", "yolov8n"):
        response = upload(api.client, plant(tmp_path / "evil.pt", marker), architecture=architecture)
        assert response.status_code == 422 and "weights" in response.get_json()["error"]["fields"], response.get_json()
        assert not marker.exists()
    assert Model.select().count() == 0 and imported_folders(api) == []


def test_an_ultralytics_checkpoint_is_imported_with_its_class_names(api: Any, tmp_path: Path) -> None:
    from trainfaas.adapters import yolo

    model = yolo._model_class("detection")("yolov8n.yaml", nc=2, verbose=False)
    model.names = {0: "boat", 1: "buoy"}
    torch.save({"model": model, "epoch": -1, "train_args": {"imgsz": 320}}, tmp_path / "best.pt")
    response = upload(api.client, tmp_path / "best.pt", architecture="yolov8n")
    assert response.status_code == 201, response.get_json()
    assert (response.get_json()["labels"], response.get_json()["task"]) == (["boat", "buoy"], "detection")
    wrong = upload(api.client, tmp_path / "best.pt", architecture="yolov8s")
    assert wrong.status_code == 422 and "model.0.conv.weight" in wrong.get_json()["error"]["fields"]["weights"]


def test_hostile_imports_are_refused(api: Any, tmp_path: Path) -> None:
    outside = state_file(tmp_path / "elsewhere")
    for path in (str(outside), "../../etc/passwd", "missing.pt"):
        response = api.client.post("/api/v1/models/import", json={"architecture": "resnet18", "path": path})
        assert response.status_code == 422 and "path" in response.get_json()["error"]["fields"], response.get_json()
    neither = api.client.post("/api/v1/models/import", json={"architecture": "resnet18"})
    assert neither.status_code == 422 and "path" in neither.get_json()["error"]["fields"]
    api.settings.max_import_bytes = 1000  # the app reads its settings object: a smaller limit for this case
    too_big = upload(api.client, state_file(tmp_path), architecture="resnet18")
    assert too_big.status_code == 413, too_big.get_json()
    reader = api.as_(project_tokens(api, "other")["read"])
    assert upload(reader, state_file(tmp_path), architecture="resnet18").status_code == 403
    assert Model.select().count() == 0 and imported_folders(api) == []


def test_an_imported_model_of_another_project_is_not_found(api: Any, tmp_path: Path) -> None:
    writer = api.as_(project_tokens(api, "one")["write"])
    model = upload(writer, state_file(tmp_path), architecture="resnet18").get_json()
    assert model["project"] == "one"
    tokens = project_tokens(api, "two")
    other = api.as_(tokens["write"])
    assert other.get(f"/api/v1/models/{model['id']}").status_code == 404
    assert other.post("/api/v1/models", json={"name": "x", "architecture": "resnet18", "from_model": model["id"]}).status_code == 422
    assert api.as_(tokens["read"]).get(f"/api/v1/models/{model['id']}/artifact").status_code == 404
