"""The CLI as a user sees it: tables that fit 80 columns and show ids whole, JSON with full ids,
and a command list that does not import the server side."""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import click
import pytest
from click.testing import CliRunner
from rich.console import Console

from tests.conftest import wait_until
from trainfaas.services.cli.group import TrainfaasGroup
from trainfaas.services.cli.main import main
from trainfaas.services.cli.output import Column, print_fields, printable, table

LONG = "a-model-name-long-enough-to-wrap-in-any-table-at-eighty-columns"


def run(stack: Any, *args: str, columns: int = 80) -> Any:
    env = {"TRAINFAAS_HOME": str(stack.settings.home), "TRAINFAAS_API_URL": stack.settings.api_url, "TRAINFAAS_TOKEN": "",
           "COLUMNS": str(columns)}
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def assert_fits(output: str, width: int = 80) -> None:
    too_wide = [line for line in output.splitlines() if len(line) > width]
    assert not too_wide, "\n".join(too_wide)


@pytest.mark.stack
@pytest.mark.parametrize("stack_settings", ["local"], indirect=True)
def test_list_tables_fit_80_columns_and_show_the_12_character_ids_that_show_accepts(stack: Any) -> None:
    model = stack.client.create_model(LONG, "sleep", configuration={"seconds": 0.1, "steps": 1})
    execution = stack.client.train(model["id"])
    wait_until(lambda: stack.client.get_execution(execution["id"])["status"] == "success", what="the training to end")

    for noun, record in (("executions", execution), ("models", model)):
        listed = run(stack, noun, "list")
        assert_fits(listed.output)
        assert record["id"][:12] in listed.output and record["id"] not in listed.output and "…" not in listed.output
        assert [item["id"] for item in json.loads(run(stack, noun, "list", "--json").output)["items"]] == [record["id"]]

    shown = run(stack, "executions", "show", execution["id"])
    assert_fits(shown.output)
    assert execution["id"] in shown.output and "success" in shown.output
    assert LONG in json.loads(run(stack, "models", "show", model["id"]).output)["name"]


def test_a_table_wraps_text_and_never_cuts_an_id_however_narrow() -> None:
    columns = (Column("id", kind="id"), Column("name"), Column("status", kind="word"), Column("created", "created_at", kind="time"))
    rows = [{"id": "0123456789abcdef0123456789abcdef", "name": LONG, "status": "in-progress", "created_at": "2026-12-01T23:21:48.123Z"}]
    for width in (40, 60, 80, 120):
        console = Console(width=width, record=True)
        console.print(table(columns, rows, width=width))
        text = console.export_text()
        assert_fits(text, width)
        assert "0123456789ab" in text and "0123456789abc" not in text
        assert ("in-progress" in text) == (width >= 60)  # a word wraps only when keeping it whole would crowd the text out


def test_the_command_list_names_local_commands_without_importing_them() -> None:
    script = ("import sys\nfrom click.testing import CliRunner\nfrom trainfaas.services.cli.main import main\n"
              "result = CliRunner().invoke(main, ['--help'])\nassert result.exit_code == 0, result.output\n"
              "print(sorted(m for m in sys.modules if m.startswith(('trainfaas.services.local', 'trainfaas.scheduler',"
              " 'trainfaas.services.worker', 'trainfaas.services.cli.server', 'trainfaas.services.cli.instance', 'trainfaas.adapters.catalog',"
              " 'torch', 'flask'))))\n"
              "print(result.output)")
    printed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    loaded, _, help_text = printed.partition("\n")
    assert loaded == "[]"
    for name in ("up", "scheduler", "demo", "instance", "adapters", "executions", "train"):
        assert f"\n  {name} " in help_text


def test_a_lazy_commands_declared_help_is_its_own() -> None:
    assert isinstance(main, TrainfaasGroup)
    for name, lazy in main.lazy_commands.items():
        command = main.get_command(None, name)  # type: ignore[arg-type]
        assert command is not None and command.name == name
        assert (command.help or "").startswith(lazy.short_help)


def test_the_sdk_imports_no_orm_and_no_flask() -> None:
    script = "import sys, trainfaas.services.sdk; print(sorted(m for m in ('peewee', 'flask', 'trainfaas.services.store') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip() == "[]"


ESCAPES = "\x1b[31mred\x1b[0m \x1b]0;title\x07 back\rover \u202egnp.exe"


def test_tables_and_fields_print_markup_as_text_and_control_characters_as_escapes(capsys: pytest.CaptureFixture[str]) -> None:
    assert printable(ESCAPES) == r"\x1b[31mred\x1b[0m \x1b]0;title\x07 back\rover \u202egnp.exe"
    assert printable("tab\tand\nnewline stay") == "tab\tand\nnewline stay"
    row = {"name": f"[bold red]not markup[/] {ESCAPES}"}
    console = Console(width=200, record=True)
    console.print(table([Column("name", kind="name")], [row], width=200))
    shown = console.export_text()
    assert "[bold red]not markup[/]" in shown and "\\x1b[31mred" in shown and "\\x07" in shown and "\x1b" not in shown
    print_fields(row, ["name"], 6)
    printed = capsys.readouterr().out
    assert "[bold red]not markup[/]" in printed and "\x1b" not in printed and "\x07" not in printed and "\u202e" not in printed


def test_an_api_error_prints_its_message_as_text() -> None:
    from trainfaas.services.sdk.client import ApiError

    @click.command()
    def fails() -> None:
        raise ApiError(404, "not_found", f"model [/x][bold]{ESCAPES} not found", {"model_id": "[red]"})

    group = TrainfaasGroup(commands={"fails": fails})
    result = CliRunner().invoke(group, ["fails"], env={"COLUMNS": "400"})
    assert result.exit_code == 1 and "[/x][bold]" in result.output and "[red]" in result.output, result.output
    assert "\x1b" not in result.output and "\\x1b[31mred" in result.output


@pytest.mark.stack
@pytest.mark.parametrize("stack_settings", ["local"], indirect=True)
def test_executions_logs_print_escape_sequences_as_text(stack: Any) -> None:
    from trainfaas.services.store.records import LogLine

    stack.client.update_service("mgmt-train-sleep", min_instances=0, paused=True)
    execution = stack.client.enqueue("mgmt-train-sleep", "noop", {})
    LogLine.create(execution=execution["id"], attempt=1, line=ESCAPES)
    printed = run(stack, "executions", "logs", execution["id"]).output
    assert "\\x1b[31mred\\x1b[0m \\x1b]0;title\\x07" in printed and "\x1b" not in printed and "\x07" not in printed


def test_migrate_brings_a_new_database_up_to_date_once_then_applies_nothing_and_keeps_its_admin_token(tmp_path: Any) -> None:
    env = {"PATH": "/usr/bin:/bin", "TRAINFAAS_HOME": str(tmp_path), "TRAINFAAS_DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"}

    def migrate() -> str:
        return subprocess.run([sys.executable, "-m", "trainfaas.services.cli", "migrate"], env=env, capture_output=True,
                              text=True, check=True).stdout

    assert migrate().startswith("applied migrations 1, ")
    token = (tmp_path / "admin-token").read_text()
    assert migrate().strip() == "the database is up to date"
    assert (tmp_path / "admin-token").read_text() == token and (tmp_path / "admin-token").stat().st_mode & 0o077 == 0
