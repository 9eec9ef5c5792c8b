"""The instance's side of the control plane's instance API: one method per call, with the
messages of trainfaas.services.core.protocol, so that both sides read and write the same shapes."""
from __future__ import annotations

import os
import socket
from typing import Any

import requests
from pydantic import BaseModel

from trainfaas.services.core.protocol import (
    Claim,
    ClaimAfter,
    ClaimAfterReply,
    ClaimReply,
    Deregister,
    Finish,
    Finished,
    Heartbeat,
    HeartbeatReply,
    InstanceRegister,
    Report,
    ReportedEvent,
    ReportReply,
    finite,
    sendable,
)


class Rejected(Exception):
    """The control plane refused a call with a 4xx: retrying will not help."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body.get('error', {}).get('message', body)}")
        self.status = status
        self.body = body

    @property
    def code(self) -> str:
        """The error's machine-readable code (``service_paused``, ``stale_attempt``, …)."""
        return str(self.body.get("error", {}).get("code", ""))


def retryable(exc: requests.RequestException) -> bool:
    """Whether calling again can help: the control plane was not reached, timed out or failed
    (5xx). A request that cannot be sent or a 4xx answer will fail the same way every time."""
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return True
    return isinstance(exc, requests.HTTPError) and exc.response is not None and exc.response.status_code >= 500


class ControlPlane:
    """The instance's calls to the API. Network errors raise requests.RequestException."""

    def __init__(self, api_url: str, timeout_s: float = 10.0, registration: str = "") -> None:
        self.api_url = api_url
        self.http = requests.Session()
        self.registration = registration  # the registration (or admin) token, used once
        self.timeout_s = timeout_s
        self.instance_id = ""

    def call(self, path: str, message: BaseModel) -> dict[str, Any]:
        url = f"{self.api_url}/api/v1/instances{path}"
        # JSON has no NaN or infinity: a figure that is not a number goes as null; the API takes no
        # NUL character, which a log line or traceback may hold: it goes as U+FFFD.
        response = self.http.post(url, json=sendable(finite(message.model_dump(mode="json"))), timeout=self.timeout_s)
        if 400 <= response.status_code < 500:
            try:
                body = response.json()
            except ValueError:
                body = {}
            raise Rejected(response.status_code, body if isinstance(body, dict) else {})
        response.raise_for_status()
        return response.json() if response.content else {}  # type: ignore[no-any-return]

    def twin(self) -> ControlPlane:
        """A second client of the same registered instance, with a connection pool of its own
        (for the heartbeat thread: a requests session is not shared between threads)."""
        other = ControlPlane(self.api_url, self.timeout_s)
        other.instance_id = self.instance_id
        other.http.headers["Authorization"] = self.http.headers.get("Authorization", "")
        return other

    def register(self, service: str, instance_id: str | None, backend: str) -> dict[str, Any]:
        """Register; from then on every call carries the instance's own token. Returns the
        registration (the instance's id, token and the service's concurrency among others)."""
        request = InstanceRegister(service=service, instance_id=instance_id, host=socket.gethostname(), pid=os.getpid(), backend=backend)
        self.http.headers["Authorization"] = f"Bearer {self.registration}"
        body = self.call("", request)
        self.instance_id = body["id"]
        self.http.headers["Authorization"] = f"Bearer {body['token']}"
        return body

    def _own(self, path: str, message: BaseModel) -> dict[str, Any]:
        return self.call(f"/{self.instance_id}{path}", message)

    def claim(self, execution_id: str, attempt: int) -> ClaimReply:
        return ClaimReply.model_validate(self._own("/claim", Claim(execution_id=execution_id, attempt=attempt)))

    def claim_after(self, finished: list[Finished], execution_id: str, attempt: int) -> ClaimAfterReply:
        """Send ``finished`` and claim, in one call (see protocol.ClaimAfter)."""
        message = ClaimAfter(finished=finished, claim=Claim(execution_id=execution_id, attempt=attempt))
        return ClaimAfterReply.model_validate(self._own("/claim-after", message))

    def report(self, events: list[ReportedEvent]) -> ReportReply:
        return ReportReply.model_validate(self._own("/report", Report(events=[event.model_dump(mode="json") for event in events])))

    def heartbeat(self, beat: Heartbeat) -> HeartbeatReply:
        return HeartbeatReply.model_validate(self._own("/heartbeat", beat))

    def finish(self, execution_id: str, report: Finish) -> None:
        self._own(f"/executions/{execution_id}/finish", report)

    def deregister(self, reason: str) -> None:
        self._own("/deregister", Deregister(reason=reason))
