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
