"""Who may do what: tokens, scopes and projects, over the real app and database."""
from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import register_instance, start_instance
from trainfaas.services.api.registry import ENDPOINTS
from trainfaas.services.control import instances
from trainfaas.services.control import tokens as auth
from trainfaas.services.core.errors import Unauthorized
from trainfaas.services.core.protocol import InstanceRegister
from trainfaas.services.core.statuses import InstanceStatus
from trainfaas.services.store.records import DEFAULT_PROJECT, Execution, Instance, Model, Project, Service, Token

SLEEP = "mgmt-train-sleep"


def path_of(endpoint: Any) -> str:
    return re.sub(r"{\w+}", "x", endpoint.path)


def call(client: Any, method: str, path: str, body: Any = None) -> Any:
    return client.open(path, method=method, json=body if method in ("POST", "PATCH", "PUT") else None)


def project_tokens(api: Any, project: str) -> dict[str, str]:
    """Create ``project`` and a read and a write token of it; return the secrets by scope."""
    assert api.client.post("/api/v1/projects", json={"name": project}).status_code == 201
    return {scope: api.client.post("/api/v1/tokens", json={"scope": scope, "project": project}).get_json()["token"]
            for scope in ("read", "write")}


def enqueue_noop(client: Any) -> dict[str, Any]:
    response = client.post(f"/api/v1/services/{SLEEP}/executions", json={"function": "noop", "input": {}})
    assert response.status_code == 202, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


@pytest.fixture
def two_projects(api: Any) -> dict[str, Any]:
    """Projects a and b with read/write tokens, and in a: a model and a noop execution."""
    assert api.client.patch(f"/api/v1/services/{SLEEP}", json={"min_instances": 0}).status_code == 200
    tokens = {"a": project_tokens(api, "a"), "b": project_tokens(api, "b")}
    writer_a = api.as_(tokens["a"]["write"])
    model = writer_a.post("/api/v1/models", json={"name": "secret-model", "architecture": "sleep"}).get_json()
    assert model["project"] == "a"
    execution = enqueue_noop(writer_a)
    assert execution["project"] == "a"
    return {"tokens": tokens, "model": model, "execution": execution}


def test_a_default_project_exists_after_migration(api: Any) -> None:
    assert Project.get_by_id(DEFAULT_PROJECT)
    model = api.client.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    assert model["project"] == DEFAULT_PROJECT


def test_every_endpoint_but_health_and_the_spec_needs_a_valid_token(api: Any) -> None:
    _, instance_token = _instance(api, SLEEP)
    revoked = api.client.post("/api/v1/tokens", json={"scope": "admin"}).get_json()
    assert api.client.delete(f"/api/v1/tokens/{revoked['id']}").status_code == 200
    public = {e.path for e in ENDPOINTS if e.access == "public"}
    assert public == {"/healthz", "/readyz"}
    assert api.as_(None).get("/api/v1/openapi.json").status_code == 200
    checked = 0
    for endpoint in ENDPOINTS:
        if endpoint.access == "public":
            continue
        for secret in (None, "", "tf_not-a-token", revoked["token"], instance_token):
            if endpoint.access == "instance" and secret == instance_token:
                continue  # an instance's own calls; other instances' are checked below
            response = call(api.as_(secret), endpoint.method, path_of(endpoint), {})
            assert response.status_code == 401, (endpoint.path, secret, response.get_json())
            assert response.get_json()["error"]["code"] == "unauthorized"
            checked += 1
    assert checked >= 5 * 20


