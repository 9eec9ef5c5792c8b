"""The adapter SDK: ``trainfaas.adapters`` exports what an adapter author needs and is cheap to import;
adapters registered through the setting or an entry point load, and one written against the names
of trainfaas 0.1 (``from adapters.base import ModelAdapter``) is refused saying what to write instead."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import trainfaas.adapters
from trainfaas.adapters import catalog as catalog_module
from trainfaas.adapters.catalog import ENTRY_POINT_GROUP, get_adapter, load_class
from trainfaas.services.core import errors

HEAVY = ("torch", "torchvision", "numpy", "PIL", "sklearn", "cv2", "transformers", "ultralytics")

NEW_STYLE = '''
from trainfaas.adapters import ModelAdapter, Options


class Majority(ModelAdapter):
    architectures = ("{architecture}",)
    task = "classification"
    Options = Options
'''
OLD_STYLE = '''
from adapters.base import ModelAdapter


class Majority(ModelAdapter):
    architectures = ("{architecture}",)
    task = "classification"
'''


def test_the_sdk_exports_the_contract_and_the_errors_an_adapter_raises() -> None:
    assert set(trainfaas.adapters.__all__) == {"ModelAdapter", "Options", "TrainContext", "NullContext", "AdapterError", "ConfigError",
                                               "DatasetError"}
    assert trainfaas.adapters.DatasetError is errors.DatasetError and trainfaas.adapters.ConfigError is errors.ConfigError
    assert trainfaas.adapters.AdapterError is errors.AdapterError
    assert issubclass(trainfaas.adapters.NullContext, object) and hasattr(trainfaas.adapters.TrainContext, "should_stop")


def test_importing_the_sdk_imports_no_heavy_library() -> None:
    code = f"import json, sys; import trainfaas.adapters; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(found.stdout) == []


def _module(folder: Path, source: str, architecture: str) -> str:
    """Write an adapter module into ``folder``; return its module:Class reference."""
    name = f"adapter_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(source.format(architecture=architecture))
    return f"{name}:Majority"


@pytest.fixture
def no_old_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp_path`` first on sys.path, and no folder there whose ``adapters`` package (this checkout's, say)
    would answer an import of the old top-level name."""
    kept = [entry for entry in sys.path if not (Path(entry or ".") / "adapters" / "__init__.py").exists()]
    monkeypatch.setattr(sys, "path", [str(tmp_path), *kept])
    for name in [name for name in sys.modules if name == "adapters" or name.startswith("adapters.")]:
        monkeypatch.delitem(sys.modules, name)
    return tmp_path


def test_an_adapter_importing_the_old_names_is_refused_saying_to_import_trainfaas_adapters(no_old_names: Path) -> None:
    reference = _module(no_old_names, OLD_STYLE, "majority-old")
    with pytest.raises(errors.AdapterError) as caught:
        load_class(reference)
    assert "from trainfaas.adapters import ModelAdapter, Options" in caught.value.message
    assert caught.value.fields == {"adapter": reference}
    # Through the TRAINFAAS_ADAPTERS setting, as a work process resolves it: the reason comes with the refusal.
    with pytest.raises(errors.AdapterError) as caught:
        get_adapter("majority-old", reference)
    assert "no adapter serves architecture 'majority-old'" in caught.value.message and "trainfaas.adapters" in caught.value.message


def test_an_adapter_subclassing_an_old_adapters_package_on_the_path_is_refused_the_same_way(no_old_names: Path) -> None:
    (no_old_names / "adapters").mkdir()
    (no_old_names / "adapters" / "__init__.py").write_text("")
    (no_old_names / "adapters" / "base.py").write_text("class ModelAdapter:\n    architectures = ()\n")
    with pytest.raises(errors.AdapterError) as caught:
        load_class(_module(no_old_names, OLD_STYLE, "majority-stale"))
    assert "must subclass trainfaas.adapters.ModelAdapter" in caught.value.message
    assert "from trainfaas.adapters import ModelAdapter, Options" in caught.value.message


@pytest.mark.parametrize(("source", "loads"), [(NEW_STYLE, True), (OLD_STYLE, False)])
def test_adapters_of_the_entry_point_group_load_or_say_why_not(no_old_names: Path, monkeypatch: pytest.MonkeyPatch, source: str,
                                                               loads: bool) -> None:
    architecture = f"majority-{uuid.uuid4().hex[:6]}"
    point = EntryPoint(name="majority", value=_module(no_old_names, source, architecture), group=ENTRY_POINT_GROUP)
    monkeypatch.setattr(catalog_module, "entry_points", lambda group: [point] if group == ENTRY_POINT_GROUP else [])
    catalog_module.catalog.cache_clear()
    try:
        if loads:
            assert get_adapter(architecture).architectures == (architecture,)
            assert catalog_module.catalog()[architecture].source == "entry-point"
        else:
            with pytest.raises(errors.AdapterError, match="trainfaas.adapters"):
                get_adapter(architecture)
            assert architecture not in catalog_module.catalog()
    finally:
        catalog_module.catalog.cache_clear()


def test_a_reference_that_is_not_module_colon_class_is_refused() -> None:
    with pytest.raises(errors.AdapterError, match="module:attr"):
        load_class("no_colon_here")
    with pytest.raises(errors.AdapterError, match="has no 'Nothing'"):
        load_class("trainfaas.adapters.sleep:Nothing")
