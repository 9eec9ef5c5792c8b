"""API blueprints, one per area, and the helpers they share: settings, Redis, time stamps and
keyset pagination. Endpoints are declared with :func:`trainfaas.services.api.registry.endpoint`."""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import peewee
import redis
from flask import current_app

from trainfaas.services.control.tokens import Principal
from trainfaas.services.core.errors import ConfigError
from trainfaas.services.core.settings import Settings


def settings() -> Settings:
    return current_app.config["SETTINGS"]  # type: ignore[no-any-return]


def redis_connection() -> redis.Redis:
    return current_app.extensions["redis"]  # type: ignore[no-any-return]


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def reachable(rows: peewee.ModelSelect, project_field: peewee.Field, principal: Principal,
              project: str | None) -> peewee.ModelSelect:
    """``rows`` of the projects the token reaches; of ``project`` only, when one is asked for."""
    if principal.reach is not None:
        rows = rows.where(project_field == principal.reach)
    if project:
        rows = rows.where(project_field == project)
    return rows


# ---- keyset pagination -------------------------------------------------------------------------
# A cursor is the sort key of the last item of a page, base64-encoded JSON. Keysets (rather than
# offsets) keep pages stable while new rows arrive: nothing is skipped or shown twice.

_CURSOR_FIELD = {"cursor": "the next_cursor of the previous page"}


def _encode(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _decode(cursor: str, order: tuple[peewee.Field, ...]) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ConfigError("the cursor is not one this API returned", _CURSOR_FIELD) from None
    if not isinstance(values, list) or len(values) != len(order):
        raise ConfigError("the cursor is not one this API returned", _CURSOR_FIELD)
    for value, field in zip(values, order, strict=True):
        numeric = isinstance(field, (peewee.IntegerField, peewee.FloatField, peewee.DoubleField))
        wanted: tuple[type, ...] = (int, float) if numeric else (str,)
        if not isinstance(value, wanted) or isinstance(value, bool) or (isinstance(value, str) and "\x00" in value):
            raise ConfigError("the cursor is not one this API returned", _CURSOR_FIELD)
    return values


def _after(order: tuple[peewee.Field, ...], values: list[Any], descending: bool) -> Any:
    """Rows strictly after ``values`` in the order (a, b, ...): a > x OR (a = x AND (b, ...) after)."""
    head, value = order[0], values[0]
    beyond = head < value if descending else head > value
    if len(order) == 1:
        return beyond
    return beyond | ((head == value) & _after(order[1:], values[1:], descending))


def _within(query: peewee.ModelSelect, limit: int, size: Callable[[Any], int], budget: int, chunk: int = 100) -> tuple[list[Any], int]:
    """The rows of a page that fit ``budget`` (at least one), read a chunk at a time, plus the
    next row if there is one; and how many the page holds."""
    rows: list[Any] = []
    total = 0
    while True:
        fetched = list(query.offset(len(rows)).limit(chunk))
        for row in fetched:
            if len(rows) == limit or (rows and total + size(row) > budget):
                return rows + [row], len(rows)
            total += size(row)
            rows.append(row)
        if len(fetched) < chunk:
            return rows, len(rows)


def paginate(query: peewee.ModelSelect, order: tuple[peewee.Field, ...], limit: int, cursor: str | None,
             descending: bool = True, size: Callable[[Any], int] | None = None, budget: int = 0) -> tuple[list[Any], str | None]:
    """One page of ``query`` sorted by ``order`` (whose last field is unique), and the next cursor.

    With ``size``, the page also ends before the row that would take the sizes of its rows past
    ``budget`` (it holds at least one row); the cursor continues from there."""
    if cursor:
        values = _decode(cursor, order)
        # The first key's bound, implied by the OR below, lets an index on it start at the cursor
        # instead of reading (and discarding) every row before it.
        bound = order[0] <= values[0] if descending else order[0] >= values[0]
        query = query.where(bound & _after(order, values, descending))
    query = query.order_by(*(field.desc() if descending else field.asc() for field in order))
    if size is None:
        rows = list(query.limit(limit + 1))
    else:
        rows, limit = _within(query, limit, size, budget)
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], _encode([last.__data__[field.name] for field in order])


def page(rows: list[Any], next_cursor: str | None, view: Any) -> dict[str, Any]:
    return {"items": [view(row) for row in rows], "next_cursor": next_cursor}
