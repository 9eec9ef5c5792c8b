"""Settings: one object, read from the environment (prefix ``TRAINFAAS_``) when asked, never at import."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Effective settings of a trainfaas process.

    Defaults suit a laptop: everything lives under ``home``; the database is a SQLite file there
    and Redis is an embedded redis-server on a unix socket there, started and stopped by the stack.
    """

    model_config = SettingsConfigDict(env_prefix="TRAINFAAS_", extra="ignore")

    home: Path = Field(Path(".trainfaas"), description="Data directory: database, sockets, artifacts.")
    database_url: str = Field("", description="peewee database URL; default: SQLite file in home.")
    redis_url: str = Field("", description="Redis URL; default: an embedded redis-server in home.")
    api_url: str = Field("", description="Where instances and the CLI reach the API.")
    host: str = "127.0.0.1"
    port: int = 8080
    token: str = Field("", description="Token the CLI and SDK send (default: the admin token in home/admin-token).")
    adapters: str = Field("", description="Extra adapters, as module:Class,module:Class.")
    log_format: Literal["text", "json"] = Field("text", description="How the API, the scheduler and instances log: text lines,"
                                                                    " or JSON lines with service, instance, execution_id and attempt where they apply.")
    data_roots: str = Field("", description="Directories data sets must lie in, separated by ':' (default: home/datasets).")
    dataset_check_max_files: int = Field(200_000, description="Most files and folders the API's check of a data set may touch.")
    dataset_check_seconds: float = Field(10.0, description="Longest the API's check of a data set may run, in seconds.")
    dataset_version_max_files: int = Field(100_000, ge=1, description="Most files one version of a registered data set may hold.")
    dataset_version_max_bytes: int = Field(8 * 1024**3, ge=1, description="Most bytes one version of a registered data set may hold"
                                                                          " (each is hashed when the version is taken and before a training reads it).")
    dataset_version_seconds: float = Field(120.0, gt=0, description="Longest taking a version of a data set (walking and hashing it) may run, in seconds.")
    instance_secret: str = Field(
        "", description="Secret the API and the scheduler share: the instances of swarm services register with a credential"
                        " derived from it. Default: home/instance-secret, created on first use (mode 0600).")
    registration_token: str = Field("", description="The credential an instance registers with; docker and swarm instances get it"
                                                    " here, and an instance started by hand may.")
    registration_token_fd: int | None = Field(
        None, ge=0, description="An inherited file descriptor to read the registration token from (and close): how the process"
                                " backend hands it, so that it is in no process' environment.")
    work_user: str = Field(
        "trainfaas-work", description="The user work processes run as when their instance runs as root: a user name or uid;"
                                      " uid/gid 65534 where the named user does not exist; 'root' keeps them root (no isolation)."
                                      " Ignored by an instance that is not root.")
    work_isolation: Literal["auto", "required"] = Field(
        "auto", description="auto: where the work user cannot read the Python installation, trainfaas or a data root, work"
                            " processes run as the instance's user and the instance says so in its log; required: such an"
                            " instance refuses to start instead.")
    keep_freed_memory: bool = Field(
        True, description="Work processes keep the memory they free for their next allocations (glibc's malloc: the heap is"
                          " never trimmed, and blocks up to 32 MB come from it), so that a training step reuses the last"
                          " step's memory instead of faulting fresh pages in; false keeps glibc's defaults.")
    registration_ttl_s: float = Field(
        120.0, gt=0, description="How long the one-time registration token of an instance the scheduler starts stays valid,"
                                 " in seconds. The reaper fails an instance that has not registered within 60 s anyway.")
    max_body_bytes: int = Field(1024 * 1024, description="Largest request body of user endpoints; larger ones get 413.")
    max_import_bytes: int = Field(2 * 1024**3, ge=1, description="Largest weights file POST /models/import takes as an upload; larger ones get 413.")
    max_instance_body_bytes: int = Field(32 * 1024 * 1024, description="Largest body an instance may send (reports, tracebacks).")
    max_log_lines: int = Field(100_000, ge=1, description="Most log lines kept per attempt; past it, one line says so.")
    max_log_chars: int = Field(10_000_000, ge=1, description="Most characters of log text kept per attempt; past it, one line says so.")
    max_metric_samples: int = Field(100_000, ge=1, description="Most metric samples kept per attempt; past it, one log line says so.")
    usage_interval_s: float = Field(5.0, gt=0, le=3600, description="How often an instance measures the CPU, memory and GPU use of"
                                                                    " each work process, in seconds (the `system` figure).")
    max_log_page_chars: int = Field(1024 * 1024, ge=1, description="Most characters of log text in one page of logs; the cursor continues.")

    # Quotas and limits (docs/security.md, "Quotas and limits"): what one write token can make the platform do.
    project_max_queued: int = Field(100, ge=0, description="Most executions a project may have waiting (created, pending or rerun);"
                                                           " one more is refused with 429. A project's own limit overrides it.")
    project_max_running: int = Field(8, ge=0, description="Most executions of a project that run at once; the others stay"
                                                          " pending until one ends. A project's own limit overrides it.")
    keep_checkpoints: int = Field(3, ge=1, le=1000, description="Checkpoints an execution keeps besides its best one, newest first,"
                                  " unless its execution settings say otherwise; older ones are deleted with their files.")
    ui_session_s: float = Field(8 * 3600.0, gt=0, le=30 * 86400, description="How long a sign-in to the web UI (/ui/) lasts, in seconds.")
    max_timeout_s: float = Field(24 * 3600.0, gt=0, description="Longest timeout_s an execution or a service may ask for, in seconds.")
    diagnostics: bool = Field(False, description="Allow the sleep adapter's fault-injection options (raise_error, exit_code,"
                                                 " allocate_mb, fail_at, diverge); refused with 422 otherwise.")
    diagnostics_max_allocate_mb: int = Field(1024, ge=0, description="Largest allocate_mb of the sleep adapter, with diagnostics on.")
    new_service_min_instances: int = Field(0, ge=0, description="min_instances of a service its architecture's first training"
                                                                " creates (autoscaled; services an admin creates keep the fixed defaults).")
    new_service_max_instances: int = Field(1, ge=0, description="max_instances of a service its architecture's first training creates.")

    # Webhooks (docs/webhooks.md): where a project's execution status changes are sent, and how.
    webhook_allow_private: bool = Field(False, description="Allow webhook URLs whose host is (or resolves to) a loopback, private,"
                                                           " link-local or otherwise non-public address.")
    webhook_allow_hosts: str = Field("", description="Hosts, addresses and networks (CIDR) webhooks may reach even though they are"
                                                     " not public, separated by ',' (e.g. 127.0.0.1,10.1.0.0/16,hooks.internal).")
    webhook_max_per_project: int = Field(20, ge=0, description="Most webhooks a project may have; one more is refused with 429.")
    webhook_connect_timeout_s: float = Field(5.0, gt=0, le=60, description="How long a delivery may take to connect, in seconds.")
    webhook_read_timeout_s: float = Field(10.0, gt=0, le=600, description="How long a delivery waits for each read of the answer, in seconds.")
    webhook_retry_base_s: float = Field(10.0, gt=0, description="The wait before a failed delivery's second try; it doubles with each try.")
    webhook_retry_max_delay_s: float = Field(3600.0, gt=0, description="The longest wait between two tries of a delivery, in seconds.")
    webhook_retry_window_s: float = Field(24 * 3600.0, gt=0, description="How long after its event a delivery is still tried;"
                                                                         " then it is marked failed.")
    webhook_poll_interval_s: float = Field(1.0, gt=0, description="How often the scheduler's deliverer looks for due deliveries.")
    webhook_workers: int = Field(4, ge=1, le=64, description="Deliveries the scheduler sends at once.")
    webhook_keep_s: float = Field(7 * 86400.0, gt=0, description="How long a settled delivery (succeeded or failed) stays in its"
                                                                 " webhook's record, in seconds; older ones are deleted.")

    heartbeat_interval_s: float = 2.0
    heartbeat_timeout_s: float = 10.0
    tick_interval_s: float = 1.0  # how often the scheduler runs its fleet keeper, reaper and reconciler
    reconcile_interval_s: float = 5.0
    # A reset already stopped the work process on the instance; this grace only covers the case
    # where the instance itself is gone and the scheduler has to notice the overdue deadline.
    timeout_grace_s: float = 5.0
    api_workers: int = 2
    api_threads: int = 8

    # Instance backends the scheduler runs, besides the default "process" (e.g. "docker,swarm").
    backends: str = ""
    # Named resource profiles a service's instance_type refers to. Backends apply them: docker and
    # swarm as container limits (cpus, memory, GPUs); the process backend as best effort.
    instance_types: dict[str, dict[str, float]] = Field(default_factory=lambda: {
        "default": {},  # no limits: the whole machine, GPUs included
        "regular-xs": {"cpus": 0.5, "memory_mb": 1024, "gpus": 0},
        "regular-s": {"cpus": 1, "memory_mb": 2048, "gpus": 0},
        "regular-m": {"cpus": 2, "memory_mb": 4096, "gpus": 0},
        "regular-l": {"cpus": 4, "memory_mb": 8192, "gpus": 0},
        "highmem-m": {"cpus": 2, "memory_mb": 16384, "gpus": 0},
        "highmem-l": {"cpus": 4, "memory_mb": 32768, "gpus": 0},
        "gpu-1": {"cpus": 4, "memory_mb": 16384, "gpus": 1},
    })
    instances_end_with_scheduler: bool = Field(False, description="Process instances end when the scheduler that started"
                                                                 " them ends (trainfaas up sets it, as its Redis and API end with it);"
                                                                 " a standalone scheduler leaves them running, and its restart adopts them.")
    end_with_pid: int = Field(0, ge=0, description="Set by the process backend: the instance stops (its running work is reset)"
                                                   " when this process, its parent, is gone. 0: never.")
    process_command: str = Field("", description="Command that starts a process instance (default: this Python, -m trainfaas.services.cli).")
    docker_image: str = Field("trainfaas-runner:latest", description="Runner image of docker/swarm instances.")
    docker_mounts: str = Field("", description="Extra binds for runner containers: host:container[:ro],...")
    docker_user: str = Field("", description="The user[:group] runner containers run as; default: the image's own"
                                             " (deploy/Dockerfile.runner: trainfaas, uid 10001).")

    def resolved(self) -> Settings:
        """Return a copy with the defaults that depend on ``home`` filled in and paths absolute."""
        home = self.home.expanduser().resolve()
        return self.model_copy(
            update={
                "home": home,
                "database_url": self.database_url or f"sqlite:///{home / 'trainfaas.db'}",
                "redis_url": self.redis_url or f"unix://{home / 'redis.sock'}",
                "api_url": (self.api_url or f"http://{self.host}:{self.port}").rstrip("/"),
            }
        )

    @property
    def embedded_redis(self) -> bool:
        """True when no Redis URL was given and the stack must start its own."""
        return self.redis_url == f"unix://{self.home / 'redis.sock'}"

    @property
    def executions_dir(self) -> Path:
        return self.home / "executions"

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @property
    def dataset_roots(self) -> list[Path]:
        """Where data sets may lie, symlinks resolved: ``data_roots`` or else home/datasets."""
        given = [Path(p).expanduser() for p in self.data_roots.split(":") if p.strip()]
        return [p.resolve() for p in (given or [self.datasets_dir])]

    @property
    def admin_token_path(self) -> Path:
        return self.home / "admin-token"

    def instance_secret_value(self) -> str:
        """``instance_secret``, or the one kept in home/instance-secret (created on first use)."""
        if self.instance_secret:
            return self.instance_secret
        path = self.home / "instance-secret"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            pass
        import secrets

        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A unique name per caller (threads of one API worker too), mode 0600 from its first byte.
        descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        temp = Path(name)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
        try:
            os.link(temp, path)  # never replaces one another process wrote first
        except FileExistsError:
            pass
        finally:
            temp.unlink()
        return path.read_text().strip()

    def public(self) -> dict[str, str]:
        """What ``trainfaas info`` prints: enough for users and tools such as ``rq info``."""
        return {
            "home": str(self.home),
            "database_url": self.database_url,
            "redis_url": self.redis_url,
            "api_url": self.api_url,
            "embedded_redis": str(self.embedded_redis).lower(),
            "data_roots": ":".join(map(str, self.dataset_roots)),
        }


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, apply overrides, and resolve home-relative defaults."""
    return Settings(**overrides).resolved()  # type: ignore[arg-type]
