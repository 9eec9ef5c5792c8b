"""The Python SDK: a client over the whole HTTP API. The CLI is built on it.

    from trainfaas.services.sdk.client import Client
    client = Client("http://127.0.0.1:8080", token)        # or Client.from_settings(load_settings())
    model = client.create_model("digits-resnet18", "resnet18")
    execution = client.train(model["id"], dataset="digits", configuration={"epochs": 15})
    final = client.wait(execution["id"], on_update=lambda e: print(e["progress"], e["message"]))
    print(final["status"], client.get_model(model["id"])["metrics"])

Every method returns the JSON the API documents (GET /api/v1/openapi.json) and raises
:class:`ApiError` with the API's status, code, message and fields on any error. ``list_*``
return one page of items; ``iter_*`` walk every page.
"""
from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests

from trainfaas.services.core.statuses import TERMINAL_EXECUTION

if TYPE_CHECKING:
    from trainfaas.services.core.settings import Settings

Json = dict[str, Any]


class ApiError(Exception):
    """The API answered with an error body: ``status``, ``code``, ``message`` and ``fields``."""

    def __init__(self, status: int, code: str, message: str, fields: dict[str, str] | None = None) -> None:
        details = "; ".join(f"{k}: {v}" for k, v in (fields or {}).items())
        super().__init__(f"{message} ({details})" if details else message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or {}


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class Client:
    def __init__(self, api_url: str = "http://127.0.0.1:8080", token: str | None = None, timeout_s: float = 30.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.http = requests.Session()
        self.timeout_s = timeout_s
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def from_settings(cls, settings: Settings) -> Client:
        """A client of ``settings.api_url`` with ``TRAINFAAS_TOKEN``, else the admin token ``trainfaas up`` wrote."""
        token = settings.token or os.environ.get("TRAINFAAS_TOKEN", "")
        if not token and settings.admin_token_path.exists():
            token = settings.admin_token_path.read_text().strip()
        return cls(settings.api_url, token or None)

    def ui_url(self, page: str = "") -> str:
        """The address of a page of the web UI (docs/ui.md): ``""`` the executions,
        ``executions/<id>``, ``compare?executions=a,b``, ``train``, ``models``, ``services``."""
        return f"{self.api_url}/ui/{page.lstrip('/')}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, f"{self.api_url}{path}", **{"timeout": self.timeout_s, **kwargs})
        except requests.exceptions.SSLError as exc:
            raise ApiError(0, "tls", f"the TLS certificate of {self.api_url} could not be verified ({exc.__class__.__name__}):"
                           " point REQUESTS_CA_BUNDLE at the CA file that signed it") from exc
        except requests.ConnectionError as exc:
            raise ApiError(0, "unreachable", f"cannot reach the trainfaas API at {self.api_url}: is `trainfaas up` running?") from exc
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = {}
        if response.status_code >= 400:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            raise ApiError(response.status_code, error.get("code", "error"), error.get("message", response.reason), error.get("fields"))
        return body

    def page(self, path: str, **params: Any) -> Json:
        """One page: ``{"items": [...], "next_cursor": ...}``."""
        return self.request("GET", path, params=_drop_none(params))  # type: ignore[no-any-return]

    def iter_pages(self, path: str, **params: Any) -> Iterator[Json]:
        """Every item of a list, page after page."""
        cursor = None
        while True:
            page = self.page(path, **params, cursor=cursor)
            yield from page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return

    def openapi(self) -> Json:
        return self.request("GET", "/api/v1/openapi.json")  # type: ignore[no-any-return]

    # models
    def create_model(self, name: str, architecture: str, *, labels: list[str] | None = None,
                     configuration: dict[str, Any] | None = None, project: str | None = None,
                     from_model: str | None = None) -> Json:
        """Create a model; ``from_model`` fine-tunes a trained model of the same architecture."""
        payload = _drop_none({"name": name, "architecture": architecture, "labels": labels,
                              "configuration": configuration, "project": project, "from_model": from_model})
        return self.request("POST", "/api/v1/models", json=payload)  # type: ignore[no-any-return]

    def get_model(self, model_id: str) -> Json:
        return self.request("GET", f"/api/v1/models/{model_id}")  # type: ignore[no-any-return]

    def list_models(self, **filters: Any) -> list[Json]:
        """Filters: q, name, architecture, status, project, limit, cursor."""
        return self.page("/api/v1/models", **filters)["items"]  # type: ignore[no-any-return]

    def iter_models(self, **filters: Any) -> Iterator[Json]:
        return self.iter_pages("/api/v1/models", **filters)

    def clone_model(self, model_id: str, *, name: str | None = None, labels: list[str] | None = None,
                    configuration: dict[str, Any] | None = None, dataset: str | None = None) -> Json:
        """A new model like ``model_id`` without its weights, with these changes; it records ``cloned_from``."""
        payload = _drop_none({"name": name, "labels": labels, "configuration": configuration, "dataset": dataset})
        return self.request("POST", f"/api/v1/models/{model_id}/clone", json=payload)  # type: ignore[no-any-return]

    def delete_model(self, model_id: str) -> Json:
        """Delete a model with its trainings and their files (none may be pending or running)."""
        return self.request("DELETE", f"/api/v1/models/{model_id}")  # type: ignore[no-any-return]

    def import_model(self, architecture: str | None, weights: str | os.PathLike[str] | None = None, *, path: str | None = None,
                     labels: list[str] | None = None, name: str | None = None, project: str | None = None) -> Json:
        """Import weights as a pre-trained model: upload the file ``weights`` (a torch state dict or an
        ultralytics checkpoint), or name ``path``, a file or model folder inside the server's data roots
        (or a model archive, whose manifest names the architecture: see :meth:`import_archive`)."""
        fields = _drop_none({"architecture": architecture, "name": name, "project": project, "path": path})
        if weights is None:
            return self.request("POST", "/api/v1/models/import", json={**fields, **_drop_none({"labels": labels})})  # type: ignore[no-any-return]
        form = [*fields.items(), *(("labels", label) for label in labels or [])]
        with open(weights, "rb") as handle:
            files = {"weights": (os.path.basename(os.fspath(weights)), handle, "application/octet-stream")}
            return self.request("POST", "/api/v1/models/import", data=form, files=files, timeout=None)  # type: ignore[no-any-return]

    def import_archive(self, archive: str | os.PathLike[str] | None = None, *, path: str | None = None, name: str | None = None,
                       project: str | None = None, architecture: str | None = None) -> Json:
        """Import a model archive as ``download_model`` saved it, unchanged: upload the file ``archive`` or
        name ``path``, one inside the server's data roots. The new model keeps the manifest's architecture
        (``architecture``, if given, must be it), labels, configuration and status (trained, or pre-trained)."""
        fields = _drop_none({"architecture": architecture, "name": name, "project": project, "path": path})
        if archive is None:
            return self.request("POST", "/api/v1/models/import", json=fields)  # type: ignore[no-any-return]
        with open(archive, "rb") as handle:
            files = {"weights": (os.path.basename(os.fspath(archive)), handle, "application/gzip")}
            return self.request("POST", "/api/v1/models/import", data=list(fields.items()), files=files, timeout=None)  # type: ignore[no-any-return]

    def download_model(self, model_id: str, path: str | os.PathLike[str],
                       on_progress: Callable[[int, int | None], None] | None = None) -> int:
        """Save the model's archive (tar.gz with manifest.json) to ``path``; return its size in bytes.
        ``on_progress(bytes so far, total or None)`` is called as it arrives."""
        url = f"{self.api_url}/api/v1/models/{model_id}/artifact"
        with self.http.get(url, stream=True, timeout=self.timeout_s) as response:
            if response.status_code >= 400:
                error = (response.json() if response.content else {}).get("error", {})
                raise ApiError(response.status_code, error.get("code", "error"), error.get("message", response.reason), error.get("fields"))
            total = int(response.headers["Content-Length"]) if "Content-Length" in response.headers else None
            partial, done = f"{os.fspath(path)}.partial", 0
            with open(partial, "wb") as target:
                for chunk in response.iter_content(1024 * 1024):
                    target.write(chunk)
                    done += len(chunk)
                    if on_progress is not None:
                        on_progress(done, total)
            os.replace(partial, path)
        return done

    def delete_execution(self, execution_id: str) -> Json:
        """Delete an ended execution with its logs, metrics, checkpoints and files."""
        return self.request("DELETE", f"/api/v1/executions/{execution_id}")  # type: ignore[no-any-return]

    def train(self, model_id: str, dataset: str | None = None, configuration: dict[str, Any] | None = None,
              execution: dict[str, Any] | None = None, blueprint: str | None = None, datasets: dict[str, str] | None = None) -> Json:
        """Enqueue a training; ``blueprint`` names one whose options, settings and data set the others override.
        ``dataset`` is a folder or a registered data set (``name``, ``name@3``, ``name@alias``); ``datasets`` one per subset."""
        payload = _drop_none({"dataset": dataset, "configuration": configuration, "execution": execution, "blueprint": blueprint,
                              "datasets": datasets})
        return self.request("POST", f"/api/v1/models/{model_id}/train", json=payload)  # type: ignore[no-any-return]

    def evaluate(self, model_id: str, dataset: str, subset: str | None = None, execution: dict[str, Any] | None = None) -> Json:
        """Enqueue an evaluation of a trained model on the ``subset`` (validation by default, or train) of
        ``dataset``; the execution's output holds the task's metrics once it succeeds (see :meth:`wait`)."""
        payload = _drop_none({"dataset": dataset, "subset": subset, "execution": execution})
        return self.request("POST", f"/api/v1/models/{model_id}/evaluate", json=payload)  # type: ignore[no-any-return]

    def predict(self, model_id: str, inputs: list[Any], top_k: int | None = None, execution: dict[str, Any] | None = None) -> Json:
        """Enqueue a prediction of a trained model; the execution's output holds one prediction per input.

        Each input is a ``{"file" | "image" | "text": ...}`` dict as the API takes it, a ``str`` (a text),
        ``bytes`` (an encoded image, sent inline as base64) or a ``pathlib.Path`` (a local image file, sent
        inline). Files inside the server's data roots are given as ``{"file": "relative/path.png"}``."""
        payload = _drop_none({"inputs": [prediction_input(item) for item in inputs], "top_k": top_k, "execution": execution})
        return self.request("POST", f"/api/v1/models/{model_id}/predict", json=payload)  # type: ignore[no-any-return]

    # blueprints
    def save_blueprint(self, name: str, *, from_execution: str | None = None, config: dict[str, Any] | None = None,
                       description: str = "", project: str | None = None, replace: bool = False) -> Json:
        """Save what a training ran with (``from_execution``), or a configuration document, as blueprint ``name``."""
        payload = _drop_none({"name": name, "from_execution": from_execution, "config": config, "description": description,
                              "project": project, "replace": replace})
        return self.request("POST", "/api/v1/blueprints", json=payload)  # type: ignore[no-any-return]

    def list_blueprints(self, project: str | None = None) -> list[Json]:
        return list(self.iter_pages("/api/v1/blueprints", project=project))

    def get_blueprint(self, name: str, architecture: str | None = None, project: str | None = None) -> Json:
        """A saved blueprint, or the built-in quick or full (``full`` needs the architecture)."""
        return self.request("GET", f"/api/v1/blueprints/{name}", params=_drop_none({"architecture": architecture, "project": project}))  # type: ignore[no-any-return]

    def delete_blueprint(self, name: str, project: str | None = None) -> Json:
        return self.request("DELETE", f"/api/v1/blueprints/{name}", params=_drop_none({"project": project}))  # type: ignore[no-any-return]

    def execution_config(self, execution_id: str) -> Json:
        """What a training ran with: ``{architecture, dataset, configuration, execution}``, every option filled in."""
        return self.request("GET", f"/api/v1/executions/{execution_id}/config")  # type: ignore[no-any-return]

    # webhooks
    def create_webhook(self, url: str, secret: str, *, events: list[str] | None = None, description: str = "",
                       project: str | None = None) -> Json:
        """Send the project's execution status changes in ``events`` (default: the end states) to ``url``, signed with ``secret``."""
        payload = _drop_none({"url": url, "secret": secret, "events": events, "description": description, "project": project})
        return self.request("POST", "/api/v1/webhooks", json=payload)  # type: ignore[no-any-return]

    def list_webhooks(self, project: str | None = None) -> list[Json]:
        return list(self.iter_pages("/api/v1/webhooks", project=project))

    def get_webhook(self, webhook_id: str) -> Json:
        return self.request("GET", f"/api/v1/webhooks/{webhook_id}")  # type: ignore[no-any-return]

    def update_webhook(self, webhook_id: str, *, url: str | None = None, secret: str | None = None,
                       events: list[str] | None = None, description: str | None = None) -> Json:
        payload = _drop_none({"url": url, "secret": secret, "events": events, "description": description})
        return self.request("PATCH", f"/api/v1/webhooks/{webhook_id}", json=payload)  # type: ignore[no-any-return]

    def delete_webhook(self, webhook_id: str) -> Json:
        return self.request("DELETE", f"/api/v1/webhooks/{webhook_id}")  # type: ignore[no-any-return]

    def test_webhook(self, webhook_id: str) -> Json:
        """Record a ping to the webhook; the scheduler sends it. Returns the delivery (see webhook_deliveries)."""
        return self.request("POST", f"/api/v1/webhooks/{webhook_id}/test")  # type: ignore[no-any-return]

    def webhook_deliveries(self, webhook_id: str, status: str | None = None, limit: int = 50) -> list[Json]:
        """The newest ``limit`` deliveries of a webhook (``status``: pending, succeeded or failed)."""
        return self.page(f"/api/v1/webhooks/{webhook_id}/deliveries", status=status, limit=limit)["items"]  # type: ignore[no-any-return]

    # executions
    def enqueue(self, service: str, function: str, input: dict[str, Any], execution: dict[str, Any] | None = None,
                project: str | None = None) -> Json:
        payload = _drop_none({"function": function, "input": input, "execution": execution, "project": project})
        return self.request("POST", f"/api/v1/services/{service}/executions", json=payload)  # type: ignore[no-any-return]

    def enqueue_batch(self, service: str, executions: list[dict[str, Any]]) -> Json:
        """Enqueue up to 1,000 executions at once, all or nothing: each item is what :meth:`enqueue`
        sends (``function``, ``input``, optional ``execution`` and ``project``). Returns ``ids`` (in
        the items' order), ``count`` and ``service``; an invalid item is an ApiError 422 whose fields
        name ``executions.<index>.<field>``, and nothing is recorded."""
        return self.request("POST", f"/api/v1/services/{service}/executions/batch", json={"executions": executions})  # type: ignore[no-any-return]

    def get_execution(self, execution_id: str) -> Json:
        return self.request("GET", f"/api/v1/executions/{execution_id}")  # type: ignore[no-any-return]

    def waiting(self, execution_id: str) -> Json | None:
        """Why a pending or rerun execution has not started: its ``position`` in its service's queue,
        what holds it (``blocked_by``, ``reason``), the service's instances and ``estimated_wait_s``;
        None once it is no longer waiting."""
        return self.get_execution(execution_id).get("waiting")  # type: ignore[no-any-return]

    def usage(self, execution_id: str, attempt: int | None = None) -> list[Json]:
        """The samples of what the execution's work processes used (figure ``system``: ``cpu_percent``,
        ``rss_mb``, ``gpu_util``, ``gpu_mem_mb``), of one attempt or of all; each attempt's summary is
        its ``usage`` in :meth:`get_execution`."""
        return [sample for sample in self.metrics(execution_id)
                if sample["figure"] == "system" and (attempt is None or sample["attempt"] == attempt)]

    def list_executions(self, **filters: Any) -> list[Json]:
        """Filters: q, status (comma-separated), service, model, project, created_after/before (epoch s),
        include_removed ("true": also the executions removed from training), limit, cursor."""
        return self.page("/api/v1/executions", **filters)["items"]  # type: ignore[no-any-return]

    def iter_executions(self, **filters: Any) -> Iterator[Json]:
        return self.iter_pages("/api/v1/executions", **filters)

    def terminate(self, execution_id: str) -> Json:
        return self.request("POST", f"/api/v1/executions/{execution_id}/terminate")  # type: ignore[no-any-return]

    def rerun(self, execution_id: str, *, configuration: dict[str, Any] | None = None, execution: dict[str, Any] | None = None,
              resume: str | None = None, instance_type: str | None = None) -> Json:
        """Run an ended execution again as its next attempt: ``configuration`` merged over its options,
        ``execution`` settings, ``resume`` from ``last``, ``best`` or ``none``, on ``instance_type``
        (the architecture's service of that type, created as needed)."""
        payload = _drop_none({"configuration": configuration, "execution": execution, "resume": resume, "instance_type": instance_type})
        return self.request("POST", f"/api/v1/executions/{execution_id}/rerun", json=payload)  # type: ignore[no-any-return]

    def compare(self, *execution_ids: str, max_points: int = 500) -> Json:
        """2 to 10 executions side by side: configurations (``differs`` marks the keys that differ),
        final metrics, and each metric series aligned by step."""
        return self.request("GET", "/api/v1/compare", params={"executions": ",".join(execution_ids), "max_points": max_points})  # type: ignore[no-any-return]

    def metrics(self, execution_id: str) -> list[Json]:
        """Every metric sample, in the order reported."""
        return list(self.iter_pages(f"/api/v1/executions/{execution_id}/metrics", limit=500))

    def logs(self, execution_id: str, after: int = 0) -> list[Json]:
        """Every log line with an id above ``after``."""
        return list(self.iter_pages(f"/api/v1/executions/{execution_id}/logs", after=after, limit=10000))

    def artifacts(self, execution_id: str) -> list[Json]:
        return list(self.iter_pages(f"/api/v1/executions/{execution_id}/artifacts", limit=500))

    # checkpoints
    def checkpoints(self, execution_id: str) -> list[Json]:
        """The execution's checkpoints, oldest first: id, step, metrics, size, created, is_best, is_last."""
        return list(self.iter_pages(f"/api/v1/executions/{execution_id}/checkpoints", limit=500))

    def model_from_checkpoint(self, checkpoint_id: str, *, name: str | None = None) -> Json:
        """A new trained model with a copy of the checkpoint's weights; it records ``source_execution`` and ``source_step``."""
        return self.request("POST", f"/api/v1/checkpoints/{checkpoint_id}/model", json=_drop_none({"name": name}))  # type: ignore[no-any-return]

    def delete_checkpoint(self, checkpoint_id: str) -> Json:
        """Delete a checkpoint and its file (not the one a waiting or running rerun resumes from)."""
        return self.request("DELETE", f"/api/v1/checkpoints/{checkpoint_id}")  # type: ignore[no-any-return]

    def remove_execution(self, execution_id: str) -> Json:
        """Remove an execution from training: stop it if it has not ended and leave it out of the listings
        (``list_executions(include_removed="true")`` shows it)."""
        return self.request("POST", f"/api/v1/executions/{execution_id}/remove")  # type: ignore[no-any-return]

    def wait(self, execution_id: str, timeout_s: float | None = None, poll_s: float = 0.5,
             on_update: Callable[[Json], None] | None = None) -> Json:
        """Poll until the execution ends; call ``on_update`` with each state. Returns the last one.

        Raises TimeoutError after ``timeout_s`` (None: wait for ever)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            execution = self.get_execution(execution_id)
            if on_update:
                on_update(execution)
            if execution["status"] in TERMINAL_EXECUTION:
                return execution
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_id} still {execution['status']} after {timeout_s} s")
            time.sleep(poll_s)

    def follow(self, execution_id: str, on_update: Callable[[Json], None] | None = None,
               on_log: Callable[[Json], None] | None = None, timeout_s: float | None = None, poll_s: float = 0.5) -> Json:
        """Like :meth:`wait`, and also hand each new log line to ``on_log`` as it arrives."""
        seen = 0

        def update(execution: Json) -> None:
            nonlocal seen
            if on_log:
                for line in self.logs(execution_id, after=seen):
                    on_log(line)
                    seen = line["id"]
            if on_update:
                on_update(execution)

        return self.wait(execution_id, timeout_s, poll_s, update)

    # services (shared by all projects; changes need an admin token)
    def list_services(self, **filters: Any) -> list[Json]:
        return list(self.iter_pages("/api/v1/services", **filters))

    def get_service(self, name: str) -> Json:
        return self.request("GET", f"/api/v1/services/{name}")  # type: ignore[no-any-return]

    def update_service(self, name: str, **changes: Any) -> Json:
        return self.request("PATCH", f"/api/v1/services/{name}", json=changes)  # type: ignore[no-any-return]

    def pause_service(self, name: str) -> Json:
        return self.request("POST", f"/api/v1/services/{name}/pause")  # type: ignore[no-any-return]

    def resume_service(self, name: str) -> Json:
        return self.request("POST", f"/api/v1/services/{name}/resume")  # type: ignore[no-any-return]

    def service_events(self, name: str, limit: int = 100) -> list[Json]:
        """The newest ``limit`` scaling decisions, newest first."""
        return self.page(f"/api/v1/services/{name}/events", limit=limit)["items"]  # type: ignore[no-any-return]

    def architectures(self, task: str | None = None, q: str | None = None) -> list[Json]:
        """Every architecture (of ``task``; ``q``: part of the name), all pages."""
        return list(self.iter_pages("/api/v1/architectures", task=task, q=q, limit=500))

    def architecture(self, name: str) -> Json:
        """One architecture with its adapter's options as JSON Schema."""
        return self.request("GET", f"/api/v1/architectures/{name}")  # type: ignore[no-any-return]

    def instances(self, service: str) -> list[Json]:
        return list(self.iter_pages(f"/api/v1/services/{service}/instances", limit=500))

    # projects and tokens (creating and revoking need an admin token)
    def create_project(self, name: str, description: str = "") -> Json:
        return self.request("POST", "/api/v1/projects", json={"name": name, "description": description})  # type: ignore[no-any-return]

    def get_project(self, name: str) -> Json:
        return self.request("GET", f"/api/v1/projects/{name}")  # type: ignore[no-any-return]

    def list_projects(self, **filters: Any) -> list[Json]:
        """Projects, each with ``limits``: its quotas in force and its queued and running executions now."""
        return list(self.iter_pages("/api/v1/projects", **filters))

    def update_project(self, name: str, **changes: Any) -> Json:
        """Change a project (admin token): ``description``, ``max_queued``, ``max_running``. A limit
        given as None goes back to the server's default; one not given stays as it is."""
        return self.request("PATCH", f"/api/v1/projects/{name}", json=changes)  # type: ignore[no-any-return]

    def project_limits(self, name: str) -> Json:
        """A project's quotas in force and its usage: max_queued, max_running, queued, running (and each limit's source)."""
        return self.get_project(name)["limits"]  # type: ignore[no-any-return]

    def create_token(self, scope: str, project: str | None = None, name: str = "") -> Json:
        """Create a token; the answer's ``token`` is the secret, shown this once."""
        payload = _drop_none({"scope": scope, "project": project, "name": name})
        return self.request("POST", "/api/v1/tokens", json=payload)  # type: ignore[no-any-return]

    def list_tokens(self, **filters: Any) -> list[Json]:
        return list(self.iter_pages("/api/v1/tokens", **filters))

    def revoke_token(self, token_id: str) -> Json:
        return self.request("DELETE", f"/api/v1/tokens/{token_id}")  # type: ignore[no-any-return]

    # data sets
    def register_dataset(self, name: str, path: str, *, task: str | None = None, project: str | None = None) -> Json:
        """Register a folder in the data roots as a data set, taking its version 1."""
        payload = _drop_none({"name": name, "path": path, "task": task, "project": project})
        return self.request("POST", "/api/v1/datasets", json=payload)  # type: ignore[no-any-return]

    def list_datasets(self, **filters: Any) -> list[Json]:
        return list(self.iter_pages("/api/v1/datasets", **filters))

    def get_dataset(self, dataset: str) -> Json:
        """A data set by id, id prefix or name."""
        return self.request("GET", f"/api/v1/datasets/{_segment(dataset)}")  # type: ignore[no-any-return]

    def delete_dataset(self, dataset: str, force: bool = False) -> Json:
        """Delete a data set; ``force`` marks one that trainings used deleted, keeping its versions."""
        return self.request("DELETE", f"/api/v1/datasets/{_segment(dataset)}", params={"force": "true"} if force else None)  # type: ignore[no-any-return]

    def take_dataset_version(self, dataset: str) -> Json:
        """Take a new version if the files changed (``created`` true), else answer the newest."""
        return self.request("POST", f"/api/v1/datasets/{_segment(dataset)}/versions")  # type: ignore[no-any-return]

    def dataset_versions(self, dataset: str) -> list[Json]:
        return list(self.iter_pages(f"/api/v1/datasets/{_segment(dataset)}/versions"))

    def dataset_version(self, dataset: str, version: str | int = "latest", offset: int = 0, limit: int = 1000) -> Json:
        """One version (number, latest or alias) with a page of its manifest."""
        return self.request("GET", f"/api/v1/datasets/{_segment(dataset)}/versions/{_segment(str(version))}",  # type: ignore[no-any-return]
                            params={"offset": offset, "limit": limit})

    def dataset_diff(self, dataset: str, from_version: str | int, to_version: str | int) -> Json:
        return self.request("GET", f"/api/v1/datasets/{_segment(dataset)}/diff",  # type: ignore[no-any-return]
                            params={"from": str(from_version), "to": str(to_version)})

    def set_dataset_alias(self, dataset: str, alias: str, version: int) -> Json:
        return self.request("PUT", f"/api/v1/datasets/{_segment(dataset)}/aliases/{_segment(alias)}",  # type: ignore[no-any-return]
                            json={"version": version})

    def delete_dataset_alias(self, dataset: str, alias: str) -> Json:
        return self.request("DELETE", f"/api/v1/datasets/{_segment(dataset)}/aliases/{_segment(alias)}")  # type: ignore[no-any-return]

    def set_dataset_constraints(self, dataset: str, **constraints: Any) -> Json:
        """Replace a data set's constraints: min_per_label, max_label_share, no_empty_subset, labels_match_model."""
        return self.request("PUT", f"/api/v1/datasets/{_segment(dataset)}/constraints", json=constraints)  # type: ignore[no-any-return]

    def project_dataset_constraints(self, project: str) -> Json:
        return self.request("GET", f"/api/v1/projects/{_segment(project)}/dataset-constraints")  # type: ignore[no-any-return]

    def set_project_dataset_constraints(self, project: str, **constraints: Any) -> Json:
        return self.request("PUT", f"/api/v1/projects/{_segment(project)}/dataset-constraints", json=constraints)  # type: ignore[no-any-return]

    def share_dataset(self, dataset: str, project: str) -> Json:
        """(admin) Let ``project`` read the data set."""
        return self.request("POST", f"/api/v1/datasets/{_segment(dataset)}/shares", json={"project": project})  # type: ignore[no-any-return]

    def unshare_dataset(self, dataset: str, project: str) -> Json:
        return self.request("DELETE", f"/api/v1/datasets/{_segment(dataset)}/shares/{_segment(project)}")  # type: ignore[no-any-return]


def _segment(value: str) -> str:
    """``value`` as one path segment: a slash or other odd character cannot reach another route."""
    return quote(value, safe="")

def prediction_input(item: Any) -> dict[str, Any]:
    """One input of :meth:`Client.predict` as the API takes it."""
    if isinstance(item, dict):
        return item
    if isinstance(item, str):
        return {"text": item}
    if isinstance(item, Path):
        item = item.read_bytes()
    if isinstance(item, (bytes, bytearray)):
        return {"image": base64.b64encode(bytes(item)).decode("ascii")}
    raise TypeError(f"a prediction input is a dict, str, bytes or pathlib.Path, not {type(item).__name__}")
