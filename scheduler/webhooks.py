"""The deliverer: sends the webhook deliveries that status changes recorded, from threads of the
scheduler daemon, so that no receiver can block or slow the state machine.

One loop thread looks for due deliveries every ``webhook_poll_interval_s``, claims each (a
compare-and-set, so two schedulers never send one try twice) and hands it to a pool of
``webhook_workers`` threads. A try resolves the URL's host, refuses it unless every address it
resolves to is allowed (trainfaas.services.control.webhooks.check_address), connects to the
addresses it checked, in turn (so a second lookup cannot send it elsewhere), sends the signed POST, reads
at most ``MAX_ANSWER_BYTES`` of the answer and follows no redirect. Connecting is bounded by
``webhook_connect_timeout_s``; the rest of the exchange by ``webhook_read_timeout_s``. Every
ten minutes the loop also deletes settled deliveries older than ``webhook_keep_s``.
"""
from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from trainfaas.services.control import webhooks
from trainfaas.services.core.errors import ConfigError
from trainfaas.services.core.settings import Settings
from trainfaas.services.store.database import database
from trainfaas.services.store.records import WebhookDelivery, now_s

log = logging.getLogger("trainfaas.webhooks")

MAX_ANSWER_BYTES = 4096
USER_AGENT = "trainfaas-webhooks/1"
CANDIDATES_PER_WORKER = 20  # due deliveries read per free worker, to find other webhooks' behind a backlog
PRUNE_INTERVAL_S = 600.0  # how often settled deliveries past webhook_keep_s are deleted


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def headers_of(delivery: WebhookDelivery, secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json", "User-Agent": USER_AGENT,
        "X-Trainfaas-Event": delivery.event, "X-Trainfaas-Event-Id": delivery.event_id,
        "X-Trainfaas-Delivery": delivery.id, "X-Trainfaas-Attempt": str(delivery.attempts),
        webhooks.SIGNATURE_HEADER: webhooks.signature(secret, timestamp, body),
    }


def resolve(settings: Settings, host: str, port: int) -> list[str]:
    """The addresses to connect to, in the resolver's order: those ``host`` resolves to, once every one is allowed."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ConnectionError(f"cannot resolve {host}: {exc}") from None
    addresses = [str(entry[4][0]) for entry in found]
    for address in addresses:
        webhooks.check_address(settings, host, address)
    if not addresses:
        raise ConnectionError(f"{host} resolves to no address")
    return list(dict.fromkeys(addresses))


def post(settings: Settings, url: str, headers: dict[str, str], body: bytes) -> tuple[int | None, str | None]:
    """POST ``body`` to ``url``; the answer's status and, for a failed try, why."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = resolve(settings, host, port)
    except ConfigError as exc:
        return None, f"refused: {exc}"
    except (ValueError, ConnectionError) as exc:
        return None, str(exc)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(host, port, timeout=settings.webhook_read_timeout_s)
    timers: list[threading.Timer] = []

    def connect(_: Any, timeout: Any = None, source: Any = None) -> socket.socket:
        sock = _connect_any(addresses, port, settings.webhook_connect_timeout_s)
        sock.settimeout(settings.webhook_read_timeout_s)
        # The whole exchange after connecting is bounded too, not only each read.
        timer = threading.Timer(settings.webhook_read_timeout_s, _cut, (sock,))
        timer.daemon = True
        timer.start()
        timers.append(timer)
        return sock

    connection._create_connection = connect  # type: ignore[attr-defined]
    try:
        connection.request("POST", target, body=body, headers=headers)
        answer = connection.getresponse()
        text = answer.read(MAX_ANSWER_BYTES)
        return answer.status, _failure(answer.status, text)
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
    finally:
        for timer in timers:
            timer.cancel()
        connection.close()


def _connect_any(addresses: list[str], port: int, timeout_s: float) -> socket.socket:
    """A connection to the first of ``addresses`` (each one checked) that accepts one."""
    failure: OSError = ConnectionError("no address")
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout_s)
        except OSError as exc:
            failure = exc
    raise failure


def _cut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _failure(status: int, text: bytes) -> str | None:
    if 200 <= status < 300:
        return None
    said = text[:200].decode("utf-8", "replace").strip()
    if 300 <= status < 400:
        return f"HTTP {status}: redirects are not followed"
    return f"HTTP {status}" + (f": {said}" if said else "")


class Deliverer:
    """The loop and the pool that send due deliveries (see the module's doc)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = now_s) -> None:
        self.settings = settings
        self.clock = clock
        self.lease_s = settings.webhook_connect_timeout_s + settings.webhook_read_timeout_s + 30.0
        self.pool: ThreadPoolExecutor | None = None
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self.busy = 0
        self.lock = threading.Lock()
        self.pruned_at = 0.0

    def start(self) -> None:
        self.pool = ThreadPoolExecutor(self.settings.webhook_workers, thread_name_prefix="webhook")
        self.thread = threading.Thread(target=self._loop, name="webhook-deliverer", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop looking for deliveries; tries under way are not waited for (a claimed one is tried
        again once its lease ends)."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self.stopping.wait(self.settings.webhook_poll_interval_s):
            try:
                with database.connection_context():
                    self.dispatch()
                    if self.clock() - self.pruned_at >= PRUNE_INTERVAL_S:
                        self.pruned_at = self.clock()
                        webhooks.prune(self.settings, self.pruned_at)
            except Exception:  # noqa: BLE001 - the loop must outlive any one failure
                log.exception("webhook deliverer: looking for due deliveries failed")

    def dispatch(self) -> int:
        """Claim the due deliveries the free workers can take, one per webhook, and hand them over;
        how many. One per webhook each round, so that a webhook with a backlog (a receiver that is
        down, say) takes no more than its turn from the others."""
        with self.lock:
            free = self.settings.webhook_workers - self.busy
        if free <= 0 or self.pool is None:
            return 0
        handed = 0
        now = self.clock()
        served: set[str] = set()
        for delivery in webhooks.due(now, CANDIDATES_PER_WORKER * free):
            if handed == free:
                break
            if delivery.webhook_id in served:
                continue
            served.add(delivery.webhook_id)
            if webhooks.claim(delivery, now, self.lease_s):
                with self.lock:
                    self.busy += 1
                self.pool.submit(self._try, delivery.id)
                handed += 1
        return handed

    def _try(self, delivery_id: str) -> None:
        try:
            with database.connection_context():
                self.send(delivery_id)
        except Exception:  # noqa: BLE001
            log.exception("webhook delivery %s failed", delivery_id)
        finally:
            with self.lock:
                self.busy -= 1

    def send(self, delivery_id: str) -> WebhookDelivery | None:
        """One try of a claimed delivery, and its outcome written (see webhooks.settle)."""
        delivery = WebhookDelivery.get_or_none(WebhookDelivery.id == delivery_id)
        if delivery is None:
            return None
        hook = delivery.webhook
        body = body_of(delivery.payload)
        code, error = post(self.settings, hook.url, headers_of(delivery, hook.secret, body, int(time.time())), body)
        if error is not None:
            log.info("webhook %s: delivery %s (%s) try %d failed: %s", hook.id, delivery.id, delivery.event, delivery.attempts, error)
        return webhooks.settle(self.settings, delivery_id, code, error, self.clock())
