"""Image-folder data sets generated in the tests, unlike the bundled digits sample: coloured shapes
on coloured, noisy backgrounds, at a size, class count and colour mode the test chooses.

A shape stands out from its background by brightness, as objects in photographs mostly do: it is
brighter or darker by 96 to 159 of 255 levels, and both take one random tint. With
``colour_only`` the shape differs from its background in each channel independently instead, so
that its brightness may be the background's: a set where only colour draws the outline, which a
standard recipe learns from a few hundred images only in part (docs/benchmarks.md)."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "diamond", "ring", "bar", "star")


def _draw(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float], colour: tuple[int, ...]) -> None:
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=colour)
    elif shape == "cross":
        draw.rectangle((cx - r / 3, y0, cx + r / 3, y1), fill=colour)
        draw.rectangle((x0, cy - r / 3, x1, cy + r / 3), fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=max(2, int(r / 3)))
    elif shape == "bar":
        draw.rectangle((x0, cy - r / 4, x1, cy + r / 4), fill=colour)
    else:  # star
        points = [(cx + (r if i % 2 == 0 else r / 2.5) * np.cos(np.pi / 2 + i * np.pi / 5),
                   cy - (r if i % 2 == 0 else r / 2.5) * np.sin(np.pi / 2 + i * np.pi / 5)) for i in range(10)]
        draw.polygon(points, fill=colour)


def _colours(rng: random.Random, colour_only: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The background's and the shape's colour."""
    if colour_only:
        background = tuple(rng.randrange(0, 256) for _ in range(3))
        return background, tuple((c + rng.randrange(96, 160)) % 256 for c in background)  # far from it in each channel
    level = rng.randrange(0, 256)
    shape_level = (level + rng.randrange(96, 160)) % 256  # brighter, or (past 255) darker
    tint = [rng.uniform(0.6, 1.0) for _ in range(3)]
    return tuple(int(level * t) for t in tint), tuple(int(shape_level * t) for t in tint)


def shape_image(shape: str, side: int, rng: random.Random, grayscale: bool = False, colour_only: bool = False) -> Image.Image:
    """One ``shape`` of random size, place and colour on a random noisy background."""
    background, colour = _colours(rng, colour_only)
    image = Image.new("RGB", (side, side), background)
    size = rng.uniform(0.45, 0.8) * side
    x0, y0 = rng.uniform(0, side - size), rng.uniform(0, side - size)
    _draw(ImageDraw.Draw(image), shape, (x0, y0, x0 + size, y0 + size), colour)
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 12, (side, side, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    shown = Image.fromarray(pixels)
    return shown.convert("L") if grayscale else shown


def write_shapes(dest: Path, classes: int = 3, side: int = 32, train: int = 100, validation: int = 34, seed: int = 0,
                 grayscale: bool = False, image_format: str = "png", colour_only: bool = False) -> Path:
    """``dest/{train,validation}/<shape>/NNNN.<format>``: ``train`` and ``validation`` images per class."""
    rng = random.Random(seed)
    for subset, count in (("train", train), ("validation", validation)):
        for shape in SHAPES[:classes]:
            folder = dest / subset / shape
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                shape_image(shape, side, rng, grayscale, colour_only).save(folder / f"{index:04d}.{image_format}")
    return dest
