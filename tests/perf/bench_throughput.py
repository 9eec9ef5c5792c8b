"""Short-execution throughput: ``--executions`` noop executions through the whole trainfaas path
(HTTP batch enqueue, database rows, rq queue, instance, work process, status writes) on one
instance; the rate, as rq's below, is N / (last finished_at - first started_at): the executions
are all queued in one batch request first (the rate counted from that request is printed too).

Baselines, measured in the same run on the same Redis: raw rq. N trivial jobs
(tests.perf.stackrun.trivial, returns None) on a separate queue, drained by ``rq worker --burst``
with rq's default forking ``Worker`` (a fresh forked process per job: the isolation trainfaas gives
each execution with run_as_process true) and with ``SimpleWorker`` (every job in the worker's own
process: what run_as_process false resembles, though trainfaas still runs them in a work process
apart from its instance). The rq rate is N / (last job ended_at - first job started_at), which
leaves the worker's own start-up out.

Printed: run_as_process true on an instance of concurrency 1, 2 and 4, each against rq Worker
(goal >= 1.0), and run_as_process false at concurrency 1 against SimpleWorker (goal >= 0.5).

    python -m tests.perf.bench_throughput [--executions 200]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from rq import Queue
from rq.job import Job

from tests.perf.common import bench_settings, parse_arguments, report, wait_for
from tests.perf.stackrun import SERVICE, live_instances, trivial, wait_instance_running, warm_up
from trainfaas.services.local.stack import Stack
from trainfaas.services.sdk.client import Client
from trainfaas.services.store import queues
from trainfaas.services.store.records import Execution

RQ_QUEUE = "bench-rq-baseline"
CONCURRENCIES = (1, 2, 4)


def rq_rate(redis_url: str, count: int, worker_class: str) -> float:
    """Jobs per second of a burst rq worker of ``worker_class``."""
    connection = queues.connect(redis_url)
    queue = Queue(RQ_QUEUE, connection=connection)
    queue.empty()
    jobs = [queue.enqueue(trivial, result_ttl=600) for _ in range(count)]
    command = [sys.executable, "-m", "rq.cli", "worker", "--burst", "--quiet", "--url", redis_url,
               "--worker-class", worker_class, RQ_QUEUE]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    fetched = [j for j in Job.fetch_many([job.id for job in jobs], connection=connection) if j is not None]
    finished = [j for j in fetched if j.get_status() == "finished"]
    if done.returncode != 0 or len(finished) != count:
        raise RuntimeError(f"rq worker {worker_class} finished {len(finished)}/{count} jobs (rc {done.returncode}): {done.stderr.strip()[-300:]}")
    first = min(j.started_at for j in finished if j.started_at)
    last = max(j.ended_at for j in finished if j.ended_at)
    return count / (last - first).total_seconds()


def restart_with(client: Client, concurrency: int) -> None:
    """One fresh instance of ``concurrency`` (an instance takes its concurrency when it registers)."""
    client.update_service(SERVICE, min_instances=0, max_instances=0)
    wait_for(lambda: not live_instances(SERVICE), 120, "the instance to go")
    client.update_service(SERVICE, min_instances=1, max_instances=1, concurrency=concurrency)
    wait_instance_running(SERVICE)
    warm_up(client)


def trainfaas_rate(client: Client, count: int, execution: dict[str, bool]) -> tuple[float, float]:
    """(noop executions per second, the same counted from the HTTP enqueue) of ``count`` executions enqueued in one
    batch request; the rate, as rq's, is count / (last finished_at - first started_at)."""
    first = time.time()
    ids = client.enqueue_batch(SERVICE, [{"function": "noop", "input": {}, "execution": execution}] * count)["ids"]

    def ended() -> bool:
        statuses = [str(e.status) for e in Execution.select(Execution.status).where(Execution.id.in_(ids))]
        if any(status in ("failed", "aborted", "terminated") for status in statuses):
            raise RuntimeError(f"a noop execution did not succeed: {statuses}")
        return all(status == "success" for status in statuses)

    wait_for(ended, 600.0, f"{count} noop executions", poll_s=0.1)
    rows = list(Execution.select(Execution.started_at, Execution.finished_at).where(Execution.id.in_(ids)))
    started, last = min(float(e.started_at) for e in rows), max(float(e.finished_at) for e in rows)
    return count / (last - started), count / (last - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=200)
    args = parse_arguments(parser, {"executions": 5})
    print(f"  load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} cores")
    settings = bench_settings()
    rates: dict[str, tuple[float, float]] = {}
    with Stack(settings):
        client = Client.from_settings(settings)
        for concurrency in CONCURRENCIES:
            restart_with(client, concurrency)
            rates[f"process_c{concurrency}"] = trainfaas_rate(client, args.executions, {"run_as_process": True})
        restart_with(client, 1)
        rates["warm_c1"] = trainfaas_rate(client, args.executions, {"run_as_process": False})
        client.update_service(SERVICE, min_instances=0, max_instances=0)  # keep the box quiet for rq
        wait_for(lambda: not live_instances(SERVICE), 120, "the instance to go")
        forking = rq_rate(settings.redis_url, args.executions, "rq.worker.Worker")
        simple = rq_rate(settings.redis_url, args.executions, "rq.worker.SimpleWorker")
    print(f"  rq baselines, same run, same Redis: Worker (fork per job) {forking:.3f} jobs/s, SimpleWorker {simple:.3f} jobs/s")
    for concurrency in CONCURRENCIES:
        rate, from_enqueue = rates[f"process_c{concurrency}"]
        report(f"throughput_process_c{concurrency}", "executions_per_s", rate, forking, goal=1.0, higher_is_better=True,
               extra={"executions": args.executions, "baseline": "rq.worker.Worker", "from_enqueue_per_s": from_enqueue})
        print(f"  (counted from the batch enqueue request: {from_enqueue:.3f} executions/s)")
    rate, from_enqueue = rates["warm_c1"]
    report("throughput_warm_c1", "executions_per_s", rate, simple, goal=0.5, higher_is_better=True,
           extra={"executions": args.executions, "baseline": "rq.worker.SimpleWorker", "from_enqueue_per_s": from_enqueue})
    print(f"  (counted from the batch enqueue request: {from_enqueue:.3f} executions/s)")
    print(f"  load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
