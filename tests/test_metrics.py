"""Prometheus metrics: /metrics, scraped from a real stack (gunicorn with two workers) and parsed
with prometheus_client's own parser, follows a real training and a scale-up from zero; only an
admin or a metrics token reads it; the Grafana dashboard asks only for metrics it exports."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[1]
SLEEP = "mgmt-train-sleep"


def scrape(stack: Any, token: str) -> dict[str, list[Any]]:
    """Every sample of /metrics by sample name (a counter's ``_total``, a histogram's ``_bucket`` ...)."""
    response = requests.get(f"{stack.settings.api_url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(response.text):
        samples.setdefault(family.name, [])
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: dict[str, list[Any]], name: str, **labels: str) -> float | None:
    found = [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    return sum(found) if found else None


@pytest.mark.stack
def test_metrics_follow_a_real_training_and_a_scale_up(stack: Any) -> None:
    admin = stack.admin_token
    stack.client.update_service(SLEEP, scaling_type="autoscale", min_instances=0, max_instances=1, polling_interval_s=1)
    model = stack.client.create_model("metered", "sleep", configuration={"seconds": 1, "steps": 2})
    execution = stack.client.train(model["id"])
    wait_until(lambda: stack.client.get_execution(execution["id"])["status"] == "success", 120, "the training")

    def settled() -> dict[str, list[Any]] | None:
        samples = scrape(stack, admin)
        done = value(samples, "trainfaas_executions_finished_total", service=SLEEP, function="train_model", status="success")
        ticks = value(samples, "trainfaas_scheduler_tick_seconds_count")
        return samples if done == 1 and ticks else None

    samples = wait_until(settled, 60, "the training and scheduler ticks to show in /metrics")
    assert value(samples, "trainfaas_autoscaler_decision", service=SLEEP, action="scale-up", reason="queue_demand") == 1 or \
        value(samples, "trainfaas_instances_desired", service=SLEEP) == 1
    assert value(samples, "trainfaas_instances_actual", service=SLEEP) == 1  # scaled up from zero, still warm
    assert value(samples, "trainfaas_execution_queue_wait_seconds_count", service=SLEEP) == 1
    assert value(samples, "trainfaas_execution_run_seconds_count", service=SLEEP) == 1
    assert value(samples, "trainfaas_execution_run_seconds_bucket", service=SLEEP, le="+Inf") == 1
    assert value(samples, "trainfaas_attempts_ended_total", service=SLEEP, reason="success") == 1
    assert value(samples, "trainfaas_service_health", service=SLEEP) == 0
    assert value(samples, "trainfaas_queue_depth", service=SLEEP) == 0
    # Counted in whichever gunicorn worker served them, summed over both.
    assert value(samples, "trainfaas_api_requests_total", route="/api/v1/models/<model_id>/train", method="POST", status="202") == 1
    assert value(samples, "trainfaas_api_request_seconds_count", route="/api/v1/models/<model_id>/train", method="POST") == 1


@pytest.mark.stack
@pytest.mark.parametrize("stack_settings", ["local"], indirect=True)
def test_only_an_admin_or_a_metrics_token_reads_the_metrics(stack: Any) -> None:
    url = f"{stack.settings.api_url}"
    metrics_token = stack.client.create_token("metrics", name="prometheus")["token"]
    read_token = stack.client.create_token("read", project="default", name="reader")["token"]
    assert scrape(stack, metrics_token)  # it scrapes ...
    denied = requests.get(f"{url}/api/v1/executions", headers={"Authorization": f"Bearer {metrics_token}"}, timeout=10)
    assert denied.status_code == 403  # ... and reads nothing else
    refused = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {read_token}"}, timeout=10)
    assert refused.status_code == 403 and "metrics" in refused.json()["error"]["message"]
    assert requests.get(f"{url}/metrics", timeout=10).status_code == 401


def exported_names(api: Any) -> set[str]:
    """The sample names /metrics of the app exports (with a counter's and a histogram's suffixes)."""
    response = api.client.get("/metrics")
    assert response.status_code == 200
    exported = set()
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        exported.add(family.name)
        exported.update({f"{family.name}_total", f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"})
    return exported


def test_the_alert_rules_of_the_operations_guide_parse_and_ask_only_for_exported_metrics(api: Any) -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", guide, re.DOTALL) if "alert:" in b]
    rules = yaml.safe_load(block)["groups"][0]["rules"]
    asked = {name for rule in rules for name in re.findall(r"\btrainfaas_[a-z_]+", rule["expr"])}
    assert all(rule["alert"] and rule["labels"]["severity"] and rule["annotations"]["summary"] for rule in rules)
    assert asked and asked <= exported_names(api), sorted(asked - exported_names(api))


def test_the_dashboard_asks_only_for_metrics_the_endpoint_exports(api: Any) -> None:
    exported = exported_names(api)
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    asked = {name for panel in dashboard["panels"] for target in panel["targets"]
             for name in re.findall(r"\btrainfaas_[a-z_]+", target["expr"])}
    asked |= set(re.findall(r"\btrainfaas_[a-z_]+", json.dumps(dashboard["templating"])))
    assert asked and asked <= exported, sorted(asked - exported)
    assert {"trainfaas_queue_depth", "trainfaas_instances_actual", "trainfaas_executions_finished_total",
            "trainfaas_execution_run_seconds_bucket"} <= asked
