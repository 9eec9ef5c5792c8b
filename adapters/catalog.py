"""Which adapter serves which architecture: built-ins, entry points, and the TRAINFAAS_ADAPTERS setting.

Adapter modules are imported only when asked for, so that a service that trains a sleep
diagnostic never pays for importing torch.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib import import_module
from importlib.metadata import entry_points

from trainfaas.adapters.base import ModelAdapter
from trainfaas.services.core.errors import AdapterError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "trainfaas.adapters"

# Lowest priority first; the cheap ones last so that they are tried first.
BUILTIN: tuple[str, ...] = (
    "trainfaas.adapters.torchvision_classification:TorchvisionClassification",
    "trainfaas.adapters.torchvision_segmentation:TorchvisionSegmentation",
    "trainfaas.adapters.yolo:UltralyticsYolo",
    "trainfaas.adapters.transformers_text:TextClassification",
    "trainfaas.adapters.transformers_text:TokenClassification",
    "trainfaas.adapters.sleep:SleepAdapter",
)


@dataclass(frozen=True)
class Entry:
    architecture: str
    task: str
    adapter: str  # module:Class
    source: str  # builtin, entry-point or setting


def load_class(reference: str) -> type[ModelAdapter]:
    """Import ``module:Class`` and check that it is a ModelAdapter declaring architectures."""
    module_name, _, class_name = reference.partition(":")
    if not module_name or not class_name:
        raise AdapterError(f"adapter reference {reference!r} must look like module:Class", {"adapter": reference})
    try:
        cls = getattr(import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise AdapterError(f"cannot load adapter {reference}: {exc}", {"adapter": reference}) from exc
    if not (isinstance(cls, type) and issubclass(cls, ModelAdapter)) or not cls.architectures:
        raise AdapterError(
            f"{reference} must subclass adapters.base.ModelAdapter and declare architectures", {"adapter": reference}
        )
    return cls


def _references(extra: str) -> list[tuple[str, str]]:
    refs = [(ref, "builtin") for ref in BUILTIN]
    refs += [(ep.value, "entry-point") for ep in entry_points(group=ENTRY_POINT_GROUP)]
    refs += [(ref.strip(), "setting") for ref in extra.split(",") if ref.strip()]
    return refs


@lru_cache(maxsize=8)
def catalog(extra: str = "") -> dict[str, Entry]:
    """Map every known architecture to its adapter. Later sources override earlier ones."""
    entries: dict[str, Entry] = {}
    for reference, source in _references(extra):
        try:
            cls = load_class(reference)
        except AdapterError as exc:
            if source == "builtin":
                raise
            log.error("skipping adapter: %s", exc.message)
            continue
        for architecture in cls.architectures:
            entries[architecture] = Entry(architecture, cls.task_of(architecture), reference, source)
    return entries


def get_adapter(architecture: str, extra: str = "") -> type[ModelAdapter]:
    """The adapter class serving ``architecture``; raises AdapterError naming what is known.

    Sources are tried from the highest priority down and the search stops at the first match,
    so resolving ``sleep`` never imports torch.
    """
    for reference, source in reversed(_references(extra)):
        try:
            cls = load_class(reference)
        except AdapterError:
            if source == "builtin":
                raise
            continue
        if architecture in cls.architectures:
            return cls
    known = ", ".join(sorted(catalog(extra))[:12])
    raise AdapterError(
        f"no adapter serves architecture {architecture!r}",
        {"architecture": f"one of: {known}, … (trainfaas adapters list)"},
    )
