"""One decorator declares an endpoint: its route, who may call it, and the pydantic models of its
query string, body and response. The same declaration validates requests, shapes responses and
builds the OpenAPI document (trainfaas.services.api.openapi), so the spec cannot drift from the code.

    @endpoint(bp, "POST", "/<model_id>/train", body=TrainRequest, response=ExecutionOut, status=202, access="write")
    def train(model_id: str, body: TrainRequest, principal: Principal) -> Execution | dict: ...

The view gets the path parameters plus, as declared, ``body``, ``query``, ``principal`` (user
endpoints) or ``instance`` (instance endpoints), and returns anything ``response`` validates.
A new endpoint on an existing blueprint is this decorator and nothing else: it is in the spec and
in the generated tests (tests/test_api_fuzz.py) at once. A new blueprint is also listed in
``trainfaas.services.api.routes``.

``links`` declares what the answer feeds: ``{"id": "/models/{model_id}"}`` says that the ``id`` of
a successful answer is the ``{model_id}`` of every operation whose path holds ``/models/{model_id}``.
The OpenAPI document turns each into links (trainfaas.services.api.openapi), which the stateful
fuzz follows from one call to the next; a new endpoint under such a path is linked at once.

``access``: ``public`` (no token), ``register`` (an instance's registration token or an admin
token, checked by the view, which needs the body to know the service), ``instance`` (the instance's own token, for the
``<instance_id>`` in the path), or the least user scope: ``read``, ``write`` or ``admin``; ``metrics``: a metrics or an admin token.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from typing import Any, Literal

from flask import Blueprint, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import UnsupportedMediaType

from trainfaas.services.control import instances
from trainfaas.services.control import tokens as auth
from trainfaas.services.core.errors import ConfigError, Unauthorized

Access = Literal["public", "register", "instance", "read", "write", "admin", "metrics"]


@dataclasses.dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # OpenAPI form: /api/v1/models/{model_id}
    name: str
    summary: str
    tag: str
    response: type[BaseModel]
    status: int
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    access: Access
    errors: tuple[int, ...]  # statuses besides those its access, parameters and body imply (409, 404)
    links: tuple[tuple[str, str], ...] = ()  # (field of the answer, path fragment naming one parameter)
    body_optional: bool = False  # a request without any body reads as {} (its fields are all optional)
    upload: str | None = None  # the file field of a multipart/form-data body, sent instead of JSON (its other fields: the body's)
    media_type: str | None = None  # a streamed answer of this type (the view returns a Response) instead of JSON

    @property
    def path_parameters(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)


ENDPOINTS: list[Endpoint] = []


class ResponseMismatch(RuntimeError):
    """A view returned something its declared response model rejects (a 500: the spec would lie)."""


def endpoint(bp: Blueprint, method: str, rule: str, *, response: type[BaseModel], status: int = 200,
             body: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
             access: Access = "read", errors: tuple[int, ...] = (),
             links: dict[str, str] | None = None, body_optional: bool = False, upload: str | None = None,
             media_type: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``view`` on ``bp`` for ``method rule`` and record it for the OpenAPI document.

    ``upload``: the body may also come as multipart/form-data, its fields the body's and the file
    field of that name handed to the view as ``upload`` (None for a JSON body). ``media_type``: the
    view streams its answer (a flask Response) of that type; ``response`` then documents nothing sent.
    """

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        full_rule = f"{bp.url_prefix or ''}{rule}"
        doc = (view.__doc__ or view.__name__.replace("_", " ")).strip()
        for field, fragment in (links or {}).items():
            if field not in response.model_fields or len(re.findall(r"{\w+}", fragment)) != 1:
                raise TypeError(f"{full_rule}: a link names a field of {response.__name__} and a path fragment with one"
                                f" {{parameter}}, not {field!r}: {fragment!r}")
        ENDPOINTS.append(Endpoint(
            method=method.upper(), path=re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", full_rule), name=f"{bp.name}.{view.__name__}",
            summary=doc.splitlines()[0], tag=bp.name, response=response, status=status, body=body, query=query,
            access=access, errors=errors, links=tuple((links or {}).items()), body_optional=body_optional,
            upload=upload, media_type=media_type,
        ))

        @functools.wraps(view)
        def handle(**path: str) -> tuple[dict[str, Any], int]:
            kwargs: dict[str, Any] = dict(path)
            # Who is asking comes first: a caller without a valid token learns nothing else.
            if access == "instance":
                kwargs["instance"] = _instance(path["instance_id"])
            elif access == "register":
                # The service is in the body: the view checks the token against it. Without a
                # token that could be one, the caller learns nothing about the body either.
                auth.registration_credential(request.headers.get("Authorization"))
            elif access != "public":
                principal = auth.authenticate(request.headers.get("Authorization"))
                principal.require(access)
                kwargs["principal"] = principal
            if query is not None:
                kwargs["query"] = parse_query(query)
            kwargs.update(_body_arguments(body, body_optional, upload))
            _refuse_nul(path)  # a path id with %00 in it, say
            result = view(**kwargs)
            if media_type is not None:
                return result  # type: ignore[no-any-return]
            try:
                shaped = response.model_validate(result, from_attributes=True)
            except ValidationError as exc:  # our bug, not the caller's: never a 4xx
                raise ResponseMismatch(f"{full_rule} answered outside its {response.__name__} schema: {exc}") from exc
            return shaped.model_dump(mode="json"), status

        bp.add_url_rule(rule, view.__name__, handle, methods=[method.upper()])
        return view

    return decorate


