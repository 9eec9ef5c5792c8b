"""Importing a transformers model folder: a BERT text classifier's and a token classifier's folder
(config.json, model.safetensors, tokenizer.json) inside the data roots becomes a pre-trained model
whose adapter loads and predicts; a folder of another size is refused naming the first layer; a
pytorch_model.bin whose unpickling would run code is refused and does not run; entity types that
do not give the head's tags in order are refused naming labels. Nothing is downloaded."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from trainfaas.adapters.text_datasets import bio_tags
from trainfaas.adapters.transformers_text import TextClassification, TokenClassification, bert_config, train_tokenizer
from trainfaas.services.store.records import Model

# What is checked here is the adapter's reading of a folder: one database and one Redis are enough
# (tests/test_model_import.py runs the import endpoint on every pair).
pytestmark = [pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
              pytest.mark.parametrize("redis_url", ["embedded"], indirect=True)]

TEXTS = ["the cat sat on the mat", "a dog ran in the park", "birds sing at dawn", "the owl hunts at night"]


def model_folder(root: Path, adapter_cls: Any, architecture: str, outputs: list[str], vocab_size: int = 120) -> Path:
    folder = root / "data" / f"{architecture}-import"
    tokenizer = train_tokenizer(TEXTS, vocab_size, lowercase=True, max_length=32)
    model = adapter_cls.model_class()(bert_config(architecture, len(tokenizer), outputs))
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder


def test_a_text_classifier_folder_becomes_a_pre_trained_model_that_predicts(api: Any, no_network: list[str]) -> None:
    model_folder(Path(api.settings.home), TextClassification, "bert-tiny", ["neg", "pos"])
    response = api.client.post("/api/v1/models/import", json={"architecture": "bert-tiny", "path": "bert-tiny-import", "name": "sentiment"})
    assert response.status_code == 201, response.get_json()
    model = response.get_json()
    assert model["status"] == "pre-trained" and model["labels"] == ["neg", "pos"]
    adapter = TextClassification("bert-tiny")
    adapter.load(Path(model["artifact_path"]))
    (prediction,) = adapter.predict(["the cat sat"])
    assert prediction["label"] in ("neg", "pos")
    assert no_network == []


def test_a_token_classifier_folder_takes_its_entity_types_from_the_head(api: Any) -> None:
    model_folder(Path(api.settings.home), TokenClassification, "bert-tiny-ner", bio_tags(["PER", "LOC"]))
    response = api.client.post("/api/v1/models/import", json={"architecture": "bert-tiny-ner", "path": "bert-tiny-ner-import"})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["labels"] == ["PER", "LOC"]
    refused = api.client.post("/api/v1/models/import", json={"architecture": "bert-tiny-ner", "path": "bert-tiny-ner-import",
                                                             "labels": ["PER", "LOC", "ORG"]})
    assert refused.status_code == 422 and "labels" in refused.get_json()["error"]["fields"]


def test_a_folder_of_another_size_is_refused_naming_the_first_layer_and_leaves_nothing(api: Any) -> None:
    model_folder(Path(api.settings.home), TextClassification, "bert-mini", ["a", "b"])
    (Path(api.settings.home) / "data" / "bert-mini-import").rename(Path(api.settings.home) / "data" / "other")
    response = api.client.post("/api/v1/models/import", json={"architecture": "bert-tiny", "path": "other"})
    assert response.status_code == 422
    assert "expected shape" in response.get_json()["error"]["fields"]["weights"]
    assert Model.select().count() == 0


class Plant:
    def __reduce__(self) -> Any:
        return (Path.touch, (Path("/tmp/trainfaas-import-ran-code"),))


def test_a_pickled_weights_file_that_would_run_code_is_refused_and_does_not_run(api: Any) -> None:
    folder = model_folder(Path(api.settings.home), TextClassification, "bert-tiny", ["a", "b"])
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"model": Plant()}))
    marker = Path("/tmp/trainfaas-import-ran-code")
    marker.unlink(missing_ok=True)
    response = api.client.post("/api/v1/models/import", json={"architecture": "bert-tiny", "path": "bert-tiny-import"})
    assert response.status_code == 422 and "weights" in response.get_json()["error"]["fields"]
    assert not marker.exists()


@pytest.mark.parametrize("remove, says", [("tokenizer.json", "tokenizer.json"), ("config.json", "config.json")])
def test_a_folder_without_its_tokenizer_or_config_is_refused(api: Any, remove: str, says: str) -> None:
    folder = model_folder(Path(api.settings.home), TextClassification, "bert-tiny", ["a", "b"])
    (folder / remove).unlink()
    response = api.client.post("/api/v1/models/import", json={"architecture": "bert-tiny", "path": "bert-tiny-import"})
    assert response.status_code == 422 and says in response.get_json()["error"]["message"]
