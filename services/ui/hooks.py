"""Webhooks: the project's webhooks with their recent deliveries; creating, pinging and deleting one."""
from __future__ import annotations

from typing import Any

from flask import redirect, request, url_for

from trainfaas.services.api import webhooks as api_webhooks
from trainfaas.services.control import webhooks as control_webhooks
from trainfaas.services.ui.sessions import Session
from trainfaas.services.ui.web import bp, failure_fields, page, render

RECENT_DELIVERIES = 5


@bp.get("/webhooks")
@page()
def webhooks(session: Session) -> Any:
    return _webhooks_page(session, {}, "", {}, 200)


def _webhooks_page(session: Session, form: dict[str, Any], message: str, fields: dict[str, str], status: int) -> Any:
    hooks = api_webhooks.index(query=api_webhooks.WebhookQuery(limit=100), principal=session.principal)["items"]
    for hook in hooks:
        hook["deliveries"] = api_webhooks.deliveries(webhook_id=hook["id"], query=api_webhooks.DeliveryQuery(limit=RECENT_DELIVERIES),
                                                     principal=session.principal)["items"]
    return render("webhooks.html", hooks=hooks, form=form, message=message, fields=fields, events=control_webhooks.EVENTS,
                  default_events=control_webhooks.DEFAULT_EVENTS, pinged=request.args.get("pinged", "")), status


@bp.post("/webhooks")
@page("write", changes=True)
def webhook_create(session: Session) -> Any:
    form: dict[str, Any] = {key: request.form.get(key, "").strip() for key in ("url", "secret", "description", "project")}
    form["events"] = request.form.getlist("events")
    given = {key: value for key, value in form.items() if value}
    try:
        api_webhooks.create(body=api_webhooks.WebhookCreate.model_validate(given), principal=session.principal)
    except Exception as exc:  # noqa: BLE001 - failure_fields re-raises anything that is not the caller's mistake
        message, fields = failure_fields(exc)
        return _webhooks_page(session, {**form, "secret": ""}, message, fields, getattr(exc, "http_status", 422))
    return redirect(url_for("ui.webhooks"))


@bp.post("/webhooks/<webhook_id>/delete")
@page("write", changes=True)
def webhook_delete(session: Session, webhook_id: str) -> Any:
    api_webhooks.delete(webhook_id=webhook_id, principal=session.principal)
    return redirect(url_for("ui.webhooks"))


@bp.post("/webhooks/<webhook_id>/test")
@page("write", changes=True)
def webhook_test(session: Session, webhook_id: str) -> Any:
    api_webhooks.test(webhook_id=webhook_id, principal=session.principal)
    return redirect(url_for("ui.webhooks", pinged=webhook_id))