def test_another_projects_objects_answer_404_and_never_show_in_lists(api: Any, two_projects: dict[str, Any]) -> None:
    model_id, execution_id = two_projects["model"]["id"], two_projects["execution"]["id"]
    other = api.as_(two_projects["tokens"]["b"]["write"])
    for method, path, body in (
        ("GET", f"/api/v1/models/{model_id}", None),
        ("POST", f"/api/v1/models/{model_id}/train", {}),
        ("GET", f"/api/v1/executions/{execution_id}", None),
        ("POST", f"/api/v1/executions/{execution_id}/terminate", None),
        ("POST", f"/api/v1/executions/{execution_id}/rerun", None),
        ("GET", f"/api/v1/executions/{execution_id}/metrics", None),
        ("GET", f"/api/v1/executions/{execution_id}/logs", None),
        ("GET", f"/api/v1/executions/{execution_id}/artifacts", None),
        ("GET", "/api/v1/projects/a", None),
        ("POST", "/api/v1/models", {"name": "m", "architecture": "sleep", "project": "a"}),
        ("POST", f"/api/v1/services/{SLEEP}/executions", {"function": "train_model", "input": {"model_id": model_id}}),
    ):
        response = call(other, method, path, body)
        assert response.status_code == 404, (method, path, response.get_json())
        assert "a" not in response.get_json()["error"].get("fields", {}).values()
    for path in ("/api/v1/models", "/api/v1/executions", "/api/v1/models?project=a", "/api/v1/executions?project=a"):
        assert other.get(path).get_json()["items"] == [], path
    assert [p["name"] for p in other.get("/api/v1/projects").get_json()["items"]] == ["b"]
    # the owner and admins see them
    owner = api.as_(two_projects["tokens"]["a"]["read"])
    assert [m["id"] for m in owner.get("/api/v1/models").get_json()["items"]] == [model_id]
    assert api.client.get(f"/api/v1/executions/{execution_id}").status_code == 200
    assert Execution.get_by_id(execution_id).status == "pending"  # b's terminate changed nothing


def test_a_read_token_cannot_write_and_a_project_token_cannot_administer(api: Any, two_projects: dict[str, Any]) -> None:
    reader, writer = api.as_(two_projects["tokens"]["a"]["read"]), api.as_(two_projects["tokens"]["a"]["write"])
    model_id, execution_id = two_projects["model"]["id"], two_projects["execution"]["id"]
    writes = (
        ("POST", "/api/v1/models", {"name": "m", "architecture": "sleep"}),
        ("POST", f"/api/v1/models/{model_id}/train", {}),
        ("POST", f"/api/v1/executions/{execution_id}/terminate", None),
        ("POST", f"/api/v1/executions/{execution_id}/rerun", None),
        ("POST", f"/api/v1/services/{SLEEP}/executions", {"function": "noop", "input": {}}),
    )
    admin_only = (
        ("PATCH", f"/api/v1/services/{SLEEP}", {"min_instances": 1}),
        ("POST", f"/api/v1/services/{SLEEP}/pause", None),
        ("POST", f"/api/v1/services/{SLEEP}/resume", None),
        ("POST", "/api/v1/projects", {"name": "c"}),
        ("POST", "/api/v1/tokens", {"scope": "admin"}),
        ("GET", "/api/v1/tokens", None),
        ("DELETE", f"/api/v1/tokens/{Token.select().first().id}", None),
    )
    for client, forbidden in ((reader, writes + admin_only), (writer, admin_only)):
        for method, path, body in forbidden:
            response = call(client, method, path, body)
            assert response.status_code == 403, (method, path, response.get_json())
            assert response.get_json()["error"]["code"] == "forbidden"
    assert Model.select().count() == 1 and Execution.select().count() == 1 and Project.select().count() == 3
    assert api.client.get(f"/api/v1/services/{SLEEP}").get_json()["min_instances"] == 0
    assert reader.get(f"/api/v1/services/{SLEEP}").status_code == 200  # services are shared for reading


