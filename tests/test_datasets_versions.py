"""Registered data sets through the real API on SQLite and PostgreSQL: versions and their manifests,
aliases, diffs, projects and shares, deletion, and the hostile inputs each must refuse."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import _server_redis_url
from tests.test_api_access import project_tokens
from trainfaas.services.store.records import Dataset, DatasetAlias, DatasetVersion


@pytest.fixture
def redis_url() -> Iterator[str]:
    """One Redis (the test server's): nothing here depends on which kind it is."""
    url = _server_redis_url()
    redis.Redis.from_url(url).flushdb()
    yield url


def write_folder(root: Path, counts: dict[str, dict[str, int]]) -> Path:
    """``root/<subset>/<label>/<n>.png`` with ``counts[subset][label]`` small distinct files."""
    for subset, labels in counts.items():
        for label, count in labels.items():
            folder = root / subset / label
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                (folder / f"{index}.png").write_bytes(f"{subset}/{label}/{index}".encode())
    return root


def data_root(api: Any) -> Path:
    root = api.settings.dataset_roots[0]
    root.mkdir(parents=True, exist_ok=True)
    return root


def shapes(api: Any, name: str = "shapes") -> Path:
    return write_folder(data_root(api) / name, {"train": {"a": 3, "b": 2}, "validation": {"a": 1, "b": 1}})


def register(client: Any, name: str, path: str | Path, **extra: Any) -> Any:
    return client.post("/api/v1/datasets", json={"name": name, "path": str(path), **extra})


def test_registering_takes_version_one_with_every_file_its_labels_counts_format_and_digest(api: Any) -> None:
    folder = shapes(api)
    response = register(api.client, "shapes", folder)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["name"], body["project"], body["versions"], body["aliases"]) == ("shapes", "default", 1, {"latest": 1})
    latest = body["latest"]
    assert latest["format"] == "image-folder" and latest["files"] == 7
    assert latest["subsets"] == {"train": {"a": 3, "b": 2}, "validation": {"a": 1, "b": 1}}
    version = api.client.get(f"/api/v1/datasets/{body['id']}/versions/1").get_json()
    first = ["train/a/0.png", len(b"train/a/0"), hashlib.sha256(b"train/a/0").hexdigest()]
    assert version["manifest"][0] == first and len(version["manifest"]) == 7 and version["digest"] == latest["digest"]
    paged = api.client.get("/api/v1/datasets/shapes/versions/1", query_string={"offset": 6})
    assert paged.status_code == 200 and paged.get_json()["manifest_offset"] == 6, paged.get_json()
    again = register(api.client, "shapes", folder)
    assert again.status_code == 409 and "name" in again.get_json()["error"]["fields"]


def test_a_new_version_is_taken_only_when_the_files_changed_and_versions_compare(api: Any) -> None:
    folder = shapes(api)
    dataset = register(api.client, "shapes", folder).get_json()
    same = api.client.post(f"/api/v1/datasets/{dataset['id']}/versions")
    assert same.status_code == 200 and same.get_json()["created"] is False and same.get_json()["number"] == 1
    (folder / "train" / "a" / "0.png").write_bytes(b"changed")
    (folder / "train" / "b" / "1.png").unlink()
    write_folder(folder, {"train": {"c": 2}})
    taken = api.client.post("/api/v1/datasets/shapes/versions").get_json()
    assert (taken["created"], taken["number"]) == (True, 2)
    assert DatasetVersion.select().count() == 2
    listed = api.client.get("/api/v1/datasets/shapes/versions").get_json()["items"]
    assert [(v["number"], v["aliases"]) for v in listed] == [(2, ["latest"]), (1, [])]
    diff = api.client.get("/api/v1/datasets/shapes/diff", query_string={"from": "1", "to": "latest"}).get_json()
    assert diff["files_added"] == ["train/c/0.png", "train/c/1.png"] and diff["files_removed"] == ["train/b/1.png"]
    assert diff["files_changed"] == ["train/a/0.png"] and diff["labels_added"] == ["c"] and diff["labels_removed"] == []
    assert {"subset": "train", "label": "b", "from": 2, "to": 1} in diff["counts_changed"]
    missing = api.client.get("/api/v1/datasets/shapes/diff", query_string={"from": "1", "to": "9"})
    assert missing.status_code == 404 and "version" in missing.get_json()["error"]["fields"]


