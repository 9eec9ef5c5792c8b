"""The transformers text and token classification adapters, their data sets and their samples.

Trainings use small cuts of the bundled samples and a few optimizer steps of bert-tiny with a
small vocabulary, so that each takes seconds on a small CPU; the figures they reach are not
checked here (tests/perf/bench_text.py measures those on the full samples).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.adapter_support import StopAfter, events
from tests.conftest import wait_until
from trainfaas.adapters import NullContext
from trainfaas.adapters.catalog import catalog
from trainfaas.adapters.datasets import sample_writer
from trainfaas.adapters.text_datasets import read_conll_dataset, read_text_dataset
from trainfaas.adapters.text_samples import write_ner, write_text
from trainfaas.adapters.transformers_text import TextClassification, TokenClassification
from trainfaas.services.core.errors import AdapterError, DatasetError
from trainfaas.services.sdk.client import ApiError

TINY = {"max_steps": 6, "eval_steps": 2, "save_steps": 3, "batch_size": 16, "vocab_size": 300, "max_length": 32}
TEXT_FIGURES = {("loss", "train"), ("loss", "val"), ("accuracy", "val"), ("f1", "val")}
NER_FIGURES = {("loss", "train"), ("loss", "val"), ("precision", "val"), ("recall", "val"), ("f1", "val")}


@pytest.fixture(scope="module")
def text_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(write_text(tmp_path_factory.mktemp("sample") / "text", train_examples=160, validation_examples=40)["path"])


@pytest.fixture(scope="module")
def ner_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(write_ner(tmp_path_factory.mktemp("sample") / "ner", train_examples=120, validation_examples=30)["path"])


def train(adapter_class: type, architecture: str, data: Path, output: Path, context: NullContext, **options: Any) -> tuple[Any, dict]:
    adapter = adapter_class(architecture, configuration={**TINY, **options}, context=context)
    return adapter, adapter.train(data, output, **adapter.configuration)


# ---- samples and data sets ---------------------------------------------------------------------


def test_the_samples_are_written_once_and_read_as_valid_data_sets(tmp_path: Path) -> None:
    text = write_text(tmp_path / "text")
    ner = write_ner(tmp_path / "ner")
    assert sample_writer("text") is write_text and sample_writer("ner") is write_ner

    labels, subsets = read_text_dataset(tmp_path / "text")
    assert labels == text["labels"] == ["product", "sports", "travel", "weather"]
    assert [len(subsets[s]) for s in ("train", "validation")] == [1200, 300]
    assert {label for _, label in subsets["validation"]} == set(labels)
    types, sentences = read_conll_dataset(tmp_path / "ner")
    assert types == ner["labels"] == ["LOC", "ORG", "PER"]
    assert [len(sentences[s]) for s in ("train", "validation")] == [1000, 250]
    train_words = {token for tokens, _ in sentences["train"] for token in tokens}
    validation_names = {token for tokens, tags in sentences["validation"] for token, tag in zip(tokens, tags, strict=True) if tag != "O"}
    assert validation_names - train_words, "some validation names must be unseen in training"

    before = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*")}
    assert write_text(tmp_path / "text") == text and write_ner(tmp_path / "ner") == ner
    assert {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*")} == before
    assert write_text(tmp_path / "other", seed=1)["path"] == str(tmp_path / "other")
    assert (tmp_path / "other" / "train.csv").read_text() != (tmp_path / "text" / "train.csv").read_text()


def _files(root: Path, files: dict[str, str]) -> Path:
    root.mkdir()
    for name, content in files.items():
        (root / name).write_text(content)
    return root


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        (None, "does not exist"),
        ({"validation.csv": "text,label\na,x\n"}, "no train.csv or train.jsonl"),
        ({"train.csv": "text,label\na,x\n"}, "no validation.csv or validation.jsonl"),
        ({"train.csv": "sentence,class\na,x\n", "validation.csv": "text,label\na,x\n"}, "columns text and label"),
        ({"train.csv": "text,label\n", "validation.csv": "text,label\na,x\n"}, "train.csv has no examples"),
        ({"train.csv": "text,label\na,\n", "validation.csv": "text,label\na,x\n"}, "without a label"),
        ({"train.jsonl": '{"text": "a", "label": "x"}\nnot json\n', "validation.jsonl": '{"text": "a", "label": "x"}\n'}, "line 2 is not JSON"),
        ({"train.jsonl": '{"text": "a"}\n', "validation.jsonl": '{"text": "a", "label": "x"}\n'}, "line 1 needs"),
        ({"train.csv": "text,label\na,x\n", "validation.csv": "text,label\na,y\n"}, "labels that train lacks: y"),
    ],
)
def test_a_malformed_text_data_set_is_refused_naming_the_file_and_the_layout(tmp_path: Path, files: dict[str, str] | None, problem: str) -> None:
    root = tmp_path / "data" if files is None else _files(tmp_path / "data", files)
    with pytest.raises(DatasetError, match=problem) as caught:
        TextClassification.check_dataset(root, {})
    assert "train.csv and <data set>/validation.csv" in caught.value.message and caught.value.fields["dataset"]


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        (None, "does not exist"),
        ({"validation.conll": "Ann B-PER\n"}, "no train.conll or train.txt"),
        ({"train.conll": "Ann B-PER\n", "validation.conll": "\n\n"}, "validation.conll has no sentences"),
        ({"train.conll": "Ann\n", "validation.conll": "Ann B-PER\n"}, "line 1 is not 'token TAG'"),
        ({"train.conll": "Ann PERSON\n", "validation.conll": "Ann B-PER\n"}, "with a BIO tag"),
        ({"train.conll": "Ann O\n", "validation.conll": "Ann O\n"}, "only O"),
        ({"train.txt": "Ann B-PER\n", "validation.txt": "Rome B-LOC\n"}, "types that train lacks: LOC"),
    ],
)
def test_a_malformed_conll_data_set_is_refused_naming_the_file_and_the_layout(tmp_path: Path, files: dict[str, str] | None, problem: str) -> None:
    root = tmp_path / "data" if files is None else _files(tmp_path / "data", files)
    with pytest.raises(DatasetError, match=problem) as caught:
        TokenClassification.check_dataset(root, {})
    assert "train.conll and <data set>/validation.conll" in caught.value.message and caught.value.fields["dataset"]


def test_a_label_subset_keeps_only_its_labels_and_an_unknown_label_is_refused(text_data: Path, ner_data: Path) -> None:
    assert TextClassification.check_dataset(text_data, {"labels": ["weather", "sports"]}) == ["weather", "sports"]
    _, subsets = read_text_dataset(text_data, ["weather", "sports"])
    assert {label for s in subsets.values() for _, label in s} == {"weather", "sports"}
    assert TokenClassification.check_dataset(ner_data, {"labels": ["PER"]}) == ["PER"]
    _, sentences = read_conll_dataset(ner_data, ["PER"])
    assert {tag for s in sentences.values() for _, tags in s for tag in tags} == {"O", "B-PER", "I-PER"}
    for adapter, data in ((TextClassification, text_data), (TokenClassification, ner_data)):
        with pytest.raises(DatasetError) as caught:
            adapter.check_dataset(data, {"labels": ["volcano"]})
        assert "volcano" in caught.value.message and set(caught.value.fields) == {"configuration.labels"}


def test_checking_a_data_set_imports_neither_torch_nor_transformers(text_data: Path, ner_data: Path) -> None:
    script = (
        "import sys; from trainfaas.adapters.catalog import get_adapter\n"
        f"print(get_adapter('bert-tiny').check_dataset({str(text_data)!r}, {{}}))\n"
        f"print(get_adapter('bert-base-ner').check_dataset({str(ner_data)!r}, {{}}))\n"
        "print(sorted(m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert result.stdout.split("\n")[:3] == ["['product', 'sports', 'travel', 'weather']", "['LOC', 'ORG', 'PER']", "[]"]


# ---- options and catalog --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configuration", "field"),
    [
        ({"epoch": 3}, "epoch"),
        ({"epochs": 0}, "epochs"),
        ({"max_steps": 0}, "max_steps"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"lr_scheduler_type": "exponential"}, "lr_scheduler_type"),
        ({"warmup_ratio": 1.0}, "warmup_ratio"),
        ({"max_length": 4}, "max_length"),
        ({"vocab_size": 10}, "vocab_size"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"labels": []}, "labels"),
        ({"labels": ["a", "a"]}, "labels"),
    ],
)
@pytest.mark.parametrize("adapter", [TextClassification, TokenClassification])
def test_bad_options_are_refused_naming_the_field(adapter: type, configuration: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        adapter.validate_configuration(configuration)
    assert [error["loc"][:1] for error in caught.value.errors()] == [(field,)]


def test_every_option_is_described_and_every_size_is_in_the_catalog() -> None:
    for adapter in (TextClassification, TokenClassification):
        properties = adapter.options_schema()["properties"]
        assert {name for name, schema in properties.items() if not schema.get("description")} == set()
    entries = catalog()
    assert {name: entries[name].task for name in ("bert-tiny", "bert-base", "bert-mini-ner", "bert-small-ner")} == {
        "bert-tiny": "text-classification", "bert-base": "text-classification",
        "bert-mini-ner": "token-classification", "bert-small-ner": "token-classification"}


def test_the_reference_models_have_the_parameter_counts_of_the_bert_sizes() -> None:
    def millions(model: Any) -> float:
        return sum(p.numel() for p in model.parameters()) / 1e6

    # Google's miniatures: tiny 4.4M, mini 11.2M; BERT-base 109.5M (with a 2-label head). Token
    # classifiers have no pooler layer (hidden x hidden + hidden parameters fewer).
    assert round(millions(TextClassification.reference_model("bert-tiny")), 1) == 4.4
    assert round(millions(TextClassification.reference_model("bert-mini")), 1) == 11.2
    assert round(millions(TokenClassification.reference_model("bert-mini-ner")), 1) == 11.1
    assert 109 < millions(TextClassification.reference_model("bert-base")) < 110


# ---- training -------------------------------------------------------------------------------


def test_text_training_reports_metrics_progress_and_checkpoints_and_the_model_round_trips(
        text_data: Path, tmp_path: Path, no_network: list[str]) -> None:
    context = NullContext()
    adapter, metrics = train(TextClassification, "bert-tiny", text_data, tmp_path / "out", context)

    assert metrics["steps"] == 6.0 and {"val_loss", "val_accuracy", "val_f1"} <= set(metrics)
    assert {(figure, legend) for figure, legend, _, _ in events(context, "metric")} == TEXT_FIGURES
    assert sorted({x for figure, legend, x, _ in events(context, "metric") if legend == "val"}) == [2, 4, 6]
    assert [round(percent) for percent, _ in events(context, "progress")] == [33, 67, 100]
    checkpoints = [(Path(path), step, figures) for path, step, figures in events(context, "checkpoint")]
    assert [(path.name, step) for path, step, _ in checkpoints] == [("checkpoint-3", 3), ("checkpoint-6", 6)]
    assert (checkpoints[-1][0] / "model.safetensors").is_file() and (checkpoints[-1][0] / "tokenizer.json").is_file()
    assert set(checkpoints[-1][2]) == {"val_loss", "val_accuracy", "val_f1"}

    adapter.save(tmp_path / "model")
    loaded = TextClassification("bert-tiny")
    loaded.load(tmp_path / "model")
    assert loaded.labels == ["product", "sports", "travel", "weather"]
    texts = ["The final was won today .", "Our flight was delayed in Paris ."]
    predictions = loaded.predict(texts)
    assert predictions == adapter.predict(texts)
    assert all(p["label"] in loaded.labels and 0.0 < p["score"] <= 1.0 for p in predictions)


def test_token_training_reports_entity_figures_and_tags_every_word(ner_data: Path, tmp_path: Path, no_network: list[str]) -> None:
    context = NullContext()
    adapter, metrics = train(TokenClassification, "bert-tiny-ner", ner_data, tmp_path / "out", context, labels=["PER", "LOC"])

    assert {"val_loss", "val_precision", "val_recall", "val_f1"} <= set(metrics)
    assert {(figure, legend) for figure, legend, _, _ in events(context, "metric")} == NER_FIGURES
    assert [step for _, step, _ in events(context, "checkpoint")] == [3, 6]
    assert adapter.labels == ["PER", "LOC"]
    assert adapter.model.config.id2label == {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}

    adapter.save(tmp_path / "model")
    loaded = TokenClassification("bert-tiny-ner")
    loaded.load(tmp_path / "model")
    [tagged] = loaded.predict(["Maria Silva flew to New York on Monday ."])
    assert tagged["tokens"] == ["Maria", "Silva", "flew", "to", "New", "York", "on", "Monday", "."]
    assert len(tagged["tags"]) == 9 and set(tagged["tags"]) <= {"O", "B-PER", "I-PER", "B-LOC", "I-LOC"}


def test_a_stop_request_ends_training_with_a_checkpoint_at_that_step(text_data: Path, tmp_path: Path, no_network: list[str]) -> None:
    # should_stop() is asked once per optimizer step: the third answer is yes.
    context = StopAfter(calls=2)
    _, metrics = train(TextClassification, "bert-tiny", text_data, tmp_path / "out", context, max_steps=50, save_steps=40)

    assert metrics["stopped"] == 1.0 and metrics["steps"] == 3.0
    assert [step for _, step, _ in events(context, "checkpoint")] == [3]
    assert (tmp_path / "out" / "checkpoints" / "checkpoint-3" / "trainer_state.json").is_file()


def test_a_rerun_resumes_from_the_checkpoint_step_with_the_same_tokenizer(ner_data: Path, tmp_path: Path, no_network: list[str]) -> None:
    train(TokenClassification, "bert-tiny-ner", ner_data, tmp_path / "first", NullContext(), max_steps=3)
    checkpoint = tmp_path / "first" / "checkpoints" / "checkpoint-3"
    context = NullContext()
    context.resume_checkpoint = checkpoint
    _, metrics = train(TokenClassification, "bert-tiny-ner", ner_data, tmp_path / "second", context, vocab_size=120)

    assert ("resumed from checkpoint at step 3",) in events(context, "log")
    assert metrics["steps"] == 6.0
    assert min(x for _, _, x, _ in events(context, "metric")) > 3
    assert [step for _, step, _ in events(context, "checkpoint")] == [6]
    vocabulary = json.loads((checkpoint / "tokenizer.json").read_text())["model"]["vocab"]
    resumed = json.loads((tmp_path / "second" / "checkpoints" / "checkpoint-6" / "tokenizer.json").read_text())["model"]["vocab"]
    assert resumed == vocabulary


def test_a_checkpoint_with_other_labels_is_not_resumed(ner_data: Path, tmp_path: Path, no_network: list[str]) -> None:
    train(TokenClassification, "bert-tiny-ner", ner_data, tmp_path / "first", NullContext(), max_steps=3)
    context = NullContext()
    context.resume_checkpoint = tmp_path / "first" / "checkpoints" / "checkpoint-3"
    with pytest.raises(AdapterError, match="B-ORG"):
        train(TokenClassification, "bert-tiny-ner", ner_data, tmp_path / "second", context, labels=["PER"])


def test_fine_tuning_starts_from_the_base_models_weights_and_tokenizer(text_data: Path, tmp_path: Path, no_network: list[str]) -> None:
    base, _ = train(TextClassification, "bert-tiny", text_data, tmp_path / "first", NullContext(), max_steps=3)
    base.save(tmp_path / "base")
    context = NullContext()
    context.base_model = tmp_path / "base"
    tuned, metrics = train(TextClassification, "bert-tiny", text_data, tmp_path / "second", context,
                           max_steps=3, labels=["sports", "weather"], vocab_size=120)

    assert (f"fine-tuning from {tmp_path / 'base'}",) in events(context, "log")
    assert tuned.labels == ["sports", "weather"] and tuned.model.config.num_labels == 2
    assert tuned.tokenizer.get_vocab() == base.tokenizer.get_vocab()
    embeddings = "bert.embeddings.word_embeddings.weight"
    assert metrics["steps"] == 3.0 and tuned.model.state_dict()[embeddings].shape == base.model.state_dict()[embeddings].shape

    context = NullContext()
    context.base_model = tmp_path / "base"
    with pytest.raises(AdapterError, match="bert-tiny"):
        train(TextClassification, "bert-mini", text_data, tmp_path / "third", context, max_steps=1)


# ---- the pipeline ---------------------------------------------------------------------------


@pytest.mark.stack
@pytest.mark.parametrize(("architecture", "sample", "figures"),
                         [("bert-tiny", "text", TEXT_FIGURES), ("bert-tiny-ner", "ner", NER_FIGURES)])
def test_a_training_over_http_succeeds_with_metrics_and_checkpoints(
        stack: Any, tmp_path: Path, architecture: str, sample: str, figures: set[tuple[str, str]]) -> None:
    data = sample_writer(sample)(tmp_path / sample, train_examples=120, validation_examples=30)["path"]
    model = stack.client.create_model(f"{sample} model", architecture, configuration=TINY)
    for dataset, configuration, field in ((data, {"labels": ["volcano"]}, "configuration.labels"),
                                          (str(tmp_path), None, "dataset"), (data, {"max_length": 2}, "configuration.max_length")):
        with pytest.raises(ApiError) as caught:
            stack.client.train(model["id"], dataset=dataset, configuration=configuration)
        assert caught.value.status == 422 and field in (caught.value.fields or {}), caught.value
    assert stack.client.list_executions() == []
    execution = stack.client.train(model["id"], dataset=data)
    assert execution["service"] == f"mgmt-train-{architecture}"

    final = wait_until(lambda: (e := stack.client.get_execution(execution["id"]))["status"] in ("success", "failed", "aborted") and e,
                       240, f"the {architecture} training to end")

    assert final["status"] == "success", final
    assert {(m["figure"], m["legend"]) for m in stack.client.metrics(execution["id"]) if m["figure"] != "system"} == figures
    checkpoints = [a for a in stack.client.artifacts(execution["id"]) if a["kind"] == "checkpoint"]
    assert [a["step"] for a in checkpoints] == [3, 6] and all(Path(a["path"]).is_dir() for a in checkpoints)
    trained = stack.client.get_model(model["id"])
    assert trained["status"] == "trained" and (Path(trained["artifact_path"]) / "trainfaas-model.json").is_file()


@pytest.mark.stack
def test_a_killed_training_reruns_and_resumes_from_its_trainer_checkpoint(stack: Any, tmp_path: Path) -> None:
    import psutil

    from trainfaas.services.store.records import Attempt, Instance

    data = write_text(tmp_path / "text", train_examples=120, validation_examples=30)["path"]
    model = stack.client.create_model("text model", "bert-tiny", configuration={**TINY, "max_steps": 60, "eval_steps": 3})
    execution = stack.client.train(model["id"], dataset=data)
    first = wait_until(lambda: [a for a in stack.client.artifacts(execution["id"]) if a["kind"] == "checkpoint"],
                       180, "the first checkpoint")[0]

    def work_pid() -> int | None:
        attempt = Attempt.get((Attempt.execution == execution["id"]) & (Attempt.number == 1))
        running = Instance.get_by_id(attempt.instance).running
        return next((e["pid"] for e in running if (e["execution_id"], e["attempt"]) == (execution["id"], 1)), None)

    psutil.Process(wait_until(work_pid, 30, "the work process")).kill()
    final = wait_until(lambda: (e := stack.client.get_execution(execution["id"]))["status"] in ("success", "failed", "aborted") and e,
                       240, "the rerun to end")

    assert final["status"] == "success" and final["attempt"] == 2, final
    second_logs = [line["line"] for line in stack.client.logs(execution["id"]) if line["attempt"] == 2]
    resumed = [int(line.rsplit(" ", 1)[1]) for line in second_logs if line.startswith("resumed from checkpoint at step ")]
    attempts = [(a.number, a.outcome, a.reason) for a in Attempt.select().where(Attempt.execution == execution["id"])]
    checkpoints = [(a["attempt"], a["step"], a["path"], Path(a["path"]).exists())
                   for a in stack.client.artifacts(execution["id"]) if a["kind"] == "checkpoint"]
    assert resumed and resumed[0] >= first["step"], (second_logs[:3], final["status_log"], attempts, checkpoints)
    later = [a["step"] for a in stack.client.artifacts(execution["id"]) if a["kind"] == "checkpoint" and a["attempt"] == 2]
    assert later and min(later) > resumed[0] and max(later) == 60
    steps = [m["x"] for m in stack.client.metrics(execution["id"]) if m["attempt"] == 2 and m["figure"] != "system"]
    assert min(steps) > resumed[0]  # (usage samples count seconds, not steps)
