"""API tokens and who may do what.

A token is ``tf_`` followed by 256 random bits. Only its SHA-256 is stored: with that much
entropy a plain hash cannot be reversed by guessing, and a lookup by hash needs no per-token
salt. The secret is returned once, when the token is created, and never logged.

Scopes: ``read`` and ``write`` reach one project's models and executions; ``admin`` reaches all
projects and is the only scope that changes services, projects and tokens. Objects of another
project answer 404, as if they did not exist.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from pathlib import Path

from trainfaas.services.control import ids
from trainfaas.services.core.errors import ConfigError, Forbidden, NotFound, Unauthorized
from trainfaas.services.core.files import atomic_write_text
from trainfaas.services.store.records import DEFAULT_PROJECT, TOKEN_SCOPES, Project, Token, now_s

TOKEN_PREFIX = "tf_"
REGISTRATION_PREFIX = "tfr_"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Principal:
    """The caller of a request, as its token says."""

    token_id: str
    scope: str
    project: str | None  # None for admin tokens

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"

    @property
    def reach(self) -> str | None:
        """The one project this token reaches, or None for all of them (admin)."""
        return None if self.is_admin else self.project

    def sees(self, project: str) -> bool:
        return self.is_admin or self.project == project

    def require(self, scope: str) -> None:
        """Raise Forbidden unless the token's scope includes ``scope`` (read < write < admin; metrics: a
        metrics or an admin token)."""
        if scope == "metrics" and self.scope not in ("metrics", "admin"):
            raise Forbidden(f"a {self.scope} token cannot read the metrics", {"Authorization": "an admin token or a token with scope metrics"})
        if TOKEN_SCOPES.index(self.scope) < TOKEN_SCOPES.index(scope):
            what = {"admin": "administer services, projects and tokens", "read": "read anything but the metrics"}.get(scope, "change anything")
            raise Forbidden(f"a {self.scope} token cannot {what}", {"Authorization": f"a token with scope {scope}"})

    def project_for_new(self, requested: str | None) -> str:
        """The project a new object goes into: the one asked for (if visible) or the token's own."""
        if requested is None:
            return self.project or DEFAULT_PROJECT
        if not self.sees(requested) or Project.get_or_none(Project.name == requested) is None:
            raise NotFound(f"project {requested} does not exist", {"project": "a project this token can reach"})
        return requested


def authenticate(header: str | None) -> Principal:
    """The principal of an ``Authorization: Bearer <token>`` header; Unauthorized otherwise."""
    scheme, _, secret = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("send a token: Authorization: Bearer <token> (see `trainfaas tokens create`)",
                           {"Authorization": "Bearer <token>"})
    token = Token.by_key(Token.secret_hash, hash_secret(secret.strip()))
    if token is None or token.revoked_at is not None:
        raise Unauthorized("the token is unknown or revoked", {"Authorization": "Bearer <a valid token>"})
    return Principal(token.id, token.scope, token.project)


def swarm_registration_token(instance_secret: str, service: str) -> str:
    """The credential the tasks of a swarm service register with: an HMAC of the service's name
    under the instance secret. Swarm starts every task of a service from one definition, so its
    tasks cannot get one-time tokens of their own; this one registers new instances of that
    service only, and only while the service runs on the swarm backend. Changing the instance
    secret revokes it (the swarm service is then updated with the new one)."""
    return REGISTRATION_PREFIX + hmac.new(instance_secret.encode(), f"register:{service}".encode(), hashlib.sha256).hexdigest()


def registration_credential(header: str | None) -> None:
    """Unauthorized unless ``header`` carries a registration token (still to be checked against
    its instance or service) or a valid admin token."""
    if registration_secret(header) is not None:
        return
    if not authenticate(header).is_admin:
        raise Unauthorized("registering an instance needs its registration token or an admin token",
                           {"Authorization": "Bearer <registration or admin token>"})


def registration_secret(header: str | None) -> str | None:
    """The registration token (``tfr_…``) that ``header`` carries; None for any other header."""
    scheme, _, secret = (header or "").partition(" ")
    secret = secret.strip()
    return secret if scheme.lower() == "bearer" and secret.startswith(REGISTRATION_PREFIX) else None


def require_swarm_registration(secret: str, instance_secret: str, service: str) -> None:
    """Unauthorized unless ``secret`` is the swarm registration token of ``service`` (see
    :func:`swarm_registration_token`), which is checked by the caller to run on swarm."""
    if not hmac.compare_digest(secret, swarm_registration_token(instance_secret, service)):
        raise Unauthorized(f"this registration token registers no new instance of {service}: an instance the scheduler "
                           "started sends its instance_id with its own one-time token",
                           {"Authorization": "Bearer <the instance's registration token>", "instance_id": "its instance id"})


def create_token(scope: str, project: str | None, name: str = "") -> tuple[Token, str]:
    """Create a token and return it with its secret, which is not stored anywhere."""
    if scope not in TOKEN_SCOPES:
        raise ConfigError(f"unknown scope {scope!r}", {"scope": f"one of: {', '.join(TOKEN_SCOPES)}"})
    if scope in ("admin", "metrics"):
        project = None
    elif project is None:
        raise ConfigError(f"a {scope} token needs a project", {"project": "an existing project (read and write tokens need one)"})
    elif Project.get_or_none(Project.name == project) is None:
        raise ConfigError(f"project {project} does not exist", {"project": "an existing project (read and write tokens need one)"})
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = Token.create(scope=scope, project=project, name=name, secret_hash=hash_secret(secret))
    return token, secret


def revoke_token(token_id: str) -> Token:
    """Revoke the token whose id is (or starts with) ``token_id``; it answers 401 from now on.
    Revoking twice is harmless."""
    token = ids.find(Token, token_id, "token")
    Token.update(revoked_at=now_s()).where((Token.id == token.id) & Token.revoked_at.is_null()).execute()
    return Token.get_by_id(token.id)


def ensure_admin_token(path: Path) -> str:
    """The admin token stored at ``path`` (mode 0600), created on first start.

    A file whose token no longer works (revoked, or a fresh database) is replaced.
    """
    if path.exists():
        secret = path.read_text().strip()
        token = Token.get_or_none(Token.secret_hash == hash_secret(secret))
        if token is not None and token.revoked_at is None and token.scope == "admin":
            return secret
    _, secret = create_token("admin", None, name="created by trainfaas up")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write_text(path, secret + "\n", mode=0o600)  # written 0600 from the start (mkstemp)
    return secret