def test_aliases_name_versions_latest_follows_the_newest_and_odd_names_are_refused(api: Any) -> None:
    folder = shapes(api)
    register(api.client, "shapes", folder)
    (folder / "train" / "a" / "9.png").write_bytes(b"new")
    api.client.post("/api/v1/datasets/shapes/versions")
    assert api.client.put("/api/v1/datasets/shapes/aliases/train", json={"version": 1}).get_json()["aliases"] == {"latest": 2, "train": 1}
    moved = api.client.put("/api/v1/datasets/shapes/aliases/train", json={"version": 2}).get_json()
    assert moved["aliases"] == {"latest": 2, "train": 2}
    assert api.client.put("/api/v1/datasets/shapes/aliases/2026-q4", json={"version": 1}).status_code == 200
    assert api.client.get("/api/v1/datasets/shapes/versions/2026-q4").get_json()["number"] == 1
    assert api.client.delete("/api/v1/datasets/shapes/aliases/2026-q4").get_json()["aliases"] == {"latest": 2, "train": 2}
    assert api.client.delete("/api/v1/datasets/shapes/aliases/2026-q4").status_code == 404
    for odd in ("latest", "1", "-x", "a b", "é", "x" * 65, "a@b"):
        response = api.client.put(f"/api/v1/datasets/shapes/aliases/{odd}", json={"version": 1})
        assert response.status_code == 422 and "alias" in response.get_json()["error"]["fields"], odd
    assert api.client.put("/api/v1/datasets/shapes/aliases/x", json={"version": 7}).status_code == 404
    for odd in ("²", "١", "9" * 30, "-1"):  # digits of other scripts, and numbers past any column
        assert api.client.get(f"/api/v1/datasets/shapes/versions/{odd}").status_code == 404, odd
    assert api.client.delete("/api/v1/datasets/shapes/aliases/latest").status_code == 422
    assert DatasetAlias.select().count() == 1


@pytest.mark.parametrize("path", ["../../etc", "/etc", "/", "missing-folder"])
def test_a_path_outside_the_data_roots_or_missing_is_refused_naming_path_and_leaves_no_trace(api: Any, path: str) -> None:
    data_root(api)
    response = register(api.client, "x", path)
    assert response.status_code == 422 and "path" in response.get_json()["error"]["fields"], response.get_json()
    assert Dataset.select().count() == 0


