"""One exception tree for trainfaas. The API maps each class to an HTTP status in one handler."""
from __future__ import annotations


class TrainfaasError(Exception):
    """Root of every error trainfaas raises on purpose. A subclass names its HTTP status and
    error code in its class line: ``class NotFound(TrainfaasError, http_status=404, code="not_found")``."""

    http_status: int = 500
    code: str = "internal_error"

    def __init_subclass__(cls, http_status: int | None = None, code: str | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.http_status = http_status if http_status is not None else cls.http_status
        cls.code = code if code is not None else cls.code

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class ConfigError(TrainfaasError, http_status=422, code="invalid"):
    """A setting, option or request value is invalid. ``fields`` names each bad field."""


class DatasetError(ConfigError, code="invalid_dataset"):
    """A data set is missing, empty or not in the format its adapter reads."""


class Unauthorized(TrainfaasError, http_status=401, code="unauthorized"):
    """No token, or one that is unknown or revoked."""


class Forbidden(TrainfaasError, http_status=403, code="forbidden"):
    """A valid token whose scope does not allow the call (a read token writing, a project token administering)."""


class NotFound(TrainfaasError, http_status=404, code="not_found"):
    """No such object, or one in a project the caller cannot see: the two are not told apart."""


class Conflict(TrainfaasError, http_status=409, code="conflict"):
    """The request does not fit the object's current state."""


class InvalidTransition(Conflict, code="invalid_transition"):
    """A status change the state machine does not allow, or whose compare-and-set lost a race."""


class ServicePaused(Conflict, code="service_paused"):
    """The service is paused: no execution of it starts until it is resumed."""


class InstanceRetired(Conflict, code="instance_retired"):
    """The instance is stopping, or runs on a backend or an instance type its service no longer has:
    it starts nothing more (the execution stays queued for the service's other instances)."""


class StaleAttempt(InvalidTransition, code="stale_attempt"):
    """A write from an attempt that is no longer the execution's current one (fencing)."""


class QuotaExceeded(TrainfaasError, http_status=429, code="quota_exceeded"):
    """A project is at one of its limits (docs/security.md): nothing was written; wait, or ask an admin to raise it."""


class ProjectAtRunningLimit(Conflict, code="project_running_limit"):
    """A claim of an execution whose project already runs its most executions: it stays pending."""


class AdapterError(TrainfaasError, http_status=422, code="adapter_error"):
    """An adapter cannot be found, loaded or is declared wrongly."""


class BackendError(TrainfaasError, http_status=503, code="backend_error"):
    """An instance backend could not start, stop or observe an instance."""


class Unavailable(TrainfaasError, http_status=503, code="unavailable"):
    """A dependency (Redis, the database, the API) cannot be reached right now."""
