"""The web UI's blueprint and what every page shares: the signed-in session, CSRF checks, the
security headers, rendering, and error pages.

Pages are rendered on the server from the API's own views (the functions behind /api/v1, called with
the session's token), so a page shows exactly what the API answers that token; the browser polls
the page itself for its live parts. Jinja escapes every value it renders.
"""
from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Response, g, redirect, render_template, request, url_for
from markupsafe import Markup
from pydantic import ValidationError

from trainfaas.services.api import redis_connection
from trainfaas.services.control.configuration import pydantic_fields
from trainfaas.services.core.errors import TrainfaasError
from trainfaas.services.ui import sessions

bp = Blueprint("ui", __name__, url_prefix="/ui", static_folder="static", static_url_path="/static", template_folder="templates")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

STATUS_WORDS = {"created": ("Created", "○"), "pending": ("Pending", "◷"), "in-progress": ("In Progress", "▶"),
                "success": ("Success", "✓"), "failed": ("Failed", "✕"), "terminated": ("Terminated", "■"),
                "aborted": ("Aborted", "⚠"), "rerun": ("Rerun", "↻")}


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


def current() -> sessions.Session | None:
    if "ui_session" not in g:
        g.ui_session = sessions.lookup(redis_connection(), request.cookies.get(sessions.COOKIE))
    return g.ui_session  # type: ignore[no-any-return]


def page(scope: str = "read", changes: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A page that needs a session whose token has ``scope``; ``changes``: a POST checked for its CSRF token."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def handle(**kwargs: Any) -> Any:
            session = current()
            if session is None:
                if changes:
                    return error_page(401, "Sign in first", "This action needs a signed-in session."), 401
                return redirect(url_for("ui.login", next=request.full_path.rstrip("?")))
            if changes:
                given = request.form.get("csrf") or request.headers.get("X-CSRF-Token")
                if not session.csrf_ok(given):
                    return error_page(403, "Refused", "The form's CSRF token is missing or wrong: reload the page and try again."), 403
            if not session.can(scope):
                return error_page(403, "Not allowed", f"A {session.principal.scope} token cannot do this."), 403
            return view(session=session, **kwargs)

        return handle

    return decorate


def render(template: str, **context: Any) -> str:
    return render_template(template, session=current(), **context)


def error_page(status: int, title: str, message: str, fields: dict[str, str] | None = None) -> str:
    return render("error.html", status=status, title=title, message=message, fields=fields or {})


@bp.errorhandler(TrainfaasError)
def _trainfaas_error(exc: TrainfaasError) -> Any:
    return error_page(exc.http_status, exc.code.replace("_", " ").capitalize(), exc.message, exc.fields), exc.http_status


@bp.errorhandler(ValidationError)
def _validation_error(exc: ValidationError) -> Any:
    return error_page(422, "Invalid", "The request is invalid.", pydantic_fields(exc)), 422


def failure_fields(exc: Exception) -> tuple[str, dict[str, str]]:
    """What went wrong in an action, and where: for a page that shows it next to the form."""
    if isinstance(exc, ValidationError):
        return "Some values are invalid.", pydantic_fields(exc)
    if isinstance(exc, TrainfaasError):
        return exc.message, exc.fields
    raise exc


# ---- filters the templates use ------------------------------------------------------------------

@bp.app_template_filter("when")
def when(stamp: str | float | None) -> str:
    if stamp is None:
        return "—"
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")) if isinstance(stamp, str) else datetime.fromtimestamp(stamp, timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


@bp.app_template_filter("duration")
def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


@bp.app_template_filter("shown")
def shown(value: Any) -> str:
    """An option's value as one types it: JSON for lists and objects, null, true and false."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


@bp.app_template_filter("status_badge")
def status_badge(status: str) -> Markup:
    word, icon = STATUS_WORDS.get(status, (status, "•"))
    return Markup('<span class="badge st-{0}" data-status="{0}"><span aria-hidden="true">{1}</span> {2}</span>').format(status, icon, word)


def elapsed(view: dict[str, Any]) -> float | None:
    """How long an execution has run: its duration once ended, the time since it started while it runs."""
    if view.get("duration_s") is not None:
        return float(view["duration_s"])
    started = view.get("started_at")
    if not started:
        return None
    return time.time() - datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
