"""Data set readers stay inside the data set: no symlink or data.yaml key leads them out, no error quotes a file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trainfaas.adapters.confine import shown, walk_budget
from trainfaas.adapters.datasets import count_images
from trainfaas.adapters.masks import read_image_mask
from trainfaas.adapters.text_datasets import read_conll_dataset, read_text_dataset
from trainfaas.adapters.yolo_data import read_dataset
from trainfaas.services.core.errors import DatasetError

SECRET = "tf_the-admin-token-nobody-may-read"


def _secret(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "admin-token").write_text(SECRET + "\n")
    return home / "admin-token"


def _told(error: DatasetError) -> str:
    return error.message + json.dumps(error.fields)


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    return root


@pytest.mark.parametrize(("reader", "names"), [(read_conll_dataset, ("train.txt", "validation.txt")),
                                               (read_text_dataset, ("train.csv", "validation.csv"))])
def test_text_files_linked_to_a_secret_outside_are_refused_without_its_content(tmp_path: Path, reader: Any,
                                                                                names: tuple[str, str]) -> None:
    secret, root = _secret(tmp_path), tmp_path / "data" / "x"
    root.mkdir(parents=True)
    for name in names:
        (root / name).symlink_to(secret)
    with pytest.raises(DatasetError) as caught:
        reader(root)
    assert names[0] in caught.value.message and "outside" in caught.value.message
    assert SECRET not in _told(caught.value)


def _digits_like(root: Path) -> Path:
    return _tree(root, {f"{subset}/{label}/{i}.png": "png" for subset in ("train", "validation") for label in "ab" for i in range(2)})


def test_an_image_folder_with_an_image_or_a_folder_linked_outside_is_refused(tmp_path: Path) -> None:
    root = _digits_like(tmp_path / "data" / "x")
    other = _digits_like(tmp_path / "data" / "other")
    (root / "train" / "a" / "inside.png").symlink_to(root / "train" / "b" / "0.png")  # a link inside stays allowed
    assert count_images(root)["train"] == {"a": 3, "b": 2}
    (root / "train" / "a" / "evil.png").symlink_to(_secret(tmp_path))
    with pytest.raises(DatasetError, match="train/a/evil.png leads outside") as caught:
        count_images(root)
    assert SECRET not in _told(caught.value)
    (root / "train" / "a" / "evil.png").unlink()
    (root / "validation" / "c").symlink_to(other / "validation" / "a")  # another data set
    with pytest.raises(DatasetError, match="validation/c leads outside"):
        count_images(root)


def _yolo(root: Path, data_yaml: str) -> Path:
    files = {"data.yaml": data_yaml}
    for subset in ("train", "validation"):
        files |= {f"images/{subset}/{i}.png": "png" for i in range(2)}
        files |= {f"labels/{subset}/{i}.txt": "0 0.5 0.5 0.1 0.1\n" for i in range(2)}
    return _tree(root, files)


@pytest.mark.parametrize(("data_yaml", "key"), [
    ("path: /\nnames: [a]\n", "data.yaml path"),
    ("path: ..\nnames: [a]\n", "data.yaml path"),
    ("train: ../../x\nnames: [a]\n", "data.yaml train"),
    ("train: /etc\nnames: [a]\n", "data.yaml train"),
    ("path: images\nval: ../../other/images\nnames: [a]\n", "data.yaml val"),
    ("test: images/../../../x\nnames: [a]\n", "data.yaml test"),
])
def test_a_data_yaml_key_leading_outside_is_refused_before_any_walk(tmp_path: Path, data_yaml: str, key: str) -> None:
    root = _yolo(tmp_path / "data" / "x", data_yaml)
    _yolo(tmp_path / "data" / "other", "names: [a]\n")
    with walk_budget(2, 60.0), pytest.raises(DatasetError) as caught:  # two touches: the walk never starts
        read_dataset(root)
    assert key in caught.value.message and key in caught.value.fields["dataset"]


def test_a_yolo_label_file_or_data_yaml_linked_outside_is_refused(tmp_path: Path) -> None:
    root = _yolo(tmp_path / "data" / "x", "names: [a]\n")
    assert read_dataset(root).names == ["a"]
    (root / "labels" / "train" / "1.txt").unlink()
    (root / "labels" / "train" / "1.txt").symlink_to(_secret(tmp_path))
    with pytest.raises(DatasetError, match="labels/train/1.txt leads outside") as caught:
        read_dataset(root)
    assert SECRET not in _told(caught.value)
    (root / "data.yaml").unlink()
    (root / "data.yaml").symlink_to(_secret(tmp_path))
    with pytest.raises(DatasetError, match="data.yaml leads outside"):
        read_dataset(root)


def test_an_image_mask_labels_file_linked_outside_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "data" / "x"
    root.mkdir(parents=True)
    (root / "labels.json").symlink_to(_secret(tmp_path))
    with pytest.raises(DatasetError, match="labels.json leads outside") as caught:
        read_image_mask(root)
    assert SECRET not in _told(caught.value)


@pytest.mark.parametrize(("reader", "files", "told"), [
    (read_conll_dataset, {"train.conll": "Ann B-PER\n" + SECRET + "\n", "validation.conll": "Ann B-PER\n"}, "train.conll line 2"),
    (read_text_dataset, {"train.csv": SECRET + ",x\na,b\n", "validation.csv": "text,label\na,b\n"}, "train.csv line 1"),
    (read_text_dataset, {"train.jsonl": '{"text": "a", "label": "b"}\n{' + SECRET + "\n", "validation.jsonl": '{"text": "a", "label": "b"}\n'},
     "train.jsonl line 2"),
    (read_text_dataset, {"train.jsonl": "[" * 100_000 + "]" * 100_000 + "\n", "validation.jsonl": '{"text": "a", "label": "b"}\n'},
     "train.jsonl line 1 is not JSON"),
])
def test_a_malformed_line_is_named_by_file_and_number_never_quoted(tmp_path: Path, reader: Any, files: dict[str, str], told: str) -> None:
    root = _tree(tmp_path / "data", files)
    with pytest.raises(DatasetError, match=told) as caught:
        reader(root)
    assert SECRET not in _told(caught.value) and "the-admin" not in _told(caught.value)


def test_a_check_past_its_file_or_time_budget_is_refused(tmp_path: Path) -> None:
    root = _digits_like(tmp_path / "data" / "x")
    with walk_budget(5, 60.0), pytest.raises(DatasetError, match="more than 5 files") as caught:
        count_images(root)
    assert "TRAINFAAS_DATASET_CHECK_MAX_FILES" in caught.value.fields["dataset"]
    with walk_budget(10**6, 0.0), pytest.raises(DatasetError, match="ran past 0 s") as caught:
        count_images(root)
    assert "TRAINFAAS_DATASET_CHECK_SECONDS" in caught.value.fields["dataset"]
    assert count_images(root)["validation"] == {"a": 2, "b": 2}  # outside a budget nothing is counted


def test_names_read_from_a_data_set_are_escaped_and_cut_short() -> None:
    assert shown(["a", "b\nc"]) == "a, b\\x0ac"
    assert shown(["x" * 100]) == "x" * 39 + "…"
    assert shown([str(i) for i in range(25)]).endswith("19 and 5 more")


def test_a_training_on_a_data_set_linking_to_the_admin_token_answers_422_without_it(api: Any) -> None:
    secret = api.settings.admin_token_path
    secret.write_text(api.admin_token)
    root = Path(api.settings.data_roots) / "x"
    root.mkdir(parents=True)
    for name in ("train.txt", "validation.txt"):
        (root / name).symlink_to(secret)
    model = api.client.post("/api/v1/models", json={"name": "m", "architecture": "bert-tiny-ner"}).get_json()
    response = api.client.post(f"/api/v1/models/{model['id']}/train", json={"dataset": "x"})
    assert response.status_code == 422 and "dataset" in response.get_json()["error"]["fields"]
    assert api.admin_token not in response.get_data(as_text=True) and "train.txt" in response.get_data(as_text=True)
    assert not api.redis.keys("rq:queue:*")


def test_a_training_image_folder_refuses_a_nested_image_linked_outside(tmp_path: Path) -> None:
    from trainfaas.adapters.classification_images import LabelledImageFolder

    root = _digits_like(tmp_path / "data" / "x")
    assert len(LabelledImageFolder(root / "train", ["a", "b"], {"a": 0, "b": 1}, None)) == 4
    (root / "train" / "a" / "loop").symlink_to(root / "train")  # inside, but a cycle: not walked into
    assert len(LabelledImageFolder(root / "train", ["a", "b"], {"a": 0, "b": 1}, None)) == 4
    (root / "train" / "a" / "deeper").mkdir()
    (root / "train" / "a" / "deeper" / "evil.png").symlink_to(_secret(tmp_path))
    assert count_images(root)["train"] == {"a": 2, "b": 2}  # the check counts the label folder's own images
    with pytest.raises(DatasetError, match="train/a/deeper/evil.png leads outside") as caught:
        LabelledImageFolder(root / "train", ["a", "b"], {"a": 0, "b": 1}, None)
    assert SECRET not in _told(caught.value)


@pytest.mark.parametrize(("reader", "files"), [
    (read_conll_dataset, {"train.conll": "Ann B-PER\n" * 100, "validation.conll": "Ann B-PER\n"}),
    (read_text_dataset, {"train.csv": "text,label\n" + "a,b\n" * 100, "validation.csv": "text,label\na,b\n"}),
    (read_text_dataset, {"train.jsonl": '{"text": "a", "label": "b"}\n' * 100, "validation.jsonl": '{"text": "a", "label": "b"}\n'}),
])
def test_a_long_text_file_is_refused_once_the_checks_seconds_are_spent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       reader: Any, files: dict[str, str]) -> None:
    import trainfaas.adapters.confine as confine

    ticks = iter(range(10**6))
    monkeypatch.setattr(confine, "_clock", lambda: float(next(ticks)))  # a clock one second per reading
    root = _tree(tmp_path / "data", files)
    with walk_budget(10**6, 30.0), pytest.raises(DatasetError, match="ran past 30 s"):
        reader(root)
    with walk_budget(10**6, 10**7):
        reader(root)


def test_a_training_on_a_data_set_beyond_the_checks_file_budget_answers_422(api: Any) -> None:
    _digits_like(Path(api.settings.data_roots) / "x")
    model = api.client.post("/api/v1/models", json={"name": "m", "architecture": "resnet18"}).get_json()
    api.settings.dataset_check_max_files = 5  # the app's own settings object
    response = api.client.post(f"/api/v1/models/{model['id']}/train", json={"dataset": "x"})
    assert response.status_code == 422 and "TRAINFAAS_DATASET_CHECK_MAX_FILES" in response.get_json()["error"]["fields"]["dataset"]
    assert not api.redis.keys("rq:queue:*")
    api.settings.dataset_check_max_files = 200_000
    assert api.client.post(f"/api/v1/models/{model['id']}/train", json={"dataset": "x"}).status_code == 202


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [*{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True))


@pytest.mark.parametrize(("data_yaml", "problem"), [
    (LAUGHS + "names: [*i]\n", "names must be strings"),  # 10^9 names were they written out
    (LAUGHS + "names: {0: *i}\n", "names must be strings"),
    ("names: [a]\n" + "# padding\n" * 120_000, "larger than 1048576 bytes"),
    ("names: [a]\ntest: [images/train, ../other]\n", "data.yaml test"),
])
def test_a_data_yaml_too_large_or_with_names_that_are_not_strings_is_refused_unread(tmp_path: Path, data_yaml: str, problem: str) -> None:
    root = _yolo(tmp_path / "data" / "x", data_yaml)
    with pytest.raises(DatasetError, match=problem):
        read_dataset(root)


def test_an_image_mask_labels_file_too_large_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data" / "x", {"labels.json": json.dumps({"labels": ["a"], "pad": "x" * 2**20})})
    with pytest.raises(DatasetError, match="labels.json is larger than"):
        read_image_mask(root)


def test_a_data_yaml_naming_folders_inside_the_data_set_is_read(tmp_path: Path) -> None:
    root = _yolo(tmp_path / "data" / "x", "path: .\ntrain: images/../images/train\nval: images/validation\n"
                                          "test: [images/train, images/validation]\nnames: {0: a}\n")
    assert read_dataset(root).image_dirs["val"] == root.resolve() / "images" / "validation"


def test_a_deeply_nested_data_yaml_or_labels_json_is_a_dataset_error(tmp_path: Path) -> None:
    root = _yolo(tmp_path / "data" / "x", "names: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(DatasetError, match="data.yaml cannot be read"):
        read_dataset(root)
    (root / "labels.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DatasetError, match="labels.json is not readable JSON"):
        read_image_mask(root)


def test_a_mask_larger_than_pillow_opens_safely_is_a_dataset_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from trainfaas.adapters.shapes import write_shapes

    root = Path(write_shapes(tmp_path / "shapes", train_images=4, validation_images=2, image_size=32)["path"])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 32x32 is then more than twice the limit
    with pytest.raises(DatasetError, match="more pixels than Pillow opens safely"):
        read_image_mask(root)


@pytest.mark.parametrize(("reader", "name"), [(read_conll_dataset, "train.conll"), (read_text_dataset, "train.csv"),
                                              (read_dataset, "data.yaml"), (read_image_mask, "labels.json")])
def test_a_file_swapped_for_a_link_outside_after_its_check_is_refused_once_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                                   reader: Any, name: str) -> None:
    from trainfaas.adapters import confine, masks, text_datasets, yolo_data

    root = tmp_path / "data" / "x"
    root.mkdir(parents=True)
    for file in {name, name.replace("train", "validation")}:
        (root / file).symlink_to(_secret(tmp_path))
    for module in (confine, masks, text_datasets, yolo_data):  # the checks passed; then the file was swapped
        monkeypatch.setattr(module, "confined", lambda root, path: path)
    with pytest.raises(DatasetError, match=f"{name} leads outside") as caught:
        reader(root)
    assert SECRET not in _told(caught.value)


@pytest.mark.parametrize("dataset", ["~no-such-user-of-this-machine/data", "loop/inside"])
def test_a_data_set_naming_an_unknown_users_home_or_a_loop_of_links_answers_422(api: Any, dataset: str) -> None:
    root = Path(api.settings.data_roots)
    (root / "loop").mkdir(parents=True)
    (root / "loop" / "inside").symlink_to(root / "loop" / "inside")  # a link to itself: no directory at its end
    model = api.client.post("/api/v1/models", json={"name": "m", "architecture": "bert-tiny-ner"}).get_json()
    response = api.client.post(f"/api/v1/models/{model['id']}/train", json={"dataset": dataset})
    assert response.status_code == 422 and "dataset" in response.get_json()["error"]["fields"]
    assert not api.redis.keys("rq:queue:*")
