"""YOLO-format data sets: the check the API runs before queueing, and the view a training reads.

A YOLO data set is a directory laid out like the bundled shapes sample::

    <data set>/data.yaml                       names: a list, or a mapping of class id to name
    <data set>/images/{train,validation}/<image>
    <data set>/labels/{train,validation}/<image stem>.txt

Each label line is ``<class id> <x> <y> <w> <h>`` (a box) or ``<class id> x1 y1 x2 y2 x3 y3 ...``
(a polygon of at least three points), coordinates relative to the image (0..1). An image without a
label file, or with an empty one, shows nothing (a negative sample). The validation folder may
also be called ``val``, and ``data.yaml`` may name the image folders itself with ``train`` and
``val`` (or ``validation``) keys, relative to its ``path`` key or to its own folder. ``path``,
``train``, ``val``, ``validation`` and ``test`` are relative paths that stay inside the data set's
folder; every file read must lie inside it too (see :mod:`trainfaas.adapters.confine`).

Trainings never read the data set in place: :func:`build_view` writes a view of it into the
output directory (symlinked images, rewritten label files) with its own ``data.yaml``. That is
where label subsets and dropped negatives take effect, and it keeps ultralytics from writing its
label caches into the user's data set.

This module imports neither torch nor ultralytics, so that the API can check data sets cheaply.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from trainfaas.adapters.confine import RULE, confined, files_under, outside, read_text, relative_name, shown
from trainfaas.services.core.errors import DatasetError

IMAGE_SUFFIXES: tuple[str, ...] = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
VALIDATION_FOLDERS: tuple[str, ...] = ("validation", "val")
MAX_DATA_YAML_BYTES = 1024 * 1024
LAYOUT = (
    "<data set>/data.yaml with names, images in <data set>/images/train and <data set>/images/validation (or val),"
    " YOLO label files <data set>/labels/<subset>/<image stem>.txt with lines '<class id> <x> <y> <w> <h>' or"
    " '<class id> <x1> <y1> <x2> <y2> <x3> <y3> ...' (0..1)"
)


@dataclass(frozen=True)
class YoloDataset:
    """A checked YOLO data set: its class names and the image folder of each subset."""

    root: Path
    names: list[str]
    image_dirs: dict[str, Path]  # "train" and "val"


def _invalid(path: Path, problem: str, field: str = "dataset") -> DatasetError:
    return DatasetError(f"data set {path}: {problem}; expected {LAYOUT}", {field: problem})


def _name(value: Any, path: Path) -> str:
    """One class name: a string (or a number); anything else (a list, a mapping) is refused unread."""
    if not isinstance(value, (str, int, float)):
        raise _invalid(path, "data.yaml names must be strings")
    return str(value)


def _names(data: dict[str, Any], path: Path) -> list[str]:
    names = data.get("names")
    if isinstance(names, dict) and names:
        try:
            ids = sorted(int(key) for key in names)
        except (TypeError, ValueError):
            raise _invalid(path, "data.yaml names must map class ids 0, 1, ... to names") from None
        if ids != list(range(len(ids))):
            raise _invalid(path, "data.yaml names must number the classes 0, 1, ... without gaps")
        return [_name(names[key] if key in names else names[str(key)], path) for key in ids]
    if isinstance(names, list) and names:
        return [_name(name, path) for name in names]
    raise _invalid(path, "data.yaml has no names (a list, or a mapping of class id to name)")


def _read_yaml(path: Path) -> dict[str, Any]:
    file = confined(path, path / "data.yaml")
    if not file.is_file():
        raise _invalid(path, "no data.yaml")
    if file.stat().st_size > MAX_DATA_YAML_BYTES:
        raise _invalid(path, f"data.yaml is larger than {MAX_DATA_YAML_BYTES} bytes")
    try:
        data = yaml.safe_load(read_text(path, file))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as error:
        raise _invalid(path, f"data.yaml cannot be read ({error.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise _invalid(path, "data.yaml is not a mapping")
    return data


def _inside(path: Path, base: Path, data: dict[str, Any], key: str) -> Path:
    """``base / data[key]``: a relative path that stays inside the data set ``path``; DatasetError naming the key otherwise."""
    given = data[key]
    if not isinstance(given, str):
        raise _invalid(path, f"data.yaml {key} must name one folder, a relative path inside the data set")
    if PurePosixPath(given).is_absolute() or Path(given).is_absolute() or given.startswith("~"):
        raise _invalid(path, f"data.yaml {key} is an absolute path; {RULE}")
    folder = base / given
    if not folder.resolve().is_relative_to(path):
        raise outside(path, f"data.yaml {key}")
    return folder


def _image_dirs(path: Path, data: dict[str, Any]) -> dict[str, Path]:
    """The train and val image folders: data.yaml's train/val keys, else images/train and images/validation|val.

    ``path``, ``train``, ``val``, ``validation`` and ``test`` must stay inside the data set (checked
    before any folder is listed)."""
    base = _inside(path, path, data, "path") if data.get("path") else path
    for key in ("train", "val", "validation"):
        if data.get(key):
            _inside(path, base, data, key)
    tests = data.get("test") or []
    for test in tests if isinstance(tests, list) else [tests]:  # ultralytics also takes a list of test folders
        _inside(path, base, {"test": test}, "test")
    folders: dict[str, Path] = {}
    for subset, keys, defaults in (("train", ("train",), ("train",)), ("val", ("val", "validation"), VALIDATION_FOLDERS)):
        given = next((data[key] for key in keys if data.get(key)), None)
        candidates = [base / given] if given else [path / "images" / name for name in defaults]
        folder = next((candidate for candidate in candidates if confined(path, candidate).is_dir()), None)
        if folder is None:
            tried = " or ".join(relative_name(path, candidate) for candidate in candidates)
            raise _invalid(path, f"no {subset} image folder {tried}")
        folders[subset] = folder
    return folders


def images_in(root: Path, folder: Path) -> list[Path]:
    """The image files under ``folder`` (recursively), sorted; every file touched confined to the data set ``root``."""
    return sorted(p for p in files_under(root, folder) if p.suffix.lower() in IMAGE_SUFFIXES)


def label_file(image: Path) -> Path:
    """Where ultralytics looks for an image's labels: the last ``images`` folder swapped for ``labels``."""
    parts = list(image.with_suffix(".txt").parts)
    index = len(parts) - 1 - parts[::-1].index("images") if "images" in parts else None
    if index is None:
        return image.with_suffix(".txt")
    parts[index] = "labels"
    return Path(*parts)


