"""How the CLI says why an execution waits and what an attempt used."""
from __future__ import annotations

from trainfaas.services.cli.output import Json

SHORT_REASONS = {
    "paused": "service paused", "crash_loop": "service crash-looping", "failed_start": "instances fail to start",
    "no_instances_allowed": "max_instances is 0", "project_running_limit": "project at its running limit",
    "starting": "starting an instance", "at_max_instances": "all instances busy",
}


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 21st, ..."""
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def duration_words(seconds: float) -> str:
    """~40 s, ~4 min, ~2.5 h."""
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 5400:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


def waiting_line(waiting: Json) -> str:
    """``waiting: 3rd in queue of mgmt-train-resnet18; service paused; 1/2 instances; starts in ~4 min``."""
    parts = [f"waiting: {ordinal(waiting['position'])} in queue of {waiting['service']}"]
    if waiting["blocked_by"]:
        parts.append(SHORT_REASONS.get(waiting["blocked_by"], waiting["blocked_by"]))
    parts.append(f"{waiting['instances']}/{waiting['max_instances']} instances")
    wait_s = waiting["estimated_wait_s"]
    if wait_s is None:
        parts.append("no start estimate")
    else:
        parts.append("starts now" if wait_s == 0 else f"starts in {duration_words(wait_s)}")
    return "; ".join(parts)


def usage_words(attempt: Json) -> str:
    """``peak 812 MB, CPU 93%, GPU 2048 MB 71%`` of an attempt, or ``-`` where it was not measured."""
    usage = attempt.get("usage")
    if not usage:
        return "-"
    parts = []
    if usage["peak_rss_mb"] is not None:
        parts.append(f"peak {usage['peak_rss_mb']:.0f} MB")
    if usage["mean_cpu_percent"] is not None:
        parts.append(f"CPU {usage['mean_cpu_percent']:.0f}%")
    if usage["peak_gpu_mem_mb"] is not None:
        gpu = f"GPU {usage['peak_gpu_mem_mb']:.0f} MB"
        parts.append(gpu if usage["mean_gpu_util"] is None else f"{gpu} {usage['mean_gpu_util']:.0f}%")
    return ", ".join(parts) or "-"
