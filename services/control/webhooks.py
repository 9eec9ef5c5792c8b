"""Webhooks: a project's endpoints for execution status changes, and the record of each delivery.

A status change records its deliveries in the transaction that makes it (an outbox:
:func:`record_change`, called by the state machine), one row per (webhook, event), so an event is
recorded exactly once and never without its change. The scheduler's deliverer
(trainfaas.scheduler.webhooks) sends them: it claims a due delivery (:func:`claim`), sends it
signed (:func:`signature`) and writes the outcome (:func:`settle`), retrying with exponential
backoff until the retry window ends. A receiver may see an event more than once; the event id
it gets on every try tells the copies apart.

Every URL is checked against the address policy (:func:`check_url`, :func:`check_address`): only
http(s), and only public addresses unless the operator allows private ones or lists them.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import peewee

from trainfaas.services.control import ids
from trainfaas.services.core.errors import ConfigError, QuotaExceeded
from trainfaas.services.core.settings import Settings
from trainfaas.services.core.statuses import TERMINAL_EXECUTION, ExecutionStatus
from trainfaas.services.store.database import database
from trainfaas.services.store.records import Execution, Webhook, WebhookDelivery, now_s, prepared

PING = "ping"
ALL, ALL_EXECUTION = "*", "execution.*"
EXECUTION_EVENTS = tuple(f"execution.{status.value}" for status in ExecutionStatus if status != ExecutionStatus.CREATED)
EVENTS = (ALL, ALL_EXECUTION, *EXECUTION_EVENTS)
DEFAULT_EVENTS = sorted(f"execution.{status.value}" for status in TERMINAL_EXECUTION)
MAX_URL_CHARS = 2048
MAX_PENDING_PINGS = 5  # pings of one webhook waiting to be sent: a write token cannot queue floods of requests
SIGNATURE_HEADER = "X-Trainfaas-Signature"


# ---- the address policy ------------------------------------------------------------------------


def _allow_list(settings: Settings) -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    names: set[str] = set()
    networks = []
    for entry in (part.strip().lower() for part in settings.webhook_allow_hosts.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry.rstrip("."))
    return names, networks


def check_address(settings: Settings, host: str, address: str) -> None:
    """ConfigError unless ``address`` (what ``host`` resolved to) may be reached: a public address,
    or any address when private ones are allowed, or one the allow-list names (by host or network)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_global and not ip.is_multicast:
        return
    if settings.webhook_allow_private:
        return
    names, networks = _allow_list(settings)
    if host.lower().rstrip(".") in names or any(ip in network for network in networks):
        return
    raise ConfigError(f"the webhook's host {host} is {ip}, not a public address: the operator may allow it"
                      " (TRAINFAAS_WEBHOOK_ALLOW_HOSTS or TRAINFAAS_WEBHOOK_ALLOW_PRIVATE)",
                      {"url": "an http(s) URL of a public host"})


def check_url(settings: Settings, url: str) -> str:
    """``url`` if it is an http(s) URL with a host and no credentials whose host, when it is an
    address or a local name, is allowed (names are resolved and checked at each delivery)."""
    allowed = {"url": "an http(s) URL of a public host, without user:password@"}
    if len(url) > MAX_URL_CHARS or any(ord(char) < 33 or ord(char) == 127 for char in url):
        raise ConfigError(f"the webhook URL is longer than {MAX_URL_CHARS} characters or holds spaces or control characters", allowed)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"the webhook URL is not a URL: {exc}", allowed) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("the webhook URL must start with http:// or https:// and name a host", allowed)
    if parts.username is not None or parts.password is not None:
        raise ConfigError("the webhook URL must not hold credentials (user:password@): sign with the secret instead", allowed)
    if port == 0:
        raise ConfigError("the webhook URL's port must be 1 to 65535", allowed)
    host = parts.hostname.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        check_address(settings, host, "127.0.0.1")
    else:
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return url  # a name: resolved and checked when each delivery is sent
        check_address(settings, host, host)
    return url


def check_events(events: list[str] | None) -> list[str]:
    """The events a webhook is sent, sorted and without repeats; the terminal ones by default."""
    if events is None:
        return list(DEFAULT_EVENTS)
    unknown = [event for event in events if event not in EVENTS]
    if unknown or not events:
        raise ConfigError(f"unknown webhook events: {', '.join(map(repr, unknown))}" if unknown else "give at least one event",
                          {"events": f"one or more of: {', '.join(EVENTS)}"})
    return sorted(set(events))


