"""Logs as JSON lines: with TRAINFAAS_LOG_FORMAT=json every line an instance writes is a JSON
object, and the lines about an attempt name its service, instance, execution and attempt."""
from __future__ import annotations

import io
import json
import logging

import pytest

from tests.conftest import wait_until
from trainfaas.services.core import logs
from trainfaas.services.core.settings import Settings

pytestmark = pytest.mark.stack


def test_an_instance_logs_json_lines_that_name_the_attempt(stack_settings: Settings) -> None:
    from trainfaas.services.local.stack import Stack

    with Stack(stack_settings.model_copy(update={"log_format": "json"})) as stack:
        client = stack.admin_client()
        model = client.create_model("json-logs", "sleep", configuration={"seconds": 1, "steps": 2})
        execution = client.train(model["id"])
        wait_until(lambda: client.get_execution(execution["id"])["status"] == "success", 120, "the training to succeed")
    records = []
    for path in (stack_settings.home / "logs").glob("instance-*.log"):
        for line in path.read_text().splitlines():
            if line.strip():
                records.append(json.loads(line))  # every line is one JSON object
    about = [r for r in records if r.get("execution_id") == execution["id"]]
    assert about, records
    assert all(r["attempt"] == 1 and r["service"] == "mgmt-train-sleep" and r["instance"] for r in about), about
    assert {"time", "level", "logger", "message"} <= set(about[0])
    assert any(r["message"].startswith("instance ") and "execution_id" not in r and r.get("service") for r in records)


def test_text_lines_carry_the_same_fields_where_they_apply() -> None:
    stream, root = io.StringIO(), logging.getLogger()
    handlers, level = list(root.handlers), root.level
    logs.configure(logging.INFO, "text", stream)
    try:
        logs.bind(service="mgmt-train-sleep", instance="abc")
        logging.getLogger("trainfaas.instance").info("started", extra=logs.attempt_fields("e1", 2))
        logging.getLogger("trainfaas.instance").info("idle")
    finally:
        logs.bind(service=None, instance=None)
        logging.captureWarnings(False)
        root.handlers[:] = handlers
        root.setLevel(level)
    first, second = stream.getvalue().splitlines()
    assert first.endswith("started [service=mgmt-train-sleep instance=abc execution_id=e1 attempt=2]")
    assert second.endswith("idle [service=mgmt-train-sleep instance=abc]")
