"""Text and token classification with BERT-style transformers, trained from scratch on the CPU or a GPU.

Two adapters share this module:

* :class:`TextClassification` (task ``text-classification``): ``bert-tiny``, ``bert-mini``,
  ``bert-small``, ``bert-base``, on CSV or JSON-lines data sets (see :mod:`trainfaas.adapters.text_datasets`);
* :class:`TokenClassification` (task ``token-classification``): the same sizes with ``-ner``
  appended, on CoNLL data sets with BIO tags.

The sizes are those of Google's BERT miniatures (tiny L2/H128, mini L4/H256, small L4/H512) and
BERT-base (L12/H768), each built from a ``BertConfig`` with random weights: nothing is
downloaded. A WordPiece tokenizer is trained on the training subset with ``tokenizers`` and kept
with every checkpoint and with the saved model, so that a resumed or fine-tuned run and
prediction all see the text exactly as training did.

Training runs under ``transformers.Trainer``. Checkpoints are the Trainer's own directories,
``<output>/checkpoints/checkpoint-<step>``, written every ``save_steps`` optimizer steps, at the
end and on a stop request; the last and the best (by validation F1) are kept. The Trainer writes a
checkpoint directory in place, so each is reported to the context only once it is complete: a
rerun never resumes from half a checkpoint. Metrics are reported against the optimizer step
(x = global step).

The module imports neither torch nor transformers at import time: the API loads it to check data
sets and options, and only a training pays for those libraries.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from pydantic import Field, field_validator

from trainfaas.adapters import AdapterError, ConfigError, DatasetError, ModelAdapter, Options
from trainfaas.adapters.evaluation import classification_scores, subset_of
from trainfaas.adapters.text_datasets import bio_tags, read_conll_dataset, read_text_dataset
from trainfaas.adapters.transformers_import import MODEL_INFO, folder_from_checkpoint, import_folder, import_saved_folder
from trainfaas.services.core.files import atomic_write_text

# Offline always, and no telemetry: set before transformers or huggingface_hub is first imported.
for _variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY",
                  "DISABLE_MLFLOW_INTEGRATION"):
    os.environ.setdefault(_variable, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

SIZES: dict[str, tuple[int, int]] = {"tiny": (2, 128), "mini": (4, 256), "small": (4, 512), "base": (12, 768)}
"""Layers and hidden size of each BERT size; heads = hidden / 64 and the feed-forward width = 4 x hidden."""
REFERENCE_VOCAB_SIZE = 30522
"""The vocabulary of Google's uncased BERT, used for the reference models' parameter counts."""
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

Scheduler = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"]


class TextOptions(Options):
    """Options of text classification training.

    The defaults train ``bert-tiny`` on the bundled ``text`` sample (1,200 sentences) in well
    under a minute on two CPU cores to about 0.99 validation accuracy. Larger sizes want a smaller
    ``learning_rate`` (about 2e-4 for bert-base).
    """

    epochs: float = Field(3.0, gt=0, le=1000, description="Passes over the training subset (fractions allowed); ignored when max_steps is set.")
    max_steps: int | None = Field(None, ge=1, le=10_000_000, description="Optimizer steps to train for; overrides epochs when set.")
    batch_size: int = Field(32, ge=1, le=4096, description="Examples per optimizer step.")
    learning_rate: float = Field(1e-3, gt=0, le=1, description="Peak learning rate of AdamW, reached after the warm-up.")
    weight_decay: float = Field(0.01, ge=0, le=1, description="Decoupled weight decay of AdamW.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of the training steps over which the learning rate rises linearly from 0.")
    lr_scheduler_type: Scheduler = Field("linear", description="How the learning rate changes after the warm-up (transformers' schedulers).")
    max_length: int = Field(64, ge=8, le=512, description="Tokens per example; longer examples are truncated.")
    vocab_size: int = Field(3000, ge=100, le=100_000, description="Largest WordPiece vocabulary the tokenizer trained on the training subset may have.")
    lowercase: bool = Field(True, description="Lowercase text before tokenizing (and strip accents).")
    eval_steps: int = Field(20, ge=1, le=1_000_000, description="Evaluate the validation subset, and report progress, every this many optimizer steps (and at the end).")
    save_steps: int = Field(40, ge=1, le=1_000_000, description="Write a checkpoint every this many optimizer steps (and at the end and on a stop request). A multiple of eval_steps keeps the best checkpoint exact.")
    max_grad_norm: float = Field(1.0, ge=0, le=1000, description="Clip the gradient norm to this value; 0 turns clipping off.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Share of each training target spread evenly over all labels.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of weight initialisation, dropout and shuffling.")
    max_hours: float | None = Field(None, gt=0, le=10_000, description="Stop (with a checkpoint) after this many hours of training; none for no limit.")
    labels: list[str] | None = Field(None, min_length=1, description="Train on these labels only (examples of other labels are dropped); all labels when unset.")

    @field_validator("labels")
    @classmethod
    def _distinct(cls, labels: list[str] | None) -> list[str] | None:
        if labels is not None and len(set(labels)) != len(labels):
            raise ValueError("labels must be distinct")
        return labels


class TokenOptions(TextOptions):
    """Options of token classification (named-entity) training.

    The defaults train ``bert-tiny-ner`` on the bundled ``ner`` sample (1,000 sentences) in about
    a minute on two CPU cores to an entity F1 above 0.9. Case is kept by default, because
    capitals are a strong sign of a name.
    """

    epochs: float = Field(4.0, gt=0, le=1000, description="Passes over the training subset (fractions allowed); ignored when max_steps is set.")
    vocab_size: int = Field(1000, ge=100, le=100_000, description="Largest WordPiece vocabulary the tokenizer trained on the training subset may have; a small one splits names into pieces shared with other names, which helps with names never seen in training.")
    lowercase: bool = Field(False, description="Lowercase text before tokenizing (and strip accents); off by default because case marks names.")
    labels: list[str] | None = Field(None, min_length=1, description="Train on these entity types only (others are tagged O); all types when unset.")


def bert_config(architecture: str, vocab_size: int, label_names: list[str]) -> Any:
    """The ``BertConfig`` of ``architecture``'s size with ``vocab_size`` tokens and these labels."""
    from transformers import BertConfig

    layers, hidden = SIZES[architecture.removeprefix("bert-").removesuffix("-ner")]
    return BertConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
        intermediate_size=4 * hidden, id2label=dict(enumerate(label_names)),
        label2id={name: index for index, name in enumerate(label_names)},
    )


