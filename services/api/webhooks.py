"""Webhooks: a project's endpoints for execution status changes, their deliveries, and a ping.

A webhook's secret is write-only: it signs every delivery (docs/webhooks.md) and is never
returned. Read tokens list and show; write tokens create, change, delete and ping.
"""
from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint
from pydantic import Field

from trainfaas.services.api import iso, paginate, settings
from trainfaas.services.api.registry import endpoint
from trainfaas.services.api.schemas import ListQuery, Out, Page, Strict, Timestamp
from trainfaas.services.control import webhooks as control
from trainfaas.services.control.tokens import Principal
from trainfaas.services.store.records import DELIVERY_STATUSES, Webhook, WebhookDelivery

bp = Blueprint("webhooks", __name__, url_prefix="/api/v1")

Event = Literal[control.EVENTS]  # type: ignore[valid-type]
EVENTS_HELP = (f"execution.<status>, execution.* or *; default: the end states ({', '.join(control.DEFAULT_EVENTS)}).")
URL = Field(min_length=1, max_length=control.MAX_URL_CHARS, description="An http(s) URL of a public host (unless the operator allows others).")
SECRET_HELP = "Signs every delivery (HMAC-SHA256); kept, never returned. 16 to 512 characters."


class WebhookCreate(Strict):
    url: str = URL
    secret: str = Field(min_length=16, max_length=512, description=SECRET_HELP)
    events: list[Event] | None = Field(None, min_length=1, max_length=len(control.EVENTS), description=EVENTS_HELP)
    description: str = Field("", max_length=2000)
    project: str | None = Field(None, max_length=100, description="Default: the token's project, or default.")


class WebhookPatch(Strict):
    url: str | None = Field(None, min_length=1, max_length=control.MAX_URL_CHARS, description="A new URL.")
    secret: str | None = Field(None, min_length=16, max_length=512, description=SECRET_HELP)
    events: list[Event] | None = Field(None, min_length=1, max_length=len(control.EVENTS), description=EVENTS_HELP)
    description: str | None = Field(None, max_length=2000)


class WebhookQuery(ListQuery):
    project: str | None = Field(None, max_length=100, description="Only this project's (admin tokens see all).")


class DeliveryQuery(ListQuery):
    status: Literal[DELIVERY_STATUSES] | None = Field(None, description="Only deliveries in this state.")  # type: ignore[valid-type]


class WebhookOut(Out):
    id: str
    project: str
    url: str
    events: list[str]
    description: str
    created_at: str | None = Timestamp
    updated_at: str | None = Timestamp


class DeliveryOut(Out):
    id: str
    webhook: str
    event: str = Field(description="execution.<status> or ping.")
    event_id: str = Field(description="The idempotency id the receiver gets on every try (X-Trainfaas-Event-Id).")
    status: Literal[DELIVERY_STATUSES] = Field(description="pending: to be tried (again); succeeded; failed: its retry window ended.")  # type: ignore[valid-type]
    attempts: int
    response_code: int | None = Field(description="The HTTP status of the last try's answer.")
    last_error: str | None = Field(description="Why the last try failed.")
    next_try_at: str | None = Field(description="When it is tried next (ISO 8601, UTC); null once settled.")
    created_at: str | None = Timestamp
    delivered_at: str | None = Timestamp
    payload: dict[str, Any] = Field(description="The body sent (JSON).")


def webhook_view(hook: Webhook) -> dict[str, Any]:
    return {"id": hook.id, "project": hook.project, "url": hook.url, "events": hook.events, "description": hook.description,
            "created_at": iso(hook.created_at), "updated_at": iso(hook.updated_at)}


def delivery_view(row: WebhookDelivery) -> dict[str, Any]:
    return {"id": row.id, "webhook": row.webhook_id, "event": row.event, "event_id": row.event_id, "status": row.status,
            "attempts": row.attempts, "response_code": row.response_code, "last_error": row.last_error,
            "next_try_at": iso(row.next_try_at), "created_at": iso(row.created_at), "delivered_at": iso(row.delivered_at),
            "payload": row.payload}


@endpoint(bp, "POST", "/webhooks", body=WebhookCreate, response=WebhookOut, status=201, access="write", errors=(404, 429),
          links={"id": "/webhooks/{webhook_id}"})
def create(body: WebhookCreate, principal: Principal) -> dict[str, Any]:
    """Create a webhook: the project's execution status changes in ``events`` are sent to ``url``, signed with ``secret``."""
    project = principal.project_for_new(body.project)
    return webhook_view(control.create(settings(), project, body.url, body.secret, body.events, body.description))


@endpoint(bp, "GET", "/webhooks", query=WebhookQuery, response=Page[WebhookOut], errors=(404,))
def index(query: WebhookQuery, principal: Principal) -> dict[str, Any]:
    """The webhooks of the projects the token reaches, oldest first."""
    rows = Webhook.select()
    if principal.reach is not None:
        rows = rows.where(Webhook.project == principal.reach)
    if query.project:
        rows = rows.where(Webhook.project == query.project)
    items, cursor = paginate(rows, (Webhook.created_at, Webhook.id), query.limit, query.cursor, descending=False)
    return {"items": [webhook_view(row) for row in items], "next_cursor": cursor}


@endpoint(bp, "GET", "/webhooks/<webhook_id>", response=WebhookOut, errors=(404, 409))
def show(webhook_id: str, principal: Principal) -> dict[str, Any]:
    """One webhook (without its secret)."""
    return webhook_view(control.get(webhook_id, principal.reach))


@endpoint(bp, "PATCH", "/webhooks/<webhook_id>", body=WebhookPatch, response=WebhookOut, access="write", errors=(404, 409))
def change(webhook_id: str, body: WebhookPatch, principal: Principal) -> dict[str, Any]:
    """Change a webhook's url, events, secret or description."""
    hook = control.get(webhook_id, principal.reach)
    return webhook_view(control.update(settings(), hook, body.model_dump(exclude_none=True)))


@endpoint(bp, "DELETE", "/webhooks/<webhook_id>", response=WebhookOut, access="write", errors=(404, 409))
def delete(webhook_id: str, principal: Principal) -> dict[str, Any]:
    """Delete a webhook and its deliveries; those not sent yet are never sent."""
    return webhook_view(control.delete(control.get(webhook_id, principal.reach)))


@endpoint(bp, "POST", "/webhooks/<webhook_id>/test", response=DeliveryOut, status=202, access="write", errors=(404, 409, 429))
def test(webhook_id: str, principal: Principal) -> dict[str, Any]:
    """Send the webhook a ping: the delivery is recorded now and sent by the scheduler, like any event. 429 while
    it has 5 pings still to send."""
    return delivery_view(control.record_ping(control.get(webhook_id, principal.reach)))


@endpoint(bp, "GET", "/webhooks/<webhook_id>/deliveries", query=DeliveryQuery, response=Page[DeliveryOut], errors=(404, 409))
def deliveries(webhook_id: str, query: DeliveryQuery, principal: Principal) -> dict[str, Any]:
    """The webhook's deliveries, newest first: their state, tries, last answer and error, and next try."""
    rows = control.deliveries(control.get(webhook_id, principal.reach), query.status)
    items, cursor = paginate(rows, (WebhookDelivery.created_at, WebhookDelivery.id), query.limit, query.cursor)
    return {"items": [delivery_view(row) for row in items], "next_cursor": cursor}
