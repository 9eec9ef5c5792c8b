"""A stack that cleans up after itself: `trainfaas up` killed hard leaves no process behind, a
new start on the same home stops a redis-server an earlier stack left, and two stacks never
share one home."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests

from tests.conftest import free_port, wait_until
from trainfaas.services.core.errors import Unavailable
from trainfaas.services.core.processes import is_alive
from trainfaas.services.local.embedded_redis import EmbeddedRedis, redis_server_binary


def _descendants(pid: int) -> dict[int, str]:
    found = {}
    for child in psutil.Process(pid).children(recursive=True):
        try:
            found[child.pid] = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
    return found


def test_a_stack_killed_hard_takes_its_redis_api_and_instances_with_it(short_tmp: Path) -> None:
    home, port = short_tmp / "home", free_port()
    env = {**os.environ, "TRAINFAAS_HOME": str(home), "TRAINFAAS_PORT": str(port), "TRAINFAAS_DATA_ROOTS": str(short_tmp / "data")}
    env = {name: value for name, value in env.items() if name not in ("TRAINFAAS_REDIS_URL", "TRAINFAAS_DATABASE_URL", "TRAINFAAS_API_URL")}
    up = subprocess.Popen([sys.executable, "-m", "trainfaas.services.cli", "up"], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url), 120, "the stack's API")
        admin = {"Authorization": f"Bearer {(home / 'admin-token').read_text().strip()}"}
        created = requests.patch(f"{url}/api/v1/services/mgmt-train-sleep", headers=admin, timeout=10,
                                 json={"min_instances": 1, "max_instances": 1})
        assert created.status_code == 200, created.text
        children = wait_until(lambda: _with_everyone(up.pid), 120, "redis-server, gunicorn and an instance under the stack")
        up.send_signal(signal.SIGKILL)
        up.wait()
        wait_until(lambda: not [pid for pid in children if is_alive(pid)], 60,
                   f"every process of the killed stack to end: {children}")
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2).ok
    except requests.RequestException:
        return False


def _with_everyone(pid: int) -> dict[int, str] | None:
    found = _descendants(pid)
    lines = list(found.values())
    kinds = ("redis-server", "gunicorn", " instance ")
    return found if all(any(kind in line for line in lines) for kind in kinds) else None


def test_a_new_start_stops_the_redis_server_an_earlier_stack_left(short_tmp: Path, caplog: pytest.LogCaptureFixture) -> None:
    socket = short_tmp / "redis.sock"
    # An orphan as a killed stack of an older version left it: its starter is gone, nothing ends it.
    orphan = subprocess.Popen([redis_server_binary(), "--port", "0", "--unixsocket", str(socket), "--save", ""],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    (short_tmp / "redis.pid").write_text(f"{orphan.pid} {gone.stdout.strip()}\n")
    wait_until(socket.exists, 30, "the orphan's socket")
    redis = EmbeddedRedis(socket)
    with caplog.at_level(logging.WARNING, logger="trainfaas.services.local.embedded_redis"):
        redis.start()
    try:
        assert orphan.poll() is not None, "the orphan still runs"
        assert f"stopping the embedded redis-server (pid {orphan.pid})" in caplog.text
        assert (short_tmp / "redis.pid").read_text().split() == [str(redis.process.pid), str(os.getpid())]
    finally:
        redis.stop()
        if orphan.poll() is None:
            orphan.kill()
    assert not (short_tmp / "redis.pid").exists()


def test_a_second_stack_on_a_home_in_use_is_refused_and_the_first_keeps_running(short_tmp: Path) -> None:
    socket = short_tmp / "redis.sock"
    first = EmbeddedRedis(socket)
    first.start()
    try:
        with pytest.raises(Unavailable, match=f"another trainfaas stack \\(pid {os.getpid()}\\) runs on"):
            EmbeddedRedis(socket).start()
        assert first.process is not None and first.process.poll() is None
    finally:
        first.stop()
