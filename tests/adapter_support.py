"""Helpers the adapter tests share: a context that asks to stop, the events a context saw, a small image folder."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from trainfaas.adapters import NullContext


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


def first_images(image_folder: Path, dest: Path, train: int = 8, validation: int = 3) -> Path:
    """Copy the first ``train`` training and ``validation`` validation images of each label of ``image_folder``
    (by file name) into ``dest``; return ``dest``."""
    for subset, per_label in (("train", train), ("validation", validation)):
        for label_dir in sorted((image_folder / subset).iterdir()):
            (dest / subset / label_dir.name).mkdir(parents=True)
            for image in sorted(label_dir.iterdir())[:per_label]:
                shutil.copy(image, dest / subset / label_dir.name / image.name)
    return dest
