"""Recovery after an instance dies: a sleep training of ``--seconds`` (default 20) runs on the one
instance of mgmt-train-sleep; ``--kill-after`` s into it, the instance process (pid from the
Instance row of the execution's Attempt 1) gets SIGKILL. The figure is the time from that kill to
the execution's "in-progress" status-log row of attempt 2 (the scheduler notices the dead
instance, resets the attempt to rerun and starts a replacement that claims it).

Baseline: the goal itself, 15 s (ratio = value / 15, goal <= 1.0). For comparison, RQ's own
clean-up of jobs abandoned by a dead worker takes 90 s to 11 min (worker TTL, then the
StartedJobRegistry clean-up), so plain rq would miss this goal by far.

    python -m tests.perf.bench_recovery [--seconds 20] [--kill-after 3] [--goal-s 15]
"""
from __future__ import annotations

import argparse
import os
import signal
import time

from tests.perf.common import bench_settings, parse_arguments, report, wait_for
from tests.perf.stackrun import SERVICE, status_at, wait_instance_running, wait_status
from trainfaas.services.local.stack import Stack
from trainfaas.services.sdk.client import Client
from trainfaas.services.store.records import Attempt, Instance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the sleep training")
    parser.add_argument("--kill-after", type=float, default=3.0, help="seconds into the attempt")
    parser.add_argument("--goal-s", type=float, default=15.0)
    args = parse_arguments(parser, {"seconds": 6.0, "kill_after": 1.0})

    settings = bench_settings()
    with Stack(settings):
        client = Client.from_settings(settings)
        client.update_service(SERVICE, min_instances=1, max_instances=1, on_reset="rerun", max_attempts=3)
        wait_instance_running(SERVICE)
        model = client.create_model("recover", "sleep", configuration={"seconds": args.seconds, "steps": int(args.seconds)})
        execution_id = client.train(model["id"])["id"]
        wait_status(execution_id, ("in-progress",), 120.0, poll_s=0.05)
        time.sleep(args.kill_after)
        attempt = Attempt.get((Attempt.execution == execution_id) & (Attempt.number == 1))
        pid = int(Instance.get_by_id(attempt.instance).pid)
        killed = time.time()
        os.kill(pid, signal.SIGKILL)
        again = wait_for(lambda: status_at(execution_id, "in-progress", attempt=2), 120.0, "attempt 2 in progress", poll_s=0.05)
        recovery = again - killed
        reason = Attempt.get((Attempt.execution == execution_id) & (Attempt.number == 1)).reason
        client.terminate(execution_id)  # attempt 2 need not sleep to the end
        wait_status(execution_id, ("terminated", "success"), 120.0, poll_s=0.2)
    report("recovery", "recovery_s", recovery, args.goal_s, goal=1.0,
           extra={"killed_pid": pid, "attempt1_reason": reason, "seconds": args.seconds})
    print(f"  (killed instance pid {pid}; attempt 1 reason: {reason}; baseline = the {args.goal_s:g} s goal)")


if __name__ == "__main__":
    main()
