"""Webhooks: managed through the API on SQLite and PostgreSQL, recorded with each status change,
sent signed to a real HTTP receiver by the scheduler's deliverer, retried, and never holding up
an execution; and a real stack whose training fires its end event, driven through the CLI."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import wait_until
from tests.test_api_access import project_tokens
from tests.webhook_receiver import Receiver, verify
from trainfaas.scheduler.webhooks import Deliverer
from trainfaas.services.cli.main import main
from trainfaas.services.control import transitions, webhooks
from trainfaas.services.core.settings import Settings
from trainfaas.services.core.statuses import ExecutionStatus as S
from trainfaas.services.store.records import Execution, Service, Webhook, WebhookDelivery

SECRET = "s3cret-s3cret-s3cret"
FAST = {"webhook_allow_hosts": "127.0.0.1", "webhook_retry_base_s": 0.05, "webhook_poll_interval_s": 0.05}


def allow(api: Any, **changes: Any) -> Settings:
    """The app's settings with ``changes`` (by default: 127.0.0.1 allowed, quick retries)."""
    settings: Settings = api.config["SETTINGS"].model_copy(update={**FAST, **changes})
    api.config["SETTINGS"] = settings
    return settings


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def deliverer(settings: Settings) -> Deliverer:
    running = Deliverer(settings)
    running.start()
    return running


def add(client: Any, url: str, **body: Any) -> Any:
    return client.post("/api/v1/webhooks", json={"url": url, "secret": SECRET, **body})


def run_to_success(project: str = "default") -> Execution:
    """An execution through pending, in-progress and success, by the state machine."""
    service = Service.get_or_none(Service.name == "hooked") or Service.create(name="hooked", architecture="sleep")
    execution = Execution.create(service=service, function="noop", timeout_s=60, drain_time_s=5, on_reset="rerun", project=project)
    transitions.queue(execution.id)
    transitions.claim(execution.id, 1, "instance-1")
    return transitions.finish(execution.id, 1, S.SUCCESS, "done")


def test_a_webhook_is_created_listed_changed_and_deleted_and_its_secret_never_comes_back(api: Any, receiver: Receiver) -> None:
    allow(api)
    created = add(api.client, receiver.url, description="ci")
    assert created.status_code == 201, created.get_json()
    hook = created.get_json()
    assert hook["events"] == ["execution.aborted", "execution.failed", "execution.success", "execution.terminated"]
    assert hook["project"] == "default" and "secret" not in hook
    assert [w["id"] for w in api.client.get("/api/v1/webhooks").get_json()["items"]] == [hook["id"]]
    changed = api.client.patch(f"/api/v1/webhooks/{hook['id'][:6]}", json={"events": ["*", "*"], "secret": "another-secret-value"})
    assert changed.status_code == 200 and changed.get_json()["events"] == ["*"]
    assert Webhook.get_by_id(hook["id"]).secret == "another-secret-value"
    for bad, field in (({"url": "http://10.0.0.1/"}, "url"), ({"events": []}, "events"), ({"secret": "short"}, "secret")):
        refused = api.client.patch(f"/api/v1/webhooks/{hook['id']}", json=bad)
        assert refused.status_code == 422 and field in refused.get_json()["error"]["fields"]
    assert api.client.get(f"/api/v1/webhooks/{hook['id']}").get_json() == changed.get_json()
    for response in (created, changed, api.client.get(f"/api/v1/webhooks/{hook['id']}"), api.client.get("/api/v1/webhooks")):
        assert SECRET not in response.get_data(as_text=True) and "another-secret" not in response.get_data(as_text=True)
    assert api.client.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 200
    assert api.client.get(f"/api/v1/webhooks/{hook['id']}").status_code == 404 and Webhook.select().count() == 0


BAD = [
    ({"url": "ftp://example.com/hook"}, "url"),
    ({"url": "http://"}, "url"),
    ({"url": "https://user:pw@example.com/"}, "url"),
    ({"url": "http://example.com:99999/"}, "url"),
    ({"url": "http://exa mple.com/"}, "url"),
    ({"url": "http://localhost:8080/"}, "url"),
    ({"url": "http://127.0.0.1/"}, "url"),
    ({"url": "http://10.1.2.3/"}, "url"),
    ({"url": "http://169.254.169.254/latest/meta-data"}, "url"),
    ({"url": "http://[::1]/"}, "url"),
    ({"url": "http://[::ffff:127.0.0.1]/"}, "url"),
    ({"url": "http://0.0.0.0/"}, "url"),
    ({"url": "https://example.com/", "events": ["execution.done"]}, "events.0"),
    ({"url": "https://example.com/", "events": []}, "events"),
    ({"url": "https://example.com/", "secret": "short"}, "secret"),
    ({"url": "https://example.com/", "project": "elsewhere"}, "project"),
]