# ---- webhooks ----------------------------------------------------------------------------------


def create(settings: Settings, project: str, url: str, secret: str, events: list[str] | None = None, description: str = "") -> Webhook:
    """A new webhook of ``project``; QuotaExceeded (429) when the project has its most."""
    fields = dict(url=check_url(settings, url), events=check_events(events), secret=secret, description=description)
    with database.atomic():
        count = Webhook.select().where(Webhook.project == project).count()
        if count >= settings.webhook_max_per_project:
            raise QuotaExceeded(f"project {project} has {count} webhooks, its most: delete one first",
                                {"url": f"at most {settings.webhook_max_per_project} webhooks a project"})
        return Webhook.create(project=project, **fields)  # type: ignore[no-any-return]


def get(webhook_id: str, project: str | None) -> Webhook:
    """The webhook whose id is (or starts with) ``webhook_id`` in ``project`` (None: any); else 404."""
    return ids.find(Webhook, webhook_id, "webhook", None if project is None else Webhook.project == project)


def update(settings: Settings, webhook: Webhook, changes: dict[str, Any]) -> Webhook:
    """Change a webhook's url, events, secret or description; deliveries not sent yet are signed
    with the new secret and sent to the new URL."""
    fields: dict[str, Any] = {}
    if changes.get("url") is not None:
        fields["url"] = check_url(settings, changes["url"])
    if "events" in changes:
        fields["events"] = check_events(changes["events"])
    for name in ("secret", "description"):
        if changes.get(name) is not None:
            fields[name] = changes[name]
    if fields:
        Webhook.update(updated_at=now_s(), **fields).where(Webhook.id == webhook.id).execute()
    return Webhook.get_by_id(webhook.id)  # type: ignore[no-any-return]


def delete(webhook: Webhook) -> Webhook:
    """Delete a webhook and its deliveries (those not sent yet are never sent)."""
    with database.atomic():
        WebhookDelivery.delete().where(WebhookDelivery.webhook == webhook.id).execute()
        webhook.delete_instance()
    return webhook


# ---- recording events (the outbox) -------------------------------------------------------------


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def execution_summary(execution: Execution) -> dict[str, Any]:
    """What an event says of its execution."""
    return {
        "id": execution.id, "name": execution.name, "project": execution.project, "status": execution.status,
        "attempt": execution.attempt, "max_attempts": execution.max_attempts, "model": execution.model_id,
        "service": execution.service_id, "function": execution.function, "progress": execution.progress,
        "message": execution.message, "error": execution.error, "created_at": iso(execution.created_at),
        "started_at": iso(execution.started_at), "finished_at": iso(execution.finished_at),
    }


def _event(kind: str, project: str, data: dict[str, Any], at: float) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "type": kind, "created_at": iso(at), "project": project, "data": data}


def listeners(project: str) -> list[tuple[str, list[str]]]:
    """(id, events) of each webhook of ``project``: what :func:`record_change` reads, once for many changes."""
    sql, params = prepared("webhook listeners", lambda name: Webhook.select(Webhook.id, Webhook.events).where(Webhook.project == name), project)
    return [(hook_id, Webhook.events.python_value(events)) for hook_id, events in database.execute_sql(sql, params).fetchall()]


def record_change(execution: Execution, note: str = "", listening: list[tuple[str, list[str]]] | None = None) -> int:
    """Record the deliveries of ``execution``'s new status, one per webhook of its project that
    wants it, inside the caller's transaction (the state machine's): how many were recorded.
    ``listening``: the project's :func:`listeners`, when the caller has read them already."""
    kind = f"execution.{execution.status}"
    wanted = {ALL, ALL_EXECUTION, kind}
    if listening is None:
        listening = listeners(execution.project)
    hook_ids = [hook_id for hook_id, events in listening if wanted & set(events)]
    if not hook_ids:
        return 0
    at = now_s()
    event = _event(kind, execution.project, {"execution": execution_summary(execution), "note": note}, at)
    _insert_deliveries(hook_ids, kind, event, at)
    return len(hook_ids)


_DELIVERY_COLUMNS = ("id", "webhook_id", "event", "event_id", "payload", "status", "attempts", "next_try_at", "created_at")


