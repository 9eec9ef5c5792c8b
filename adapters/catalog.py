"""Which adapter serves which architecture: built-ins, entry points, and the TRAINFAAS_ADAPTERS setting.

Adapter modules are imported only when asked for, so that a service that trains a sleep
diagnostic never pays for importing torch.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points

from trainfaas.adapters.base import ModelAdapter
from trainfaas.services.core.errors import AdapterError, ConfigError
from trainfaas.services.core.references import old_name_hint, resolve

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
    """Import ``module:Class`` and check that it is a ModelAdapter declaring architectures.

    Raises AdapterError saying what is wrong; for an adapter written against the names trainfaas
    used before its one namespace (``from adapters.base import ModelAdapter``), what to write instead.
    """
    try:
        cls = resolve(reference, "adapter")
    except ConfigError as exc:
        raise AdapterError(exc.message, {"adapter": reference}) from exc
    except ImportError as exc:  # an import inside the adapter's module, other than a missing module
        raise AdapterError(f"cannot load adapter {reference}: {exc}{old_name_hint(exc.name)}", {"adapter": reference}) from exc
    if not (isinstance(cls, type) and issubclass(cls, ModelAdapter)) or not cls.architectures:
        # A class of an old top-level `adapters` package found on sys.path is another class than ours.
        hint = next(filter(None, (old_name_hint(base.__module__) for base in getattr(cls, "__mro__", ()))), "")
        raise AdapterError(
            f"{reference} must subclass trainfaas.adapters.ModelAdapter and declare architectures{hint}", {"adapter": reference}
        )
    return cls


_listed: list[str] | None = None  # the entry points as listed once by remember_entry_points()


def remember_entry_points() -> None:
    """List the adapters' entry points now, once for this process and every process forked from it
    (an instance's fork server: each work process would read every installed package's metadata
    again). Only lists them: no adapter module is imported."""
    global _listed
    _listed = [ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)]


def _references(extra: str) -> list[tuple[str, str]]:
    refs = [(ref, "builtin") for ref in BUILTIN]
    listed = _listed if _listed is not None else [ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)]
    refs += [(value, "entry-point") for value in listed]
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
    """The adapter class serving ``architecture``; raises AdapterError naming what is known, and why
    any adapter of an entry point or the setting could not be loaded.

    Sources are tried from the highest priority down and the search stops at the first match,
    so resolving ``sleep`` never imports torch.
    """
    unloaded: list[str] = []
    for reference, source in reversed(_references(extra)):
        try:
            cls = load_class(reference)
        except AdapterError as exc:
            if source == "builtin":
                raise
            unloaded.append(exc.message)
            continue
        if architecture in cls.architectures:
            return cls
    known = ", ".join(sorted(catalog(extra))[:12])
    reasons = "".join(f"; {message}" for message in unloaded)
    raise AdapterError(
        f"no adapter serves architecture {architecture!r}{reasons}",
        {"architecture": f"one of: {known}, … (trainfaas adapters list)"},
    )
