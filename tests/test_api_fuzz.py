"""Generated requests, valid and invalid, against every endpoint of the live app (in-process WSGI,
a real SQLite database, the embedded Redis), from the spec the app serves.

Each generated case is sent with an admin token, a project write token, a project read token, no
token and an unknown token, and, when it has path parameters, once more at real objects.
TRAINFAAS_FUZZ_EXAMPLES (default 10) sets hypothesis' examples per operation and generation mode. Any 5xx, any answer outside the spec (status, content type, body
schema) or any 4xx without the error body fails the test.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from trainfaas.services.api.app import create_app
from trainfaas.services.api.openapi import build_spec
from trainfaas.services.control import tokens as auth
from trainfaas.services.core.settings import load_settings
from trainfaas.services.store.database import database, open_database
from trainfaas.services.store.migrations import migrate
from trainfaas.services.store.records import Project

EXAMPLES = int(os.environ.get("TRAINFAAS_FUZZ_EXAMPLES", "10"))
SERVICE = "mgmt-train-sleep"
SENT: Counter[str] = Counter()


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory, embedded_redis_url: str) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("fuzz")
    config = load_settings(home=home, database_url=f"sqlite:///{home / 'trainfaas.db'}", redis_url=embedded_redis_url,
                           data_roots=str(home / "data"))
    open_database(config.database_url)
    migrate()
    app = create_app(config)
    Project.create(name="fuzz")
    app.tokens = {
        "admin": auth.create_token("admin", None)[1], "write": auth.create_token("write", "fuzz")[1],
        "read": auth.create_token("read", "fuzz")[1], "none": None, "unknown": "tf_" + "x" * 43,
    }
    app.known = _seed(app.test_client(), app.tokens["admin"])
    yield app
    if not database.is_closed():
        database.close()


# The cases are generated at collection, from the document the registry builds; the last test
# checks that the app serves exactly this document. (schemathesis' lazy fixture loader does not
# run under pytest 9, so each call names the app.)
schema = schemathesis.openapi.from_dict(build_spec())


def _seed(client: Any, admin: str) -> dict[str, str]:
    """Real objects for the path parameters of the second call of each case (see below)."""
    headers = {"Authorization": f"Bearer {admin}"}

    def post(path: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        response = client.post(path, json=body, **kwargs)
        assert response.status_code in (200, 201, 202), response.get_json()
        return response.get_json()  # type: ignore[no-any-return]

    assert client.patch(f"/api/v1/services/{SERVICE}", json={"min_instances": 0}, headers=headers).status_code == 200
    model = post("/api/v1/models", {"name": "fuzzed", "architecture": "sleep", "project": "fuzz"}, headers=headers)
    execution = post(f"/api/v1/models/{model['id']}/train", {}, headers=headers)
    instance = post("/api/v1/instances", {"service": SERVICE}, headers=headers)
    token = post("/api/v1/tokens", {"scope": "read", "project": "fuzz"}, headers=headers)
    return {"model_id": model["id"], "execution_id": execution["id"], "instance_id": instance["id"],
            "instance_token": instance["token"], "token_id": token["id"], "service": SERVICE, "project": "fuzz"}


def _known(path: str, name: str, known: dict[str, str]) -> str:
    if name == "name":
        return known["project"] if path.startswith("/api/v1/projects") else known["service"]
    return known[name]


@schemathesis.check
def error_body(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx carries {"error": {"code", "message", "fields"}}."""
    if 400 <= response.status_code < 500:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        assert isinstance(error, dict) and {"code", "message", "fields"} <= set(error), f"4xx without the error body: {body}"
        assert isinstance(error["message"], str) and error["message"], "an empty error message"
    return None


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance, error_body]


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
def test_generated_requests_get_documented_answers(case: Any, fuzz_app: Any) -> None:
    for who, token in fuzz_app.tokens.items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if case.headers and "Authorization" in case.headers:
            del case.headers["Authorization"]
        response = case.call(headers=headers, app=fuzz_app)
        case.validate_response(response, checks=CHECKS)
        SENT[who] += 1
        SENT[f"{response.status_code // 100}xx"] += 1
    # Random ids mostly meet 404s; send the case once more at real objects, so that answers about
    # them (and state changes such as terminate, rerun, pause, revoke) are checked too.
    if case.path_parameters:
        known = fuzz_app.known
        generated = dict(case.path_parameters)
        case.path_parameters = {name: _known(case.path, name, known) for name in generated}
        token = known["instance_token"] if "{instance_id}" in case.path else fuzz_app.tokens["admin"]
        response = case.call(headers={"Authorization": f"Bearer {token}"}, app=fuzz_app)
        case.validate_response(response, checks=CHECKS)
        case.path_parameters = generated
        SENT["known"] += 1
        SENT[f"known {response.status_code // 100}xx"] += 1


def test_the_generated_requests_were_at_least_a_thousand() -> None:
    """Runs after the generated cases in this module (pytest keeps file order)."""
    total = sum(SENT[who] for who in ("admin", "write", "read", "none", "unknown", "known"))
    print(f"generated requests: {total} ({dict(SENT)})")
    assert total >= 1000, dict(SENT)
    assert SENT["2xx"] > 0 and SENT["4xx"] > 0 and SENT["known 2xx"] > 0


def test_the_tested_spec_is_the_served_spec(fuzz_app: Any) -> None:
    served = fuzz_app.test_client().get("/api/v1/openapi.json").get_json()
    assert served == build_spec() == schema.raw_schema
