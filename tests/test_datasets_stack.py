"""Registered data sets on the real stack (gunicorn API, scheduler, process instances; SQLite and
PostgreSQL): a work process refuses files that changed since their version was taken, and an image
classifier trains on separate data sets per subset."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.generated_images import shape_image, write_shapes
from tests.test_cli import run as run_cli
from tests.test_pipeline import wait_status
from trainfaas.services.cli.main import main

pytestmark = pytest.mark.stack

FAST = {"max_steps": 2, "batch_size": 4, "input_size": 16, "warmup_steps": 0, "eval_every_steps": 2}


def test_a_training_fails_before_reading_when_its_versions_files_changed_and_names_them(stack: Any, tmp_path: Path) -> None:
    folder = write_shapes(tmp_path / "shapes", classes=2, side=16, train=4, validation=2)
    stack.client.register_dataset("shapes", str(folder))
    (folder / "train" / "circle" / "0000.png").write_bytes(b"not the image the version holds")
    (folder / "validation" / "square" / "0001.png").unlink()
    model = stack.client.create_model("changed", "resnet18")
    execution = stack.client.train(model["id"], dataset="shapes@1", configuration=FAST)

    final = wait_status(stack, execution["id"], "success", "failed", "aborted", timeout_s=180)

    assert final["status"] == "failed", final
    assert "data set shapes@1 changed: 2 files differ, e.g. train/circle/0000.png" in final["error"], final["error"]
    assert final["input"]["dataset_versions"]["all"]["number"] == 1
    taken = stack.client.take_dataset_version("shapes")
    assert (taken["created"], taken["number"]) == (True, 2)


def test_an_image_classifier_trains_on_separate_data_sets_per_subset(stack: Any, tmp_path: Path) -> None:
    rng = random.Random(0)
    for name, count in (("tr", 4), ("va", 2)):
        for shape in ("circle", "square"):
            (tmp_path / name / shape).mkdir(parents=True)
            for index in range(count):
                shape_image(shape, 16, rng).save(tmp_path / name / shape / f"{index}.png")
        stack.client.register_dataset(name, str(tmp_path / name))
    model = stack.client.create_model("split", "resnet18")
    execution = stack.client.train(model["id"], datasets={"train": "tr@1", "validation": "va"}, configuration=FAST)

    final = wait_status(stack, execution["id"], "success", "failed", "aborted", timeout_s=300)

    assert final["status"] == "success", (final["error"], final["traceback"])
    assert stack.client.get_model(model["id"])["labels"] == ["circle", "square"]
    assert {k: v["reference"] for k, v in final["input"]["dataset_versions"].items()} == {"train": "tr@1", "validation": "va@1"}


@pytest.mark.parametrize("stack_settings", ["local"], indirect=True)
def test_the_datasets_commands_register_version_alias_compare_constrain_and_delete(stack: Any, tmp_path: Path) -> None:
    folder = write_shapes(tmp_path / "cli", classes=2, side=16, train=3, validation=1)
    assert "version 1, image-folder, 8 files" in run(stack, "datasets", "register", "cli", str(folder)).output
    (folder / "train" / "circle" / "0000.png").write_bytes(b"changed")
    taken = run(stack, "datasets", "versions", "cli", "--take").output
    assert "version 2 taken" in taken and "circle 3" in taken
    assert "unchanged" in run(stack, "datasets", "versions", "cli", "--take").output
    assert "train=1" in run(stack, "datasets", "alias", "cli", "train", "1").output
    assert "~ train/circle/0000.png" in run(stack, "datasets", "diff", "cli", "train", "latest").output
    shown = run(stack, "datasets", "show", "cli@train", "--files", "2").output
    assert "version 1" in shown and "train/circle/0000.png" in shown
    assert "cli" in run(stack, "datasets", "list").output
    assert '"min_per_label": 2' in run(stack, "datasets", "constraints", "cli", "--min-per-label", "2").output
    assert "none" in run(stack, "datasets", "constraints", "--project", "default").output
    queued = json.loads(run(stack, "train", "-a", "resnet18", "-d", "cli@train", "-c", "max_steps=1", "--json").output)
    assert "data set       cli@1 digest" in run(stack, "executions", "show", queued["id"]).output
    run(stack, "executions", "terminate", queued["id"])
    wait_status(stack, queued["id"], "success", "failed", "aborted", "terminated", timeout_s=180)
    refused = CliRunner().invoke(main, ["datasets", "delete", "cli"], env=_env(stack))
    assert refused.exit_code != 0 and queued["id"] in refused.output
    assert "versions kept" in run(stack, "datasets", "delete", "cli", "--force").output
    assert "cli" in run(stack, "datasets", "list", "--deleted").output


def run(stack: Any, *args: str) -> Any:
    return run_cli(stack, *args, columns=200)


def _env(stack: Any) -> dict[str, str]:
    return {"TRAINFAAS_HOME": str(stack.settings.home), "TRAINFAAS_API_URL": stack.settings.api_url, "TRAINFAAS_TOKEN": "", "COLUMNS": "200"}
