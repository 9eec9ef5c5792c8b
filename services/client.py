"""The Python SDK: a typed client over the HTTP API. The CLI is built on it.

    from services.client import Client
    client = Client("http://127.0.0.1:8080")
    model = client.create_model("digits-resnet18", "resnet18")
    execution = client.train(model["id"], dataset="digits", configuration={"epochs": 15})
    final = client.wait(execution["id"], on_update=lambda e: print(e["progress"], e["message"]))
    print(final["status"], client.get_model(model["id"])["metrics"])
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from services.models import TERMINAL


class ApiError(Exception):
    """The API answered with an error body: ``status``, ``code``, ``message`` and ``fields``."""

    def __init__(self, status: int, code: str, message: str, fields: dict[str, str] | None = None) -> None:
        details = "; ".join(f"{k}: {v}" for k, v in (fields or {}).items())
        super().__init__(f"{message} ({details})" if details else message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or {}


class Client:
    def __init__(self, api_url: str = "http://127.0.0.1:8080", token: str | None = None, timeout_s: float = 30.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.http = requests.Session()
        self.timeout_s = timeout_s
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, f"{self.api_url}{path}", timeout=self.timeout_s, **kwargs)
        except requests.ConnectionError as exc:
            raise ApiError(0, "unreachable", f"cannot reach the trainfaas API at {self.api_url}: is `trainfaas up` running?") from exc
        body = response.json() if response.content else {}
        if response.status_code >= 400:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            raise ApiError(response.status_code, error.get("code", "error"), error.get("message", response.reason), error.get("fields"))
        return body

    # models
    def create_model(self, name: str, architecture: str, *, labels: list[str] | None = None,
                     configuration: dict[str, Any] | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"name": name, "architecture": architecture}
        if labels is not None:
            payload["labels"] = labels
        if configuration is not None:
            payload["configuration"] = configuration
        return self.request("POST", "/api/v1/models", json=payload)  # type: ignore[no-any-return]

    def get_model(self, model_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/models/{model_id}")  # type: ignore[no-any-return]

    def train(self, model_id: str, dataset: str | None = None, configuration: dict[str, Any] | None = None,
              execution: dict[str, Any] | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        for key, value in (("dataset", dataset), ("configuration", configuration), ("execution", execution)):
            if value is not None:
                payload[key] = value
        return self.request("POST", f"/api/v1/models/{model_id}/train", json=payload)  # type: ignore[no-any-return]

    # executions
    def enqueue(self, service: str, function: str, input: dict[str, Any], execution: dict[str, Any] | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"function": function, "input": input}
        if execution is not None:
            payload["execution"] = execution
        return self.request("POST", f"/api/v1/services/{service}/executions", json=payload)  # type: ignore[no-any-return]

    def get_execution(self, execution_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/executions/{execution_id}")  # type: ignore[no-any-return]

    def list_executions(self, **filters: Any) -> list[dict[str, Any]]:
        params = {k: v for k, v in filters.items() if v is not None}
        return self.request("GET", "/api/v1/executions", params=params)["items"]  # type: ignore[no-any-return]

    def terminate(self, execution_id: str) -> dict[str, Any]:
        return self.request("POST", f"/api/v1/executions/{execution_id}/terminate")  # type: ignore[no-any-return]

    def rerun(self, execution_id: str) -> dict[str, Any]:
        return self.request("POST", f"/api/v1/executions/{execution_id}/rerun")  # type: ignore[no-any-return]

    def metrics(self, execution_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/api/v1/executions/{execution_id}/metrics")["items"]  # type: ignore[no-any-return]

    def logs(self, execution_id: str, after: int = 0) -> list[dict[str, Any]]:
        return self.request("GET", f"/api/v1/executions/{execution_id}/logs", params={"after": after})["items"]  # type: ignore[no-any-return]

    def artifacts(self, execution_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/api/v1/executions/{execution_id}/artifacts")["items"]  # type: ignore[no-any-return]

    def wait(self, execution_id: str, timeout_s: float | None = None, poll_s: float = 0.5,
             on_update: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll until the execution ends; call ``on_update`` with each new state. Returns the last one."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            execution = self.get_execution(execution_id)
            if on_update:
                on_update(execution)
            if execution["status"] in TERMINAL:
                return execution
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_id} still {execution['status']} after {timeout_s} s")
            time.sleep(poll_s)

    # services
    def list_services(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/v1/services")["items"]  # type: ignore[no-any-return]

    def get_service(self, name: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/services/{name}")  # type: ignore[no-any-return]

    def update_service(self, name: str, **changes: Any) -> dict[str, Any]:
        return self.request("PATCH", f"/api/v1/services/{name}", json=changes)  # type: ignore[no-any-return]

    def pause_service(self, name: str) -> dict[str, Any]:
        return self.request("POST", f"/api/v1/services/{name}/pause")  # type: ignore[no-any-return]

    def resume_service(self, name: str) -> dict[str, Any]:
        return self.request("POST", f"/api/v1/services/{name}/resume")  # type: ignore[no-any-return]

    def service_events(self, name: str, limit: int = 100) -> list[dict[str, Any]]:
        return self.request("GET", f"/api/v1/services/{name}/events", params={"limit": limit})["items"]  # type: ignore[no-any-return]

    def instances(self, service: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/api/v1/services/{service}/instances")["items"]  # type: ignore[no-any-return]
