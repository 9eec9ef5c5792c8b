"""Access on the real stack: the admin token `trainfaas up` writes, the CLI's projects and tokens
commands over HTTP, and work processes that hold no credentials."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import psutil
import pytest
from click.testing import CliRunner

from tests.conftest import free_port, wait_until
from trainfaas.services.cli.main import main
from trainfaas.services.sdk.client import ApiError, Client
from trainfaas.services.store.records import Attempt, Instance

pytestmark = pytest.mark.stack


def cli(stack: Any, *args: str, token: str | None = None) -> Any:
    settings = stack.settings
    env = {"TRAINFAAS_HOME": str(settings.home), "TRAINFAAS_API_URL": settings.api_url, "TRAINFAAS_TOKEN": token or ""}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_up_writes_an_admin_token_the_cli_uses_and_tokens_work_as_scoped(stack: Any) -> None:
    path = stack.settings.admin_token_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text().strip() == stack.admin_token

    assert cli(stack, "projects", "create", "team", "--json").exit_code == 0
    result = cli(stack, "tokens", "create", "--project", "team", "--scope", "write", "--json")
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert created["token"].startswith("tf_") and created["scope"] == "write" and created["project"] == "team"
    listed = cli(stack, "tokens", "list", "--json")
    assert created["id"] in listed.output and created["token"] not in listed.output

    team = Client(stack.settings.api_url, created["token"])
    model = team.create_model("mine", "sleep", configuration={"seconds": 0.1, "steps": 1})
    assert model["project"] == "team" and [m["id"] for m in team.list_models()] == [model["id"]]
    denied = cli(stack, "tokens", "list", token=created["token"])
    assert denied.exit_code == 1 and "write token cannot" in denied.output
    assert "mine" in cli(stack, "models", "list", token=created["token"]).output

    assert cli(stack, "tokens", "revoke", created["id"]).exit_code == 0
    with pytest.raises(ApiError) as refused:
        team.list_models()
    assert refused.value.status == 401
    api_log = (stack.settings.home / "logs" / "api.log").read_text()
    assert created["token"] not in api_log and stack.admin_token not in api_log


def test_a_work_process_holds_no_token_and_no_database_or_redis_url(stack: Any) -> None:
    model = stack.client.create_model("env", "sleep", configuration={"seconds": 6, "steps": 6})
    execution = stack.client.train(model["id"])

    def work_pid() -> int | None:
        attempt = Attempt.get_or_none((Attempt.execution == execution["id"]) & (Attempt.number == 1))
        if attempt is None or attempt.instance is None:
            return None
        running = Instance.get_by_id(attempt.instance).running
        return next((e["pid"] for e in running if e["execution_id"] == execution["id"] and e["pid"]), None)

    environ = psutil.Process(wait_until(work_pid, 60, "the work process")).environ()
    assert environ, "the work process' environment could not be read"
    leaked = {k for k in environ if k in ("TRAINFAAS_TOKEN", "TRAINFAAS_INSTANCE_TOKEN", "TRAINFAAS_DATABASE_URL", "TRAINFAAS_REDIS_URL")}
    assert not leaked
    secrets = (stack.admin_token, stack.settings.database_url, stack.settings.redis_url.removeprefix("unix://"))
    assert not [k for k, v in environ.items() if any(s and s in v for s in secrets) or v.startswith("tf_")]
    stack.client.terminate(execution["id"])


def test_the_sdk_follows_a_training_and_walks_every_page(stack: Any) -> None:
    client = stack.client
    model = client.create_model("sdk", "sleep", configuration={"seconds": 0.5, "steps": 3})
    executions = [client.train(model["id"])]
    updates: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    final = client.follow(executions[0]["id"], on_update=updates.append, on_log=lines.append, poll_s=0.1)
    assert final["status"] == "success" and updates[-1] == final
    assert [line["id"] for line in lines] == [line["id"] for line in client.logs(executions[0]["id"])]
    for _ in range(2):  # a model trains once at a time: each next training after the last ended
        executions.append(client.train(model["id"]))
        assert client.wait(executions[-1]["id"], timeout_s=60)["status"] == "success"
    walked = [e["id"] for e in client.iter_executions(model=model["id"], limit=1)]
    assert walked == [e["id"] for e in reversed(executions)]
    assert [m["x"] for m in client.metrics(executions[0]["id"]) if m["figure"] == "loss"] == [1, 2, 3]
    with pytest.raises(ApiError) as missing:
        client.get_execution("nope")
    assert (missing.value.status, missing.value.code) == (404, "not_found")


def test_up_keeps_its_home_and_everything_in_it_to_its_owner(short_tmp: Path) -> None:
    from trainfaas.services.core.settings import load_settings
    from trainfaas.services.local.stack import Stack

    home = short_tmp / "home"
    settings = load_settings(home=home, database_url=f"sqlite:///{home / 'trainfaas.db'}", redis_url="", port=free_port(),
                             api_url="", data_roots=str(short_tmp / "data"))
    before = os.umask(0o022)
    try:
        with Stack(settings) as stack:
            stack.settings.instance_secret_value()
            modes = _modes(home)
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert {"admin-token", "instance-secret", "trainfaas.db", "logs", "logs/api.log"} <= set(modes), modes
        assert not {name: mode for name, mode in modes.items() if mode & 0o077}, modes  # nothing for group or others
        assert os.umask(0o022) == 0o022  # stop put the umask back
    finally:
        os.umask(before)


def _modes(home: Path) -> dict[str, int]:
    """The permission bits of every file and directory under ``home`` but sockets (a file that
    vanishes while it is read, such as a partial write being renamed, is left out)."""
    modes = {}
    for path in [home, *home.rglob("*")]:
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue
        if not (stat.S_ISSOCK(mode) or stat.S_ISLNK(mode)):
            modes[path.relative_to(home).as_posix()] = stat.S_IMODE(mode)
    return modes
