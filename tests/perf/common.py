"""Helpers shared by the benchmark scripts: a throwaway stack, the one-line summary format, and
the smoke mode (``--smoke``) in which each script runs a few executions or steps, so that
``make test`` (tests/test_benchmarks.py) catches a benchmark that no longer runs."""
from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import socket
import statistics
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tests.conftest import wait_until as wait_for  # noqa: F401 - re-exported for the scripts
from trainfaas.services.core.settings import Settings, load_settings

RESULTS = Path(__file__).resolve().parent / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Benchmarks and the chaos soak enqueue thousands of executions into one project, and drills
# inject faults: their stacks raise the project quotas and allow the sleep adapter's fault options.
BENCH_LIMITS: dict[str, Any] = {"project_max_queued": 1_000_000, "project_max_running": 10_000, "diagnostics": True}


def scratch_dir(prefix: str) -> Path:
    """A new folder under /tmp (short: a stack's Unix sockets live in it), removed when the script
    exits: a stack's database, logs and outputs reach a gigabyte after some runs, and the figures
    are saved elsewhere (RESULTS)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def bench_settings(**overrides: Any) -> Settings:
    home = scratch_dir("tfb")
    # As in tests/conftest.py: the work user could read neither this 0700 home's parent nor a Python under /root.
    overrides.setdefault("work_user", os.environ.get("TRAINFAAS_WORK_USER", "root"))
    return load_settings(home=home, port=free_port(), api_url="", **{**BENCH_LIMITS, **overrides})


SMOKE = False  # set by parse_arguments: a smoke run checks that the script runs, and judges nothing


def parse_arguments(parser: argparse.ArgumentParser, smoke: dict[str, Any], argv: list[str] | None = None) -> argparse.Namespace:
    """The script's arguments, plus ``--smoke``, which replaces those named in ``smoke``."""
    global SMOKE
    parser.add_argument("--smoke", action="store_true",
                        help=f"run a few seconds only ({', '.join(f'{k}={v}' for k, v in smoke.items()) or 'as is'}): "
                             "checks that the benchmark runs; its figures mean nothing and are not saved")
    args = parser.parse_args(argv)
    SMOKE = args.smoke
    if args.smoke:
        for name, value in smoke.items():
            setattr(args, name, value)
    return args


def report(name: str, figure: str, value: float, baseline: float, goal: float, higher_is_better: bool = False,
           extra: dict[str, Any] | None = None) -> bool:
    """Print ``bench <name>: <figure>=<value> baseline=<b> ratio=<r> goal=<g> pass|miss`` and save JSON."""
    ratio = value / baseline if baseline else float("inf")
    met = ratio >= goal if higher_is_better else ratio <= goal
    if SMOKE:
        print(f"bench {name}: {figure}={value:.3f} baseline={baseline:.3f} ratio={ratio:.3f} goal={goal:g} smoke")
        return True
    print(f"bench {name}: {figure}={value:.3f} baseline={baseline:.3f} ratio={ratio:.3f} goal={goal:g} {'pass' if met else 'miss'}")
    RESULTS.mkdir(exist_ok=True)
    record = {"name": name, "figure": figure, "value": value, "baseline": baseline, "ratio": ratio, "goal": goal,
              "pass": met, "machine": f"{platform.node()} {platform.processor() or platform.machine()} cores={__import__('os').cpu_count()}",
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **(extra or {})}
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2))
    return met


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages, as benchmarks print and save them."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def pair_order(pair: int, names: Sequence[str]) -> list[str]:
    """The order of the runs of alternating round ``pair`` (counted from 0): as given, then reversed,
    and so on, so that a machine that speeds up or slows down during the benchmark weighs on each
    side alike."""
    return list(names) if pair % 2 == 0 else list(reversed(names))


def spread(rates: dict[str, list[float]], baseline: str) -> dict[str, Any]:
    """Medians, ranges and per-round ratios of the rates of alternating rounds.

    ``rates[name][i]`` is side ``name``'s rate in round ``i``; the result holds each side's
    ``median`` (the figure a benchmark reports), its ``min`` and ``max``, and ``ratios``: each
    other side's rate over ``baseline``'s, round by round. It is also printed, one line."""
    summary: dict[str, Any] = {
        "median": {name: statistics.median(values) for name, values in rates.items()},
        "min": {name: min(values) for name, values in rates.items()},
        "max": {name: max(values) for name, values in rates.items()},
        "ratios": {name: [round(value / base, 3) if base else float("inf") for value, base in zip(values, rates[baseline], strict=True)]
                   for name, values in rates.items() if name != baseline},
    }
    sides = ", ".join(f"{name} {summary['median'][name]:.3f} ({summary['min'][name]:.3f}-{summary['max'][name]:.3f})" for name in rates)
    ratios = ", ".join(f"{name}/{baseline} " + " ".join(f"{r:.3f}" for r in values) for name, values in summary["ratios"].items())
    print(f"  spread over {len(rates[baseline])} rounds: median (min-max) {sides}; per-round ratios {ratios}", flush=True)
    return summary
