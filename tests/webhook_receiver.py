"""A real HTTP receiver of webhook deliveries for the tests: http.server in a thread, answering
each POST as its plan says (a status, a redirect, an oversized answer, or a hang until released),
and the signature check docs/webhooks.md shows receivers."""
from __future__ import annotations

import hashlib
import hmac
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def verify(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """The check of docs/webhooks.md: the HMAC of "<t>.<body>" matches and t is recent."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, given = fields.get("t", ""), fields.get("v1", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


class Receiver:
    """``plan``: what to answer to each request in turn (then 200): an int status, ``"redirect"``,
    ``"huge"`` (a 500 with a megabyte of body) or ``"hang"`` (block until ``release`` is set)."""

    def __init__(self, plan: list[Any] | None = None) -> None:
        self.plan = list(plan or [])
        self.received: list[dict[str, Any]] = []
        self.release = threading.Event()
        self.hanging = threading.Event()  # set while a request is held
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    action = receiver.plan.pop(0) if receiver.plan else 200
                receiver.answer(self, action)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?x=1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, handler: BaseHTTPRequestHandler, action: Any) -> None:
        if action == "hang":
            self.hanging.set()
            self.release.wait()
            self.hanging.clear()
            action = 200
        if action == "redirect":
            handler.send_response(302)
            handler.send_header("Location", self.url.replace("/hook", "/elsewhere"))
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        body = b"x" * (1024 * 1024) if action == "huge" else b"ok"
        handler.send_response(500 if action == "huge" else int(action))
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        try:
            handler.wfile.write(body)
        except OSError:
            pass  # the deliverer stopped reading: it reads a few KB at most

    def of(self, event: str) -> list[dict[str, Any]]:
        with self.lock:
            return [request for request in self.received if request["headers"].get("X-Trainfaas-Event") == event]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
