"""The web UI's pages for data sets, webhooks, evaluation and prediction over plain HTTP (Flask's
client on the real app, database and Redis): each form works with its CSRF token and is refused
without it, a bad value is named next to its field, and a read token sees no button that would fail."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from tests.test_ui_http import csrf_of, sign_in, tokens_of
from trainfaas.services.store.records import Dataset, Webhook


def write_folder(root: Path, name: str, labels: dict[str, int]) -> Path:
    """An image-folder data set of tiny images: ``count`` of them under train/<label> for each label."""
    for label, count in labels.items():
        (root / name / "train" / label).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            Image.new("L", (4, 4), index * 40).save(root / name / "train" / label / f"{index}.png")
    return root / name


def test_data_sets_are_registered_versioned_compared_and_deleted_from_their_pages(api: Any) -> None:
    root = Path(api.settings.dataset_roots[0])
    folder = write_folder(root, "pets", {"cat": 2, "dog": 1})
    tokens = tokens_of(api, "a")
    client = sign_in(api, tokens["write"])
    page = client.get("/ui/datasets")
    assert page.status_code == 200 and "register-form" in page.text
    assert client.post("/ui/datasets", data={"name": "pets", "path": "pets"}).status_code == 403  # no CSRF token
    refused = client.post("/ui/datasets", data={"csrf": csrf_of(page.text), "name": "bad name!", "path": "pets"})
    assert refused.status_code == 422 and 'class="field-error"' in refused.text and Dataset.select().count() == 0
    done = client.post("/ui/datasets", data={"csrf": csrf_of(page.text), "name": "pets", "path": "pets", "task": "classification"})
    assert done.status_code == 302 and "/ui/datasets/" in done.headers["Location"]
    shown = client.get(done.headers["Location"])
    assert shown.status_code == 200 and 'data-version="1"' in shown.text and "cat" in shown.text and "Registered" in shown.text
    dataset_id = Dataset.get().id
    write_folder(root, "pets", {"bird": 1})
    (folder / "train" / "dog" / "0.png").unlink()
    taken = client.post(f"/ui/datasets/{dataset_id}/versions", data={"csrf": csrf_of(shown.text)})
    assert taken.status_code == 302 and "version=new" in taken.headers["Location"]
    compared = client.get(f"/ui/datasets/{dataset_id}?from=1&to=2")
    assert compared.status_code == 200 and "labels added: bird" in " ".join(compared.text.split())
    assert client.get(f"/ui/datasets/{dataset_id}?from=1&to=nosuch").status_code == 404
    assert "v2" in client.get("/ui/datasets").text
    named = client.post(f"/ui/datasets/{dataset_id}/aliases", data={"csrf": csrf_of(shown.text), "alias": "train", "version": "1"})
    assert named.status_code == 302 and "train → v1" in client.get(named.headers["Location"]).text
    bad = client.post(f"/ui/datasets/{dataset_id}/aliases", data={"csrf": csrf_of(shown.text), "alias": "train", "version": "x"})
    assert bad.status_code == 422 and "version" in bad.text
    assert client.post(f"/ui/datasets/{dataset_id}/aliases/train/delete", data={"csrf": csrf_of(shown.text)}).status_code == 302
    assert "train → v1" not in client.get(f"/ui/datasets/{dataset_id}").text
    reader = sign_in(api, tokens["read"])
    for path in ("/ui/datasets", f"/ui/datasets/{dataset_id}"):
        text = reader.get(path).text
        assert "pets" in text and "register-form" not in text and "data-action" not in text and "data-confirm" not in text, path
    assert reader.post(f"/ui/datasets/{dataset_id}/delete", data={"csrf": csrf_of(reader.get("/ui/datasets").text)}).status_code == 403
    assert client.post(f"/ui/datasets/{dataset_id}/delete", data={"csrf": csrf_of(shown.text)}).status_code == 302
    assert Dataset.select().count() == 0 and "/ui/datasets/" + dataset_id not in client.get("/ui/datasets").text


def test_webhooks_are_created_pinged_and_deleted_from_their_page(api: Any) -> None:
    tokens = tokens_of(api, "a")
    client = sign_in(api, tokens["write"])
    page = client.get("/ui/webhooks")
    assert page.status_code == 200 and "webhook-form" in page.text
    form = {"csrf": csrf_of(page.text), "url": "https://hooks.example.com/trainfaas", "secret": "s" * 20, "events": ["execution.failed"]}
    assert client.post("/ui/webhooks", data={**form, "csrf": ""}).status_code == 403
    refused = client.post("/ui/webhooks", data={**form, "url": "http://127.0.0.1/hook"})
    assert refused.status_code == 422 and "not a public address" in refused.text and "s" * 20 not in refused.text
    assert client.post("/ui/webhooks", data=form).status_code == 302
    hook = Webhook.get()
    assert hook.project == "a" and hook.events == ["execution.failed"]
    assert client.post(f"/ui/webhooks/{hook.id}/test", data={"csrf": form["csrf"]}).status_code == 302
    listed = client.get("/ui/webhooks")
    assert "hooks.example.com" in listed.text and 'data-status="pending"' in listed.text and ">ping<" in listed.text
    reader = sign_in(api, tokens["read"]).get("/ui/webhooks").text
    assert "hooks.example.com" in reader and "data-action" not in reader and "webhook-form" not in reader
    assert client.post(f"/ui/webhooks/{hook.id}/delete", data={"csrf": form["csrf"]}).status_code == 302
    assert Webhook.select().count() == 0


def test_predict_and_evaluate_forms_name_what_is_wrong(api: Any) -> None:
    tokens = tokens_of(api, "a")
    writer = api.as_(tokens["write"])
    model = writer.post("/api/v1/models", json={"name": "sleeper", "architecture": "sleep"}).get_json()
    client = sign_in(api, tokens["write"])
    page = client.get(f"/ui/models/{model['id']}")
    assert page.status_code == 200 and "predict-form" not in page.text  # not trained: nothing to predict with
    csrf = csrf_of(page.text)
    assert client.post(f"/ui/models/{model['id']}/predict", data={"kind": "text", "inputs": "hello"}).status_code == 403
    untrained = client.post(f"/ui/models/{model['id']}/predict", data={"csrf": csrf, "kind": "text", "inputs": "hello"})
    assert untrained.status_code == 409 and "role=\"alert\"" in untrained.text and "trained" in untrained.text
    empty = client.post(f"/ui/models/{model['id']}/predict", data={"csrf": csrf, "kind": "text", "inputs": " \n "})
    assert empty.status_code == 422 and "inputs" in empty.text
    bad_k = client.post(f"/ui/models/{model['id']}/evaluate", data={"csrf": csrf, "dataset": "", "subset": "validation"})
    assert bad_k.status_code == 422 and "dataset" in bad_k.text
