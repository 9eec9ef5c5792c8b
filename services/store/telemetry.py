"""Figures one process records in Redis for another to export: the scheduler's tick durations,
which the API's ``/metrics`` reads (the scheduler may run on another machine; Redis is shared).

One hash holds a cumulative histogram: a count per upper bound, the sum and the count."""
from __future__ import annotations

import math

import redis

TICK_KEY = "trainfaas:metrics:scheduler_tick_seconds"
TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)


def _bound(value: float) -> str:
    return "+Inf" if math.isinf(value) else repr(value)


def record_tick(connection: redis.Redis, seconds: float) -> None:
    """Add one tick of ``seconds`` to the histogram (one round trip)."""
    pipe = connection.pipeline(transaction=False)
    for bound in TICK_BUCKETS:
        if seconds <= bound:
            pipe.hincrby(TICK_KEY, f"le:{_bound(bound)}", 1)
    pipe.hincrbyfloat(TICK_KEY, "sum", seconds)
    pipe.hincrby(TICK_KEY, "count", 1)
    pipe.execute()


def read_ticks(connection: redis.Redis) -> tuple[list[tuple[str, float]], float]:
    """The cumulative buckets [(upper bound, count)], ending with +Inf, and the sum of the ticks."""
    raw = {key.decode(): value.decode() for key, value in connection.hgetall(TICK_KEY).items()}
    buckets = [(_bound(bound), float(raw.get(f"le:{_bound(bound)}", 0))) for bound in TICK_BUCKETS]
    return buckets, float(raw.get("sum", 0.0))
