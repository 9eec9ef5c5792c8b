"""Sign-in sessions of the web UI and their CSRF tokens.

The browser holds a random session id in an HttpOnly, SameSite=Strict cookie; Redis holds, under
the id's SHA-256 and for ``TRAINFAAS_UI_SESSION_S`` seconds, the id of the token that signed in and
the session's CSRF token. The token's secret is never stored: a revoked token ends its sessions at
their next request, and every request is checked with that token's scope and project.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets

import redis

from trainfaas.services.control.tokens import Principal, authenticate
from trainfaas.services.store.records import Token

COOKIE = "trainfaas_ui"
LOGIN_COOKIE = "trainfaas_ui_login"  # the CSRF token of the sign-in form itself (double submit)
_KEY = "trainfaas:ui:session:"


class Session:
    """A signed-in browser: who it is and the CSRF token its forms carry."""

    def __init__(self, key: str, principal: Principal, csrf: str) -> None:
        self.key, self.principal, self.csrf = key, principal, csrf

    def can(self, scope: str) -> bool:
        return {"read": 0, "write": 1, "admin": 2}[self.principal.scope] >= {"read": 0, "write": 1, "admin": 2}[scope]

    def csrf_ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf, given or "")


def _key(session_id: str) -> str:
    return _KEY + hashlib.sha256(session_id.encode()).hexdigest()


def sign_in(connection: redis.Redis, secret: str, lifetime_s: float) -> str:
    """A new session for the token ``secret`` (Unauthorized for an unknown or revoked one); its id."""
    principal = authenticate(f"Bearer {secret}")
    session_id = secrets.token_urlsafe(32)
    record = {"token_id": principal.token_id, "csrf": secrets.token_urlsafe(32)}
    connection.set(_key(session_id), json.dumps(record), ex=max(1, int(lifetime_s)))
    return session_id


def lookup(connection: redis.Redis, session_id: str | None) -> Session | None:
    """The live session of ``session_id``; None when there is none, it expired or its token was revoked."""
    if not session_id or len(session_id) > 100:
        return None
    raw = connection.get(_key(session_id))
    if raw is None:
        return None
    record = json.loads(raw)
    token = Token.get_or_none(Token.id == record["token_id"])
    if token is None or token.revoked_at is not None:
        connection.delete(_key(session_id))
        return None
    return Session(_key(session_id), Principal(token.id, token.scope, token.project), record["csrf"])


def sign_out(connection: redis.Redis, session: Session) -> None:
    connection.delete(session.key)
