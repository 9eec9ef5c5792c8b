"""What was written before the namespace and layout change still works after it.

The fixtures in ``tests/fixtures/v0_1/`` were written by trainfaas 0.1.0 as it was before the
``trainfaas.*`` namespace (commit 579f9a3): a classification checkpoint of squeezenet1_1 after
step 7 of a 10-step run on the small digits set, the figures of the uninterrupted run, and a
SQLite database with a row in every table.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from adapter_support import events, first_images

from trainfaas.adapters import NullContext
from trainfaas.adapters.datasets import write_digits
from trainfaas.adapters.torchvision_classification import TorchvisionClassification
from trainfaas.services.store import records
from trainfaas.services.store.database import database, open_database
from trainfaas.services.store.migrations import migrate

FIXTURES = Path(__file__).parent / "fixtures" / "v0_1"


def small_digits(root: Path) -> Path:
    """The same 8 training and 3 validation images per label the fixture was trained on."""
    return first_images(Path(write_digits(root / "sample" / "digits")["path"]), root / "small" / "digits")


def test_a_checkpoint_written_before_the_change_resumes_to_the_same_weights(tmp_path: Path, no_network: list[str]) -> None:
    expected = json.loads((FIXTURES / "classification-squeezenet1_1-expected.json").read_text())
    context = NullContext()
    context.resume_checkpoint = FIXTURES / "classification-squeezenet1_1-step7.pt"
    # The fixture's run had no random shift (the option did not exist yet); a quick start now adds one
    # to a set this small, so the options say what that run did.
    options = {"random_translate": 0.0, **expected["options"]}
    adapter = TorchvisionClassification(expected["architecture"], configuration=options, context=context)
    metrics = adapter.train(small_digits(tmp_path), tmp_path / "out", **adapter.configuration)

    assert (f"resumed from checkpoint at step {expected['step']}",) in events(context, "log")
    assert metrics["steps"] == expected["final_steps"]
    assert adapter.model is not None
    sums = {name: float(value.double().sum()) for name, value in adapter.model.state_dict().items() if value.is_floating_point()}
    assert sums.keys() == expected["final_weight_sums"].keys()
    for name, value in expected["final_weight_sums"].items():
        assert sums[name] == pytest.approx(value, rel=1e-4, abs=1e-4), name


def test_a_database_written_before_the_change_migrates_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "trainfaas.db"
    shutil.copy(FIXTURES / "trainfaas.db", path)
    previous = database.obj
    db = open_database(f"sqlite:///{path}")
    try:
        migrate()
        counts = {entity.__name__: entity.select().count() for entity in
                  (getattr(records, name) for name in ("Model", "Service", "Execution", "StatusLog", "Instance", "Attempt",
                                                       "MetricSample", "Artifact", "LogLine", "Token"))}
        assert counts == {"Model": 1, "Service": 1, "Execution": 1, "StatusLog": 7, "Instance": 1, "Attempt": 2,
                          "MetricSample": 1, "Artifact": 1, "LogLine": 1, "Token": 1}
        assert {project.name for project in records.Project.select()} >= {"vision"}
        execution = records.Execution.get_by_id("e0000000000000000000000000000001")
        assert (execution.status, execution.attempt, execution.project, execution.output) == ("success", 2, "vision", {"val_accuracy": 0.98})
        assert [row.status for row in records.StatusLog.select().where(records.StatusLog.execution == execution).order_by(records.StatusLog.id)] == [
            "created", "pending", "in-progress", "rerun", "pending", "in-progress", "success"]
        model = records.Model.get_by_id("m0000000000000000000000000000001")
        assert (model.status, model.labels, model.metrics) == ("trained", ["0", "1"], {"val_accuracy": 0.98})
        assert records.Instance.get_by_id("i0000000000000000000000000000001").status == "stopped"
        assert migrate() == []  # a second start applies nothing
    finally:
        db.close()
        database.initialize(previous)
