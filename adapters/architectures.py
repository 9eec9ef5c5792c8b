"""The architecture catalog: for every architecture an adapter serves, what it is and how big.

Each entry has the task, the adapter, the service that trains it (``mgmt-train-<architecture>``),
the number of trainable parameters of the architecture's reference configuration (the adapter's
``reference_model``: for torchvision classification the 1000-class ImageNet model), a size class
(small below 10,000,000 parameters, large above 30,000,000, medium between) and the footprint of
a checkpoint of its weights in MB (10^6 bytes; parameters and buffers as stored by torch.save).

The figures are computed from the real models, not typed in. Models are built with their
parameters on the "meta" device (``accelerate.init_empty_weights``), which allocates no memory,
so the whole catalog takes seconds; a model whose builder must run it once (YOLO computes its
strides that way) is built for real. Results are cached per user in
``$XDG_CACHE_HOME/trainfaas/architectures.json`` (``~/.cache`` by default), keyed by the versions of
the libraries that define the models, so an upgrade recomputes them; ``trainfaas up`` fills the
cache in the background when it is missing or stale (``python -m trainfaas.adapters.architectures``).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterable
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from trainfaas.adapters.catalog import Entry, catalog, load_class
from trainfaas.services.core.errors import ConfigError, NotFound
from trainfaas.services.core.files import atomic_write_text

log = logging.getLogger(__name__)

SMALL_BELOW = 10_000_000
LARGE_ABOVE = 30_000_000
CACHE_FORMAT = 2  # 2: googlenet and inception_v3 counted with their auxiliary classifiers
LIBRARIES = ("trainfaas", "torch", "torchvision", "ultralytics", "transformers")


def size_class(parameters: int | None) -> str | None:
    """small < 10,000,000 ≤ medium ≤ 30,000,000 < large; None when unknown."""
    if parameters is None:
        return None
    if parameters < SMALL_BELOW:
        return "small"
    return "large" if parameters > LARGE_ABOVE else "medium"


def _versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = ""
    return found


def measure(entry: Entry, extra: str = "") -> dict[str, Any]:
    """Build ``entry``'s reference model without allocating its weights and count it."""
    cls = load_class(entry.adapter)
    from accelerate import init_empty_weights

    try:
        with init_empty_weights(include_buffers=False):
            model = cls.reference_model(entry.architecture)
    except Exception:  # noqa: BLE001 - some builders run the model once (YOLO computes its strides): build it for real
        try:
            model = cls.reference_model(entry.architecture)
        except Exception as error:  # noqa: BLE001 - a model that cannot be measured is listed without figures
            log.warning("cannot measure %s: %s", entry.architecture, error)
            return {"parameters": None, "checkpoint_mb": None}
    if model is None:
        return {"parameters": None, "checkpoint_mb": None}
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    stored = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return {"parameters": int(parameters), "checkpoint_mb": round(stored / 1e6, 1)}


def _describe(entry: Entry, figures: dict[str, Any]) -> dict[str, Any]:
    cls = load_class(entry.adapter)
    return {
        "architecture": entry.architecture,
        "task": entry.task,
        "adapter": entry.adapter,
        "source": entry.source,
        "service": f"mgmt-train-{entry.architecture}",
        "dataset_format": cls.dataset_format,
        "parameters": figures["parameters"],
        "size_class": size_class(figures["parameters"]),
        "checkpoint_mb": figures["checkpoint_mb"],
    }


@lru_cache(maxsize=64)
def _source_digest(reference: str) -> str:
    """A digest of the adapter's module source: editing how it builds models invalidates its figures."""
    module = sys.modules.get(reference.partition(":")[0])
    try:
        return hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()[:12] if module and module.__file__ else ""
    except OSError:
        return ""


class _Cache:
    """The measured figures on disk, shared by every process under one home, behind a file lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.key = {"format": CACHE_FORMAT, "versions": _versions()}

    def __enter__(self) -> _Cache:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path.with_suffix(".lock"), "w")  # noqa: SIM115 - released in __exit__
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            saved = {}
        self.figures: dict[str, dict[str, Any]] = saved.get("figures", {}) if saved.get("key") == self.key else {}
        self.changed = False
        return self

    def get(self, entry: Entry, extra: str) -> dict[str, Any]:
        name = f"{entry.adapter}@{_source_digest(entry.adapter)}:{entry.architecture}"
        if name not in self.figures:
            # Figures of an earlier version of the adapter's source are stale: drop them.
            for stale in [key for key in self.figures if key.startswith(f"{entry.adapter}@") and key.endswith(f":{entry.architecture}")]:
                del self.figures[stale]
            self.figures[name] = measure(entry, extra)
            self.changed = True
        return self.figures[name]

    def __exit__(self, *exc: object) -> None:
        try:
            if self.changed:
                atomic_write_text(self.path, json.dumps({"key": self.key, "figures": self.figures}, indent=1, sort_keys=True))
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()


def cache_path() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "trainfaas" / "architectures.json"


def cache_is_current() -> bool:
    """Whether the cache was written by the libraries installed now (cheap: imports no torch)."""
    try:
        return json.loads(cache_path().read_text()).get("key") == _Cache(cache_path()).key
    except (OSError, ValueError):
        return False


def architectures(extra: str = "", task: str | None = None, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The catalog sorted by task and architecture, optionally of one task or of some names.

    Raises ConfigError for an unknown task and NotFound for an unknown architecture name.
    """
    entries = catalog(extra)
    tasks = sorted({e.task for e in entries.values()})
    if task is not None and task not in tasks:
        raise ConfigError(f"no task {task!r}", {"task": "one of: " + ", ".join(tasks)})
    selected = [e for e in entries.values() if task is None or e.task == task]
    if names is not None:
        wanted = list(names)
        unknown = [n for n in wanted if n not in entries]
        if unknown:
            raise NotFound(f"no architecture {unknown[0]!r}; see trainfaas architectures", {"architecture": "unknown"})
        selected = [entries[n] for n in wanted]
    with _Cache(cache_path()) as cache:
        rows = [_describe(e, cache.get(e, extra)) for e in selected]
    return sorted(rows, key=lambda r: (r["task"], r["architecture"]))


def options(architecture: str, extra: str = "") -> dict[str, Any]:
    """The declared options of the adapter serving ``architecture``, as JSON Schema."""
    entries = catalog(extra)
    if architecture not in entries:
        raise NotFound(f"no architecture {architecture!r}; see trainfaas architectures", {"architecture": "unknown"})
    return load_class(entries[architecture].adapter).options_schema()


if __name__ == "__main__":
    # Fill the cache: every architecture of the built-in adapters and those named in argv[1].
    architectures(sys.argv[1] if len(sys.argv) > 1 else "")