def _insert_deliveries(hook_ids: list[str], kind: str, event: dict[str, Any], at: float) -> None:
    """One row per webhook in one prepared statement, the payload serialized once: peewee's
    insert_many builds its SQL value by value, which costs a status change more than the insert."""
    payload = WebhookDelivery.payload.db_value(event)

    def quote(name: str) -> str:  # SQLite and PostgreSQL both quote identifiers so
        return f'"{name}"'

    sql = (f"INSERT INTO {quote(WebhookDelivery._meta.table_name)} ({', '.join(map(quote, _DELIVERY_COLUMNS))})"
           f" VALUES ({', '.join([database.param] * len(_DELIVERY_COLUMNS))})")
    rows = [(uuid.uuid4().hex, hook_id, kind, event["id"], payload, "pending", 0, at, at) for hook_id in hook_ids]
    cursor = database.cursor()
    try:
        cursor.executemany(sql, rows)
    finally:
        cursor.close()


def record_ping(webhook: Webhook) -> WebhookDelivery:
    """Record a ping to ``webhook``; the deliverer sends it like any event. QuotaExceeded (429)
    while the webhook has ``MAX_PENDING_PINGS`` pings still to send."""
    waiting = deliveries(webhook, "pending").where(WebhookDelivery.event == PING).count()
    if waiting >= MAX_PENDING_PINGS:
        raise QuotaExceeded(f"webhook {webhook.id} has {waiting} pings still to send: see its deliveries",
                            {"webhook_id": f"a webhook with fewer than {MAX_PENDING_PINGS} pings pending"})
    at = now_s()
    event = _event(PING, webhook.project, {"webhook": webhook.id}, at)
    return WebhookDelivery.create(webhook=webhook.id, event=PING, event_id=event["id"], payload=event,  # type: ignore[no-any-return]
                                  next_try_at=at, created_at=at)


def deliveries(webhook: Webhook, status: str | None = None) -> peewee.ModelSelect:
    rows = WebhookDelivery.select().where(WebhookDelivery.webhook == webhook.id)
    return rows if status is None else rows.where(WebhookDelivery.status == status)


# ---- sending: claims, signatures and outcomes ---------------------------------------------------


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def due(now: float, limit: int) -> list[WebhookDelivery]:
    """Pending deliveries whose next try is due, the longest waiting first."""
    rows = (WebhookDelivery.select().where((WebhookDelivery.status == "pending") & (WebhookDelivery.next_try_at <= now))
            .order_by(WebhookDelivery.next_try_at, WebhookDelivery.id).limit(limit))
    return list(rows)


def claim(delivery: WebhookDelivery, now: float, lease_s: float) -> bool:
    """Take ``delivery`` for one try (a compare-and-set: one deliverer wins) and count the try. Until
    ``lease_s`` passes nobody else takes it; a deliverer that dies mid-try leaves it to be tried again."""
    changed = (WebhookDelivery.update(next_try_at=now + lease_s, attempts=WebhookDelivery.attempts + 1)
               .where((WebhookDelivery.id == delivery.id) & (WebhookDelivery.status == "pending")
                      & (WebhookDelivery.next_try_at == delivery.next_try_at))
               .execute())
    return changed == 1


def prune(settings: Settings, now: float) -> int:
    """Delete the settled deliveries older than ``webhook_keep_s``; how many."""
    old = (WebhookDelivery.status != "pending") & (WebhookDelivery.created_at < now - settings.webhook_keep_s)
    return WebhookDelivery.delete().where(old).execute()  # type: ignore[no-any-return]


def settle(settings: Settings, delivery_id: str, code: int | None, error: str | None, now: float) -> WebhookDelivery | None:
    """Write a try's outcome: succeeded on a 2xx answer; else the next try after an exponential
    backoff, or failed for good once that would fall past the retry window. None if the delivery
    is gone (its webhook was deleted)."""
    delivery = WebhookDelivery.get_or_none(WebhookDelivery.id == delivery_id)
    if delivery is None or delivery.status != "pending":
        return delivery
    fields: dict[str, Any] = {"response_code": code, "last_error": error}
    if error is None and code is not None and 200 <= code < 300:
        fields.update(status="succeeded", next_try_at=None, delivered_at=now)
    else:
        wait = min(settings.webhook_retry_base_s * 2 ** max(delivery.attempts - 1, 0), settings.webhook_retry_max_delay_s)
        if now + wait > delivery.created_at + settings.webhook_retry_window_s:
            fields.update(status="failed", next_try_at=None)
        else:
            fields.update(next_try_at=now + wait)
    WebhookDelivery.update(fields).where((WebhookDelivery.id == delivery_id) & (WebhookDelivery.status == "pending")).execute()
    return WebhookDelivery.get_or_none(WebhookDelivery.id == delivery_id)
