"""Downloading a model as a tar.gz with its manifest, on SQLite and PostgreSQL: the files of the
model's folder and their sha256, never a file outside it (links planted in the folder are left out
and named), 409 for a model without weights, 404 for another project's; and on the real stack the
CLI downloads a model its training saved and imports an uploaded state dict."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.generated_images import write_shapes
from tests.test_api_access import project_tokens
from tests.test_pipeline import wait_status
from trainfaas.services.cli.main import main
from trainfaas.services.store.records import Artifact, Execution, Model, Service


def saved_model(api: Any, folder: Path, project: str = "default") -> Model:
    """A model trained by a recorded training, whose folder holds weights, a sub-folder, and planted links."""
    (folder / "sub").mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"weights" * 1000)
    (folder / "sub" / "info.json").write_text('{"a": 1}')
    secret = folder.parent / "secret.txt"
    secret.write_text("not yours")
    os.symlink(secret, folder / "stolen.txt")
    os.symlink(folder.parent, folder / "up")
    os.symlink("/etc/passwd", folder / "sub" / "passwd")
    model = Model.create(name="m", architecture="sleep", task="diagnostic", labels=["a", "b"], configuration={"steps": 2},
                         status="trained", artifact_path=str(folder), metrics={"loss": 0.25}, project=project)
    service = Service.create(name="mgmt-train-sleep", architecture="sleep")
    execution = Execution.create(service=service, model=model, function="train_model", status="success", project=project,
                                 timeout_s=60, drain_time_s=5, on_reset="fail", max_attempts=1)
    Artifact.create(execution=execution, attempt=1, kind="model", path=str(folder))
    model.source_execution = execution.id
    return model


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        found = {}
        for member in tar.getmembers():
            assert member.isfile(), member.name  # no links, no devices, no folders to escape through
            found[member.name] = tar.extractfile(member).read()  # type: ignore[union-attr]
        return found


def test_a_model_downloads_as_its_files_and_a_manifest_with_their_digests(api: Any, short_tmp: Path) -> None:
    model = saved_model(api, short_tmp / "out" / "model")
    response = api.client.get(f"/api/v1/models/{model.id[:8]}/artifact")
    assert response.status_code == 200 and response.mimetype == "application/gzip"
    files = members(response.data)
    assert sorted(files) == ["manifest.json", "model/model.pt", "model/sub/info.json"]
    manifest = json.loads(files["manifest.json"])
    assert (manifest["architecture"], manifest["task"], manifest["labels"], manifest["configuration"], manifest["metrics"]) == (
        "sleep", "diagnostic", ["a", "b"], {"steps": 2}, {"loss": 0.25})
    assert manifest["source"]["execution"] == model.source_execution
    assert manifest["skipped"] == ["stolen.txt", "sub/passwd", "up"]
    for entry in manifest["files"]:
        assert entry["sha256"] == hashlib.sha256(files[entry["path"]]).hexdigest()
    lines = "".join(f"{e['sha256']}  {e['path']}\n" for e in sorted(manifest["files"], key=lambda e: e["path"]))
    assert manifest["content_sha256"] == hashlib.sha256(lines.encode()).hexdigest()
    assert b"not yours" not in response.data and b"root:" not in b"".join(files.values())


def test_a_model_without_weights_is_a_conflict_and_another_projects_is_not_found(api: Any, short_tmp: Path) -> None:
    created = api.client.post("/api/v1/models", json={"name": "new", "architecture": "sleep"}).get_json()
    response = api.client.get(f"/api/v1/models/{created['id']}/artifact")
    assert response.status_code == 409 and "status" in response.get_json()["error"]["fields"], response.get_json()
    model = saved_model(api, short_tmp / "out" / "model")
    reader = api.as_(project_tokens(api, "other")["read"])
    assert reader.get(f"/api/v1/models/{model.id}/artifact").status_code == 404
    assert api.client.get("/api/v1/models/nope/artifact").status_code == 404


@pytest.mark.stack
@pytest.mark.parametrize("stack_settings", ["local"], indirect=True)
def test_the_cli_downloads_a_trained_model_and_imports_weights(stack: Any, tmp_path: Path) -> None:
    env = {"TRAINFAAS_HOME": str(stack.settings.home), "TRAINFAAS_API_URL": stack.settings.api_url, "COLUMNS": "100"}

    def cli(*args: str) -> Any:
        result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    model = stack.client.create_model("drill", "sleep", configuration={"seconds": 0.05, "steps": 2})
    execution = stack.client.train(model["id"])
    wait_status(stack, execution["id"], "success")
    cli("models", "download", model["id"][:12], "-o", str(tmp_path / "drill.tar.gz"))
    files = members((tmp_path / "drill.tar.gz").read_bytes())
    manifest = json.loads(files["manifest.json"])
    assert manifest["source"]["execution"] == execution["id"] and len(files) == len(manifest["files"]) + 1

    import torch
    import torchvision

    torch.save(torchvision.models.resnet18(num_classes=2).state_dict(), tmp_path / "r18.pt")
    imported = json.loads(cli("models", "import", "-a", "resnet18", "-w", str(tmp_path / "r18.pt"), "--labels", "yes,no", "--json"))
    assert (imported["status"], imported["labels"], imported["name"]) == ("pre-trained", ["yes", "no"], "r18")
    cli("models", "download", imported["id"], "-o", str(tmp_path / "r18.tar.gz"))
    assert sorted(members((tmp_path / "r18.tar.gz").read_bytes())) == ["manifest.json", "model/model.pt"]

    write_shapes(tmp_path / "shapes", classes=2, side=24, train=3, validation=1)
    tuned = json.loads(cli("train", "-a", "resnet18", "-d", str(tmp_path / "shapes"), "--from-model", imported["id"], "--epochs", "1",
                           "-c", "input_size=32", "--json"))
    wait_status(stack, tuned["id"], "success", timeout_s=300)
    assert any("fine-tuning from" in line["line"] for line in stack.client.logs(tuned["id"]))
