"""Image-mask data sets for semantic segmentation: the layout check, without torch.

An image-mask data set is a directory laid out like this (the bundled "shapes" sample is one)::

    <data set>/labels.json                          {"labels": ["circle", "square", ...]}
    <data set>/images/{train,validation}/<name>.<png|jpg|jpeg|bmp>
    <data set>/masks/{train,validation}/<name>.png  8-bit, one class value per pixel

In a mask, 0 is background, ``i + 1`` is ``labels[i]`` and 255 marks pixels to ignore. The
validation folder may also be called ``val``. Every image needs a mask of the same name (stem)
and size. Other files and folders (the sample's YOLO ``labels/``, ``data.yaml``) are ignored.

The check is cheap: it lists the folders, reads ``labels.json`` and opens a few masks; it never
decodes the whole data set, so it can run in the API before a training is queued.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from trainfaas.adapters.confine import confined, entries, read_text, shown
from trainfaas.services.core.errors import DatasetError

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")
MASK_SUFFIX = ".png"
VALIDATION_NAMES: tuple[str, ...] = ("validation", "val")
IGNORE_VALUE = 255
MAX_LABELS = IGNORE_VALUE - 1  # values 1..254 name labels; 0 is background, 255 is ignored
MAX_LABELS_JSON_BYTES = 1024 * 1024
SAMPLED_MASKS = 4  # masks opened per subset by the check
LAYOUT = (
    "<data set>/labels.json ({\"labels\": [...]}), <data set>/images/{train,validation}/<name>.png|.jpg and"
    " <data set>/masks/{train,validation}/<name>.png (8-bit: 0 background, i+1 for labels[i], 255 ignored)"
)


@dataclass(frozen=True)
class ImageMaskDataset:
    """What the check found: the data set's labels and each subset's (image, mask) pairs, sorted by name."""

    path: Path
    labels: list[str]
    pairs: dict[str, list[tuple[Path, Path]]]  # keys "train" and "validation"


def _invalid(path: Path, problem: str, field: str = "dataset") -> DatasetError:
    return DatasetError(f"data set {path}: {problem}; expected {LAYOUT}", {field: problem})


def _read_labels(path: Path) -> list[str]:
    file = confined(path, path / "labels.json")
    if file.is_file() and file.stat().st_size > MAX_LABELS_JSON_BYTES:
        raise _invalid(path, f"labels.json is larger than {MAX_LABELS_JSON_BYTES} bytes")
    try:
        document = json.loads(read_text(path, file))
    except FileNotFoundError:
        raise _invalid(path, "no labels.json") from None
    except (OSError, ValueError, RecursionError) as error:  # a JSON error names a line and column, never the text
        raise _invalid(path, f"labels.json is not readable JSON ({error.__class__.__name__}"
                             f"{f' at line {error.lineno}' if isinstance(error, json.JSONDecodeError) else ''})") from None
    labels = document.get("labels") if isinstance(document, dict) else None
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) and label for label in labels):
        raise _invalid(path, "labels.json must hold {\"labels\": [...]}, a non-empty list of names")
    if len(set(labels)) != len(labels):
        raise _invalid(path, "labels.json names a label twice")
    if len(labels) > MAX_LABELS:
        raise _invalid(path, f"labels.json has {len(labels)} labels; 8-bit masks hold at most {MAX_LABELS}")
    return list(labels)


def _subset_folder(path: Path, subset: str) -> str:
    """The folder name of ``subset`` (train, or validation/val) present under images/."""
    names = (subset,) if subset == "train" else VALIDATION_NAMES
    for name in names:
        if confined(path, path / "images" / name).is_dir():
            return name
    raise _invalid(path, f"no images/{'/ or images/'.join(names)}/ folder")


def _pairs(path: Path, folder: str, subset: str) -> list[tuple[Path, Path]]:
    images = [p for p in entries(path, path / "images" / folder) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise _invalid(path, f"images/{folder}/ has no images: the {subset} subset is empty")
    mask_folder = confined(path, path / "masks" / folder)
    if not mask_folder.is_dir():
        raise _invalid(path, f"no masks/{folder}/ folder")
    masks = {p.stem: p for p in entries(path, mask_folder) if p.is_file() and p.suffix.lower() == MASK_SUFFIX}
    missing = [image.name for image in images if image.stem not in masks]
    if missing:
        few = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise _invalid(path, f"images without a mask in masks/{folder}/: {few}")
    return [(image, masks[image.stem]) for image in images]


def _check_mask(path: Path, image_path: Path, mask_path: Path, label_count: int) -> None:
    """Open one mask: 8-bit, the size of its image, values naming known labels (or 255)."""
    from PIL import Image

    try:
        with Image.open(mask_path) as mask, Image.open(image_path) as image:
            if mask.mode not in ("L", "P"):
                raise _invalid(path, f"mask {mask_path.name} is {mask.mode}, not an 8-bit single-channel PNG")
            if mask.size != image.size:
                raise _invalid(path, f"mask {mask_path.name} is {mask.size[0]}x{mask.size[1]}, its image {image.size[0]}x{image.size[1]}")
            values = {value for _, value in mask.getcolors(256) or []}
    except Image.DecompressionBombError:
        raise _invalid(path, f"mask {mask_path.name} or its image has more pixels than Pillow opens safely") from None
    except OSError as error:
        raise _invalid(path, f"cannot read {mask_path.name} or its image ({error})") from None
    unknown = sorted(value for value in values if label_count < value < IGNORE_VALUE)
    if unknown:
        raise _invalid(path, f"mask {mask_path.name} has values {unknown} beyond the {label_count} labels of labels.json")


def _sample(pairs: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """Up to SAMPLED_MASKS pairs spread over the subset."""
    stride = max(len(pairs) // SAMPLED_MASKS, 1)
    return pairs[::stride][:SAMPLED_MASKS]


def read_image_mask(path: Path) -> ImageMaskDataset:
    """Check that ``path`` is an image-mask data set and return its labels and image/mask pairs.

    Raises DatasetError, naming the problem and the layout expected, when the directory,
    labels.json, a subset's images or masks folder is missing, a subset is empty, an image has no
    mask, or one of the sampled masks is not 8-bit, differs in size from its image or holds a value
    that names no label; and naming the file when a file or folder leads outside the data set's folder.
    """
    path = Path(path).resolve()
    if not path.is_dir():
        raise _invalid(path, "the directory does not exist")
    labels = _read_labels(path)
    pairs: dict[str, list[tuple[Path, Path]]] = {}
    for subset in ("train", "validation"):
        pairs[subset] = _pairs(path, _subset_folder(path, subset), subset)
        for image_path, mask_path in _sample(pairs[subset]):
            _check_mask(path, image_path, mask_path, len(labels))
    return ImageMaskDataset(path, labels, pairs)


def select_labels(dataset_labels: list[str], chosen: list[str] | None) -> list[str]:
    """The labels to train on: ``chosen`` (in the data set's order) or all of them.

    Raises DatasetError naming ``configuration.labels`` when ``chosen`` has a label the data set lacks.
    """
    if chosen is None:
        return list(dataset_labels)
    unknown = [label for label in chosen if label not in dataset_labels]
    if unknown:
        raise DatasetError(
            f"labels {shown(unknown)} are not in the data set, whose labels are {shown(dataset_labels)}",
            {"configuration.labels": f"unknown {shown(unknown)}; choose among {shown(dataset_labels)}"},
        )
    return [label for label in dataset_labels if label in chosen]


def value_map(dataset_labels: list[str], labels: list[str]) -> list[int]:
    """A 256-entry lookup table from data set mask values to training classes.

    Background stays 0, ``labels[j]`` becomes ``j + 1``, labels left out become background, and
    255 (and any value naming no label) is ignored.
    """
    table = [IGNORE_VALUE] * 256
    table[0] = 0
    for index, label in enumerate(dataset_labels):
        table[index + 1] = labels.index(label) + 1 if label in labels else 0
    return table

