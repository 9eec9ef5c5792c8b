"""What an attempt's work process uses: measured from outside by its instance, stored as samples of
the ``system`` figure and summarised on the attempt; an out-of-memory end names the peak seen."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from trainfaas.services.core.protocol import Failure, Metric
from trainfaas.services.core.settings import Settings
from trainfaas.services.core.statuses import Outcome
from trainfaas.services.worker.exits import describe_exit
from trainfaas.services.worker.usage import FIGURE, Gpus, UsageWatch
from trainfaas.services.worker.work_process import Running

HOLD = 120  # MB a test process allocates and touches
# A parent that starts a child holding HOLD MB, then holds HOLD MB itself until its stdin closes.
HOLDER = f"""
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import sys; b = bytearray({HOLD} << 20); b[::4096] = b'x' * len(b[::4096]); "
                          "print('held', flush=True); sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert child.stdout.readline().strip() == "held"
mine = bytearray({HOLD} << 20)
mine[::4096] = b"x" * len(mine[::4096])
print("held", flush=True)
sys.stdin.read()
child.stdin.close()
child.wait()
"""


@pytest.fixture
def holder() -> Any:
    process = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        yield process
    finally:
        process.kill()
        process.wait()


def by_legend(events: list[Metric]) -> dict[str, float]:
    assert all(event.figure == FIGURE for event in events)
    return {event.legend: event.y for event in events}


def test_the_watch_measures_the_process_and_its_children_and_keeps_the_peak(holder: Any) -> None:
    watch = UsageWatch(holder.pid, interval_s=5.0)
    gpus = Gpus()
    first = by_legend(watch.sample(gpus, now=watch.started + 1))
    assert first["rss_mb"] >= 2 * HOLD  # the parent's and the child's
    assert "cpu_percent" not in first  # the first sample is the baseline of CPU time
    assert not watch.due(watch.started + 5.9) and watch.due(watch.started + 6)
    second = by_legend(watch.sample(gpus, now=watch.started + 6))
    assert 0 <= second["cpu_percent"] <= 100
    summary = watch.summary()
    assert summary is not None and summary.samples == 2 and summary.peak_rss_mb is not None and summary.peak_rss_mb >= 2 * HOLD
    assert summary.mean_cpu_percent is not None
    if not gpus.handles:  # no NVML here: no GPU samples and no GPU summary, and no error either
        assert "gpu_mem_mb" not in second and summary.peak_gpu_mem_mb is None and summary.mean_gpu_util is None


def test_a_baseline_taken_alone_leaves_the_children_out(holder: Any) -> None:
    watch = UsageWatch(holder.pid, interval_s=5.0)
    alone = by_legend(watch.sample(Gpus(), now=watch.started + 1, alone=True))
    assert HOLD <= alone["rss_mb"] < 2 * HOLD  # the parent's only
    second = by_legend(watch.sample(Gpus(), now=watch.started + 6))
    assert second["rss_mb"] >= 2 * HOLD and 0 <= second["cpu_percent"] <= 100


def test_sampling_a_process_that_ended_between_samples_yields_nothing_and_keeps_the_summary(holder: Any) -> None:
    watch = UsageWatch(holder.pid, interval_s=1.0)
    assert watch.sample(Gpus())
    holder.kill()
    holder.wait()
    assert watch.sample(Gpus()) == []
    summary = watch.summary()
    assert summary is not None and summary.samples == 1 and summary.peak_rss_mb is not None and summary.peak_rss_mb >= 2 * HOLD
    assert UsageWatch(None, 1.0).sample(Gpus()) == [] and UsageWatch(None, 1.0).summary() is None


def test_a_zombie_is_not_measured() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_until(lambda: Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z", what="a zombie")
    try:
        assert UsageWatch(process.pid, 1.0).sample(Gpus()) == []
    finally:
        process.wait()


def _running(usage: UsageWatch | None) -> Running:
    return Running("e1", 1, process=None, conn=None, stop_event=None, deadline=0.0, drain_time_s=0.0,  # type: ignore[arg-type]
                   oom_kills_before=-1, usage=usage)


def test_an_out_of_memory_end_names_the_peak_the_instance_saw() -> None:
    watch = UsageWatch(None, 1.0)
    watch.samples, watch.peak_rss_mb = 3, 1536.0
    # oom_kills_before -1: the kernel's OOM kill count (0 or more) went up while it ran.
    outcome, reason = describe_exit(_running(watch), -signal.SIGKILL)
    assert outcome == Outcome.FAILED and reason.startswith("OOMKilled") and "peak resident memory seen 1536 MB" in reason
    run = _running(watch)
    run.error = Failure(error="MemoryError", message="cannot allocate")
    assert describe_exit(run, 1) == (Outcome.FAILED, "out of memory: cannot allocate; peak resident memory seen 1536 MB")
    assert "peak" not in describe_exit(_running(UsageWatch(None, 1.0)), -signal.SIGKILL)[1]  # nothing seen: nothing claimed


def test_a_work_process_cannot_forge_the_instances_usage_samples() -> None:
    run = _running(None)
    events: list[Any] = []
    run._take(Metric(figure=FIGURE, legend="rss_mb", x=1, y=1).model_dump_json().encode(), events)
    run._take(Metric(figure="loss", legend="train", x=1, y=0.5).model_dump_json().encode(), events)
    assert [event.event.figure for event in events] == ["loss"]


@pytest.fixture
def usage_settings(stack_settings: Settings) -> Settings:
    return stack_settings.model_copy(update={"usage_interval_s": 0.2})


@pytest.mark.stack
def test_a_training_that_allocates_memory_shows_samples_and_a_peak_at_least_that_large(usage_settings: Settings) -> None:
    from trainfaas.services.local.stack import Stack

    stack = Stack(usage_settings).start()
    try:
        client = stack.admin_client()
        model = client.create_model("hungry", "sleep", configuration={"seconds": 600, "steps": 600, "allocate_mb": 200, "fail_at": 0})
        execution = client.train(model["id"])
        wait_until(lambda: any(s["legend"] == "rss_mb" and s["y"] >= 200 for s in client.usage(execution["id"])), timeout_s=120,
                   what="a sample of the allocated memory")
        client.terminate(execution["id"])
        final = client.wait(execution["id"], timeout_s=120)
        samples = client.usage(execution["id"], attempt=1)
    finally:
        stack.stop(drain_timeout_s=5.0)
    assert final["status"] == "terminated"
    usage = final["attempts"][0]["usage"]
    assert usage["samples"] >= 2 and usage["peak_rss_mb"] >= 200 and 0 <= usage["mean_cpu_percent"] <= 100
    assert usage["peak_rss_mb"] == max(s["y"] for s in samples if s["legend"] == "rss_mb")
    assert {s["legend"] for s in samples} >= {"rss_mb", "cpu_percent"}


class _Nvml:
    """NVML's answers as the binding gives them, for two GPUs: the code that reads them runs without a GPU here."""

    class Error(Exception):
        pass

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:  # noqa: N802 - NVML's name
        if handle == 2:
            raise self.Error("GPU is lost")
        user = type("ProcessInfo", (), {"pid": self.pid if handle == 0 else 1, "usedGpuMemory": 512 << 20})
        return [user, type("ProcessInfo", (), {"pid": 1, "usedGpuMemory": None})]

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:  # noqa: N802 - NVML's name
        return type("Utilization", (), {"gpu": 70 + handle})


def test_gpu_samples_count_only_the_work_processes_gpus_and_skip_a_failing_one(holder: Any) -> None:
    gpus = Gpus()
    gpus.nvml, gpus.handles = _Nvml(holder.pid), [0, 1, 2]
    assert gpus.usage({holder.pid}) == (70.0, 512.0)
    assert gpus.usage({999999}) is None
    watch = UsageWatch(holder.pid, 1.0)
    samples = by_legend(watch.sample(gpus))
    assert (samples["gpu_util"], samples["gpu_mem_mb"]) == (70.0, 512.0)
    summary = watch.summary()
    assert summary is not None and (summary.peak_gpu_mem_mb, summary.mean_gpu_util) == (512.0, 70.0)
    assert "peak GPU memory 512 MB" in watch.peak_words()
