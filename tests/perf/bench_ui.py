"""Web UI pages over many executions: the API under gunicorn (no scheduler, no instances) over a
SQLite database holding ``--executions`` executions (10,000 by default, spread over 8 services, 40
models and every status, written in bulk before the clock starts, as bench_api_load writes them).

A browser session signs in with the admin token, then GETs ``--requests`` pages one at a time,
cycling through the executions table (first page, a page halfway down, filtered by status, by
service, and a search), the models and the services; p95 of the page latency. Goal 200 ms.

Baseline: the goal itself (ratio = p95 / goal, pass at ratio <= 1).

    python -m tests.perf.bench_ui [--executions 10000] [--requests 200]
"""
from __future__ import annotations

import argparse
import re
import time

import requests

from tests.perf.bench_api_load import SERVICES, seed_database, timed
from tests.perf.common import bench_settings, parse_arguments, report
from tests.perf.stackrun import percentile
from trainfaas.services.local.stack import Stack


def signed_in(base: str, token: str) -> requests.Session:
    session = requests.Session()
    form = session.get(f"{base}/ui/login", timeout=60).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    answer = session.post(f"{base}/ui/login", data={"token": token, "csrf": csrf}, timeout=60, allow_redirects=False)
    if answer.status_code != 302:
        raise RuntimeError(f"signing in answered {answer.status_code}")
    return session


def pages(deep_cursor: str) -> list[str]:
    return ["/ui/", f"/ui/?cursor={deep_cursor}", "/ui/?status=failed", f"/ui/?service={SERVICES[3]}", "/ui/?q=train-99",
            "/ui/models", "/ui/services"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--goal", type=float, default=0.200, help="seconds")
    args = parse_arguments(parser, {"executions": 50, "requests": 10})
    settings = bench_settings()
    with Stack(settings) as stack:
        stack.scheduler.shutdown(0)  # only the API is under test
        stack.scheduler = None
        seed_database(args.executions)
        base = settings.api_url
        admin = stack.admin_client()
        cursor = ""
        for _ in range(args.executions // 2 // 50):
            cursor = admin.request("GET", f"/api/v1/executions?limit=50&cursor={cursor}")["next_cursor"]
        session = signed_in(base, stack.admin_token)
        mix = pages(cursor)
        for path in mix:  # warm the workers and the database's caches
            timed(session, "GET", base + path)
        started = time.perf_counter()
        latencies = [timed(session, "GET", base + mix[n % len(mix)]) for n in range(args.requests)]
        print(f"  {args.requests} pages in {time.perf_counter() - started:.1f} s")
    report("ui-pages-sqlite", "p95_s", percentile(latencies, 95), args.goal, goal=1.0,
           extra={"executions": args.executions, "requests": len(latencies), "p50_s": percentile(latencies, 50)})


if __name__ == "__main__":
    main()