def test_token_secrets_are_stored_only_as_hashes_and_never_logged(api: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    created = api.client.post("/api/v1/tokens", json={"scope": "write", "project": "default", "name": "ci"})
    assert created.status_code == 201
    secret = created.get_json()["token"]
    assert secret.startswith("tf_") and len(secret) >= 40
    listed = api.client.get("/api/v1/tokens").get_json()["items"]
    assert created.get_json()["id"] in [t["id"] for t in listed] and secret not in str(listed)
    assert api.as_(secret).get("/api/v1/models").status_code == 200
    if api.settings.database_url.startswith("sqlite"):
        database_file = Path(api.settings.database_url.removeprefix("sqlite:///"))
        stored = b"".join(p.read_bytes() for p in database_file.parent.glob(database_file.name + "*"))
        assert secret.encode() not in stored and api.admin_token.encode() not in stored
    assert secret not in caplog.text


def test_a_revoked_token_answers_401(api: Any) -> None:
    created = api.client.post("/api/v1/tokens", json={"scope": "admin"}).get_json()
    assert api.as_(created["token"]).get("/api/v1/tokens").status_code == 200
    assert api.client.delete(f"/api/v1/tokens/{created['id']}").get_json()["revoked_at"]
    assert api.as_(created["token"]).get("/api/v1/tokens").status_code == 401
    response = api.client.post("/api/v1/tokens", json={"scope": "read", "project": "nope"})
    assert response.status_code == 422 and "project" in response.get_json()["error"]["fields"]


def _instance(api: Any, service: str) -> tuple[str, str]:
    assert api.client.patch(f"/api/v1/services/{service}", json={"min_instances": 0}).status_code == 200
    instance_id, client = register_instance(api, service)
    return instance_id, client.environ_base["HTTP_AUTHORIZATION"].removeprefix("Bearer ")


def _rows() -> list[tuple[Any, ...]]:
    """Every instance row as it is stored: a refused registration changes none of them."""
    return [tuple(row.__data__.values()) for row in Instance.select().order_by(Instance.id)]


def test_registration_tokens_are_one_time_and_expire(api: Any) -> None:
    for service in (SLEEP, "mgmt-train-resnet18"):
        assert api.client.patch(f"/api/v1/services/{service}", json={"min_instances": 0}).status_code == 200
    (a, a_token), (b, b_token), (c, c_token) = (start_instance(api, SLEEP) for _ in range(3))
    resnet, resnet_token = start_instance(api, "mgmt-train-resnet18")
    row = Instance.get_by_id(a)
    assert a_token.startswith("tfr_") and len(a_token) >= 4 + 43  # 256 random bits
    assert row.registration_hash == auth.hash_secret(a_token) and a_token not in str(row.__data__)
    assert row.registration_expires_at == pytest.approx(time.time() + api.settings.registration_ttl_s, abs=30)
    read = api.client.post("/api/v1/tokens", json={"scope": "read", "project": DEFAULT_PROJECT}).get_json()["token"]
    write = api.client.post("/api/v1/tokens", json={"scope": "write", "project": DEFAULT_PROJECT}).get_json()["token"]
    swarm_style = auth.swarm_registration_token(api.settings.instance_secret_value(), SLEEP)
    Instance.update(registration_expires_at=time.time() - 1).where(Instance.id == b).execute()  # b's has expired
    before = _rows()

    def register(credential: str | None, instance_id: str | None = a, service: str = SLEEP) -> Any:
        return api.as_(credential).post("/api/v1/instances", json={"service": service, "instance_id": instance_id, "host": "x"})

    refusals = {
        "no token": register(None), "a forged one": register("tfr_" + "A" * 43), "a read token": register(read),
        "a write token": register(write), "another instance's": register(c_token), "the old service credential": register(swarm_style),
        "no instance id": register(a_token, None), "another service's instance": register(resnet_token, resnet),
        "an expired one": register(b_token, b),
    }
    for why, response in refusals.items():
        assert response.status_code == 401 and response.get_json()["error"]["fields"], (why, response.get_json())
    messages = {why: response.get_json()["error"]["message"] for why, response in refusals.items()}
    assert "not the registration token of instance" in messages["another instance's"]
    assert "send its instance_id" in messages["no instance id"]
    assert f"not one for {SLEEP}" in messages["another service's instance"]
    assert "has expired" in messages["an expired one"]
    assert _rows() == before  # nothing was written
    with pytest.raises(Unauthorized, match="expired"):  # the clock is injectable: a's token an hour later
        instances.redeem(InstanceRegister(service=SLEEP, instance_id=a), a_token, now=time.time() + 3600)

    first = register(a_token)
    assert first.status_code == 201 and first.get_json()["status"] == "running", first.get_json()
    adopted = Instance.get_by_id(a)
    assert adopted.token_hash and (adopted.registration_hash, adopted.registration_expires_at) == (None, None)
    again = register(a_token)
    assert again.status_code == 409 and "works once" in again.get_json()["error"]["message"]
    assert Instance.get_by_id(a).token_hash == adopted.token_hash  # the first instance keeps its token
    assert api.as_(first.get_json()["token"]).post(f"/api/v1/instances/{a}/heartbeat", json={}).status_code == 200

    # An instance that ended (as the reaper marks it) never registers: its token is void.
    assert instances.transition(c, InstanceStatus.LOST, last_exit_reason="heartbeat lost")
    assert Instance.get_by_id(c).registration_hash is None
    ended = register(c_token, c)
    assert ended.status_code == 409 and "has ended" in ended.get_json()["error"]["message"]
    # An instance started by hand still registers with an admin token.
    assert api.client.post("/api/v1/instances", json={"service": SLEEP, "host": "by hand"}).status_code == 201


def test_an_admin_revokes_a_pending_registration(api: Any) -> None:
    assert api.client.patch(f"/api/v1/services/{SLEEP}", json={"min_instances": 0}).status_code == 200
    (pending, token), (registered, _) = start_instance(api, SLEEP), register_instance(api, SLEEP)
    reader = api.client.post("/api/v1/tokens", json={"scope": "read", "project": DEFAULT_PROJECT}).get_json()["token"]
    assert api.as_(reader).delete(f"/api/v1/instances/{pending}/registration").status_code == 403

    revoked = api.client.delete(f"/api/v1/instances/{pending[:8]}/registration")

    assert revoked.status_code == 200 and revoked.get_json()["status"] == "failed", revoked.get_json()
    assert "revoked" in revoked.get_json()["last_exit_reason"] and Instance.get_by_id(pending).registration_hash is None
    late = api.as_(token).post("/api/v1/instances", json={"service": SLEEP, "instance_id": pending})
    assert late.status_code == 409 and Instance.get_by_id(pending).status == "failed"
    for instance_id in (pending, registered):
        assert api.client.delete(f"/api/v1/instances/{instance_id}/registration").status_code == 409
    assert api.client.delete("/api/v1/instances/nope/registration").status_code == 404


def test_a_swarm_services_credential_registers_new_instances_of_that_service_only(api: Any) -> None:
    """Swarm starts every task of a service from one definition: its tasks share one credential,
    worth nothing for any other service, for a service on another backend, or to adopt a row."""
    secret = api.settings.instance_secret_value()
    for service in (SLEEP, "mgmt-train-resnet18"):
        assert api.client.patch(f"/api/v1/services/{service}", json={"min_instances": 0}).status_code == 200
    pending, _ = start_instance(api, SLEEP)
    Service.update(backend="swarm").where(Service.name == SLEEP).execute()
    body = {"service": SLEEP, "host": "trainfaas-task", "backend": "swarm"}
    before = _rows()
    for credential, fields in ((auth.swarm_registration_token(secret, "mgmt-train-resnet18"), body),
                               (auth.swarm_registration_token("another secret", SLEEP), body),
                               (auth.swarm_registration_token(secret, SLEEP), {**body, "instance_id": pending}),
                               (auth.swarm_registration_token(secret, "mgmt-train-resnet18"), {**body, "service": "mgmt-train-resnet18"})):
        response = api.as_(credential).post("/api/v1/instances", json=fields)
        assert response.status_code == 401, (fields, response.get_json())
    assert _rows() == before
    created = api.as_(auth.swarm_registration_token(secret, SLEEP)).post("/api/v1/instances", json=body)
    assert created.status_code == 201 and created.get_json()["backend"] == "swarm"


def test_an_instance_token_reaches_only_its_own_services_executions(api: Any) -> None:
    sleeper, sleeper_token = _instance(api, SLEEP)
    other, other_token = _instance(api, "mgmt-train-resnet18")
    execution = enqueue_noop(api.client)
    as_other = api.as_(other_token)
    claim = {"execution_id": execution["id"], "attempt": 1}
    assert as_other.post(f"/api/v1/instances/{other}/claim", json=claim).status_code == 404
    finish = {"attempt": 1, "outcome": "success"}
    assert as_other.post(f"/api/v1/instances/{other}/executions/{execution['id']}/finish", json=finish).status_code == 404
    # another instance's id with this token is not this instance
    assert as_other.post(f"/api/v1/instances/{sleeper}/claim", json=claim).status_code == 401
    assert Execution.get_by_id(execution["id"]).status == "pending"
    as_sleeper = api.as_(sleeper_token)
    assert as_sleeper.post(f"/api/v1/instances/{sleeper}/claim", json=claim).status_code == 200
    report = {"events": [{"execution_id": execution["id"], "attempt": 1, "at": 1.0, "event": {"kind": "log", "line": "x"}}]}
    refused = as_other.post(f"/api/v1/instances/{other}/report", json=report).get_json()["refused"]
    assert execution["id"] in refused
    # instances may send more than users: a 2 MiB report is taken, a 2 MiB user body is not
    report["events"][0]["event"]["line"] = "x" * (2 * 1024 * 1024)
    assert as_sleeper.post(f"/api/v1/instances/{sleeper}/report", json=report).get_json() == {"refused": {}, "rejected": []}
    assert api.client.post("/api/v1/models", json={"name": "x" * (2 * 1024 * 1024)}).status_code == 413
    assert as_sleeper.get("/api/v1/models").status_code == 401  # not a user token
    # registering again with a registered instance's id does not hand out its executions
    again = api.client.post("/api/v1/instances", json={"service": SLEEP, "instance_id": sleeper})
    assert again.status_code == 409 and again.get_json()["error"]["fields"]["instance_id"]
    heartbeat = as_sleeper.post(f"/api/v1/instances/{sleeper}/heartbeat", json={"running": []})
    assert heartbeat.status_code == 200 and heartbeat.get_json()["drain"] is False


def test_a_unique_id_prefix_names_its_object_within_the_tokens_project_only(api: Any, two_projects: dict[str, Any]) -> None:
    tokens, execution_id = two_projects["tokens"], two_projects["execution"]["id"]
    ids = {"a1": "beef" + "0" * 26 + "a1", "a2": "beef" + "0" * 26 + "a2", "b1": "beef1111" + "0" * 22 + "b1"}
    for key, model_id in ids.items():
        Model.create(id=model_id, name=key, architecture="sleep", task="diagnostic", project=key[0])
    reader_a, reader_b = api.as_(tokens["a"]["read"]), api.as_(tokens["b"]["read"])

    ambiguous = reader_a.get("/api/v1/models/beef0")
    assert ambiguous.status_code == 409 and "2 models" in ambiguous.get_json()["error"]["message"]
    assert "more characters" in ambiguous.get_json()["error"]["message"]
    assert reader_a.get(f"/api/v1/models/{ids['a2'][:-1]}").status_code == 409
    assert reader_a.get(f"/api/v1/models/{ids['a2']}").get_json()["id"] == ids["a2"]
    # b's model is neither found nor counted for a, and b sees only its own
    assert reader_a.get("/api/v1/models/beef1").status_code == 404
    assert reader_b.get("/api/v1/models/beef").get_json()["id"] == ids["b1"]
    assert "3 models" in api.client.get("/api/v1/models/beef").get_json()["error"]["message"]
    assert reader_a.get("/api/v1/models/bee").status_code == 404  # shorter than 4 characters

    short = execution_id[:6]
    writer_a = api.as_(tokens["a"]["write"])
    assert writer_a.get(f"/api/v1/executions/{short}").get_json()["id"] == execution_id
    assert writer_a.get(f"/api/v1/executions/{short}/logs").status_code == 200
    assert writer_a.post(f"/api/v1/executions/{short}/terminate").get_json()["status"] == "terminated"
    assert reader_b.get(f"/api/v1/executions/{short}").status_code == 404
    revoked = api.client.delete(f"/api/v1/tokens/{Token.select().where(Token.project == 'b').first().id[:8]}")
    assert revoked.status_code == 200 and revoked.get_json()["revoked_at"]


def test_an_instance_may_name_itself_by_a_prefix_of_its_id_with_its_own_token(api: Any) -> None:
    instance_id, token = _instance(api, SLEEP)
    other_id, other_token = _instance(api, SLEEP)
    beat = {"status": "running", "running": []}
    assert api.as_(token).post(f"/api/v1/instances/{instance_id[:6]}/heartbeat", json=beat).status_code == 200
    # another instance's id, or a prefix shorter than 4 characters, is not this instance
    assert api.as_(token).post(f"/api/v1/instances/{other_id}/heartbeat", json=beat).status_code == 401
    assert api.as_(other_token).post(f"/api/v1/instances/{other_id[:4]}/heartbeat", json=beat).status_code == 200
    assert api.as_(token).post(f"/api/v1/instances/{instance_id[:3]}/heartbeat", json=beat).status_code == 401


def test_every_route_of_the_app_is_a_registered_endpoint_and_needs_a_token(api: Any) -> None:
    """Over the app's own url_map, not only the registry: no route (such as Flask's /static) escapes it."""
    registered = {(e.path, e.method): e for e in ENDPOINTS}
    unregistered, checked = [], 0
    for rule in api.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if path == "/api/v1/openapi.json" or path.startswith("/ui/"):
                continue  # the document, public by design; the web UI's pages (tests/test_ui_http.py checks their sessions)
            if (path, method) not in registered:
                unregistered.append((path, method))
            elif registered[path, method].access != "public":
                response = call(api.as_(None), method, re.sub(r"<[^>]+>", "x", rule.rule), {})
                assert response.status_code == 401, (path, method, response.get_json())
                checked += 1
    assert unregistered == [] and checked == len([e for e in ENDPOINTS if e.access != "public"])
    assert api.as_(None).get("/static/anything").status_code == 404


def test_secret_files_and_the_home_they_create_are_the_owners_only(api: Any, short_tmp: Path) -> None:
    from trainfaas.services.core.settings import load_settings

    home = short_tmp / "fresh-home"
    secret = load_settings(home=home).instance_secret_value()
    assert secret and (home / "instance-secret").read_text().strip() == secret
    assert (home / "instance-secret").stat().st_mode & 0o777 == 0o600 and home.stat().st_mode & 0o777 == 0o700
    token_home = short_tmp / "token-home"
    token = auth.ensure_admin_token(token_home / "admin-token")
    assert (token_home / "admin-token").stat().st_mode & 0o777 == 0o600 and token_home.stat().st_mode & 0o777 == 0o700
    assert auth.ensure_admin_token(token_home / "admin-token") == token
    assert not [p for p in (*home.iterdir(), *token_home.iterdir()) if p.name.startswith(".")]  # no partial file left


def test_read_token_sees_no_other_projects_execution_ids_in_instance_views(api: Any, two_projects: dict[str, Any]) -> None:
    """An instance runs executions of any project: a project's token sees the ids of its own only,
    the others counted in ``other_running``; an admin token sees them all."""
    tokens, ours = two_projects["tokens"], two_projects["execution"]["id"]
    theirs = enqueue_noop(api.as_(tokens["b"]["write"]))["id"]
    instance_id, client = register_instance(api, SLEEP)
    for execution in (ours, theirs):
        claimed = client.post(f"/api/v1/instances/{instance_id}/claim", json={"execution_id": execution, "attempt": 1})
        assert claimed.status_code == 200, claimed.get_json()
    beat = {"status": "full", "running": [{"execution_id": e, "attempt": 1, "pid": 7} for e in (ours, theirs)]}
    assert client.post(f"/api/v1/instances/{instance_id}/heartbeat", json=beat).status_code == 200

    def shown(secret: str) -> tuple[list[str], int, str]:
        response = api.as_(secret).get(f"/api/v1/services/{SLEEP}/instances")
        assert response.status_code == 200, response.get_json()
        (view,) = [item for item in response.get_json()["items"] if item["id"] == instance_id]
        return [entry["execution_id"] for entry in view["running"]], view["other_running"], response.get_data(as_text=True)

    for scope in ("read", "write"):
        seen_by_a, others_a, text_a = shown(tokens["a"][scope])
        seen_by_b, others_b, text_b = shown(tokens["b"][scope])
        assert (seen_by_a, others_a) == ([ours], 1) and theirs not in text_a
        assert (seen_by_b, others_b) == ([theirs], 1) and ours not in text_b
    assert shown(api.admin_token)[:2] == ([ours, theirs], 0)
