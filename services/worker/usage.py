"""What a work process uses, measured from outside it by its instance: CPU, resident memory and,
where NVML sees a GPU, GPU utilisation and memory; of the work process and all its children.

The instance samples each running attempt every ``TRAINFAAS_USAGE_INTERVAL_S`` seconds and
forwards the samples as metric samples of the ``system`` figure (legends ``cpu_percent``,
``rss_mb``, ``gpu_util``, ``gpu_mem_mb``); the attempt's summary (:class:`UsageSummary`) goes
with its result. A process that ended between two samples is simply not counted; a machine
without NVML (no NVIDIA driver, no ``pynvml``) has no GPU samples and says nothing about it.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from trainfaas.services.core.protocol import Metric, UsageSummary

log = logging.getLogger("trainfaas.instance")

FIGURE = "system"
"""The figure of usage samples; work processes may not report samples of it themselves."""
MB = 1024 * 1024


class Gpus:
    """NVML, once per instance: the GPUs and what each process uses of them. Empty without it."""

    def __init__(self) -> None:
        self.nvml: Any = None
        self.handles: list[Any] = []
        try:
            import pynvml  # an optional driver binding: absent or without a driver, no GPU samples

            pynvml.nvmlInit()
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(index) for index in range(pynvml.nvmlDeviceGetCount())]
            self.nvml = pynvml
        except Exception:  # noqa: BLE001 - no library, no driver, no device: all mean no GPU samples
            self.handles = []

    def usage(self, pids: set[int]) -> tuple[float, float] | None:
        """(utilisation percent of the GPUs the processes use, their GPU memory in MB), or None
        where they use no GPU or NVML cannot tell."""
        utils: list[float] = []
        memory = 0.0
        for handle in self.handles:
            try:
                users = self.nvml.nvmlDeviceGetComputeRunningProcesses(handle)
                mine = [user for user in users if user.pid in pids]
                if not mine:
                    continue
                memory += sum((user.usedGpuMemory or 0) for user in mine) / MB
                utils.append(float(self.nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
            except Exception:  # noqa: BLE001 - a GPU that fell off the bus, a driver error: skip it
                continue
        if not utils:
            return None
        return sum(utils) / len(utils), memory


@dataclass
class UsageWatch:
    """The usage of one attempt's work process and its children, sampled by its instance."""

    pid: int | None
    interval_s: float
    started: float = field(default_factory=time.monotonic)
    next_at: float = 0.0
    cpu_seen: dict[tuple[int, float], float] = field(default_factory=dict)  # (pid, create time) -> CPU seconds
    last_at: float | None = None
    samples: int = 0
    peak_rss_mb: float | None = None
    cpu_total: float = 0.0
    cpu_count: int = 0
    peak_gpu_mem_mb: float | None = None
    gpu_util_total: float = 0.0
    gpu_count: int = 0

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def sample(self, gpus: Gpus, now: float | None = None, alone: bool = False) -> list[Metric]:
        """Measure now; the samples to report (none when the process is gone). ``alone``: the work
        process without its children, for the baseline taken as an attempt starts, before it can
        have started any (listing a process's descendants reads all of /proc)."""
        now = time.monotonic() if now is None else now
        self.next_at = now + self.interval_s
        tree = _tree(self.pid, children=not alone)
        if not tree:
            return []
        rss, cpu_seconds, cores = 0, {}, 1
        for process in tree:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    rss += process.memory_info().rss
                    cpu_seconds[(process.pid, process.create_time())] = times.user + times.system
                    if process.pid == self.pid:
                        cores = len(process.cpu_affinity() or []) or (os.cpu_count() or 1)
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue  # it ended between the listing and now, or is not ours to read
        if not cpu_seconds:
            return []
        x = round(now - self.started, 3)
        rss_mb = round(rss / MB, 1)
        events = [Metric(figure=FIGURE, legend="rss_mb", x=x, y=rss_mb)]
        self.peak_rss_mb = max(self.peak_rss_mb or 0.0, rss_mb)
        if self.last_at is not None and now > self.last_at:
            used = sum(seconds - self.cpu_seen.get(key, 0.0) for key, seconds in cpu_seconds.items())
            percent = round(max(0.0, min(100.0, 100.0 * used / ((now - self.last_at) * cores))), 1)
            events.append(Metric(figure=FIGURE, legend="cpu_percent", x=x, y=percent))
            self.cpu_total += percent
            self.cpu_count += 1
        self.cpu_seen, self.last_at = cpu_seconds, now
        gpu = gpus.usage({pid for pid, _ in cpu_seconds}) if gpus.handles else None
        if gpu is not None:
            util, memory = round(gpu[0], 1), round(gpu[1], 1)
            events += [Metric(figure=FIGURE, legend="gpu_util", x=x, y=util), Metric(figure=FIGURE, legend="gpu_mem_mb", x=x, y=memory)]
            self.peak_gpu_mem_mb = max(self.peak_gpu_mem_mb or 0.0, memory)
            self.gpu_util_total += util
            self.gpu_count += 1
        self.samples += 1
        return events

    def summary(self) -> UsageSummary | None:
        """The attempt's summary so far; None before its first sample."""
        if not self.samples:
            return None
        return UsageSummary(
            samples=self.samples, peak_rss_mb=self.peak_rss_mb,
            mean_cpu_percent=round(self.cpu_total / self.cpu_count, 1) if self.cpu_count else None,
            peak_gpu_mem_mb=self.peak_gpu_mem_mb,
            mean_gpu_util=round(self.gpu_util_total / self.gpu_count, 1) if self.gpu_count else None)

    def peak_words(self) -> str:
        """The peak memory seen, for an out-of-memory reason; empty before the first sample."""
        if self.peak_rss_mb is None:
            return ""
        words = f"; peak resident memory seen {self.peak_rss_mb:.0f} MB"
        if self.peak_gpu_mem_mb is not None:
            words += f", peak GPU memory {self.peak_gpu_mem_mb:.0f} MB"
        return words


def _tree(pid: int | None, children: bool = True) -> list[psutil.Process]:
    """The process and (with ``children``) its descendants now; empty once it is gone."""
    if pid is None:
        return []
    try:
        root = psutil.Process(pid)
        if root.status() == psutil.STATUS_ZOMBIE:
            return []
        return [root, *root.children(recursive=True)] if children else [root]
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return []
