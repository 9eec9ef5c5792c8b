"""The web UI over plain HTTP (Flask's client on the real app, database and Redis): sign-in,
sessions, CSRF, what each scope sees, escaping, and other projects' objects."""
from __future__ import annotations

import re
from typing import Any

import pytest

from trainfaas.services.core.statuses import ExecutionStatus
from trainfaas.services.store.records import Execution
from trainfaas.services.ui import sessions

SLEEP = "mgmt-train-sleep"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def sign_in(api: Any, secret: str) -> Any:
    client = api.test_client()
    form = client.get("/ui/login")
    assert form.status_code == 200 and 'name="token"' in form.text
    answer = client.post("/ui/login", data={"token": secret, "csrf": csrf_of(form.text)})
    assert answer.status_code == 302, answer.text[:300]
    return client


def tokens_of(api: Any, project: str) -> dict[str, str]:
    assert api.client.post("/api/v1/projects", json={"name": project}).status_code == 201
    return {scope: api.client.post("/api/v1/tokens", json={"scope": scope, "project": project}).get_json()["token"]
            for scope in ("read", "write")}


@pytest.fixture
def project_a(api: Any) -> dict[str, Any]:
    """Project a with read and write tokens and one ended noop execution whose name holds markup."""
    assert api.client.patch(f"/api/v1/services/{SLEEP}", json={"min_instances": 0}).status_code == 200
    tokens = tokens_of(api, "a")
    writer = api.as_(tokens["write"])
    model = writer.post("/api/v1/models", json={"name": "<img src=x onerror=alert(1)>", "architecture": "sleep"}).get_json()
    execution = writer.post(f"/api/v1/services/{SLEEP}/executions", json={"function": "noop", "input": {}}).get_json()
    Execution.update(status=ExecutionStatus.SUCCESS, name="<script>alert(1)</script>").where(Execution.id == execution["id"]).execute()
    return {"tokens": tokens, "model": model, "execution": execution}


def test_pages_need_a_session_and_a_wrong_token_is_refused(api: Any) -> None:
    client = api.test_client()
    for rule in api.url_map.iter_rules():
        if not rule.rule.startswith("/ui/") or "GET" not in rule.methods or rule.rule in ("/ui/login", "/ui/static/<path:filename>"):
            continue
        answer = client.get(re.sub(r"<[^>]+>", "x", rule.rule))
        assert answer.status_code == 302 and "/ui/login" in answer.headers["Location"], rule.rule
    form = client.get("/ui/login")
    refused = client.post("/ui/login", data={"token": "tf_not-a-token", "csrf": csrf_of(form.text)})
    assert refused.status_code == 401 and "unknown or revoked" in refused.text
    assert not [c for c in refused.headers.getlist("Set-Cookie") if c.startswith(sessions.COOKIE + "=")]
    assert client.get("/ui/").status_code == 302


