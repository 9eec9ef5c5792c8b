"""One exception tree for trainfaas. The API maps each class to an HTTP status in one handler."""
from __future__ import annotations


class TrainfaasError(Exception):
    """Root of every error trainfaas raises on purpose."""

    http_status = 500
    code = "internal_error"

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class ConfigError(TrainfaasError):
    """A setting, option or request value is invalid. ``fields`` names each bad field."""

    http_status = 422
    code = "invalid"


class DatasetError(ConfigError):
    """A data set is missing, empty or not in the format its adapter reads."""

    code = "invalid_dataset"


class Unauthorized(TrainfaasError):
    """No token, or one that is unknown or revoked."""

    http_status = 401
    code = "unauthorized"


class Forbidden(TrainfaasError):
    """A valid token whose scope does not allow the call (a read token writing, a project token administering)."""

    http_status = 403
    code = "forbidden"


class NotFound(TrainfaasError):
    """No such object, or one in a project the caller cannot see: the two are not told apart."""

    http_status = 404
    code = "not_found"


class Conflict(TrainfaasError):
    """The request does not fit the object's current state."""

    http_status = 409
    code = "conflict"


class InvalidTransition(Conflict):
    """A status change the state machine does not allow, or whose compare-and-set lost a race."""

    code = "invalid_transition"


class ServicePaused(Conflict):
    """The service is paused: no execution of it starts until it is resumed."""

    code = "service_paused"


class StaleAttempt(InvalidTransition):
    """A write from an attempt that is no longer the execution's current one (fencing)."""

    code = "stale_attempt"


class AdapterError(TrainfaasError):
    """An adapter cannot be found, loaded or is declared wrongly."""

    http_status = 422
    code = "adapter_error"


class BackendError(TrainfaasError):
    """An instance backend could not start, stop or observe an instance."""

    http_status = 503
    code = "backend_error"


class Unavailable(TrainfaasError):
    """A dependency (Redis, the database, the API) cannot be reached right now."""

    http_status = 503
    code = "unavailable"
