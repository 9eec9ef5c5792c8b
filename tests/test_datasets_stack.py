"""Registered data sets on the real stack (gunicorn API, scheduler, process instances; SQLite and
PostgreSQL): a work process refuses files that changed since their version was taken, and an image
classifier trains on separate data sets per subset."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tests.generated_images import shape_image, write_shapes
from tests.test_pipeline import wait_status

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