def test_the_session_cookie_is_httponly_strict_and_expires(api: Any) -> None:
    client = api.test_client()
    form = client.get("/ui/login")
    answer = client.post("/ui/login", data={"token": api.admin_token, "csrf": csrf_of(form.text)})
    cookie = next(c for c in answer.headers.getlist("Set-Cookie") if c.startswith(sessions.COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=" in cookie and "Path=/ui/" in cookie
    assert api.admin_token not in cookie
    key = next(iter(api.redis.scan_iter("trainfaas:ui:session:*")))
    assert 0 < api.redis.ttl(key) <= api.settings.ui_session_s
    page = client.get("/ui/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]
    assert not re.search(r"<script>(?!</script>)|<script(?![^>]*(src=|type=\"application/json\"))", page.text)


def test_forged_posts_without_the_csrf_token_are_refused(api: Any, project_a: dict[str, Any]) -> None:
    client = sign_in(api, project_a["tokens"]["write"])
    running = api.as_(project_a["tokens"]["write"]).post(f"/api/v1/services/{SLEEP}/executions", json={"function": "noop"}).get_json()
    for data in ({}, {"csrf": "forged"}):
        answer = client.post(f"/ui/executions/{running['id']}/terminate", data=data)
        assert answer.status_code == 403 and "CSRF" in answer.text
    assert Execution.get_by_id(running["id"]).status == ExecutionStatus.PENDING
    assert client.post("/ui/logout", data={}).status_code == 403
    assert client.post("/ui/login", data={"token": api.admin_token}).status_code == 403  # the sign-in form has one too
    page = client.get(f"/ui/executions/{running['id']}")
    answer = client.post(f"/ui/executions/{running['id']}/terminate", data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 302
    assert Execution.get_by_id(running["id"]).status == ExecutionStatus.TERMINATED


def test_a_read_token_sees_its_project_without_action_buttons(api: Any, project_a: dict[str, Any]) -> None:
    client = sign_in(api, project_a["tokens"]["read"])
    execution_id = project_a["execution"]["id"]
    listed = client.get("/ui/")
    assert listed.status_code == 200 and execution_id in listed.text
    page = client.get(f"/ui/executions/{execution_id}")
    assert page.status_code == 200
    for action in ("data-action=\"terminate\"", "data-action=\"rerun\"", "data-action=\"clone\"", "Train a model", "/ui/tokens"):
        assert action not in page.text and action not in listed.text
    assert client.get("/ui/train").status_code == 403
    assert client.get("/ui/tokens").status_code == 403
    answer = client.post(f"/ui/executions/{execution_id}/rerun", data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 403
    service = client.get(f"/ui/services/{SLEEP}")
    assert service.status_code == 200 and "service-settings" not in service.text and "data-action=\"pause\"" not in service.text


def test_user_strings_are_escaped(api: Any, project_a: dict[str, Any]) -> None:
    client = sign_in(api, project_a["tokens"]["write"])
    for path in ("/ui/", f"/ui/executions/{project_a['execution']['id']}", "/ui/models", f"/ui/models/{project_a['model']['id']}"):
        text = client.get(path).text
        assert "<script>alert(1)</script>" not in text and "<img src=x" not in text, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/ui/").text


def test_another_projects_objects_are_not_found(api: Any, project_a: dict[str, Any]) -> None:
    other = sign_in(api, tokens_of(api, "b")["write"])
    execution_id, model_id = project_a["execution"]["id"], project_a["model"]["id"]
    assert execution_id not in other.get("/ui/").text
    assert other.get(f"/ui/executions/{execution_id}").status_code == 404
    assert other.get(f"/ui/models/{model_id}").status_code == 404
    csrf = csrf_of(other.get("/ui/").text)
    assert other.post(f"/ui/executions/{execution_id}/rerun", data={"csrf": csrf}).status_code == 404
    assert other.get(f"/ui/compare?executions={execution_id},{execution_id[:6]}").status_code in (404, 422)


def test_an_admin_changes_a_service_and_bad_values_are_named(api: Any) -> None:
    assert api.client.patch(f"/api/v1/services/{SLEEP}", json={"min_instances": 0}).status_code == 200
    client = sign_in(api, api.admin_token)
    assert client.get("/ui/services/no-such-service").status_code == 404
    page = client.get(f"/ui/services/{SLEEP}")
    assert page.status_code == 200 and "service-settings" in page.text
    assert "fixed: keeps 0 instances" in page.text  # what the service will do, in words
    csrf = csrf_of(page.text)
    refused = client.post(f"/ui/services/{SLEEP}", data={"csrf": csrf, "max_instances": "100000"})
    assert refused.status_code == 422 and "max_instances" in refused.text
    assert client.post(f"/ui/services/{SLEEP}", data={"csrf": csrf, "max_instances": "3"}).status_code == 302
    assert api.client.get(f"/api/v1/services/{SLEEP}").get_json()["max_instances"] == 3
    assert client.get("/ui/tokens").status_code == 200


def test_sign_in_goes_back_only_to_a_page_of_the_ui_and_signing_out_ends_the_session(api: Any) -> None:
    client = api.test_client()
    form = client.get("/ui/login?next=//evil.example/")
    answer = client.post("/ui/login", data={"token": api.admin_token, "csrf": csrf_of(form.text), "next": "https://evil.example/"})
    assert answer.headers["Location"].endswith("/ui/")
    confirm = client.get("/ui/logout")
    assert confirm.status_code == 200 and 'id="sign-out"' in confirm.text
    assert client.post("/ui/logout", data={"csrf": csrf_of(confirm.text)}).status_code == 302
    assert client.get("/ui/").status_code == 302
    assert list(api.redis.scan_iter("trainfaas:ui:session:*")) == []


def test_a_revoked_token_ends_its_sessions(api: Any) -> None:
    secret = api.client.post("/api/v1/tokens", json={"scope": "admin", "name": "ui"}).get_json()
    client = sign_in(api, secret["token"])
    assert client.get("/ui/").status_code == 200
    assert api.client.delete(f"/api/v1/tokens/{secret['id']}").status_code == 200
    assert client.get("/ui/").status_code == 302


def test_the_cli_and_the_sdk_give_the_address_of_a_page(api: Any) -> None:
    from click.testing import CliRunner

    from trainfaas.services.cli.main import main
    from trainfaas.services.sdk.client import Client

    result = CliRunner().invoke(main, ["ui", "executions/abcd"], env={"TRAINFAAS_API_URL": "http://example.test:9000/"})
    assert result.exit_code == 0 and result.output.strip() == "http://example.test:9000/ui/executions/abcd"
    address = Client("http://example.test:9000").ui_url("compare?executions=a,b")
    assert address == "http://example.test:9000/ui/compare?executions=a,b"
    client = sign_in(api, api.admin_token)
    answer = client.get(address.removeprefix("http://example.test:9000"))
    assert answer.status_code in (404, 422) and "executions" in answer.text


def test_the_wizard_reviews_submits_and_refuses_bad_options_leaving_no_trace(api: Any, short_tmp: Any,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from trainfaas.services.store.records import Model

    monkeypatch.setenv("XDG_CACHE_HOME", str(short_tmp / "cache"))  # the figures of the sleep adapter only, measured here
    client = sign_in(api, api.admin_token)
    page = client.get("/ui/train?architecture=sleep")
    assert page.status_code == 200 and 'name="mode"' in page.text and "seconds" in page.text  # the full options are listed
    form = {"csrf": csrf_of(page.text), "architecture": "sleep", "mode": "json", "configuration": '{"seconds": -1}', "max_attempts": "2"}
    verdict = client.post("/ui/train/check", data=form).get_json()
    assert verdict["ok"] is False and "configuration.seconds" in verdict["fields"]
    assert client.post("/ui/train/check", data={**form, "configuration": '{"seconds": 0}', "timeout_s": "-1"}).get_json()["fields"].keys() == {"timeout_s"}
    before = Model.select().count()
    refused = client.post("/ui/train", data={**form, "step": "submit"})
    assert refused.status_code == 422 and "configuration.seconds" in refused.text
    full = client.post("/ui/train", data={**form, "mode": "full", "opt.steps": "many", "step": "submit"})
    assert full.status_code == 422 and "configuration.steps" in full.text
    assert Model.select().count() == before
    form["configuration"] = '{"seconds": 0.1, "steps": 2}'
    review = client.post("/ui/train", data={**form, "step": "review"})
    assert review.status_code == 200 and "submit-training" in review.text and Model.select().count() == before
    done = client.post("/ui/train", data={**form, "step": "submit"})
    assert done.status_code == 302 and "created=" in done.headers["Location"]
    execution = api.client.get(f"/api/v1/executions/{done.headers['Location'].split('created=')[1]}").get_json()
    assert execution["max_attempts"] == 2 and execution["input"]["configuration"]["steps"] == 2
    assert client.post("/ui/train", data={**form, "csrf": "forged", "step": "submit"}).status_code == 403