def train_tokenizer(texts: list[str], vocab_size: int, lowercase: bool, max_length: int) -> PreTrainedTokenizerFast:
    """A BERT WordPiece tokenizer trained on ``texts``, wrapped for transformers."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import PreTrainedTokenizerFast

    wordpiece = BertWordPieceTokenizer(lowercase=lowercase, strip_accents=lowercase)
    wordpiece.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=1, special_tokens=SPECIAL_TOKENS, show_progress=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=wordpiece._tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_length,
    )


def training_arguments(options: TextOptions, checkpoints: Path, best_figure: str) -> Any:
    """The ``TrainingArguments`` for ``options``: evaluation, logging and checkpoints by optimizer
    step, the best by ``best_figure``, no integrations. The Trainer deletes no checkpoint of its own:
    the platform's retention (``keep_checkpoints``) does, as new ones are recorded, so no recorded
    checkpoint loses its folder behind its row."""
    import torch
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(checkpoints), per_device_train_batch_size=options.batch_size,
        per_device_eval_batch_size=max(options.batch_size, 64), learning_rate=options.learning_rate,
        weight_decay=options.weight_decay, warmup_steps=options.warmup_ratio,
        lr_scheduler_type=options.lr_scheduler_type, num_train_epochs=options.epochs,
        max_steps=options.max_steps or -1, eval_strategy="steps", eval_steps=options.eval_steps,
        save_strategy="steps", save_steps=options.save_steps, save_total_limit=None,
        logging_strategy="steps", logging_steps=options.eval_steps,
        metric_for_best_model=best_figure, greater_is_better=True,
        max_grad_norm=options.max_grad_norm, label_smoothing_factor=options.label_smoothing,
        seed=options.seed, report_to="none", disable_tqdm=True, dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )


def _checkpoint_step(checkpoint: Path) -> int:
    """The global step a Trainer checkpoint directory was saved at (from its trainer_state.json)."""
    try:
        return int(json.loads((checkpoint / "trainer_state.json").read_text())["global_step"])
    except (OSError, ValueError, KeyError) as error:
        raise AdapterError(f"{checkpoint} is not a transformers Trainer checkpoint ({error})",
                           {"resume_checkpoint": "a checkpoint-<step> directory"}) from error


def _make_reporter(adapter: _TransformersAdapter, figures: tuple[str, ...], deadline: float | None) -> Any:
    """A TrainerCallback that reports to ``adapter.context`` (built here: transformers loads lazily)."""
    from transformers import TrainerCallback

    class Reporter(TrainerCallback):  # type: ignore[misc]
        """Reports losses, validation figures, progress and checkpoints; turns a stop request
        (or the max_hours deadline) into the end of training with a checkpoint."""

        def __init__(self) -> None:
            self.last_metrics: dict[str, float] = {}
            self.stopped = False

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            over_time = deadline is not None and time.monotonic() > deadline
            if adapter.context.should_stop() or over_time:
                self.stopped = True
                control.should_training_stop = True
                control.should_save = True
                if over_time:
                    adapter.context.log(f"max_hours reached at step {state.global_step}; stopping")

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:
                adapter.context.metric("loss", "train", state.global_step, float(logs["loss"]))

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
            metrics = metrics or {}
            self.last_metrics = {f"val_{name}": float(metrics[f"eval_{name}"]) for name in ("loss", *figures) if f"eval_{name}" in metrics}
            for name, value in self.last_metrics.items():
                adapter.context.metric(name.removeprefix("val_"), "val", state.global_step, value)
            summary = " ".join(f"{name.replace('_', ' ')} {value:.4f}" for name, value in self.last_metrics.items())
            adapter.context.progress(100.0 * state.global_step / max(state.max_steps, 1),
                                     f"step {state.global_step}/{state.max_steps} {summary}")

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            best = state.best_model_checkpoint is not None and Path(state.best_model_checkpoint).name == path.name
            adapter.context.checkpoint(path, state.global_step, dict(self.last_metrics), best=best)

    return Reporter()


class _TransformersAdapter(ModelAdapter):
    """What both BERT adapters share: tokenizer, model set-up, Trainer run, save/load."""

    dataset_format: ClassVar[str | None] = None
    figures: ClassVar[tuple[str, ...]] = ()
    """Validation figures besides loss, as compute_metrics names them; the last one picks the best checkpoint."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model: PreTrainedModel | None = None
        self.tokenizer: PreTrainedTokenizerFast | None = None
        self.max_length = int(self.configuration.get("max_length", 64))

    # ---- what each task defines ----------------------------------------------------------
    @classmethod
    def read(cls, path: Path, labels: list[str] | None) -> tuple[list[str], dict[str, list[Any]]]:
        raise NotImplementedError

    def label_names(self, labels: list[str]) -> list[str]:
        """The model's output classes for the data set labels ``labels``."""
        return labels

    @staticmethod
    def model_class() -> Any:
        raise NotImplementedError

    @staticmethod
    def texts(examples: list[Any]) -> list[str]:
        raise NotImplementedError

    def encode(self, examples: list[Any], label_names: list[str]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def collator(self) -> Any:
        raise NotImplementedError

    def compute_metrics(self, label_names: list[str]) -> Any:
        raise NotImplementedError

    # ---- the contract --------------------------------------------------------------------
    @classmethod
    def check_dataset(cls, path: Path, configuration: dict[str, Any]) -> list[str]:
        return cls.read(Path(path), configuration.get("labels"))[0]

    @classmethod
    def reference_model(cls, architecture: str) -> Any:
        """The architecture with BERT's own 30,522-token vocabulary and 2 labels, randomly initialised."""
        return cls.model_class()(bert_config(architecture, REFERENCE_VOCAB_SIZE, ["LABEL_0", "LABEL_1"]))

    @classmethod
    def import_weights(cls, architecture: str, source: Path, destination: Path, labels: list[str] | None) -> list[str]:
        """A transformers model folder (config.json, model.safetensors or pytorch_model.bin, tokenizer.json)
        that fits ``architecture``, saved as :meth:`save` writes a trained model (see transformers_import.py)."""
        return import_folder(cls, bert_config, architecture, source, destination, labels)

    @classmethod
    def model_from_checkpoint(cls, checkpoint: Path, local_path: Path, architecture: str, labels: list[str],
                              configuration: dict[str, Any]) -> None:
        """The Trainer checkpoint's weights, config and tokenizer copied (see transformers_import.py)."""
        folder_from_checkpoint(cls, Path(checkpoint), Path(local_path), architecture, labels, configuration)

    @classmethod
    def import_saved(cls, architecture: str, source: Path, destination: Path, labels: list[str]) -> list[str]:
        """A folder :meth:`save` wrote, imported as :meth:`import_weights` does, its max_length kept."""
        return import_saved_folder(cls, bert_config, architecture, Path(source), Path(destination), labels)

    def train(self, data_path: Path | None, output_path: Path, **configuration: Any) -> dict[str, float]:
        """Train into ``output_path`` and return the last validation figures (``val_loss``,
        ``val_<figure>``), ``steps``, ``epochs`` and, after a stop request, ``stopped``.

        Raises DatasetError for a missing or malformed data set, AdapterError for a resume
        checkpoint or base model of another kind of model.
        """
        from transformers import Trainer, set_seed

        options = cast(TextOptions, self.Options.model_validate({**self.configuration, **configuration}))
        if data_path is None:
            raise DatasetError(f"{self.task} needs a data set", {"dataset": f"required: a {self.dataset_format} directory"})
        labels, subsets = self.read(Path(data_path), options.labels)
        label_names = self.label_names(labels)
        set_seed(options.seed)
        resume = self._resume_checkpoint()
        self._prepare(resume, subsets["train"], label_names, options, Path(output_path))
        self.labels, self.max_length = labels, options.max_length
        arguments = training_arguments(options, Path(output_path) / "checkpoints", self.figures[-1])
        deadline = time.monotonic() + options.max_hours * 3600 if options.max_hours else None
        reporter = _make_reporter(self, self.figures, deadline)
        trainer = Trainer(
            model=self.model, args=arguments, train_dataset=self.encode(subsets["train"], label_names),
            eval_dataset=self.encode(subsets["validation"], label_names), data_collator=self.collator(),
            processing_class=self.tokenizer, compute_metrics=self.compute_metrics(label_names), callbacks=[reporter],
        )
        if resume is not None:
            self.context.log(f"resumed from checkpoint at step {_checkpoint_step(resume)}")
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        self.model = trainer.model.eval()
        state = trainer.state
        stopped = {"stopped": 1.0} if reporter.stopped else {}
        return {**reporter.last_metrics, "steps": float(state.global_step), "epochs": float(state.epoch or 0.0), **stopped}

    def _resume_checkpoint(self) -> Path | None:
        resume = self.context.resume_checkpoint
        return Path(resume) if resume is not None and Path(resume).is_dir() else None

    def _prepare(self, resume: Path | None, train_examples: list[Any], label_names: list[str], options: TextOptions, output: Path) -> None:
        """Set ``self.tokenizer`` and ``self.model``: from the resume checkpoint, else the base model,
        else a tokenizer trained on the training subset and a randomly initialised model."""
        from transformers import PreTrainedTokenizerFast

        source = resume or self._base_model()
        if source is None:
            self.tokenizer = train_tokenizer(self.texts(train_examples), options.vocab_size, options.lowercase, options.max_length)
            self.model = self.model_class()(bert_config(self.architecture, len(self.tokenizer), label_names))
            self.tokenizer.save_pretrained(str(output / "tokenizer"))
            return
        self.tokenizer = PreTrainedTokenizerFast.from_pretrained(str(source), local_files_only=True)
        self.tokenizer.model_max_length = options.max_length
        model = self.model_class().from_pretrained(str(source), local_files_only=True)
        saved_names = [model.config.id2label[i] for i in range(len(model.config.id2label))]
        if resume is not None and saved_names != label_names:
            raise AdapterError(f"checkpoint {resume} predicts {saved_names}, not {label_names}",
                               {"resume_checkpoint": "a checkpoint of a model with the same labels"})
        if saved_names != label_names:
            # Fine-tuning on other labels: keep the encoder, start the classification head anew.
            model = self.model_class().from_pretrained(
                str(source), local_files_only=True, num_labels=len(label_names), ignore_mismatched_sizes=True,
                id2label=dict(enumerate(label_names)), label2id={name: i for i, name in enumerate(label_names)})
        self.model = model
        if resume is None:
            self.context.log(f"fine-tuning from {source}")

    def _base_model(self) -> Path | None:
        base = self.context.base_model
        if base is None:
            return None
        try:
            info = json.loads((Path(base) / MODEL_INFO).read_text())
        except (OSError, ValueError) as error:
            raise AdapterError(f"{base} is not a model saved by this adapter ({error})", {"base_model": "a saved trainfaas model"}) from error
        if info.get("architecture") != self.architecture:
            raise AdapterError(f"base model {base} is a {info.get('architecture')}, not a {self.architecture}",
                               {"base_model": f"a saved {self.architecture} model"})
        return Path(base)

    def save(self, local_path: Path, **kwargs: Any) -> None:
        """Write the weights, config and tokenizer (transformers' layout) and ``trainfaas-model.json``
        (architecture, task, labels, max_length) into ``local_path``."""
        model, tokenizer = self._require_model()
        path = Path(local_path)
        path.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(path))
        tokenizer.save_pretrained(str(path))
        info = {"architecture": self.architecture, "task": self.task, "labels": self.labels, "max_length": self.max_length}
        atomic_write_text(path / MODEL_INFO, json.dumps(info, indent=2))

    def load(self, local_path: Path, **kwargs: Any) -> None:
        """Read a model written by :meth:`save`; its architecture and labels replace this adapter's."""
        from transformers import PreTrainedTokenizerFast

        path = Path(local_path)
        info = json.loads((path / MODEL_INFO).read_text())
        self.architecture, self.labels, self.max_length = info["architecture"], list(info["labels"]), int(info["max_length"])
        self.tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)
        self.model = self.model_class().from_pretrained(str(path), local_files_only=True).eval()

    def evaluate(self, data_path: Path, **kwargs: Any) -> dict[str, Any]:
        """Score the model on the ``subset`` (``validation`` by default, or ``train``) of a data set in its
        format (see each task's :meth:`scores`), each example as the task's :meth:`kept` gives it: a text of a
        label the model does not know is left out, an entity of a type it does not know is O."""
        import torch

        model, _ = self._require_model()
        subset = subset_of(kwargs)
        label_names = [model.config.id2label[index] for index in range(model.config.num_labels)]
        examples = [kept for example in self.read(Path(data_path), None)[1][subset] if (kept := self.kept(example, label_names))]
        if not examples:
            raise DatasetError(f"the {subset} subset has no example of the model's labels", {"subset": "a subset with examples"})
        rows, collate, truths, predictions = self.encode(examples, label_names), self.collator(), [], []
        model.eval()
        with torch.no_grad():
            for start in range(0, len(rows), 32):
                batch = collate(rows[start:start + 32])
                truths += batch.pop("labels").tolist()
                predictions += model(**batch.to(model.device)).logits.argmax(dim=-1).cpu().tolist()
                self.context.progress(min(99.0, 10.0 + 90.0 * (start + 32) / len(rows)), f"scored {min(start + 32, len(rows))} examples")
        return {"examples": len(examples), **self.scores(truths, predictions, label_names)}

    @staticmethod
    def kept(example: Any, label_names: list[str]) -> Any:
        """``example`` as the model is scored on it, or None to leave it out."""
        raise NotImplementedError

    def scores(self, truths: list[Any], predictions: list[Any], label_names: list[str]) -> dict[str, Any]:
        raise NotImplementedError

    def _require_model(self) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
        if self.model is None or self.tokenizer is None:
            raise AdapterError("no model yet: train or load one first", {"model": "not trained or loaded"})
        return self.model, self.tokenizer

    @staticmethod
    def _check_batch(batch: list[Any]) -> None:
        if not all(isinstance(item, str) for item in batch):
            raise ConfigError("give a list of strings to predict", {"batch": "items must be strings"})


