"""Importing a downloaded model archive back, through the real app (SQLite, embedded Redis): the archive
``GET /models/<id>/artifact`` writes is taken unchanged by ``POST /models/import`` and becomes a
pre-trained model with the same architecture, labels and configuration that predicts as the original
did and says where it came from; an archive changed since its download, one whose members escape
(``..``, an absolute path, a link) and one larger than allowed are refused naming ``archive`` and
leave no row and no file. The stack tests (tests/test_checkpoint_models.py) round-trip trained models."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.test_model_import import imported_folders, state_file
from trainfaas.services.control import archives
from trainfaas.services.core.errors import ConfigError
from trainfaas.services.store.records import Model

# What is checked here is the reading of an archive: one database and one Redis are enough
# (tests/test_model_import.py runs the import endpoint on every pair).
pytestmark = [pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
              pytest.mark.parametrize("redis_url", ["embedded"], indirect=True)]


def upload_archive(client: Any, data: bytes, name: str = "model.tar.gz", **fields: Any) -> Any:
    return client.post("/api/v1/models/import", data={**fields, "weights": (io.BytesIO(data), name)}, content_type="multipart/form-data")


def downloaded(api: Any, model_id: str) -> bytes:
    response = api.client.get(f"/api/v1/models/{model_id}/artifact")
    assert response.status_code == 200, response.get_json()
    return bytes(response.data)


def rewritten(data: bytes, change: Any) -> bytes:
    """The archive with ``change(name, bytes)`` applied to each member (None drops it), manifest unchanged unless changed."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as source, tarfile.open(fileobj=out, mode="w:gz") as target:
        for member in source.getmembers():
            content = change(member.name, source.extractfile(member).read())  # type: ignore[union-attr]
            if content is not None:
                info = tarfile.TarInfo(member.name)
                info.size = len(content)
                target.addfile(info, io.BytesIO(content))
    return out.getvalue()


