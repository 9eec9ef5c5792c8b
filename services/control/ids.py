"""Ids as people type them: the whole id, or a unique prefix of it (as git takes short hashes).

Every lookup of an object by an id from a request goes through :func:`find`, within the rows its
caller may see, so that an answer (found, not found, several) says nothing of any other row.
"""
from __future__ import annotations

from typing import Any, TypeVar

import peewee

from trainfaas.services.core.errors import Conflict, NotFound

MIN_PREFIX = 4

Row = TypeVar("Row", bound=peewee.Model)


def find(entity: type[Row], given: str, noun: str, scope: Any = None, key: Any = None) -> Row:
    """The row of ``entity`` whose id is ``given``, or else the one row whose id starts with it
    (``MIN_PREFIX`` characters at least), among the rows ``scope`` (a peewee condition) selects.

    Raises NotFound when no row matches and Conflict (409) when several do, naming how many and
    asking for more characters. Rows outside ``scope`` are never matched, counted or named.
    ``key``: the id column, when it is not the primary key.
    """
    key = entity._meta.primary_key if key is None else key
    rows = entity.select() if scope is None else entity.select().where(scope)
    row = rows.where(key == given).first()
    if row is not None:
        return row  # type: ignore[no-any-return]
    if len(given) >= MIN_PREFIX:
        # SUBSTR rather than LIKE: exact and case-sensitive everywhere, with no wildcards to escape.
        candidates = rows.where(peewee.fn.SUBSTR(key, 1, len(given)) == given)
        found = list(candidates.limit(2))
        if len(found) == 1:
            return found[0]  # type: ignore[no-any-return]
        if found:
            count = candidates.count()
            raise Conflict(f"{count} {noun}s have an id that starts with {given}: give more characters of the id",
                           {f"{noun}_id": f"a longer prefix: {count} ids start with {given!r}"})
    raise NotFound(f"{noun} {given} does not exist",
                   {f"{noun}_id": f"the id of a {noun}, or a unique prefix of it of at least {MIN_PREFIX} characters"})
