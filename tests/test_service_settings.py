"""Autoscale settings that cannot surprise: a change that sets autoscaler fields on a fixed
service answers with a warning that says so (and what to set), the CLI prints it, and every
answer says in words what the service will do."""
from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from trainfaas.services.cli.main import main


def test_autoscaler_fields_on_a_fixed_service_come_back_with_a_warning_that_names_them(api: Any) -> None:
    response = api.client.patch("/api/v1/services/mgmt-train-sleep",
                                json={"min_instances": 0, "max_instances": 3, "queue_length": 1, "cooldown_s": 10})
    assert response.status_code == 200
    service = response.get_json()
    assert service["scaling_type"] == "fixed" and service["scaling"] == "keeps 0 instances"
    inert, empty = service["warnings"]
    assert inert.startswith("max_instances, queue_length, cooldown_s take effect only with scaling_type autoscale")
    assert '"scaling_type": "autoscale"' in inert
    assert "runs nothing" in empty

    response = api.client.patch("/api/v1/services/mgmt-train-sleep", json={"scaling_type": "autoscale"})
    service = response.get_json()
    assert service["warnings"] == []
    assert service["scaling"] == "scales 0–3 on queue length 1 (checked every 10 s), back to 0 after 10 s idle"
    assert api.client.get("/api/v1/services/mgmt-train-sleep").get_json()["warnings"] == []  # only answers to a change


def test_a_fixed_service_that_keeps_instances_gets_no_warning_and_says_so(api: Any) -> None:
    service = api.client.patch("/api/v1/services/mgmt-train-sleep", json={"min_instances": 2, "max_instances": 2}).get_json()
    assert service["warnings"] == [] and service["scaling"] == "keeps 2 instances"
    paused = api.client.post("/api/v1/services/mgmt-train-sleep/pause").get_json()
    assert paused["scaling"] == "paused; once resumed it keeps 2 instances"


@pytest.mark.stack
@pytest.mark.parametrize("stack_settings", ["local"], indirect=True)
def test_services_set_prints_the_effective_scaling_and_the_warning(stack: Any) -> None:
    env = {"TRAINFAAS_HOME": str(stack.settings.home), "TRAINFAAS_API_URL": stack.settings.api_url, "TRAINFAAS_TOKEN": ""}
    result = CliRunner().invoke(main, ["services", "set", "mgmt-train-sleep", "--min", "0", "--max", "3", "--queue-length", "1",
                                       "--cooldown", "10"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "mgmt-train-sleep keeps 0 instances" in result.stdout
    assert "warning: max_instances, queue_length, cooldown_s take effect only with scaling_type autoscale" in result.stderr
    result = CliRunner().invoke(main, ["services", "set", "mgmt-train-sleep", "--scaling-type", "autoscale"], env=env)
    assert result.exit_code == 0, result.output
    assert "mgmt-train-sleep scales 0–3 on queue length 1" in result.stdout and "warning" not in result.stderr