def with_member(data: bytes, info: tarfile.TarInfo, content: bytes = b"") -> bytes:
    """The archive with one more member (a link, a path that escapes) before its manifest."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as source, tarfile.open(fileobj=out, mode="w:gz") as target:
        target.addfile(info, io.BytesIO(content) if info.isfile() else None)
        for member in source.getmembers():
            target.addfile(member, source.extractfile(member))
    return out.getvalue()


def squeezenet(api: Any) -> dict[str, Any]:
    """A pre-trained squeezenet1_1 (an imported state dict) with a configuration of its own."""
    state_file(Path(api.settings.home) / "data" / "weights", architecture="squeezenet1_1", classes=3, name="sq.pt")
    response = api.client.post("/api/v1/models/import", json={"architecture": "squeezenet1_1", "path": "weights/sq.pt",
                                                               "labels": ["cat", "dog", "owl"], "name": "sq"})
    assert response.status_code == 201, response.get_json()
    Model.update(configuration={"epochs": 2, "input_size": 32}, metrics={"val_accuracy": 0.5}).where(
        Model.id == response.get_json()["id"]).execute()
    return dict(api.client.get(f"/api/v1/models/{response.get_json()['id']}").get_json())


def predictions(architecture: str, folder: str) -> list[Any]:
    from trainfaas.adapters.torchvision_classification import TorchvisionClassification

    adapter = TorchvisionClassification(architecture)
    adapter.load(Path(folder))
    images = [Image.new("RGB", (40, 40), colour) for colour in ("white", "red", "navy")]
    return adapter.predict(images)


def test_a_downloaded_archive_imports_unchanged_and_predicts_as_the_original(api: Any, no_network: list[str]) -> None:
    original = squeezenet(api)
    data = downloaded(api, original["id"])
    response = upload_archive(api.client, data, "sq-download.tar.gz")
    assert response.status_code == 201, response.get_json()
    imported = response.get_json()
    assert (imported["status"], imported["architecture"], imported["labels"], imported["configuration"], imported["name"]) == (
        "pre-trained", "squeezenet1_1", ["cat", "dog", "owl"], {"epochs": 2, "input_size": 32}, "sq")
    assert imported["metrics"] == {"val_accuracy": 0.5}
    assert "archive sq-download.tar.gz" in imported["imported_from"] and original["id"] in imported["imported_from"]
    assert predictions("squeezenet1_1", original["artifact_path"]) == predictions("squeezenet1_1", imported["artifact_path"])
    assert sorted(imported_folders(api)) == sorted([original["id"], imported["id"]])  # no staging folder or upload left
    assert Model.get_by_id(imported["id"]).status == "pre-trained"  # as the original was: imported, never trained here

    (Path(api.settings.home) / "data" / "sq.tar.gz").write_bytes(data)
    by_path = api.client.post("/api/v1/models/import", json={"path": "sq.tar.gz", "name": "sq-by-path"})
    assert by_path.status_code == 201 and by_path.get_json()["labels"] == ["cat", "dog", "owl"], by_path.get_json()
    assert predictions("squeezenet1_1", by_path.get_json()["artifact_path"]) == predictions("squeezenet1_1", original["artifact_path"])

    wrong = upload_archive(api.client, data, architecture="resnet18")
    assert wrong.status_code == 422 and "architecture" in wrong.get_json()["error"]["fields"], wrong.get_json()
    labelled = upload_archive(api.client, data, labels=["a", "b", "c"])
    assert labelled.status_code == 422 and "labels" in labelled.get_json()["error"]["fields"]


def refused_leaving_nothing(api: Any, data: bytes, says: str) -> None:
    before_rows, before_files = Model.select().count(), imported_folders(api)
    response = upload_archive(api.client, data)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert "archive" in error["fields"] and says in error["message"], error
    assert (Model.select().count(), imported_folders(api)) == (before_rows, before_files)


def test_an_archive_changed_since_its_download_is_refused_and_leaves_nothing(api: Any) -> None:
    data = downloaded(api, squeezenet(api)["id"])

    def flip(name: str, content: bytes) -> bytes:
        return content[:-1] + bytes([content[-1] ^ 1]) if name == "model/model.pt" else content

    refused_leaving_nothing(api, rewritten(data, flip), "not those its manifest lists")

    def forge(name: str, content: bytes) -> bytes:
        if name != "manifest.json":
            return content
        manifest = json.loads(content)
        manifest["content_sha256"] = "0" * 64
        return json.dumps(manifest).encode()

    refused_leaving_nothing(api, rewritten(data, forge), "content_sha256")
    refused_leaving_nothing(api, rewritten(data, lambda name, content: None if name == "manifest.json" else content), "no manifest")
    refused_leaving_nothing(api, data[: len(data) // 2], "not a readable tar.gz")


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def plain(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


@pytest.mark.parametrize(("member", "says"), [
    (plain("model/../../escaped.txt", 4), "not a plain relative path"),
    (plain("/tmp/escaped.txt", 4), "not a plain relative path"),
    (plain("elsewhere/escaped.txt", 4), "outside model/"),
    (link("model/passwd", "/etc/passwd"), "link"),
    (link("model/model.pt", "/etc/passwd", tarfile.LNKTYPE), "link"),
], ids=["dot-dot", "absolute", "outside-model", "symlink", "hardlink"])
def test_an_archive_member_that_escapes_is_refused_and_writes_nothing(api: Any, member: tarfile.TarInfo, says: str) -> None:
    data = downloaded(api, squeezenet(api)["id"])
    refused_leaving_nothing(api, with_member(data, member, b"evil"), says)
    home = Path(api.settings.home)
    assert not list(home.rglob("escaped.txt")) and not Path("/tmp/escaped.txt").exists()


def test_an_archive_larger_than_allowed_or_of_too_many_members_is_refused(api: Any, short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = downloaded(api, squeezenet(api)["id"])
    (short_tmp / "in.tar.gz").write_bytes(data)
    with pytest.raises(ConfigError, match="more than 1000 bytes") as refused:
        archives.read_archive(short_tmp / "in.tar.gz", short_tmp / "out-1", max_bytes=1000)
    assert "archive" in refused.value.fields
    monkeypatch.setattr(archives, "MAX_MEMBERS", 1)
    with pytest.raises(ConfigError, match="more than 1 members"):
        archives.read_archive(short_tmp / "in.tar.gz", short_tmp / "out-2", max_bytes=10**9)
    monkeypatch.undo()
    manifest = archives.read_archive(short_tmp / "in.tar.gz", short_tmp / "out-3", max_bytes=10**9)
    assert manifest["architecture"] == "squeezenet1_1" and (short_tmp / "out-3" / "model" / "model.pt").is_file()
