"""Quick start: the options a training left unset, chosen from its data set.

Without ``input_size`` an image classifier sees its images at about their own size: the median
shorter side of (up to ``SIDE_SAMPLE``) training images, rounded to a multiple of 8, between 16
and ``QUICK_MAX_SIDE`` and at least what the architecture takes. Without ``epochs`` (and
``max_steps``) it trains ``QUICK_EPOCHS`` epochs, or more on a small data set, so that it takes at
least ``QUICK_MIN_STEPS`` optimizer steps (at most ``QUICK_MAX_EPOCHS`` epochs). Each choice is
said in the execution's log with its reason.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from trainfaas.adapters.torch_support import batch_starts

SIDE_SAMPLE = 200
QUICK_MIN_SIDE, QUICK_MAX_SIDE = 16, 224
QUICK_EPOCHS, QUICK_MIN_STEPS, QUICK_MAX_EPOCHS = 8, 200, 200


def image_sides(paths: Sequence[str | Path], sample: int = SIDE_SAMPLE) -> list[int]:
    """The shorter side of up to ``sample`` of the images, spread evenly over the list (headers
    only: no image is decoded). Unreadable files are left out; the reader names them later."""
    if not paths:
        return []
    stride = max(1, len(paths) // sample)
    sides = []
    for path in list(paths)[::stride][:sample]:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
        except Exception:  # noqa: BLE001 - a file that cannot be measured (any reason, a missing image plugin too) is left out
            continue
    return sides


def derived_input_size(sides: Sequence[int], smallest: int = QUICK_MIN_SIDE) -> tuple[int, str]:
    """The input size for images whose shorter sides are ``sides``, and why."""
    if not sides:
        return max(smallest, QUICK_MIN_SIDE), "no training image could be measured"
    median = statistics.median(sides)
    rounded = max(QUICK_MIN_SIDE, min(QUICK_MAX_SIDE, int(8 * round(median / 8))))
    why = f"the median training image is {median:g} pixels on its shorter side ({len(sides)} measured)"
    if rounded == QUICK_MAX_SIDE and median > QUICK_MAX_SIDE:
        why += f", kept to {QUICK_MAX_SIDE} for speed"
    return max(rounded, smallest), why


def derived_epochs(train_images: int, batch_size: int) -> tuple[int, str]:
    """Epochs for ``train_images`` in batches of ``batch_size``: ``QUICK_EPOCHS``, or enough for ``QUICK_MIN_STEPS`` steps."""
    steps_per_epoch = max(1, len(batch_starts(train_images, batch_size)))
    needed = math.ceil(QUICK_MIN_STEPS / steps_per_epoch)
    if needed <= QUICK_EPOCHS:
        return QUICK_EPOCHS, f"{QUICK_EPOCHS} epochs of {steps_per_epoch} steps reach the {QUICK_MIN_STEPS}-step minimum"
    epochs = min(needed, QUICK_MAX_EPOCHS)
    return epochs, (f"{train_images} training images make {steps_per_epoch} steps an epoch; {epochs} epochs give"
                    f" {epochs * steps_per_epoch} steps (a small data set needs at least {QUICK_MIN_STEPS})")
