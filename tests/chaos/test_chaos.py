"""The bounded chaos soak inside ``make test``: 500 short executions and 3 real tiny image
classification trainings, at most 40 harmful actions in 45 s, on the local stack (SQLite and an embedded Redis, which the driver flushes and restarts)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chaos.soak import soak
from tests.conftest import free_port
from trainfaas.services.core.settings import load_settings

pytestmark = pytest.mark.stack


def test_nothing_is_lost_or_duplicated_under_random_kills_restarts_and_a_redis_flush(short_tmp: Path, capsys: Any) -> None:
    settings = load_settings(home=short_tmp, port=free_port(), api_url="", reconcile_interval_s=1.0)
    passed = soak(settings, executions=500, chaos_s=45.0, max_actions=40, seed=7, trainings=3, baseline=50)
    out = capsys.readouterr()
    with capsys.disabled():  # the verdict line, for the record of the run
        print("\n" + out.out.strip())
    assert passed, out.out + out.err
    assert "verdict=pass" in out.out
    assert "bench chaos_throughput: executions_per_s=" in out.out