def test_a_symlink_leaving_the_data_set_is_refused_and_one_added_later_makes_no_version(api: Any, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("admin token")
    folder = shapes(api)
    os.symlink(secret, folder / "train" / "a" / "leak.png")
    response = register(api.client, "shapes", folder)
    assert response.status_code == 422 and "train/a/leak.png" in response.get_json()["error"]["fields"]["path"]
    assert "admin token" not in response.get_data(as_text=True) and Dataset.select().count() == 0
    (folder / "train" / "a" / "leak.png").unlink()
    os.symlink(folder / "train" / "a" / "0.png", folder / "train" / "a" / "inside.png")  # a link that stays inside is read
    assert register(api.client, "shapes", folder).status_code == 201
    os.symlink(tmp_path, folder / "train" / "out")
    refused = api.client.post("/api/v1/datasets/shapes/versions")
    assert refused.status_code == 422 and DatasetVersion.select().count() == 1


@pytest.mark.parametrize("limit, value, named", [("dataset_version_max_files", 3, "TRAINFAAS_DATASET_VERSION_MAX_FILES"),
                                                 ("dataset_version_max_bytes", 20, "TRAINFAAS_DATASET_VERSION_MAX_BYTES")])
def test_a_tree_over_the_walk_budget_is_refused_naming_the_limit(api: Any, limit: str, value: int, named: str) -> None:
    folder = shapes(api)
    setattr(api.settings, limit, value)
    response = register(api.client, "shapes", folder)
    assert response.status_code == 422 and named in response.get_json()["error"]["fields"]["path"]
    assert Dataset.select().count() == 0


@pytest.mark.parametrize("name", ["a b", "x/y", "-lead", "n@1", "é", "x" * 101])
def test_an_odd_data_set_name_is_refused(api: Any, name: str) -> None:
    response = register(api.client, name, shapes(api))
    assert response.status_code == 422 and "name" in response.get_json()["error"]["fields"]


def test_another_projects_data_set_is_not_found_until_an_admin_shares_it_read_only(api: Any) -> None:
    tokens_a, tokens_b = project_tokens(api, "a"), project_tokens(api, "b")
    a_write, b_write = api.as_(tokens_a["write"]), api.as_(tokens_b["write"])
    dataset = register(a_write, "shapes", shapes(api)).get_json()
    assert dataset["project"] == "a"
    for path in (dataset["id"], dataset["id"][:6], "shapes", f"{dataset['id']}/versions", f"{dataset['id']}/versions/1",
                 f"{dataset['id']}/diff?from=1&to=1"):
        assert b_write.get(f"/api/v1/datasets/{path}").status_code == 404, path
    assert b_write.put(f"/api/v1/datasets/{dataset['id']}/aliases/x", json={"version": 1}).status_code == 404
    assert b_write.delete(f"/api/v1/datasets/{dataset['id']}").status_code == 404
    assert b_write.get("/api/v1/datasets").get_json()["items"] == []
    assert a_write.post(f"/api/v1/datasets/{dataset['id']}/shares", json={"project": "b"}).status_code == 403
    shared = api.client.post(f"/api/v1/datasets/{dataset['id']}/shares", json={"project": "b"})
    assert shared.status_code == 200 and shared.get_json()["shared_with"] == ["b"]
    assert b_write.get("/api/v1/datasets/shapes").get_json()["id"] == dataset["id"]
    assert b_write.get(f"/api/v1/datasets/{dataset['id']}/versions/latest").status_code == 200
    for response in (b_write.put(f"/api/v1/datasets/{dataset['id']}/aliases/x", json={"version": 1}),
                     b_write.post(f"/api/v1/datasets/{dataset['id']}/versions"), b_write.delete(f"/api/v1/datasets/{dataset['id']}"),
                     b_write.put(f"/api/v1/datasets/{dataset['id']}/constraints", json={"min_per_label": 1})):
        assert response.status_code == 403, response.get_json()
    assert api.client.post(f"/api/v1/datasets/{dataset['id']}/shares", json={"project": "nope"}).status_code == 404
    assert api.client.delete(f"/api/v1/datasets/{dataset['id']}/shares/b").get_json()["shared_with"] == []
    assert b_write.get(f"/api/v1/datasets/{dataset['id']}").status_code == 404


def test_the_data_set_tables_are_added_to_a_database_written_before_them(api: Any) -> None:
    from trainfaas.services.store.database import database
    from trainfaas.services.store.migrations import SchemaVersion, migrate
    from trainfaas.services.store.records import DATASET_ENTITIES, Project

    database.obj.drop_tables(DATASET_ENTITIES)
    SchemaVersion.delete().where(SchemaVersion.version == 13).execute()
    assert migrate() == [13] and migrate() == []
    assert all(entity.table_exists() for entity in DATASET_ENTITIES) and Project.select().count() >= 1
    assert register(api.client, "shapes", shapes(api)).status_code == 201


def test_the_check_before_a_training_names_each_changed_removed_added_or_linked_out_file_once(tmp_path: Path) -> None:
    from trainfaas.adapters.manifest import Budget, differences, take

    folder = write_folder(tmp_path / "d", {"train": {"a": 3}})
    manifest = take(folder, Budget(100, 10**6, 60))
    assert differences(folder, manifest.files) == (0, [])
    (folder / "train" / "a" / "0.png").write_bytes(b"train/a/X")  # same size, other bytes
    (folder / "train" / "a" / "1.png").unlink()
    os.symlink(tmp_path, folder / "train" / "a" / "2.png.tmp")
    (folder / "train" / "a" / "2.png").unlink()
    os.symlink(tmp_path / "elsewhere.png", folder / "train" / "a" / "2.png")
    (folder / ".hidden").write_bytes(b"skipped")
    assert differences(folder, manifest.files) == (4, ["train/a/0.png", "train/a/1.png", "train/a/2.png", "train/a/2.png.tmp"])


def test_a_name_too_long_or_an_unreadable_folder_is_a_422_naming_path(api: Any) -> None:
    data_root(api)
    assert register(api.client, "long", "x" * 300).status_code == 422
    folder = shapes(api)
    (folder / "train" / "a").chmod(0)
    try:
        response = register(api.client, "shapes", folder)
        readable = os.access(folder / "train" / "a", os.R_OK)  # root reads it anyway
        assert response.status_code == (201 if readable else 422), response.get_json()
    finally:
        (folder / "train" / "a").chmod(0o755)
