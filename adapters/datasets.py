"""Image-folder data sets: the layout check adapters rely on, and the samples trainfaas bundles.

An image-folder data set is a directory with two subsets, each holding one folder per label::

    <data set>/train/<label>/<image>
    <data set>/validation/<label>/<image>

Images are files ending in .png, .jpg, .jpeg or .bmp (any case). The labels are the folder names
under ``train/``; ``validation/`` may leave some of them out but may not add new ones, because a
model cannot be scored on a label it was never trained on.

This module imports neither torch nor scikit-learn at import time, so the API can check a data
set without paying for either.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainfaas.adapters.confine import confined, entries, shown
from trainfaas.adapters.samples import export_once
from trainfaas.services.core.errors import DatasetError
from trainfaas.services.core.references import resolve

SUBSETS: tuple[str, ...] = ("train", "validation")
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")
LAYOUT = "<data set>/train/<label>/<image> and <data set>/validation/<label>/<image>, images ending in " + ", ".join(IMAGE_SUFFIXES)
DIGITS_VERSION = 2  # 2: the marker of trainfaas.adapters.samples


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _invalid(path: Path, problem: str) -> DatasetError:
    return DatasetError(f"data set {path}: {problem}; expected {LAYOUT}", {"dataset": problem})


def _label_folders(root: Path, subset_path: Path) -> dict[str, int]:
    """Map each label folder of one subset to the number of images in it (hidden folders skipped).

    Every entry touched must lie inside the data set ``root`` (see :mod:`trainfaas.adapters.confine`)."""
    return {
        entry.name: sum(1 for item in entries(root, entry) if _is_image(item))
        for entry in entries(root, subset_path)
        if entry.is_dir() and not entry.name.startswith(".")
    }


def count_images(path: Path) -> dict[str, dict[str, int]]:
    """Check that ``path`` is an image-folder data set; return the images per label of each subset.

    Raises DatasetError, naming what is missing and the layout expected, when the directory or a
    subset is missing, a subset has no label folders, a training label has no image, the
    validation subset has no image, or the validation subset has a label the training one lacks;
    and naming the file when a file or folder leads outside the data set's folder.
    """
    path = Path(path).resolve()
    if not path.is_dir():
        raise _invalid(path, "the directory does not exist")
    images_by_label: dict[str, dict[str, int]] = {}
    for subset in SUBSETS:
        subset_path = confined(path, path / subset)
        if not subset_path.is_dir():
            raise _invalid(path, f"no {subset}/ folder")
        images_by_label[subset] = _label_folders(path, subset_path)
        if not images_by_label[subset]:
            raise _invalid(path, f"{subset}/ has no label folders")
    labels = sorted(images_by_label["train"])
    # Every training label must be learnable: an empty one would be a class no image teaches.
    empty = [label for label in labels if images_by_label["train"][label] == 0]
    if empty:
        raise _invalid(path, f"train/ has label folders without images: {shown(empty)}")
    unknown = sorted(set(images_by_label["validation"]) - set(labels))
    if unknown:
        raise _invalid(path, f"validation/ has labels that train/ lacks: {shown(unknown)}")
    if sum(images_by_label["validation"].values()) == 0:
        raise _invalid(path, "validation/ has no images")
    return images_by_label


def choose_labels(dataset_labels: list[str], chosen: list[str] | None) -> list[str]:
    """The labels to train on: ``chosen`` (in the data set's order, each once) or all of them.

    Raises DatasetError naming ``configuration.labels`` when ``chosen`` has a label the data set lacks.
    """
    if chosen is None:
        return list(dataset_labels)
    unknown = [label for label in dict.fromkeys(chosen) if label not in dataset_labels]
    if unknown:
        raise DatasetError(
            f"labels {shown(unknown)} are not in the data set, whose labels are {shown(dataset_labels)}",
            {"configuration.labels": f"unknown {shown(unknown)}; choose among {shown(dataset_labels)}"},
        )
    return [label for label in dataset_labels if label in chosen]


def read_image_folder(path: Path, labels: list[str] | None = None) -> tuple[list[str], dict[str, int]]:
    """Check that ``path`` is an image-folder data set; return its sorted labels and images per subset.

    With ``labels``, return those labels (in the data set's order) and count only their images;
    a label the data set lacks raises DatasetError naming ``configuration.labels``. Otherwise raises
    DatasetError as :func:`count_images` does.
    """
    images_by_label = count_images(path)
    chosen = choose_labels(sorted(images_by_label["train"]), labels)
    return chosen, {subset: sum(images_by_label[subset].get(label, 0) for label in chosen) for subset in SUBSETS}


def _export_digits(root: Path, validation_fraction: float, seed: int) -> dict[str, Any]:
    """Write the digits as PNG files under ``root``; return the labels and images per subset."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # Pixel values are 0..16; stretch them to the full 8-bit range an image viewer expects.
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    indexes = np.arange(len(digits.target))
    train_indexes, validation_indexes = train_test_split(indexes, test_size=validation_fraction, random_state=seed, stratify=digits.target)
    counts: dict[str, int] = {}
    for subset, subset_indexes in (("train", train_indexes), ("validation", validation_indexes)):
        for index in sorted(int(i) for i in subset_indexes):
            folder = root / subset / str(int(digits.target[index]))
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[index]).save(folder / f"{index:04d}.png")
        counts[subset] = len(subset_indexes)
    return {"labels": [str(label) for label in range(10)], "train_images": counts["train"], "validation_images": counts["validation"]}


def write_digits(dest: Path, validation_fraction: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """Export scikit-learn's digits (1,797 8x8 grayscale images, labels "0".."9") as an image folder.

    Writes ``dest/train/<label>/<index>.png`` and ``dest/validation/<label>/<index>.png``, where
    ``index`` is the image's position in scikit-learn's data set. The split is stratified by label
    and depends only on ``validation_fraction`` and ``seed``. When ``dest`` already holds a
    complete export made with the same parameters, nothing is written. The export is built in a
    scratch folder beside ``dest`` and moved in at the end, so an interrupted export never looks
    complete (see :func:`trainfaas.adapters.samples.export_once`). Returns ``{"path", "labels",
    "train_images", "validation_images"}``.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise DatasetError(
            f"validation_fraction must lie strictly between 0 and 1, not {validation_fraction}",
            {"validation_fraction": "must lie strictly between 0 and 1"},
        )
    parameters = {"sample": "digits", "version": DIGITS_VERSION, "validation_fraction": validation_fraction, "seed": seed}
    return export_once(dest, parameters, SUBSETS, lambda scratch: _export_digits(scratch, validation_fraction, seed))


SAMPLES: dict[str, str] = {
    "digits": "trainfaas.adapters.datasets:write_digits",
    "shapes": "trainfaas.adapters.shapes:write_shapes",
    "text": "trainfaas.adapters.text_samples:write_text",
    "ner": "trainfaas.adapters.text_samples:write_ner",
}
"""Bundled sample data sets by name, as ``module:function`` references imported only when used;
each writer takes ``dest`` and returns a summary dict that includes ``path``."""


def sample_writer(name: str) -> Callable[..., dict[str, Any]]:
    """The writer of the bundled sample ``name``; DatasetError naming the known ones otherwise."""
    if name not in SAMPLES:
        raise DatasetError(f"no bundled sample {name!r}", {"name": "one of: " + ", ".join(SAMPLES)})
    return resolve(SAMPLES[name], "sample writer")  # type: ignore[no-any-return]
