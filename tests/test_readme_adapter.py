"""The example adapter in docs/adapters.md is complete and works as that page says.

The code block after ``<!-- example-adapter -->`` is written to a module of its own, resolved
through the catalog as TRAINFAAS_ADAPTERS would resolve it, and trained with a NullContext.
"""
from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from trainfaas.adapters import ModelAdapter, NullContext
from trainfaas.adapters.catalog import catalog, get_adapter

PAGE = Path(__file__).resolve().parents[1] / "docs" / "adapters.md"
MARKER = "<!-- example-adapter -->"
ARCHITECTURE = "majority"


def example_code() -> str:
    text = PAGE.read_text(encoding="utf-8")
    assert MARKER in text, f"docs/adapters.md has no {MARKER} marker"
    match = re.match(r"\s*```python\n(.*?)\n```", text.split(MARKER, 1)[1], re.DOTALL)
    assert match, f"the line after {MARKER} must open a ```python code block"
    return match.group(1)


@pytest.fixture
def adapter_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> type[ModelAdapter]:
    code = example_code()
    class_name = re.search(r"^class (\w+)\(ModelAdapter\):", code, re.MULTILINE)
    assert class_name, "the example must define a ModelAdapter subclass"
    # catalog() is cached by its argument: a fresh module name keeps this test independent.
    module = f"readme_example_adapter_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(code, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    reference = f"{module}:{class_name.group(1)}"
    cls = get_adapter(ARCHITECTURE, reference)
    assert catalog(reference)[ARCHITECTURE].source == "setting"
    return cls


def test_the_readme_example_adapter_declares_what_the_readme_says(adapter_class: type[ModelAdapter]) -> None:
    assert adapter_class.architectures == (ARCHITECTURE,)
    assert adapter_class.task == "classification"
    assert adapter_class.dataset_format is None
    assert list(adapter_class.options_schema()["properties"]) == ["votes"]


def test_the_readme_example_adapter_trains_reports_and_saves(adapter_class: type[ModelAdapter], tmp_path: Path) -> None:
    context = NullContext()
    adapter = adapter_class(ARCHITECTURE, configuration={"votes": ["cat"] * 150 + ["dog"] * 60}, context=context)
    output = tmp_path / "attempt-1"
    output.mkdir()

    metrics = adapter.train(None, output, **adapter.configuration)

    kinds = [kind for kind, _ in context.events]
    assert "progress" in kinds and "metric" in kinds and "checkpoint" in kinds
    assert [args[0] for kind, args in context.events if kind == "progress"][-1] == 100.0
    assert metrics and all(isinstance(value, float) for value in metrics.values())
    assert metrics["accuracy"] == pytest.approx(150 / 210)

    adapter.save(output / "model")
    assert [path.name for path in (output / "model").iterdir() if path.is_file()]
    loaded = adapter_class(ARCHITECTURE)
    loaded.load(output / "model")
    assert loaded.predict([1, 2]) == ["cat", "cat"]


def test_the_readme_example_adapter_stops_when_asked_and_resumes_from_its_checkpoint(
    adapter_class: type[ModelAdapter], tmp_path: Path
) -> None:
    stopped = NullContext()
    stopped.stop_requested = True
    adapter_class(ARCHITECTURE, context=stopped).train(None, tmp_path, votes=["a"])
    assert not [kind for kind, _ in stopped.events if kind == "progress"]

    first = NullContext()
    adapter_class(ARCHITECTURE, context=first).train(None, tmp_path, votes=["a", "b", "a"])
    checkpoint = Path(next(args[0] for kind, args in first.events if kind == "checkpoint"))
    assert checkpoint.exists()

    again = NullContext()
    again.resume_checkpoint = checkpoint
    (tmp_path / "attempt-2").mkdir()
    metrics = adapter_class(ARCHITECTURE, context=again).train(None, tmp_path / "attempt-2", votes=["a", "b", "a"])
    assert any(kind == "log" and "resumed" in args[0] for kind, args in again.events)
    assert metrics["votes"] == 3.0


def test_the_readme_example_adapter_rejects_an_unknown_option(adapter_class: type[ModelAdapter]) -> None:
    with pytest.raises(ValidationError) as caught:
        adapter_class(ARCHITECTURE, configuration={"vote": ["cat"]})
    assert ("vote",) in [error["loc"] for error in caught.value.errors()]
