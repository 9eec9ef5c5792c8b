"""Helpers the adapter tests share: a context that asks to stop, and the events a context saw."""
from __future__ import annotations

from typing import Any

from trainfaas.adapters.base import NullContext


class StopAfter(NullContext):
    """A context that asks to stop once should_stop() has been asked ``calls`` times (once a step)."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls_left = calls

    def should_stop(self) -> bool:
        self.calls_left -= 1
        return self.calls_left < 0


def events(context: NullContext, kind: str) -> list[tuple[Any, ...]]:
    return [args for event, args in context.events if event == kind]
