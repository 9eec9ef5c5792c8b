"""Quick start: the options a training left unset, chosen from its data set.

Without ``input_size`` an image classifier sees its images at about their own size: the median
shorter side of (up to ``SIDE_SAMPLE``) training images, rounded to a multiple of 8, between 16
and ``QUICK_MAX_SIDE`` and at least what the architecture takes. Without ``epochs`` (and
``max_steps``) it trains ``QUICK_EPOCHS`` epochs, or more on a small data set, so that it takes at
least ``QUICK_MIN_STEPS`` optimizer steps (at most ``QUICK_MAX_EPOCHS`` epochs). Without
``random_translate`` (and without ``random_crop``) a small data set, under ``QUICK_SMALL_PER_CLASS``
training images a class, trains on images shifted by up to ``QUICK_TRANSLATE`` of their side, the
regulariser standard recipes give a small set seen for dozens of epochs (a generated 32x32
three-class set of 300 images reached 0.98 validation accuracy with it, 0.84 without: see
docs/benchmarks.md). A shift of a few pixels keeps the label of nearly
every classification task (an object or a digit a little off centre is the same object or digit),
so it is the one augmentation chosen for the user. Mirroring is not (it turns digits and letters
into other glyphs, "left" into "right"), nor are colour changes (a colour may be the label): those
stay the user's ``horizontal_flip`` and ``randaugment``. An option the user gave is never replaced.
Each choice is said in the execution's log with its reason.

The other image tasks do the same with their own size option. Semantic segmentation (without
``input_size``) trains at half the median shorter side, a multiple of 16 between
``SEGMENTATION_MIN_SIDE`` and ``SEGMENTATION_MAX_SIDE``: masks of whole objects keep their outlines at
half resolution, and a step costs a quarter of full size. YOLO (without ``imgsz``) letterboxes to the
median longer side, a multiple of 32 between ``YOLO_MIN_SIDE`` and ``YOLO_MAX_SIDE``: small objects
stay as large as the images have them, and no image is blown up past its own size.
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
QUICK_SMALL_PER_CLASS, QUICK_TRANSLATE = 1000, 0.125
SEGMENTATION_MIN_SIDE, SEGMENTATION_MAX_SIDE = 64, 512
YOLO_MIN_SIDE, YOLO_MAX_SIDE = 64, 640


def image_sides(paths: Sequence[str | Path], sample: int = SIDE_SAMPLE, longer: bool = False) -> list[int]:
    """The shorter (or ``longer``) side of up to ``sample`` of the images, spread evenly over the list
    (headers only: no image is decoded). Unreadable files are left out; the reader names them later."""
    if not paths:
        return []
    stride = max(1, len(paths) // sample)
    sides = []
    for path in list(paths)[::stride][:sample]:
        try:
            with Image.open(path) as image:
                sides.append(max(image.size) if longer else min(image.size))
        except Exception:  # noqa: BLE001 - a file that cannot be measured (any reason, a missing image plugin too) is left out
            continue
    return sides


def _rounded(value: float, multiple: int, lowest: int, highest: int) -> int:
    return max(lowest, min(highest, multiple * max(1, round(value / multiple))))


def derived_input_size(sides: Sequence[int], smallest: int = QUICK_MIN_SIDE) -> tuple[int, str]:
    """The input size for images whose shorter sides are ``sides``, and why."""
    if not sides:
        return max(smallest, QUICK_MIN_SIDE), "no training image could be measured"
    median = statistics.median(sides)
    rounded = _rounded(median, 8, QUICK_MIN_SIDE, QUICK_MAX_SIDE)
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


def derived_translate(train_images: int, classes: int) -> tuple[float, str]:
    """The ``random_translate`` share for ``train_images`` in ``classes`` classes, and why."""
    per_class = train_images // max(classes, 1)
    if per_class < QUICK_SMALL_PER_CLASS:
        return QUICK_TRANSLATE, (f"{train_images} training images, {per_class} a class: a small set is learnt by heart"
                                 f" unless it varies; a shift of up to {QUICK_TRANSLATE:g} of the side keeps what an image shows")
    return 0.0, f"{train_images} training images, {per_class} a class, at least {QUICK_SMALL_PER_CLASS}: no augmentation needed"


def derived_segmentation_size(sides: Sequence[int]) -> tuple[int, str]:
    """The segmentation ``input_size`` for images whose shorter sides are ``sides``, and why."""
    if not sides:
        return SEGMENTATION_MIN_SIDE, "no training image could be measured"
    median = statistics.median(sides)
    size = _rounded(median / 2, 16, SEGMENTATION_MIN_SIDE, SEGMENTATION_MAX_SIDE)
    return size, (f"half the median shorter side of the training images ({median:g} pixels, {len(sides)} measured),"
                  f" a multiple of 16 within {SEGMENTATION_MIN_SIDE}-{SEGMENTATION_MAX_SIDE}")


def derived_imgsz(sides: Sequence[int]) -> tuple[int, str]:
    """The YOLO ``imgsz`` for images whose longer sides are ``sides``, and why."""
    if not sides:
        return YOLO_MIN_SIDE, "no training image could be measured"
    median = statistics.median(sides)
    size = _rounded(median, 32, YOLO_MIN_SIDE, YOLO_MAX_SIDE)
    return size, (f"the median longer side of the training images is {median:g} pixels ({len(sides)} measured),"
                  f" a multiple of 32 within {YOLO_MIN_SIDE}-{YOLO_MAX_SIDE}")
