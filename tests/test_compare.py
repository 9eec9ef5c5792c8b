"""Executions compared: configurations with the differing keys marked, final metrics, and metric
series aligned by step — the pure parts, the API's checks, and two real trainings through the stack."""
from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from tests.test_api_access import enqueue_noop, project_tokens
from tests.test_pipeline import sleep_model, wait_status
from trainfaas.services.cli.main import main
from trainfaas.services.control.compare import aligned, flatten, side_by_side


def test_nested_options_flatten_to_dotted_keys_and_only_differing_keys_are_marked() -> None:
    assert flatten({"a": 1, "opt": {"lr": 0.1, "betas": [0.9, 0.99]}, "empty": {}}) == {
        "a": 1, "opt.lr": 0.1, "opt.betas": [0.9, 0.99], "empty": {}}
    rows = side_by_side([{"a": 1, "b": 2}, {"a": 1, "b": 3, "c": None}])
    assert rows == [{"key": "a", "values": [1, 1], "differs": False}, {"key": "b", "values": [2, 3], "differs": True},
                    {"key": "c", "values": [None, None], "differs": False}]


def test_series_align_by_step_with_gaps_as_null_and_thin_evenly_keeping_both_ends() -> None:
    first = [("loss", "train", 1.0, 0.9), ("loss", "train", 2.0, 0.8), ("loss", "train", 2.0, 0.7)]
    second = [("loss", "train", 2.0, 0.5), ("loss", "train", 3.0, 0.4), ("accuracy", "val", 3.0, 0.6)]
    series = aligned([first, second], max_points=10)
    assert series == [
        {"figure": "accuracy", "legend": "val", "x": [3.0], "y": [[None], [0.6]]},
        {"figure": "loss", "legend": "train", "x": [1.0, 2.0, 3.0], "y": [[0.9, 0.7, None], [None, 0.5, 0.4]]},
    ]
    long = [("loss", "train", float(x), float(x)) for x in range(1001)]
    thinned = aligned([long, long], max_points=5)[0]
    assert thinned["x"] == [0.0, 250.0, 500.0, 750.0, 1000.0] and thinned["y"][0] == thinned["x"]


@pytest.mark.parametrize("names, field_says", [
    (1, "2 to 10"), (11, "2 to 10"), ("twice", "distinct"),
])
def test_a_comparison_of_too_few_too_many_or_repeated_executions_is_refused_naming_the_field(
        api: Any, names: Any, field_says: str) -> None:
    assert api.client.patch("/api/v1/services/mgmt-train-sleep", json={"min_instances": 0}).status_code == 200
    ids = [enqueue_noop(api.client)["id"] for _ in range(1 if names == "twice" else names)]
    if names == "twice":
        ids = [ids[0], ids[0][:8]]
    response = api.client.get("/api/v1/compare", query_string={"executions": ",".join(ids)})
    assert response.status_code == 422
    assert field_says in response.get_json()["error"]["fields"]["executions"]


def test_executions_of_another_project_are_not_found_and_of_two_projects_are_refused(api: Any) -> None:
    assert api.client.patch("/api/v1/services/mgmt-train-sleep", json={"min_instances": 0}).status_code == 200
    tokens = {name: project_tokens(api, name) for name in ("a", "b")}
    mine = [enqueue_noop(api.as_(tokens["a"]["write"]))["id"] for _ in range(2)]
    theirs = enqueue_noop(api.as_(tokens["b"]["write"]))["id"]
    reader = api.as_(tokens["a"]["read"])
    assert reader.get("/api/v1/compare", query_string={"executions": ",".join(mine)}).status_code == 200
    assert reader.get("/api/v1/compare", query_string={"executions": f"{mine[0]},{theirs}"}).status_code == 404
    mixed = api.client.get("/api/v1/compare", query_string={"executions": f"{mine[0]},{theirs}"})
    assert mixed.status_code == 422 and "one project" in mixed.get_json()["error"]["fields"]["executions"]


@pytest.mark.stack
@pytest.mark.parametrize("stack_settings", ["local"], indirect=True)
def test_two_real_trainings_compare_through_the_sdk_and_the_cli(stack: Any) -> None:
    short = stack.client.train(sleep_model(stack, seconds=0.2, steps=2)["id"])
    longer = stack.client.train(sleep_model(stack, seconds=0.2, steps=4)["id"])
    for execution in (short, longer):
        wait_status(stack, execution["id"], "success")
    comparison = stack.client.compare(short["id"], longer["id"][:8])
    assert [e["id"] for e in comparison["executions"]] == [short["id"], longer["id"]]
    differing = {row["key"]: row["values"] for row in comparison["configuration"] if row["differs"]}
    assert differing == {"configuration.steps": [2, 4]}
    same = {row["key"] for row in comparison["configuration"] if not row["differs"]}
    assert {"configuration.seconds", "execution.timeout_s", "service"} <= same
    loss = next(s for s in comparison["series"] if (s["figure"], s["legend"]) == ("loss", "train"))
    assert loss["x"] == [1.0, 2.0, 3.0, 4.0]
    assert [value is None for value in loss["y"][0]] == [False, False, True, True] and None not in loss["y"][1]
    assert any(row["key"] == "loss" for row in comparison["metrics"])

    env = {"TRAINFAAS_HOME": str(stack.settings.home), "TRAINFAAS_API_URL": stack.settings.api_url, "COLUMNS": "80"}
    shown = CliRunner().invoke(main, ["executions", "compare", short["id"], longer["id"]], env=env, catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert "configuration.steps" in shown.output and "configuration.seconds" not in shown.output
    assert "final metrics" in shown.output and short["id"][:12] in shown.output
    every = CliRunner().invoke(main, ["executions", "compare", "--all", short["id"], longer["id"]], env=env)
    assert "configuration.seconds" in every.output


def test_a_comparison_reads_a_bounded_number_of_samples_and_says_how_many_it_left_out(
        api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from trainfaas.services.control import compare
    from trainfaas.services.store.records import MetricSample

    monkeypatch.setattr(compare, "MAX_SAMPLES_READ", 3)
    assert api.client.patch("/api/v1/services/mgmt-train-sleep", json={"min_instances": 0}).status_code == 200
    ids = [enqueue_noop(api.client)["id"] for _ in range(2)]
    for x in range(5):
        MetricSample.create(execution=ids[0], attempt=1, figure="loss", legend="train", x=x, y=x)
    body = api.client.get("/api/v1/compare", query_string={"executions": ",".join(ids)}).get_json()
    assert body["samples_left_out"] == 2 and body["series"][0]["x"] == [2.0, 3.0, 4.0]
