"""Manifests of data set versions: every file of a data set folder with its size and SHA-256, the
format its layout shows, its labels and counts per subset, and one digest of it all.

:func:`take` walks a folder within a budget (files, bytes, seconds; a DatasetError naming the limit
beyond it) and refuses any file or folder that leads outside it once symlinks are resolved. Links that
stay inside are read (a linked folder is not walked into, so no link makes a cycle).

:func:`differences` is what a training checks before its adapter reads: the files the manifest
lists, each compared by size first (one ``stat``) and then by SHA-256, so that what is read costs
at most the version's bytes, which :func:`take` bounded when the version was taken. Files added
since are counted too.

This module imports neither torch nor anything heavy: the API and the work process both use it.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainfaas.adapters.confine import RULE, relative_name
from trainfaas.services.core.errors import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
SUBSET_FOLDERS = ("train", "validation", "val", "test")
CHUNK = 1024 * 1024
MAX_ADDED = 10_000  # files added since a version was taken that a training's check walks before it stops counting

Entry = list  # [relative path, size, sha256]


@dataclass
class Budget:
    """What taking one version may cost: files, bytes hashed, and seconds."""

    max_files: int
    max_bytes: int
    seconds: float
    deadline: float = 0.0
    files: int = 0
    bytes: int = 0

    def start(self) -> Budget:
        self.deadline = time.monotonic() + self.seconds
        return self

    def count(self, root: Path, size: int) -> None:
        self.files += 1
        self.bytes += size
        if self.files > self.max_files:
            raise DatasetError(f"data set {root} holds more than {self.max_files} files",
                               {"path": f"a data set of at most {self.max_files} files (TRAINFAAS_DATASET_VERSION_MAX_FILES)"})
        if self.bytes > self.max_bytes:
            raise DatasetError(f"data set {root} holds more than {self.max_bytes} bytes",
                               {"path": f"a data set of at most {self.max_bytes} bytes (TRAINFAAS_DATASET_VERSION_MAX_BYTES)"})
        self.in_time(root)

    def in_time(self, root: Path) -> None:
        if time.monotonic() >= self.deadline:
            raise DatasetError(f"data set {root}: taking its version ran past {self.seconds:g} s",
                               {"path": f"a data set walked and hashed within {self.seconds:g} s (TRAINFAAS_DATASET_VERSION_SECONDS)"})


@dataclass
class Manifest:
    """A version's contents: sorted entries, the format found, labels and counts per subset, and the digest."""

    files: list[Entry]
    format: str
    subsets: dict[str, dict[str, int]] = field(default_factory=dict)
    digest: str = ""

    @property
    def bytes(self) -> int:
        return sum(entry[1] for entry in self.files)


def _refuse(root: Path, path: Path) -> DatasetError:
    name = relative_name(root, path)
    return DatasetError(f"data set {root}: {name} leads outside the data set's folder; {RULE}",
                        {"path": f"{name} must stay inside the data set: {RULE}"})


