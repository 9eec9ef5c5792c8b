"""The architecture catalog: figures computed from the real models, cached, served by the API."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from torchvision import models as tv_models

from trainfaas.adapters import architectures as arch
from trainfaas.adapters.catalog import catalog
from trainfaas.services.core.errors import ConfigError, NotFound


@pytest.fixture(scope="module")
def rows() -> dict[str, dict[str, Any]]:
    """The catalog, measured into (or read from) the user's cache, which every stack shares."""
    return {row["architecture"]: row for row in arch.architectures()}


@pytest.fixture
def cache_home(rows: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the cache in a home of its own, for tests that change it."""
    copy = tmp_path / "trainfaas" / "architectures.json"
    copy.parent.mkdir()
    copy.write_bytes(arch.cache_path().read_bytes())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [(0, "small"), (9_999_999, "small"), (10_000_000, "medium"), (30_000_000, "medium"), (30_000_001, "large"), (None, None)],
)
def test_size_classes_follow_the_documented_bounds(parameters: int | None, expected: str | None) -> None:
    assert arch.size_class(parameters) == expected


def test_every_architecture_of_every_adapter_is_listed_with_its_service(rows: dict[str, dict[str, Any]]) -> None:
    assert set(rows) == set(catalog())
    for name in tv_models.list_models(module=tv_models):
        assert rows[name]["task"] == "classification" and rows[name]["service"] == f"mgmt-train-{name}"


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "vit_b_16"])
def test_parameters_and_checkpoint_size_are_those_of_the_real_reference_model(rows: dict[str, dict[str, Any]], name: str) -> None:
    model = tv_models.get_model(name, weights=None, num_classes=1000)
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    row = rows[name]
    assert row["parameters"] == parameters
    assert row["size_class"] == arch.size_class(parameters)
    # torch.save adds a little framing to the raw tensor bytes the catalog counts.
    assert row["checkpoint_mb"] == pytest.approx(buffer.tell() / 1e6, rel=0.01)


def test_models_without_weights_have_no_figures_and_every_other_model_has_them(rows: dict[str, dict[str, Any]]) -> None:
    assert rows["sleep"]["parameters"] is None and rows["sleep"]["size_class"] is None
    unmeasured = [name for name, row in rows.items() if row["parameters"] is None and row["task"] != "diagnostic"]
    assert not unmeasured
    assert all(row["checkpoint_mb"] > 0 and row["size_class"] for row in rows.values() if row["task"] != "diagnostic")


def test_the_figures_are_cached_and_recomputed_when_the_libraries_change(rows: dict[str, dict[str, Any]], cache_home: Path) -> None:
    saved = json.loads(arch.cache_path().read_text())
    [resnet18] = [key for key in saved["figures"] if key.startswith(rows["resnet18"]["adapter"] + "@") and key.endswith(":resnet18")]
    assert arch.cache_is_current() and saved["figures"][resnet18]["parameters"] == rows["resnet18"]["parameters"]
    # A figure written under other library versions is not trusted.
    saved["key"]["versions"]["torch"] = "0.0.0"
    saved["figures"][resnet18]["parameters"] = 1
    arch.cache_path().write_text(json.dumps(saved))
    assert not arch.cache_is_current()
    assert arch.architectures(names=["resnet18"])[0]["parameters"] == rows["resnet18"]["parameters"]
    assert arch.cache_is_current()


def test_unknown_tasks_and_names_are_refused_naming_what_exists(rows: dict[str, dict[str, Any]]) -> None:
    with pytest.raises(ConfigError) as refused:
        arch.architectures(task="telepathy")
    assert "classification" in refused.value.fields["task"]
    with pytest.raises(NotFound):
        arch.architectures(names=["resnet9000"])


def test_the_api_lists_filters_pages_and_describes_architectures_with_their_options(api: Any, rows: dict[str, dict[str, Any]]) -> None:
    client = api.client
    listed = client.get("/api/v1/architectures?task=classification&limit=500").get_json()["items"]
    assert {row["architecture"] for row in listed} == {n for n, r in rows.items() if r["task"] == "classification"}
    assert [row["architecture"] for row in client.get("/api/v1/architectures?task=classification&q=RESNET1").get_json()["items"]] == ["resnet101", "resnet152", "resnet18", "wide_resnet101_2"]
    assert [row["architecture"] for row in client.get("/api/v1/architectures?q=RESNET1").get_json()["items"]] == [
        "resnet101", "resnet152", "resnet18", "wide_resnet101_2", "deeplabv3_resnet101", "fcn_resnet101"]
    first = client.get("/api/v1/architectures?limit=7").get_json()
    second = client.get(f"/api/v1/architectures?limit=500&cursor={first['next_cursor']}").get_json()
    assert [row["architecture"] for row in first["items"] + second["items"]] == [row["architecture"] for row in client.get("/api/v1/architectures?limit=500").get_json()["items"]]
    assert second["next_cursor"] is None and client.get("/api/v1/architectures?cursor=zz").status_code == 422
    assert api.as_(None).get("/api/v1/architectures").status_code == 401
    described = client.get("/api/v1/architectures/resnet18").get_json()
    assert described["parameters"] == rows["resnet18"]["parameters"]
    epochs = described["options"]["properties"]["epochs"]  # optional (the quick start chooses): an integer or null
    assert [part.get("minimum") for part in epochs["anyOf"]] == [1, None] and epochs["default"] is None
    response = client.get("/api/v1/architectures?task=telepathy")
    assert response.status_code == 422 and "task" in response.get_json()["error"]["fields"]
    assert client.get("/api/v1/architectures/resnet9000").status_code == 404


def test_the_cli_prints_the_catalog_and_an_adapters_options(stack: Any, rows: dict[str, dict[str, Any]]) -> None:
    from trainfaas.services.cli.main import main

    env = {"TRAINFAAS_API_URL": stack.settings.api_url, "TRAINFAAS_HOME": str(stack.settings.home)}
    printed = CliRunner().invoke(main, ["architectures", "--task", "classification", "--json"], env=env)
    assert printed.exit_code == 0, printed.output
    assert {row["architecture"] for row in json.loads(printed.output)} == {n for n, r in rows.items() if r["task"] == "classification"}
    table = CliRunner().invoke(main, ["architectures", "--options", "resnet18"], env=env)
    assert table.exit_code == 0 and "label_smoothing" in table.output
    unknown = CliRunner().invoke(main, ["architectures", "--options", "resnet9000"], env=env)
    assert unknown.exit_code == 1 and "resnet9000" in unknown.output
