"""Short-execution throughput: ``--executions`` noop executions through the whole trainfaas path
(HTTP enqueue, database row, rq queue, instance, spawned work process, status writes) on one
instance of concurrency 1; the rate is N / (last finished_at - time.time() before the first POST).

Baseline, measured in the same run on the same Redis: raw rq. N trivial jobs
(tests.perf.stackrun.trivial, returns None) on a separate queue, drained by
``rq worker --burst --worker-class rq.worker.SpawnWorker`` (a fresh spawned process per job, the
same isolation as trainfaas work processes); if SpawnWorker fails, the default forking Worker, and
the output says so. The rq rate is N / (last job ended_at - first job started_at), which leaves the
worker's own start-up out. Ratio = trainfaas rate / rq rate; goal >= 1.0 (higher is better).

    python -m tests.perf.bench_throughput [--executions 200]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

from rq import Queue
from rq.job import Job

from tests.perf.common import bench_settings, parse_arguments, report
from tests.perf.stackrun import SERVICE, trivial, wait_instance_running, wait_status, warm_up
from trainfaas.services.local.stack import Stack
from trainfaas.services.sdk.client import Client
from trainfaas.services.store import queues
from trainfaas.services.store.records import Execution

RQ_QUEUE = "bench-rq-baseline"


def rq_rate(redis_url: str, count: int) -> tuple[float, str]:
    """Jobs per second of a burst rq worker; returns (rate, worker class used)."""
    connection = queues.connect(redis_url)
    for worker_class in ("rq.worker.SpawnWorker", "rq.worker.Worker"):
        queue = Queue(RQ_QUEUE, connection=connection)
        queue.empty()
        jobs = [queue.enqueue(trivial, result_ttl=600) for _ in range(count)]
        command = [sys.executable, "-m", "rq.cli", "worker", "--burst", "--quiet", "--url", redis_url,
                   "--worker-class", worker_class, RQ_QUEUE]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        fetched = [j for j in Job.fetch_many([job.id for job in jobs], connection=connection) if j is not None]
        finished = [j for j in fetched if j.get_status() == "finished"]
        if done.returncode == 0 and len(finished) == count:
            first = min(j.started_at for j in finished if j.started_at)
            last = max(j.ended_at for j in finished if j.ended_at)
            return count / (last - first).total_seconds(), worker_class
        print(f"  rq worker {worker_class} finished {len(finished)}/{count} jobs (rc {done.returncode}): {done.stderr.strip()[-300:]}")
    raise RuntimeError("no rq worker class drained the baseline queue")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=200)
    args = parse_arguments(parser, {"executions": 5})

    settings = bench_settings()
    with Stack(settings):
        client = Client.from_settings(settings)
        client.update_service(SERVICE, min_instances=1, max_instances=1, concurrency=1)
        wait_instance_running(SERVICE)
        warm_up(client)
        first = time.time()
        ids = [client.enqueue(SERVICE, "noop", {})["id"] for _ in range(args.executions)]
        for execution_id in ids:
            wait_status(execution_id, ("success",), 600.0, poll_s=0.05)
        last = max(float(Execution.get_by_id(i).finished_at) for i in ids)
        rate = args.executions / (last - first)
        client.update_service(SERVICE, min_instances=0, max_instances=0)  # keep the box quiet for rq
        baseline, worker_class = rq_rate(settings.redis_url, args.executions)
    if worker_class != "rq.worker.SpawnWorker":
        print(f"  note: SpawnWorker was unusable; the rq baseline used {worker_class} (fork per job)")
    report("throughput", "executions_per_s", rate, baseline, goal=1.0, higher_is_better=True,
           extra={"executions": args.executions, "rq_worker_class": worker_class, "trainfaas_elapsed_s": last - first})
    print(f"  (baseline = raw rq jobs/s with {worker_class}, same run, same Redis)")


if __name__ == "__main__":
    main()