def test_a_bad_or_private_webhook_is_refused_naming_the_field_and_leaves_no_trace(api: Any) -> None:
    for body, field in BAD:
        response = api.client.post("/api/v1/webhooks", json={"secret": SECRET, **body})
        assert response.status_code in (404, 422), (body, response.get_json())
        assert field in response.get_json()["error"]["fields"], (body, response.get_json())
    assert Webhook.select().count() == 0


def test_private_addresses_are_allowed_only_as_the_operator_says(api: Any) -> None:
    allow(api, webhook_allow_hosts="10.0.0.0/8,hooks.internal")
    assert add(api.client, "http://10.1.2.3/hook").status_code == 201
    assert add(api.client, "http://192.168.1.1/hook").status_code == 422
    allow(api, webhook_allow_hosts="", webhook_allow_private=True)
    assert add(api.client, "http://192.168.1.1/hook").status_code == 201
    assert add(api.client, "http://localhost:1/hook").status_code == 201


def test_webhooks_belong_to_one_project_need_a_write_token_and_are_capped(api: Any, receiver: Receiver) -> None:
    allow(api, webhook_max_per_project=2)
    a, b = project_tokens(api, "a"), project_tokens(api, "b")
    assert add(api.as_(a["read"]), receiver.url).status_code == 403
    hook = add(api.as_(a["write"]), receiver.url).get_json()
    assert hook["project"] == "a"
    other = api.as_(b["write"])
    for method, path in (("get", ""), ("patch", ""), ("delete", ""), ("post", "/test"), ("get", "/deliveries")):
        kwargs = {"json": {"description": "mine"}} if method == "patch" else {}
        assert getattr(other, method)(f"/api/v1/webhooks/{hook['id']}{path}", **kwargs).status_code == 404
    assert other.get("/api/v1/webhooks").get_json()["items"] == []
    assert api.as_(a["read"]).get(f"/api/v1/webhooks/{hook['id']}/deliveries").status_code == 200
    assert add(api.as_(a["write"]), receiver.url).status_code == 201
    capped = add(api.as_(a["write"]), receiver.url)
    assert capped.status_code == 429 and "url" in capped.get_json()["error"]["fields"]
    assert Webhook.select().where(Webhook.project == "a").count() == 2
    run_to_success(project="b")
    assert WebhookDelivery.select().count() == 0  # b has no webhook; a's hear nothing of b


def test_a_change_is_recorded_once_per_webhook_and_delivered_signed_after_a_failed_try(api: Any, receiver: Receiver) -> None:
    settings = allow(api)
    receiver.plan = [500]
    hook = add(api.client, receiver.url).get_json()
    with Receiver() as other:
        every = add(api.client, other.url, events=["execution.*"]).get_json()
        execution = run_to_success()
        assert WebhookDelivery.select().where(WebhookDelivery.webhook == hook["id"]).count() == 1
        assert WebhookDelivery.select().where(WebhookDelivery.webhook == every["id"]).count() == 3  # pending, in-progress, success
        running = deliverer(settings)
        try:
            wait_until(lambda: WebhookDelivery.select().where(WebhookDelivery.status != "succeeded").count() == 0, what="deliveries")
        finally:
            running.stop()
    assert sorted(r["headers"]["X-Trainfaas-Event"] for r in other.received) == ["execution.in-progress", "execution.pending",
                                                                                  "execution.success"]
    tries = receiver.received
    assert len(tries) == 2 and tries[0]["headers"]["X-Trainfaas-Event-Id"] == tries[1]["headers"]["X-Trainfaas-Event-Id"]
    assert [r["headers"]["X-Trainfaas-Attempt"] for r in tries] == ["1", "2"]
    for request in receiver.received + other.received:
        assert verify(SECRET, request["headers"]["X-Trainfaas-Signature"], request["body"])
        assert not verify("another-secret-value", request["headers"]["X-Trainfaas-Signature"], request["body"])
    event = json.loads(tries[1]["body"])
    assert event["type"] == "execution.success" and event["data"]["execution"]["id"] == execution.id
    assert event["id"] == tries[1]["headers"]["X-Trainfaas-Event-Id"]
    listed = api.client.get(f"/api/v1/webhooks/{hook['id']}/deliveries").get_json()["items"]
    assert [(d["status"], d["attempts"], d["response_code"], d["next_try_at"]) for d in listed] == [("succeeded", 2, 200, None)]
    assert api.client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", query_string={"status": "failed"}).get_json()["items"] == []


