"""Instances as local child processes (the default backend).

A scheduler that restarts finds its instances by pid and adopts them. Instance types are applied
as best effort: ``cpus`` sets the thread count of torch and the BLAS libraries, ``gpus: 0``
hides the GPUs (the ``default`` profile sets nothing) (CUDA_VISIBLE_DEVICES=""); memory is not limited (an address-space limit breaks
torch, which reserves far more virtual memory than it uses). Use the docker backend for hard limits.
"""
from __future__ import annotations

import logging
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from trainfaas.scheduler.backends.base import InstanceBackend, Observation
from trainfaas.services.control.tokens import registration_token
from trainfaas.services.core.errors import BackendError
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


class ProcessBackend(InstanceBackend):
    name = "process"

    def __init__(self, settings) -> None:  # type: ignore[no-untyped-def]
        super().__init__(settings)
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.adopted: dict[str, int] = {}  # instance id -> pid, found alive after a scheduler restart

    def command(self, service: Service, instance: Instance) -> list[str]:
        prefix = shlex.split(self.settings.process_command) or [sys.executable, "-m", "trainfaas.services.cli"]
        return [*prefix, "instance", "--service", service.name, "--instance-id", instance.id]

    def environment(self, service: Service | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFAAS_")}
        profile = self.settings.instance_types.get(service.instance_type, {}) if service is not None else {}
        if profile.get("cpus"):
            threads = str(max(1, math.ceil(profile["cpus"])))
            env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
        if profile.get("gpus", -1) == 0:
            env["CUDA_VISIBLE_DEVICES"] = ""
        env.update(
            TRAINFAAS_HOME=str(self.settings.home), TRAINFAAS_REDIS_URL=self.settings.redis_url,
            TRAINFAAS_API_URL=self.settings.api_url, TRAINFAAS_ADAPTERS=self.settings.adapters,
            TRAINFAAS_HEARTBEAT_INTERVAL_S=str(self.settings.heartbeat_interval_s),
            PYTHONPATH=os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")) if p),
        )
        if service is not None:
            env["TRAINFAAS_REGISTRATION_TOKEN"] = registration_token(self.settings.instance_secret_value(), service.name)
        return env

    def start(self, service: Service, instance: Instance) -> None:
        logs = self.settings.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"instance-{instance.id}.log", "ab") as out:
            try:
                child = subprocess.Popen(
                    self.command(service, instance), env=self.environment(service), stdin=subprocess.DEVNULL,
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                )
            except OSError as exc:
                raise BackendError(f"cannot start instance {instance.id}: {exc}") from exc
        self.children[instance.id] = child
        Instance.update(pid=child.pid).where(Instance.id == instance.id).execute()
        log.info("started instance %s of %s as pid %s", instance.id, service.name, child.pid)

    def _signal(self, instance: Instance, sig: signal.Signals) -> None:
        pid = self.children[instance.id].pid if instance.id in self.children else instance.pid
        if pid and self._is_ours(instance, pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

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
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
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
