"""Signing in with a token and out again."""
from __future__ import annotations

import hmac
import secrets
from typing import Any

from flask import make_response, redirect, request, url_for

from trainfaas.services.api import redis_connection, settings
from trainfaas.services.core.errors import Unauthorized
from trainfaas.services.ui import sessions
from trainfaas.services.ui.web import bp, current, error_page, page, render


def _next_page() -> str:
    """Where to go after signing in: a path of the UI only (never another site)."""
    target = request.values.get("next", "")
    return target if target.startswith("/ui/") and not target.startswith("//") and "\\" not in target else url_for("ui.executions")


@bp.get("/login")
def login() -> Any:
    if current() is not None:
        return redirect(_next_page())
    return _login_form("", 200)


def _login_form(message: str, status: int) -> Any:
    nonce = secrets.token_urlsafe(24)
    response = make_response(render("login.html", message=message, nonce=nonce, next=_next_page()), status)
    response.set_cookie(sessions.LOGIN_COOKIE, nonce, max_age=3600, httponly=True, samesite="Strict", secure=request.is_secure,
                        path="/ui/")
    return response


@bp.post("/login")
def login_submit() -> Any:
    nonce = request.cookies.get(sessions.LOGIN_COOKIE, "")
    if not nonce or not hmac.compare_digest(nonce, request.form.get("csrf", "")):
        return error_page(403, "Refused", "The sign-in form's CSRF token is missing or wrong: reload the page and try again."), 403
    secret = request.form.get("token", "").strip()
    try:
        if not secret or len(secret) > 200:
            raise Unauthorized("enter a token")
        session_id = sessions.sign_in(redis_connection(), secret, settings().ui_session_s)
    except Unauthorized:
        return _login_form("That token is unknown or revoked.", 401)
    response = redirect(_next_page())
    response.set_cookie(sessions.COOKIE, session_id, max_age=int(settings().ui_session_s), httponly=True, samesite="Strict",
                        secure=request.is_secure, path="/ui/")
    response.delete_cookie(sessions.LOGIN_COOKIE, path="/ui/")
    return response


@bp.get("/logout")
@page()
def logout_form(session: sessions.Session) -> Any:
    """Signing out changes something: it is a form (with its CSRF token), not a link."""
    return render("logout.html")


@bp.post("/logout")
@page(changes=True)
def logout(session: sessions.Session) -> Any:
    sessions.sign_out(redis_connection(), session)
    response = redirect(url_for("ui.login"))
    response.delete_cookie(sessions.COOKIE, path="/ui/")
    return response