def parse_labels(file: Path, classes: int, polygons: bool, root: Path | None = None) -> list[tuple[int, list[float]]]:
    """The (class id, coordinates) of each object in a label file; [] when there is none.

    Raises ValueError saying which line is wrong: a class id outside 0..classes-1, coordinates
    that are neither a box nor a polygon, or (when ``polygons``) a box where a polygon is needed.
    With ``root`` (the data set's folder), the file is read only if it lies inside it.
    """
    if not file.is_file():
        return []
    objects = []
    text = file.read_text(encoding="utf-8") if root is None else read_text(root, file)
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            class_id, coordinates = int(fields[0]), [float(value) for value in fields[1:]]
        except ValueError:
            raise ValueError(f"line {number} is not '<class id> <numbers>'") from None
        if not 0 <= class_id < classes:
            raise ValueError(f"line {number} has class id {class_id}, outside 0..{classes - 1} (data.yaml names)")
        is_box, is_polygon = len(coordinates) == 4, len(coordinates) >= 6 and len(coordinates) % 2 == 0
        if polygons and not is_polygon:
            raise ValueError(f"line {number} is not a polygon of at least 3 points (segmentation needs polygons)")
        if not (is_box or is_polygon):
            raise ValueError(f"line {number} has {len(coordinates)} coordinates: neither a box (4) nor a polygon (6 or more, even)")
        objects.append((class_id, coordinates))
    return objects


def read_dataset(path: Path, polygons: bool = False, labels: list[str] | None = None) -> YoloDataset:
    """Check the YOLO data set at ``path`` and return it; DatasetError naming the problem otherwise.

    Every label file is parsed (class ids within data.yaml's names; polygons of at least three
    points when ``polygons``). ``labels``, a subset of the names to train on, must all be names
    of the data set (else the error names ``configuration.labels``). A file or folder that leads
    outside the data set's folder is refused naming it, a data.yaml key that does so naming the key.
    """
    path = Path(path).resolve()
    if not path.is_dir():
        raise _invalid(path, "the directory does not exist")
    data = _read_yaml(path)
    names = _names(data, path)
    image_dirs = _image_dirs(path, data)
    for subset, folder in image_dirs.items():
        images = images_in(path, folder)
        if not images:
            raise _invalid(path, f"the {subset} image folder {folder.name}/ has no images")
        for image in images:
            labels_file = confined(path, label_file(image))
            try:
                parse_labels(labels_file, len(names), polygons, path)
            except UnicodeDecodeError:
                raise _invalid(path, f"label file {relative_name(path, labels_file)} is not UTF-8 text") from None
            except (ValueError, OSError) as error:  # parse_labels names the line, never its text
                raise _invalid(path, f"label file {relative_name(path, labels_file)}: {error}") from None
    unknown = [label for label in labels or [] if label not in names]
    if unknown:
        raise DatasetError(
            f"data set {path} has no labels {shown(unknown)}; its labels are {shown(names)}",
            {"configuration.labels": f"each one of: {shown(names)}"},
        )
    return YoloDataset(path, names, image_dirs)


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    os.symlink(source.resolve(), target)


def build_view(dataset: YoloDataset, dest: Path, labels: list[str] | None, include_negatives: bool,
               polygons: bool = False) -> Path:
    """Write a view of ``dataset`` under ``dest`` for ultralytics to train on; return its data.yaml.

    Images are symlinked; label files are rewritten keeping only the chosen ``labels`` (all when
    None), with class ids renumbered in the order of ``labels``. Without ``include_negatives``,
    training images that show none of the chosen labels are left out; the validation subset keeps
    every image, so that precision is still measured on images with nothing to find.
    """
    chosen = list(labels) if labels else list(dataset.names)
    new_id = {dataset.names.index(name): index for index, name in enumerate(chosen)}
    dest = Path(dest).resolve()
    for subset, folder in dataset.image_dirs.items():
        for image in images_in(dataset.root, folder):
            labels_file = confined(dataset.root, label_file(image))
            kept = [(new_id[c], xy) for c, xy in parse_labels(labels_file, len(dataset.names), polygons, dataset.root) if c in new_id]
            if not kept and not include_negatives and subset == "train":
                continue
            relative = image.relative_to(folder)
            _link(image, dest / "images" / subset / relative)
            text = "".join(f"{c} " + " ".join(f"{v:.6g}" for v in xy) + "\n" for c, xy in kept)
            target = (dest / "labels" / subset / relative).with_suffix(".txt")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    if not any((dest / "images" / "train").rglob("*")):
        raise _invalid(dataset.root, "no training image shows any of the chosen labels", "configuration.labels")
    data_yaml = dest / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({
        "path": str(dest),
        "train": str(dest / "images" / "train"),
        "val": str(dest / "images" / "val"),
        "names": dict(enumerate(chosen)),
    }, sort_keys=False))
    return data_yaml
