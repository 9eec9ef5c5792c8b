"""Cold start: a service at zero instances (autoscale min 0 / max 1, polling interval
``--polling`` s) gets one training; the figure is the time from time.time() before the train POST
to the execution's first "in-progress" status-log row. Baseline, measured on the same box in the
same run: ``python -c "import torch"`` in a subprocess, median of 3. The goal is a cold start of at
most 1.5x the torch import plus one polling interval, so the reported value is
(cold start - polling interval) and ratio = value / import time, goal <= 1.5.

Uses the torchvision resnet18 architecture on the bundled digits sample ({"epochs": 1}); with
``--architecture sleep`` (or if resnet18 is refused) the sleep architecture. The output says which.

    python -m tests.perf.bench_cold_start [--architecture resnet18|sleep] [--polling 1]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from typing import Any

from tests.perf.common import bench_settings, parse_arguments, report
from tests.perf.stackrun import live_instances, status_at, wait_status
from trainfaas.services.local.stack import Stack
from trainfaas.services.sdk.client import ApiError, Client


def torch_import_s(repeats: int = 3) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def submit(client: Client, settings: Any, architecture: str) -> tuple[str, str, float]:
    """Create the model and enqueue its training; returns (execution id, architecture, request time)."""
    if architecture == "resnet18":
        from trainfaas.adapters.datasets import write_digits

        write_digits(settings.datasets_dir / "digits")
        model = client.create_model("cold-resnet18", "resnet18")
        requested = time.time()
        return client.train(model["id"], dataset="digits", configuration={"epochs": 1})["id"], "resnet18", requested
    model = client.create_model("cold-sleep", "sleep", configuration={"seconds": 1, "steps": 1})
    requested = time.time()
    return client.train(model["id"])["id"], "sleep", requested


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architecture", choices=("resnet18", "sleep"), default="resnet18")
    parser.add_argument("--polling", type=float, default=1.0, help="the service's polling interval, s")
    args = parse_arguments(parser, {"architecture": "sleep"})

    baseline = torch_import_s()
    settings = bench_settings()
    with Stack(settings):
        client = Client.from_settings(settings)
        architecture = args.architecture
        for candidate in dict.fromkeys((architecture, "sleep")):
            service = f"mgmt-train-{candidate}"
            try:
                client.update_service(service, scaling_type="autoscale", min_instances=0, max_instances=1,
                                      queue_length=1, polling_interval_s=args.polling)
                assert not live_instances(service), f"{service} has instances before the cold start"
                execution_id, architecture, requested = submit(client, settings, candidate)
                break
            except ApiError as exc:
                print(f"  {candidate} refused ({exc}); falling back to sleep")
        else:
            raise RuntimeError("neither resnet18 nor sleep could be enqueued")
        wait_status(execution_id, ("in-progress", "success"), 300.0, poll_s=0.02)
        cold = (status_at(execution_id, "in-progress") or 0.0) - requested
        client.terminate(execution_id)  # no need to finish the epoch
        wait_status(execution_id, ("terminated", "success"), 120.0, poll_s=0.2)
    report("cold-start", "cold_minus_polling_s", cold - args.polling, baseline, goal=1.5,
           extra={"architecture": architecture, "cold_start_s": cold, "polling_interval_s": args.polling, "torch_import_s": baseline})
    print(f"  (architecture {architecture}; cold start {cold:.3f} s incl. polling {args.polling:g} s; "
          f"baseline = median `python -c 'import torch'` of 3, same run)")


if __name__ == "__main__":
    main()
