"""Following an execution: a progress bar until it ends, then its outcome and the model's metrics."""
from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from trainfaas.services.cli.output import Column, console, print_table, printable
from trainfaas.services.cli.waiting import waiting_line
from trainfaas.services.sdk.client import Client

METRIC_COLUMNS = (Column("metric"), Column("value"))


def follow(client: Client, execution_id: str) -> dict[str, Any]:
    """Show a progress bar until the execution ends; return its final state."""
    with Progress(TextColumn("[bold]{task.fields[status]:<12}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                  TimeElapsedColumn(), TextColumn("{task.fields[message]}"), console=console()) as progress:
        task = progress.add_task("train", total=100, status="pending", message="")

        def update(execution: dict[str, Any]) -> None:
            label = execution["status"] + (f" #{execution['attempt']}" if execution["attempt"] > 1 else "")
            message = waiting_line(execution["waiting"]) if execution.get("waiting") else execution["message"][:60]
            progress.update(task, completed=execution["progress"], status=label, message=escape(printable(message)))

        return client.wait(execution_id, on_update=update)


def follow_and_report(client: Client, execution_id: str, model_id: str | None) -> dict[str, Any]:
    """Follow the execution, print how it ended and, after a successful training, the model's metrics."""
    final = follow(client, execution_id)
    colour = "green" if final["status"] == "success" else "red"
    out = console()
    out.print(f"execution {execution_id}: [{colour}]{final['status']}[/{colour}] after {final['duration_s']} s, attempt {final['attempt']}")
    if final.get("error"):
        out.print(f"[red]{escape(printable(final['error']))}[/red]")
    if model_id and final["status"] == "success":
        metrics = client.get_model(model_id)["metrics"]
        rows = [{"metric": key, "value": f"{value:.4f}" if isinstance(value, float) else value} for key, value in sorted(metrics.items())]
        print_table(METRIC_COLUMNS, rows, "final validation metrics")
    return final
