"""Idle costs: the resident memory of an idle instance, and what its spare work process costs.

A local stack (SQLite, embedded Redis, process backend) keeps one instance of
``mgmt-train-<architecture>`` (resnet18 by default) and nothing to do. Once the instance runs and its
spare work process waits (the instance's descendants have stopped changing), this prints:

1. ``idle_instance_rss``: the instance process's own resident memory, without its descendants. Goal:
   at most 80 MB, so the baseline is 80 and the ratio value / 80 passes at 1.0 or less.
2. ``spare_work_process``: the resident memory of the instance's descendants (the fork server, the
   spare work process that has imported the adapter), against a bare ``python -c "import torch"``
   process measured in the same run: what keeping a training's start warm costs, in units of torch.
   Their unique memory (USS) is printed too: forked processes share pages, so RSS counts some twice.
   This figure has no goal (``goal=inf``); it states the price.

    python -m tests.perf.bench_idle_costs [--architecture resnet18]
"""
from __future__ import annotations

import argparse
import subprocess
import sys

import psutil

from tests.perf.common import bench_settings, parse_arguments, report, wait_for
from tests.perf.stackrun import wait_instance_running
from trainfaas.services.local.stack import Stack
from trainfaas.services.sdk.client import Client

MB = 1024 * 1024
GOAL_MB = 80.0


def bare_torch_mb() -> float:
    """Resident memory of a fresh interpreter that has imported torch."""
    child = subprocess.Popen([sys.executable, "-c", "import sys, torch; print('ready', flush=True); sys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        return psutil.Process(child.pid).memory_info().rss / MB
    finally:
        child.kill()
        child.wait()


def settled_descendants(process: psutil.Process, timeout_s: float) -> list[psutil.Process]:
    """The process's descendants once their number and memory have stopped growing for three looks in a row."""
    seen: list[tuple[int, int]] = []

    def steady() -> list[psutil.Process] | None:
        children = process.children(recursive=True)
        total = sum(child.memory_info().rss for child in children if child.is_running())
        seen.append((len(children), total // MB))
        return children if len(seen) >= 3 and children and len(set(seen[-3:])) == 1 else None

    return wait_for(steady, timeout_s, "the spare work process to settle", poll_s=0.5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="resnet18", help="the service whose idle instance is measured")
    args = parse_arguments(parser, {"architecture": "sleep"}, argv)
    baseline = bare_torch_mb()
    settings = bench_settings()
    with Stack(settings):
        service = f"mgmt-train-{args.architecture}"
        Client.from_settings(settings).update_service(service, scaling_type="fixed", min_instances=1, max_instances=1)
        instance = psutil.Process(wait_instance_running(service, 300).pid)
        children = settled_descendants(instance, 300)
        own = instance.memory_info().rss / MB
        spare_rss = sum(child.memory_info().rss for child in children) / MB
        spare_uss = sum(child.memory_full_info().uss for child in children) / MB
    print(f"{service}: instance {own:.1f} MB; {len(children)} descendants (fork server and spare) {spare_rss:.1f} MB RSS,"
          f" {spare_uss:.1f} MB unique; a bare `import torch` process {baseline:.1f} MB")
    report("idle_instance_rss", "rss_mb", own, GOAL_MB, 1.0, extra={"architecture": args.architecture})
    report("spare_work_process", "rss_mb", spare_rss, baseline, float("inf"),
           extra={"architecture": args.architecture, "uss_mb": spare_uss, "descendants": len(children)})


if __name__ == "__main__":
    main()
