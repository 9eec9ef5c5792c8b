"""gunicorn settings for the trainfaas API. Threads, not many processes: requests are short
and mostly wait on the database; SQLite in WAL mode serialises writers anyway."""
from __future__ import annotations

import os

bind = os.environ.get("TRAINFAAS_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("TRAINFAAS_API_WORKERS", "2"))
threads = int(os.environ.get("TRAINFAAS_API_THREADS", "8"))
worker_class = "gthread"
timeout = 60
# Above the API's own limit (trainfaas.services.api.registry.MAX_URI_BYTES), so that a long URI
# usually gets the API's 414 with its error body rather than gunicorn's plain-text one.
limit_request_line = 8190
graceful_timeout = 20
accesslog = os.environ.get("TRAINFAAS_ACCESS_LOG") or None
errorlog = "-"
loglevel = "warning"
# /metrics sums the request figures of every worker (prometheus_client's multiprocess mode): each
# worker writes its own files here; they are cleared when gunicorn starts, and a worker's are
# marked dead when it exits.
if os.environ.get("TRAINFAAS_HOME") and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(os.path.abspath(os.environ["TRAINFAAS_HOME"]), "prometheus")


def on_starting(server):  # noqa: ANN001, ANN201 - gunicorn's hook
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        for name in os.listdir(folder):
            if name.endswith(".db"):
                os.unlink(os.path.join(folder, name))


def child_exit(server, worker):  # noqa: ANN001, ANN201 - gunicorn's hook
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


if os.environ.get("TRAINFAAS_LOG_FORMAT") == "json":
    # gunicorn's own lines (and the access log, when on) as JSON lines too, like the app's.
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "pythonjsonlogger.json.JsonFormatter",
                                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"}}},
        "handlers": {"error_console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
                     "console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
        "loggers": {"gunicorn.error": {"handlers": ["error_console"], "level": "WARNING", "propagate": False},
                    "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False}},
    }
