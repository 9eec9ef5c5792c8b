"""The Python SDK: a client over the HTTP API (no ORM, no Flask).

    from trainfaas.services.sdk import Client
"""
from trainfaas.services.sdk.client import ApiError, Client

__all__ = ["ApiError", "Client"]