class TextClassification(_TransformersAdapter):
    """Sentence classification: one label per text (BertForSequenceClassification)."""

    architectures: ClassVar[tuple[str, ...]] = tuple(f"bert-{size}" for size in SIZES)
    task: ClassVar[str] = "text-classification"
    dataset_format: ClassVar[str | None] = "text-csv-jsonl"
    Options: ClassVar[type[Options]] = TextOptions
    figures: ClassVar[tuple[str, ...]] = ("accuracy", "f1")

    @classmethod
    def read(cls, path: Path, labels: list[str] | None) -> tuple[list[str], dict[str, list[Any]]]:
        return read_text_dataset(path, labels)

    @staticmethod
    def model_class() -> Any:
        from transformers import BertForSequenceClassification

        return BertForSequenceClassification

    @staticmethod
    def texts(examples: list[Any]) -> list[str]:
        return [text for text, _ in examples]

    def encode(self, examples: list[Any], label_names: list[str]) -> list[dict[str, Any]]:
        tokenizer, index = self._require_model()[1], {name: i for i, name in enumerate(label_names)}
        encoded = tokenizer([text for text, _ in examples], truncation=True, max_length=tokenizer.model_max_length)
        return [{**{key: values[i] for key, values in encoded.items()}, "labels": index[label]} for i, (_, label) in enumerate(examples)]

    def collator(self) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(self._require_model()[1])

    def compute_metrics(self, label_names: list[str]) -> Any:
        def figures(prediction: Any) -> dict[str, float]:
            from sklearn.metrics import accuracy_score, f1_score

            predicted = prediction.predictions.argmax(axis=-1)
            expected = prediction.label_ids
            return {"accuracy": float(accuracy_score(expected, predicted)),
                    "f1": float(f1_score(expected, predicted, average="macro", labels=range(len(label_names)), zero_division=0))}

        return figures

    @staticmethod
    def kept(example: Any, label_names: list[str]) -> Any:
        return example if example[1] in label_names else None  # a label the model does not know: left out

    def scores(self, truths: list[Any], predictions: list[Any], label_names: list[str]) -> dict[str, Any]:
        """``accuracy``, macro ``precision``, ``recall`` and ``f1``, ``per_class`` scores and the ``confusion_matrix``."""
        import numpy as np

        return classification_scores(np.asarray(truths), np.asarray(predictions), label_names)

    def predict(self, batch: list[Any], **kwargs: Any) -> list[dict[str, Any]]:
        """Classify strings: one ``{"label": str, "score": float, "scores": [{"label", "score"}, ...]}``
        per text, score being the softmax probability of the label and ``scores`` the ``top_k``
        (default 5) most probable labels, most probable first."""
        import torch

        model, tokenizer = self._require_model()
        self._check_batch(batch)
        if not batch:
            return []
        inputs = tokenizer(batch, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt").to(model.device)
        top_k = max(1, min(int(kwargs.get("top_k", 5)), model.config.num_labels))
        with torch.no_grad():
            scores, indexes = model(**inputs).logits.softmax(dim=-1).topk(top_k, dim=-1)
        names = model.config.id2label
        return [{"label": names[row[0]], "score": values[0], "scores": [{"label": names[i], "score": v} for v, i in zip(values, row, strict=True)]}
                for values, row in zip(scores.tolist(), indexes.tolist(), strict=True)]


class TokenClassification(_TransformersAdapter):
    """Named-entity recognition: a BIO tag per word (BertForTokenClassification). Each word's tag
    is predicted at its first WordPiece; the model's labels are O and B-/I- of each entity type,
    the adapter's ``labels`` the entity types."""

    architectures: ClassVar[tuple[str, ...]] = tuple(f"bert-{size}-ner" for size in SIZES)
    task: ClassVar[str] = "token-classification"
    dataset_format: ClassVar[str | None] = "conll"
    Options: ClassVar[type[Options]] = TokenOptions
    figures: ClassVar[tuple[str, ...]] = ("precision", "recall", "f1")

    @classmethod
    def read(cls, path: Path, labels: list[str] | None) -> tuple[list[str], dict[str, list[Any]]]:
        return read_conll_dataset(path, labels)

    def label_names(self, labels: list[str]) -> list[str]:
        return bio_tags(labels)

    @staticmethod
    def model_class() -> Any:
        from transformers import BertForTokenClassification

        return BertForTokenClassification

    @staticmethod
    def texts(examples: list[Any]) -> list[str]:
        return [" ".join(tokens) for tokens, _ in examples]

    def encode(self, examples: list[Any], label_names: list[str]) -> list[dict[str, Any]]:
        tokenizer, index = self._require_model()[1], {name: i for i, name in enumerate(label_names)}
        encoded = tokenizer([tokens for tokens, _ in examples], is_split_into_words=True, truncation=True,
                            max_length=tokenizer.model_max_length)
        rows = []
        for i, (_, tags) in enumerate(examples):
            # Only a word's first piece is scored; other pieces and special tokens are ignored (-100).
            word_ids, previous, targets = encoded.word_ids(i), None, []
            for word in word_ids:
                targets.append(-100 if word is None or word == previous else index[tags[word]])
                previous = word
            rows.append({**{key: values[i] for key, values in encoded.items()}, "labels": targets})
        return rows

    def collator(self) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(self._require_model()[1])

    def compute_metrics(self, label_names: list[str]) -> Any:
        def figures(prediction: Any) -> dict[str, float]:
            from seqeval.metrics import f1_score, precision_score, recall_score

            predicted = prediction.predictions.argmax(axis=-1)
            expected_tags, predicted_tags = [], []
            for expected_row, predicted_row in zip(prediction.label_ids, predicted, strict=True):
                kept = [(e, p) for e, p in zip(expected_row, predicted_row, strict=True) if e != -100]
                expected_tags.append([label_names[e] for e, _ in kept])
                predicted_tags.append([label_names[p] for _, p in kept])
            return {name: float(score(expected_tags, predicted_tags, zero_division=0))
                    for name, score in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score))}

        return figures

    @staticmethod
    def kept(example: Any, label_names: list[str]) -> Any:
        tokens, tags = example  # entities of types the model does not know are O, as in training
        return (tokens, [tag if tag in label_names else "O" for tag in tags])

    def scores(self, truths: list[Any], predictions: list[Any], label_names: list[str]) -> dict[str, Any]:
        """Entity-level (seqeval) ``precision``, ``recall`` and ``f1``, and the same ``per_entity`` type with its support."""
        from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

        expected, predicted = [], []
        for truth_row, predicted_row in zip(truths, predictions, strict=True):
            kept = [(t, p) for t, p in zip(truth_row, predicted_row, strict=False) if t != -100]
            expected.append([label_names[t] for t, _ in kept])
            predicted.append([label_names[p] for _, p in kept])
        report = classification_report(expected, predicted, output_dict=True, zero_division=0)
        per_entity = {name: {"precision": float(row["precision"]), "recall": float(row["recall"]), "f1": float(row["f1-score"]),
                             "support": int(row["support"])} for name, row in report.items() if name in self.labels}
        return {**{name: float(score(expected, predicted, zero_division=0))
                   for name, score in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score))},
                "per_entity": per_entity, "labels": list(self.labels)}

    def predict(self, batch: list[Any], **kwargs: Any) -> list[dict[str, Any]]:
        """Tag the whitespace-separated words of each string: one ``{"tokens": [...], "tags": [...]}``
        per text, a BIO tag per word (words cut off by max_length are tagged O)."""
        import torch

        model, tokenizer = self._require_model()
        self._check_batch(batch)
        if not batch:
            return []
        words = [text.split() for text in batch]
        inputs = tokenizer(words, is_split_into_words=True, truncation=True, max_length=self.max_length, padding=True,
                           return_tensors="pt")
        with torch.no_grad():
            predicted = model(**inputs.to(model.device)).logits.argmax(dim=-1).tolist()
        results = []
        for row, row_words in enumerate(words):
            tags = ["O"] * len(row_words)
            seen: set[int] = set()
            for position, word in enumerate(inputs.word_ids(row)):
                if word is not None and word not in seen:
                    seen.add(word)
                    tags[word] = model.config.id2label[predicted[row][position]]
            results.append({"tokens": row_words, "tags": tags})
        return results
