"""The bundled "shapes" sample: synthetic images of circles, squares and triangles.

One directory serves three tasks, because it holds the annotations in two formats side by side::

    shapes/data.yaml                      ultralytics data set file (names, train/val image folders)
    shapes/labels.json                    {"labels": [...], "mask_values": {...}}
    shapes/images/{train,validation}/<n>.png
    shapes/labels/{train,validation}/<n>.txt   YOLO polygons: "<class> x1 y1 x2 y2 ..." (0..1)
    shapes/masks/{train,validation}/<n>.png    8-bit masks: 0 background, i+1 for labels[i]

Object detection reads the polygons as boxes, instance segmentation as polygons, and semantic
segmentation reads the masks. Shapes never overlap, so the polygons and the masks agree exactly.
About one image in ten has no shape at all (a negative sample). Everything is generated from a
seed with numpy and Pillow: nothing is downloaded.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from trainfaas.adapters.samples import export_once
from trainfaas.services.core.errors import DatasetError

LABELS: tuple[str, ...] = ("circle", "square", "triangle")
SUBSETS: tuple[str, ...] = ("train", "validation")
VERSION = 1
ENTRIES: tuple[str, ...] = ("images", "labels", "masks", "data.yaml", "labels.json")
NEGATIVE_SHARE = 0.1


def _polygon(kind: str, cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    corners = {"circle": 32, "square": 4, "triangle": 3}[kind]
    start = angle if kind != "circle" else 0.0
    return [
        (cx + radius * math.cos(start + 2 * math.pi * i / corners), cy + radius * math.sin(start + 2 * math.pi * i / corners))
        for i in range(corners)
    ]


def _draw_image(rng: Any, size: int) -> tuple[Any, Any, list[tuple[int, list[tuple[float, float]]]]]:
    """One image, its mask and its shapes as (label index, polygon in pixels)."""
    import numpy as np
    from PIL import Image, ImageDraw

    # A smooth random background with noise, so that colour alone does not give shapes away.
    base = rng.integers(40, 200, size=3)
    ramp = np.linspace(-30, 30, size)[None, :, None] * rng.choice([-1, 1], size=3)
    noise = rng.normal(0, 12, size=(size, size, 3))
    pixels = np.clip(base[None, None, :] + ramp + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    mask = Image.new("L", (size, size), 0)
    draw, draw_mask = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    shapes: list[tuple[int, list[tuple[float, float]]]] = []
    if rng.random() < NEGATIVE_SHARE:
        return image, mask, shapes
    placed: list[tuple[float, float, float]] = []
    for _ in range(int(rng.integers(1, 4))):
        for _try in range(20):
            radius = float(rng.uniform(size * 0.09, size * 0.2))
            cx, cy = (float(v) for v in rng.uniform(radius + 1, size - radius - 1, size=2))
            if all(math.hypot(cx - x, cy - y) > radius + r + 2 for x, y, r in placed):
                break
        else:
            continue
        label = int(rng.integers(0, len(LABELS)))
        polygon = _polygon(LABELS[label], cx, cy, radius, float(rng.uniform(0, 2 * math.pi)))
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        draw.polygon(polygon, fill=colour)
        draw_mask.polygon(polygon, fill=label + 1)
        placed.append((cx, cy, radius))
        shapes.append((label, polygon))
    return image, mask, shapes


def _yolo_line(label: int, polygon: list[tuple[float, float]], size: int) -> str:
    points = " ".join(f"{min(max(x / size, 0.0), 1.0):.5f} {min(max(y / size, 0.0), 1.0):.5f}" for x, y in polygon)
    return f"{label} {points}"


def _export(root: Path, counts: dict[str, int], image_size: int, seed: int) -> None:
    import numpy as np

    for subset_number, subset in enumerate(SUBSETS):
        rng = np.random.default_rng([seed, subset_number])
        for folder in ("images", "labels", "masks"):
            (root / folder / subset).mkdir(parents=True, exist_ok=True)
        for index in range(counts[subset]):
            image, mask, shapes = _draw_image(rng, image_size)
            stem = f"{index:05d}"
            image.save(root / "images" / subset / f"{stem}.png")
            mask.save(root / "masks" / subset / f"{stem}.png")
            (root / "labels" / subset / f"{stem}.txt").write_text("".join(_yolo_line(lab, poly, image_size) + "\n" for lab, poly in shapes))
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(LABELS))
    (root / "data.yaml").write_text(f"train: images/train\nval: images/validation\nnames:\n{names}")
    (root / "labels.json").write_text(
        json.dumps({"labels": list(LABELS), "mask_values": {name: i + 1 for i, name in enumerate(LABELS)}, "background": 0}, indent=2)
    )


def write_shapes(dest: Path, train_images: int = 240, validation_images: int = 60, image_size: int = 128, seed: int = 0) -> dict[str, Any]:
    """Write the shapes sample into ``dest`` (see the module docstring for the layout).

    The export is built in a scratch folder beside ``dest`` and moved in at the end; when ``dest``
    already holds a complete export with the same parameters nothing is written. Returns
    ``{"path", "labels", "train_images", "validation_images", "image_size"}``.
    """
    if train_images < 1 or validation_images < 1:
        raise DatasetError("the shapes sample needs at least one training and one validation image",
                           {"train_images": "at least 1", "validation_images": "at least 1"})
    if not 32 <= image_size <= 2048:
        raise DatasetError(f"image_size must lie between 32 and 2048, not {image_size}", {"image_size": "32 to 2048"})
    parameters = {"version": VERSION, "train_images": train_images, "validation_images": validation_images,
                  "image_size": image_size, "seed": seed}
    summary = {"labels": list(LABELS), "train_images": train_images, "validation_images": validation_images, "image_size": image_size}

    def write(scratch: Path) -> dict[str, Any]:
        _export(scratch, {"train": train_images, "validation": validation_images}, image_size, seed)
        return summary

    return export_once(dest, parameters, ENTRIES, write)