def _sha256(path: Path, budget: Budget | None, root: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            if budget is not None:
                budget.in_time(root)
    return digest.hexdigest()


def _walk(root: Path, budget: Budget, outside: list[str] | None = None) -> list[Path]:
    """Every file under ``root``, each checked to resolve inside it (one that does not is refused,
    or with ``outside`` listed there); hidden names are skipped."""
    found: list[Path] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            target = entry.resolve()
            if not target.is_relative_to(root):
                if outside is None:
                    raise _refuse(root, entry)
                outside.append(relative_name(root, entry))
                continue
            if entry.is_dir():
                if not entry.is_symlink():
                    stack.append(entry)
            elif entry.is_file():
                budget.count(root, entry.stat().st_size)
                found.append(entry)
    return found


def take(root: Path, budget: Budget) -> Manifest:
    """The manifest of the data set folder ``root`` (resolved), within ``budget``."""
    root = root.resolve()
    try:
        if not root.is_dir():
            raise DatasetError(f"data set {root} is not a directory", {"path": "an existing directory inside the data roots"})
        budget.start()
        entries = [[path.relative_to(root).as_posix(), path.stat().st_size, _sha256(path, budget, root)] for path in _walk(root, budget)]
    except OSError as exc:  # a name too long, a folder or file it may not read
        raise DatasetError(f"data set {root} cannot be read: {exc.strerror or type(exc).__name__}",
                           {"path": "a directory inside the data roots whose files the server can read"}) from None
    entries.sort()
    form, subsets = describe([entry[0] for entry in entries])
    return Manifest(entries, form, subsets, digest_of(entries))


def digest_of(entries: list[Entry]) -> str:
    """The SHA-256 of the sorted manifest, as compact JSON."""
    return hashlib.sha256(json.dumps(sorted(entries), separators=(",", ":")).encode()).hexdigest()


def _images(names: list[str]) -> list[list[str]]:
    return [name.split("/") for name in names if name.lower().endswith(IMAGE_SUFFIXES)]


def describe(names: list[str]) -> tuple[str, dict[str, dict[str, int]]]:
    """The formats the relative file ``names`` show (``+``-joined when one folder is laid out for
    several, as the bundled shapes sample is for yolo and image-mask), and the labels and counts of
    each subset where the paths tell them.

    ``image-folder``: ``<subset>/<label>/<image>`` (subsets train, validation, val, test);
    ``image-labels``: ``<label>/<image>``, one subset (``all``), what a split training takes per subset;
    ``yolo`` (a data.yaml), ``image-mask`` (labels.json, images/ and masks/), ``text-csv-jsonl``
    (train.csv or train.jsonl), ``conll`` (train.conll or train.txt); otherwise ``files``. Labels and
    counts are read from the paths of the two image layouts only; the others record files alone."""
    images = _images(names)
    counts: dict[str, Counter[str]] = {}
    if images and len(images) == len(names) and all(len(parts) == 2 for parts in images):
        return "image-labels", {"all": dict(sorted(Counter(parts[0] for parts in images).items()))}
    top = set(names)
    tops = {name.split("/")[0] for name in names}
    found = []
    if top & {"data.yaml", "dataset.yaml"}:
        found.append("yolo")
    if "labels.json" in top and {"images", "masks"} <= tops:
        found.append("image-mask")
    if top & {"train.csv", "train.jsonl"}:
        found.append("text-csv-jsonl")
    if top & {"train.conll", "train.txt"}:
        found.append("conll")
    in_subsets = [parts for parts in images if len(parts) == 3 and parts[0] in SUBSET_FOLDERS]
    if in_subsets and not found:
        for subset, label, _ in in_subsets:
            counts.setdefault(subset, Counter())[label] += 1
        found.append("image-folder")
    return "+".join(found) or "files", {subset: dict(sorted(c.items())) for subset, c in sorted(counts.items())}


def differences(root: Path, entries: list[Entry], max_listed: int = 20) -> tuple[int, list[str]]:
    """How many files of ``root`` differ from ``entries`` (missing, resized, rehashed or added),
    and the first ``max_listed`` of their names. Sizes are compared first, hashes only where sizes agree."""
    root = root.resolve()
    differing: list[str] = []
    listed = set()
    for name, size, sha in entries:
        listed.add(name)
        path = root / name
        try:
            target = path.resolve()
            same = target.is_relative_to(root) and path.is_file() and os.stat(path).st_size == size and _sha256(path, None, root) == sha
        except OSError:
            same = False
        if not same:
            differing.append(name)
    outside: list[str] = []  # links out of the folder, put there since: differences too
    try:
        added = [path.relative_to(root).as_posix() for path in _walk(root, Budget(len(entries) + MAX_ADDED, 10**18, 10**9).start(), outside)]
    except DatasetError:  # grown by more than MAX_ADDED files: not walked further
        added = [f"(more than {MAX_ADDED} files added)"]
    unique = set(differing + outside + [name for name in added if name not in listed])
    return len(unique), sorted(unique)[:max_listed]


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Files added, removed and changed, labels added and removed, and counts changed, from version ``before`` to ``after``."""
    old = {entry[0]: entry for entry in before["manifest"]}
    new = {entry[0]: entry for entry in after["manifest"]}
    old_labels = {label for counts in before["subsets"].values() for label in counts}
    new_labels = {label for counts in after["subsets"].values() for label in counts}
    counts = []
    for subset in sorted(set(before["subsets"]) | set(after["subsets"])):
        was, now = before["subsets"].get(subset, {}), after["subsets"].get(subset, {})
        counts += [{"subset": subset, "label": label, "from": was.get(label, 0), "to": now.get(label, 0)}
                   for label in sorted(set(was) | set(now)) if was.get(label, 0) != now.get(label, 0)]
    return {
        "files_added": sorted(set(new) - set(old)), "files_removed": sorted(set(old) - set(new)),
        "files_changed": sorted(name for name in set(old) & set(new) if old[name] != new[name]),
        "labels_added": sorted(new_labels - old_labels), "labels_removed": sorted(old_labels - new_labels), "counts_changed": counts,
    }