def test_a_ping_is_sent_a_redirect_is_not_followed_and_a_huge_answer_is_cut(api: Any, receiver: Receiver) -> None:
    settings = allow(api, webhook_retry_window_s=0.01)  # one try each
    hook = add(api.client, receiver.url).get_json()
    running = deliverer(settings)
    try:
        outcomes = []
        for action in ("redirect", "huge", 204):
            receiver.plan = [action]
            ping = api.client.post(f"/api/v1/webhooks/{hook['id']}/test")
            assert ping.status_code == 202 and ping.get_json()["status"] == "pending" and ping.get_json()["event"] == "ping"
            sent = ping.get_json()["id"]
            wait_until(lambda sent=sent: WebhookDelivery.get_by_id(sent).status != "pending", what="the ping to settle")
            outcomes.append(WebhookDelivery.get_by_id(sent))
    finally:
        running.stop()
    assert [(d.status, d.response_code, d.attempts) for d in outcomes] == [("failed", 302, 1), ("failed", 500, 1), ("succeeded", 204, 1)]
    assert outcomes[0].last_error == "HTTP 302: redirects are not followed"
    assert outcomes[1].last_error.startswith("HTTP 500: xxx") and len(outcomes[1].last_error) < 300
    assert [r["path"] for r in receiver.received] == ["/hook?x=1"] * 3  # never /elsewhere
    assert all(json.loads(r["body"])["type"] == "ping" for r in receiver.received)


def test_a_name_is_resolved_and_refused_when_sending_unless_allowed(api: Any, receiver: Receiver) -> None:
    allow(api, webhook_allow_private=True)
    hook = add(api.client, receiver.url.replace("127.0.0.1", "localhost")).get_json()
    first = api.client.post(f"/api/v1/webhooks/{hook['id']}/test").get_json()["id"]
    running = deliverer(allow(api, webhook_allow_private=False, webhook_allow_hosts="", webhook_retry_window_s=0.01))
    try:
        wait_until(lambda: WebhookDelivery.get_by_id(first).status == "failed", what="the refused delivery to fail")
    finally:
        running.stop()
    assert WebhookDelivery.get_by_id(first).last_error.startswith("refused:") and receiver.received == []
    second = api.client.post(f"/api/v1/webhooks/{hook['id']}/test").get_json()["id"]
    running = deliverer(allow(api, webhook_allow_hosts="localhost"))
    try:
        wait_until(lambda: WebhookDelivery.get_by_id(second).status == "succeeded", what="the allowed delivery")
    finally:
        running.stop()
    assert len(receiver.received) == 1


def test_pings_waiting_to_be_sent_are_bounded_and_settled_deliveries_are_kept_for_a_while(api: Any, receiver: Receiver) -> None:
    settings = allow(api, webhook_keep_s=3600)
    hook = add(api.client, receiver.url).get_json()
    answers = [api.client.post(f"/api/v1/webhooks/{hook['id']}/test").status_code for _ in range(6)]
    assert answers == [202] * 5 + [429] and WebhookDelivery.select().count() == 5
    pending, settled, old = (row.id for row in WebhookDelivery.select().order_by(WebhookDelivery.id).limit(3))
    WebhookDelivery.update(status="succeeded", created_at=WebhookDelivery.created_at - 3599).where(WebhookDelivery.id == settled).execute()
    WebhookDelivery.update(status="failed", created_at=WebhookDelivery.created_at - 3700).where(WebhookDelivery.id == old).execute()
    WebhookDelivery.update(created_at=WebhookDelivery.created_at - 9999).where(WebhookDelivery.id == pending).execute()
    assert webhooks.prune(settings, time.time()) == 1
    assert {row.id for row in WebhookDelivery.select()} >= {pending, settled} and WebhookDelivery.get_or_none(id=old) is None


