"""Benchmarks that cannot rot: every script in tests/perf runs in its smoke mode (a few executions
or steps) and prints its summary lines, so that a change that breaks a benchmark fails here
rather than at the next `make bench`. The figures of a smoke run are not judged."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(path.stem for path in (ROOT / "tests" / "perf").glob("bench_*.py"))
SUMMARY = re.compile(r"^bench \S+: \S+=-?[\d.]+(e[+-]?\d+)? baseline=\S+ ratio=\S+ goal=\S+ smoke$", re.MULTILINE)


def test_every_benchmark_is_in_make_bench() -> None:
    listed = re.search(r"for b in ([^;]+); do", (ROOT / "Makefile").read_text())
    assert listed, "the Makefile's bench target lists its benchmarks"
    assert sorted(f"bench_{name}" for name in listed.group(1).split()) == BENCHMARKS


@pytest.mark.parametrize("name", BENCHMARKS)
def test_the_benchmark_runs_in_its_smoke_mode(name: str) -> None:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    environment.pop("TRAINFAAS_HOME", None)
    done = subprocess.run([sys.executable, "-m", f"tests.perf.{name}", "--smoke"], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{name} --smoke exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert SUMMARY.search(done.stdout), f"{name} --smoke printed no summary line:\n{done.stdout[-3000:]}"


def test_benchmarks_use_public_names_only() -> None:
    """A benchmark that reaches into a private helper breaks when a refactor removes it, and
    nothing notices until the next `make bench`: benchmarks import no private name and read no
    private attribute (an underscore name of anything but their own ``self``)."""
    import ast

    private = []
    for path in sorted((ROOT / "tests" / "perf").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trainfaas"):
                private += [f"{path.name}:{node.lineno} imports {alias.name}" for alias in node.names if alias.name.startswith("_")]
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and node.attr not in ("_replace", "_asdict", "_fields")  # a named tuple's public methods
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls", "os", "sys"))):
                private.append(f"{path.name}:{node.lineno} reads .{node.attr}")
    assert private == []
