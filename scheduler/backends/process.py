"""Instances as local child processes (the default backend).

A scheduler that restarts finds its instances by pid and adopts them. An instance inherits the
scheduler's environment less its ``TRAINFAAS_*`` settings, plus the environment of every
instance (environment.py). Instance types are applied as best effort, through that environment
only: ``cpus`` sets the thread count of torch and the BLAS libraries, ``gpus: 0`` hides the
GPUs (CUDA_VISIBLE_DEVICES=""), the ``default`` type sets nothing; memory is not limited (an
address-space limit breaks torch, which reserves far more virtual memory than it uses). Use the
docker backend for hard limits.

The registration token is not in that environment: the instance reads it from a pipe whose read
end it inherits (TRAINFAAS_REGISTRATION_TOKEN_FD), so no /proc/<pid>/environ shows it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from trainfaas.scheduler.backends.base import InstanceBackend, Observation
from trainfaas.scheduler.backends.environment import REGISTRATION_TOKEN_FD, instance_environment, separate_token, without_settings
from trainfaas.services.core.errors import BackendError
from trainfaas.services.core.settings import Settings
from trainfaas.services.core.statuses import InstanceStatus
from trainfaas.services.store.records import Instance, Service

log = logging.getLogger(__name__)


def exit_reason(returncode: int) -> tuple[str, bool]:
    """(reason, failed) for a process's return code as Popen reports it."""
    if returncode < 0:
        sig = signal.Signals(-returncode)
        return f"killed by {sig.name} (signal {-returncode})", True
    if returncode == 0:
        return "exited cleanly (code 0)", False
    return f"exit code {returncode}", True


def send(pid: int, sig: signal.Signals) -> None:
    """Signal ``pid``; one that exited meanwhile needs nothing."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def token_pipe(token: str) -> int:
    """The read end of a pipe that holds ``token`` and then ends (its write end is closed)."""
    read_end, write_end = os.pipe()  # a token is far below a pipe's buffer: the write never blocks
    try:
        os.write(write_end, token.encode())
    finally:
        os.close(write_end)
    return read_end


class ProcessBackend(InstanceBackend):
    name = "process"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.adopted: dict[str, int] = {}  # instance id -> pid, found alive after a scheduler restart

    def command(self, service: Service, instance: Instance) -> list[str]:
        prefix = shlex.split(self.settings.process_command) or [sys.executable, "-m", "trainfaas.services.cli"]
        return [*prefix, "instance", "--service", service.name, "--instance-id", instance.id]

    def environment(self, service: Service, registration: str) -> dict[str, str]:
        """The scheduler's environment less its settings, plus an instance's. Raises ConfigError
        for an unknown instance type."""
        return {**without_settings(dict(os.environ)), **instance_environment(self.settings, service, registration)}

    def start(self, service: Service, instance: Instance, registration: str) -> None:
        """Start the instance's process. Raises BackendError, and ConfigError for an unknown instance type."""
        environment, token = separate_token(self.environment(service, registration))
        logs = self.settings.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        token_fd = token_pipe(token)
        environment[REGISTRATION_TOKEN_FD] = str(token_fd)
        if self.settings.instances_end_with_scheduler:
            environment["TRAINFAAS_END_WITH_PID"] = str(os.getpid())
        try:
            with open(logs / f"instance-{instance.id}.log", "ab") as out:
                child = subprocess.Popen(
                    self.command(service, instance), env=environment, stdin=subprocess.DEVNULL,
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(token_fd,),
                )
        except OSError as exc:
            raise BackendError(f"cannot start instance {instance.id}: {exc}") from exc
        finally:
            os.close(token_fd)  # the child holds its own copy
        self.children[instance.id] = child
        Instance.update(pid=child.pid).where(Instance.id == instance.id).execute()
        log.info("started instance %s of %s as pid %s", instance.id, service.name, child.pid)

    def _signal(self, instance: Instance, sig: signal.Signals) -> None:
        pid = self.children[instance.id].pid if instance.id in self.children else instance.pid
        if pid and self._is_ours(instance, pid):
            send(pid, sig)

    def stop(self, instance: Instance) -> None:
        self._signal(instance, signal.SIGTERM)

    def kill(self, instance: Instance) -> None:
        self._signal(instance, signal.SIGKILL)

    def observe(self, instance: Instance) -> Observation:
        child = self.children.get(instance.id)
        if child is not None:
            code = child.poll()
            if code is None:
                return Observation(True)
            del self.children[instance.id]
            reason, failed = exit_reason(code)
            return Observation(False, reason, failed)
        if instance.pid and self._is_ours(instance, instance.pid):
            self.adopted[instance.id] = instance.pid  # started by a previous scheduler
            return Observation(True)
        self.adopted.pop(instance.id, None)
        if instance.status == InstanceStatus.INITIALIZING and instance.pid is None:
            return Observation(True)  # being started right now
        return Observation(False, "process gone (started by a previous scheduler; exit status unknown)", True)

    @staticmethod
    def _is_ours(instance: Instance, pid: int) -> bool:
        # A pid can be reused by an unrelated process; the instance id in its command line proves it.
        try:
            return instance.id.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    def close(self, timeout_s: float) -> None:
        """SIGTERM (drain) every child; after ``timeout_s`` a second SIGTERM makes them reset what
        is left and exit; SIGKILL only for one that still hangs after that."""
        # Adopted instances are not our children: they are watched by pid instead of wait().
        pids = [child.pid for child in self.children.values() if child.poll() is None] + list(self.adopted.values())
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            pids = [pid for pid in pids if self._alive(pid)]
            for pid in pids:
                send(pid, sig)
            deadline = time.monotonic() + wait_s
            while pids and time.monotonic() < deadline and any(self._alive(pid) for pid in pids):
                time.sleep(0.1)
        self.adopted.clear()

    def _alive(self, pid: int) -> bool:
        """True while ``pid`` runs; reaps it first when it is our exited child."""
        for child in self.children.values():
            if child.pid == pid:
                return child.poll() is None
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z"  # a zombie has exited; its parent has not reaped it yet