def test_a_receiver_that_hangs_holds_up_neither_the_state_machine_nor_other_deliveries(api: Any, receiver: Receiver) -> None:
    settings = allow(api, webhook_read_timeout_s=300)
    receiver.plan = ["hang"]
    add(api.client, receiver.url, events=["*"])
    transitions.queue(run_first := Execution.create(service=Service.create(name="s2", architecture="sleep"), function="noop",
                                                    timeout_s=60, drain_time_s=5, on_reset="rerun").id)
    running = deliverer(settings)
    try:
        wait_until(receiver.hanging.is_set, what="the receiver to hold the first delivery")
        transitions.claim(run_first, 1, "instance-1")
        finished = transitions.finish(run_first, 1, S.SUCCESS, "done")
        assert finished.status == S.SUCCESS and receiver.hanging.is_set()
        wait_until(lambda: receiver.of("execution.success"), what="the end event, past the held one")
        assert receiver.hanging.is_set()
    finally:
        receiver.release.set()
        running.stop()


def test_a_real_training_fires_its_end_event_through_the_cli_while_a_receiver_hangs(stack_settings: Settings) -> None:
    from trainfaas.services.local.stack import Stack

    settings = stack_settings.model_copy(update={**FAST, "webhook_read_timeout_s": 300})
    with Receiver(["hang"]) as receiver, Stack(settings) as stack:
        env = {"TRAINFAAS_HOME": str(settings.home), "TRAINFAAS_API_URL": settings.api_url, "COLUMNS": "160",
               "TRAINFAAS_WEBHOOK_SECRET": SECRET}

        def cli(*args: str) -> str:
            result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
            assert result.exit_code == 0, result.output
            return result.output

        hook = json.loads(cli("webhooks", "add", receiver.url, "-e", "*", "--json"))
        client = stack.admin_client()
        started = json.loads(cli("train", "-a", "sleep", "-c", "seconds=0.1", "-c", "steps=2", "--json"))
        assert client.wait(started["id"], timeout_s=300)["status"] == "success"
        assert receiver.hanging.is_set()  # the first event's receiver still holds it: the training did not wait
        wait_until(lambda: receiver.of("execution.success"), timeout_s=60, what="the end event")
        ended = receiver.of("execution.success")[0]
        assert verify(SECRET, ended["headers"]["X-Trainfaas-Signature"], ended["body"])
        assert json.loads(ended["body"])["data"]["execution"]["id"] == started["id"]
        receiver.release.set()
        wait_until(lambda: all(d["status"] == "succeeded" for d in client.webhook_deliveries(hook["id"])), what="every delivery")
        assert "succeeded" in cli("webhooks", "deliveries", hook["id"]) and receiver.url in cli("webhooks", "list")
        assert "queued" in cli("webhooks", "test", hook["id"])
        assert "execution.failed -> " in cli("webhooks", "update", hook["id"], "-e", "execution.failed")
        assert client.get_webhook(hook["id"])["events"] == ["execution.failed"] and "secret" not in client.get_webhook(hook["id"])
        assert hook["id"] in cli("webhooks", "show", hook["id"][:8]) and "deleted" in cli("webhooks", "delete", hook["id"])
        assert client.list_webhooks() == []


def test_a_webhook_with_a_backlog_at_a_hanging_receiver_takes_only_its_turn(api: Any, receiver: Receiver) -> None:
    settings = allow(api, webhook_read_timeout_s=300, webhook_workers=2)
    receiver.plan = ["hang"] * 40
    add(api.client, receiver.url, events=["*"])
    for _ in range(5):
        run_to_success()  # 15 deliveries to the hanging receiver, due before the one below
    with Receiver() as healthy:
        add(api.client, healthy.url)
        run_to_success()
        running = deliverer(settings)
        try:
            wait_until(lambda: healthy.of("execution.success"), what="the other webhook's delivery, past the backlog")
            assert receiver.hanging.is_set() and WebhookDelivery.select().where(WebhookDelivery.status == "pending").count() == 18
        finally:
            receiver.release.set()
            running.stop()