def _body_arguments(body: type[BaseModel] | None, optional: bool, upload: str | None) -> dict[str, Any]:
    """The view's ``body`` (JSON, or a multipart form for an upload endpoint) and ``upload`` (the file, or None)."""
    found: dict[str, Any] = {} if upload is None else {"upload": None}
    if body is not None and upload is not None and request.mimetype == "multipart/form-data":
        found["body"], found["upload"] = parse_form(body, upload)
    elif body is not None:
        found["body"] = parse_body(body, optional)
    return found


def _instance(instance_id: str) -> Any:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    # An id with a NUL character is no instance's (and PostgreSQL could not even compare it).
    known = scheme.lower() == "bearer" and "\x00" not in instance_id
    instance = instances.authenticate(instance_id, token.strip()) if known else None
    if instance is None:
        raise Unauthorized("this call needs the instance's own token", {"Authorization": "Bearer <instance token>"})
    return instance


MAX_URI_BYTES = 4096
"""The longest path (percent-encoded) and query string the API reads: longer ones are a 414 in the error body.
gunicorn's own limit (deploy/gunicorn_conf.py) is higher, so a request meets this one first."""
MAX_DEPTH = 64
"""How deep a body may nest arrays and objects: deeper ones are refused before anything reads them."""
_TOO_DEEP = object()


def _nests_deeper(data: Any, limit: int) -> bool:
    """Whether ``data`` holds arrays and objects nested more than ``limit`` deep (without recursing)."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, (dict, list)):
            if depth > limit:
                return True
            pending.extend((child, depth + 1) for child in (value.values() if isinstance(value, dict) else value))
    return False


def _nul_at(data: Any) -> str | None:
    """The path of the first string (or object key) in ``data`` that holds a NUL character, if any."""
    pending: list[tuple[Any, str]] = [(data, "")]
    while pending:
        value, at = pending.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return at or "body"
        elif isinstance(value, dict):
            for key, child in value.items():
                where = f"{at}.{key}" if at else str(key)
                if isinstance(key, str) and "\x00" in key:
                    return where
                pending.append((child, where))
        elif isinstance(value, list):
            pending.extend((child, f"{at}.{index}" if at else str(index)) for index, child in enumerate(value))
    return None


def _refuse_nul(data: Any) -> None:
    """A 422 for a NUL character (U+0000) anywhere in a request's path parameters, query or body:
    PostgreSQL stores no NUL in text, and no name, id or filter needs one. (The instances replace
    it in the log lines and tracebacks they send: trainfaas.services.core.protocol.sendable.)"""
    field = _nul_at(data)
    if field is not None:
        field = field.replace("\x00", "\\0")  # a key may hold it too
        raise ConfigError(f"{field} holds a NUL character (U+0000)", {field: "text without NUL characters"})


def parse_body(schema: type[BaseModel], optional: bool = False) -> BaseModel:
    """The JSON body as ``schema``: 415 without a JSON content type, 422 for anything invalid. With
    ``optional``, no body at all reads as ``{}``."""
    if optional and not request.get_data(cache=True) and not request.is_json:
        return schema.model_validate({})
    if not request.is_json:
        raise UnsupportedMediaType("send the body as JSON with Content-Type: application/json")
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # the parser gave up long before any sane body's depth
        data = _TOO_DEEP
    if data is _TOO_DEEP or _nests_deeper(data, MAX_DEPTH):
        raise ConfigError(f"the body nests arrays and objects more than {MAX_DEPTH} deep", {"body": f"JSON nested at most {MAX_DEPTH} deep"})
    if data is None and request.get_data():
        raise ConfigError("the body is not valid JSON", {"body": "a JSON object"})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the body must be a JSON object", {"body": "a JSON object"})
    _refuse_nul(data)
    return schema.model_validate(data)


def parse_query(schema: type[BaseModel]) -> BaseModel:
    """The query string as ``schema``; a parameter given twice, or unknown, is a 422."""
    values: dict[str, Any] = {}
    for key in request.args:
        given = request.args.getlist(key)
        if len(given) > 1:
            raise ConfigError(f"{key} is given {len(given)} times", {key: "at most once"})
        values[key] = given[0]
    _refuse_nul(values)
    return schema.model_validate(values)


def parse_form(schema: type[BaseModel], upload: str) -> tuple[BaseModel, Any]:
    """A multipart/form-data body as ``schema`` (a list field from its repeated parts) and its file
    ``upload`` (None when absent); 422 for anything invalid."""
    form = request.form
    data: dict[str, Any] = {}
    for name, field in schema.model_fields.items():
        if name not in form:
            continue
        is_list = "list" in str(field.annotation)
        data[name] = form.getlist(name) if is_list else form[name]
    unknown = sorted(set(form) - set(schema.model_fields))
    if unknown:
        raise ConfigError("unknown form fields", {name: "not allowed" for name in unknown[:20]})
    _refuse_nul(data)
    return schema.model_validate(data), request.files.get(upload)
