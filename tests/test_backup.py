"""Backup and restore: a backup taken while a stack trains restores into a new home (SQLite, or
a new PostgreSQL database), whose stack finds every model, execution, metric and artifact, and
reruns the execution that was running when the backup was taken."""
from __future__ import annotations

import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from tests.conftest import _postgres_database, free_port, wait_until
from trainfaas.services.cli.main import main
from trainfaas.services.core.errors import ConfigError
from trainfaas.services.core.settings import Settings
from trainfaas.services.local.backup import read_manifest

pytestmark = pytest.mark.stack


def cli(settings: Settings, *args: str) -> Any:
    env = {"TRAINFAAS_HOME": str(settings.home), "TRAINFAAS_DATABASE_URL": settings.database_url, "TRAINFAAS_TOKEN": ""}
    return CliRunner().invoke(main, list(args), env=env)


@pytest.fixture
def new_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="tfr", dir="/tmp")) / "home"  # short: it holds a unix socket
    yield home
    shutil.rmtree(home.parent, ignore_errors=True)


def _snapshot(client: Any, trained: str) -> dict[str, Any]:
    models = {m["id"]: (m["name"], m["status"]) for m in client.list_models()}
    executions = {e["id"]: e["model_id"] for e in client.list_executions()}
    metrics = [(m["figure"], m["legend"], m["x"], m["y"]) for m in client.metrics(trained)]
    return {"models": models, "executions": executions, "metrics": metrics}


def test_a_backup_taken_mid_training_restores_everything_and_reruns_what_ran(stack_settings: Settings, new_home: Path) -> None:
    from trainfaas.services.local.stack import Stack

    backup_file = new_home.parent / "backup.tar.gz"
    with Stack(stack_settings) as stack:
        client = stack.admin_client()
        done = client.train(client.create_model("done", "sleep", configuration={"seconds": 1, "steps": 2})["id"])
        wait_until(lambda: client.get_execution(done["id"])["status"] == "success", 120, "the first training")
        running = client.train(client.create_model("running", "sleep", configuration={"seconds": 6, "steps": 6})["id"])
        wait_until(lambda: (e := client.get_execution(running["id"]))["status"] == "in-progress" and e["progress"] > 0,
                   120, "the second training to run")
        result = cli(stack_settings, "backup", str(backup_file), "--artifacts")
        assert result.exit_code == 0, result.output
        before = _snapshot(client, done["id"])
        artifact = client.get_model(before["executions"][done["id"]])["artifact_path"]
        stack.stop(drain_timeout_s=0.5)

    assert stat.S_IMODE(backup_file.stat().st_mode) == 0o600  # it holds the admin token
    manifest = read_manifest(backup_file)
    assert manifest["home"] == str(stack_settings.home) and any(f["name"] == "home/admin-token" for f in manifest["files"])

    drop = lambda: None  # noqa: E731
    if stack_settings.database_url.startswith("sqlite"):
        database_url = f"sqlite:///{new_home / 'trainfaas.db'}"
    else:
        database_url, drop = _postgres_database()
        redis.Redis.from_url(stack_settings.redis_url).flushdb()  # a new machine: nothing queued
    restored = stack_settings.model_copy(update={"home": new_home, "database_url": database_url, "port": free_port(), "api_url": "",
                                                 "redis_url": "" if stack_settings.embedded_redis else stack_settings.redis_url})
    try:
        result = cli(restored, "restore", str(backup_file))
        assert result.exit_code == 0, result.output
        again = cli(restored, "restore", str(backup_file))
        assert again.exit_code != 0 and "not empty" in again.output  # never over a home in use without --force
        with Stack(restored.resolved()) as stack:
            client = stack.admin_client()
            after = _snapshot(client, done["id"])
            rerun_model = before["executions"][running["id"]]
            # The model of the execution that was running may already be pending its rerun.
            assert after["models"].pop(rerun_model)[1] in ("training", "pending")
            before["models"].pop(rerun_model)
            assert after == before
            moved = client.get_model(before["executions"][done["id"]])["artifact_path"]
            assert moved == artifact.replace(str(stack_settings.home), str(new_home)) and Path(moved).exists()
            assert {a["path"] for a in client.artifacts(done["id"])} <= {str(p) for p in new_home.rglob("*")}
            final = wait_until(lambda: (e := client.get_execution(running["id"]))["status"] in ("success", "failed", "aborted") and e,
                               180, "the execution that was running to be rerun")
            assert final["status"] == "success" and final["attempt"] >= 2, final
            stack.stop(drain_timeout_s=0.5)
    finally:
        drop()


def test_a_backup_that_would_write_outside_the_home_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as archive:
        (tmp_path / "x").write_text("x")
        archive.add(tmp_path / "x", arcname="../../escaped")
    with pytest.raises(ConfigError, match="not a plain file inside it"):
        read_manifest(evil)
