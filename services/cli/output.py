"""How the CLI prints: a table that fits the terminal, or the API's JSON with ``--json``.

Tables show ids as their first 12 characters (as docker and git do), never cut further and never
wrapped, because an id is what a user types next; other columns wrap instead. ``--json`` prints
what the API answered, full ids included.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

Json = dict[str, Any]
F = TypeVar("F", bound=Callable[..., Any])
Kind = Literal["text", "word", "name", "id", "time"]

SHORT_ID_LENGTH = 12
GAP = 2  # columns apart
MIN_TEXT_WIDTH = 8


# C0 and C1 controls but tab and newline (ESC starts the terminal's escape sequences, CR and BS
# overwrite text), and the bidirectional overrides that reorder what is shown.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every control character written out as its escape (ESC as ``\\x1b``): what a
    training logged or a caller named cannot recolour, retitle or rewrite the terminal."""
    return _UNPRINTABLE.sub(lambda match: match.group().encode("unicode_escape").decode(), text)


def console(stderr: bool = False) -> Console:
    """A console made when it prints, so that it measures the terminal (or COLUMNS) of this command."""
    return Console(stderr=stderr)


def say(message: str) -> None:
    """One line of plain text: brackets in names and messages are printed, not read as markup."""
    console().print(printable(message), markup=False)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def short_id(value: str) -> str:
    return value[:SHORT_ID_LENGTH]


def when(value: str) -> str:
    """An API timestamp (``2026-12-01T23:21:48.123Z``, UTC) to the second: ``2026-12-01 23:21:48``."""
    return value[:19].replace("T", " ")


@dataclass(frozen=True)
class Column:
    """One column of a table: its header, the row's key (default: the header) or a function of the
    row, and how the value prints: ``text`` wraps, ``word`` stays on one line, ``name`` (a name
    users type, such as an architecture) is never wrapped or cut, ``id`` is a short id, never
    wrapped or cut, and ``time`` is a timestamp to the second."""

    header: str
    key: str | Callable[[Json], Any] = ""
    kind: Kind = "text"

    def cell(self, row: Json) -> str:
        value = self.key(row) if callable(self.key) else row[self.key or self.header]
        if value is None or value == "":
            return ""
        if self.kind == "id":
            return printable(short_id(str(value)))
        if self.kind == "time":
            return printable(when(str(value)))
        return printable(str(value))


def table(columns: Sequence[Column], rows: Iterable[Json], title: str | None = None, width: int | None = None) -> Table:
    """A rich table of ``rows``; rows' text is printed as it is (no rich markup).

    Given the ``width`` it will print in, ``word`` columns wrap too when keeping them whole would
    leave the text columns less than ``MIN_TEXT_WIDTH`` each."""
    cells = [[column.cell(row) for column in columns] for row in rows]
    natural = [max([len(column.header), *(len(line[index]) for line in cells)]) for index, column in enumerate(columns)]
    whole = {"id", "name", "word"}
    if width is not None:
        texts = sum(column.kind not in whole for column in columns)
        needed = sum(n for n, column in zip(natural, columns, strict=True) if column.kind in whole) + GAP * (len(columns) - 1) + MIN_TEXT_WIDTH * texts
        if needed > width:
            whole = {"id", "name"}
    shown = Table(title=title, min_width=len(title or ""), box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for index, column in enumerate(columns):
        if column.kind in ("id", "name"):
            shown.add_column(column.header, no_wrap=True, min_width=natural[index])
        else:
            shown.add_column(column.header, no_wrap=column.kind in whole, overflow="fold")
    for line in cells:
        shown.add_row(*map(escape, line))
    return shown


def print_table(columns: Sequence[Column], rows: Iterable[Json], title: str | None = None) -> None:
    """``rows`` as a table that fits the terminal."""
    out = console()
    out.print(table(columns, rows, title, out.width))


def print_rows(rows: list[Json], columns: Sequence[Column], as_json: bool) -> None:
    """``rows`` as JSON (a list), or as a table."""
    if as_json:
        print_json(rows)
    else:
        print_table(columns, rows)


def print_page(page: Json, columns: Sequence[Column], as_json: bool) -> None:
    """One page of a list as JSON (``{items, next_cursor}``), or as a table and the cursor of the next."""
    if as_json:
        print_json(page)
        return
    print_table(columns, page["items"])
    if page["next_cursor"]:
        click.echo(f"more: --cursor {page['next_cursor']}")  # one line, so that it copies whole


def print_fields(record: Json, keys: Iterable[str], width: int) -> None:
    """``key value`` lines, the keys in bold and padded to ``width``."""
    for key in keys:
        console().print(f"[bold]{key:{width}}[/bold] {escape(printable(str(record[key])))}")


def json_option(help: str = "Print JSON.") -> Callable[[F], F]:
    return click.option("--json", "as_json", is_flag=True, help=help)


def page_options(command: F) -> F:
    """``-q``, ``--limit``, ``--cursor`` and ``--json`` of a command that lists one page."""
    for option in reversed((
        click.option("-q", "query", default=None, help="Name or id."),
        click.option("--limit", default=50, type=int),
        click.option("--cursor", default=None, help="next_cursor of the previous page."),
        json_option("Print the page as JSON: {items, next_cursor}."),
    )):
        command = option(command)
    return command
