"""The adapter contract: what a model architecture implements to be trained by trainfaas.

An adapter knows nothing of HTTP, Redis or the database. It gets a data path, an output path,
its validated configuration and a :class:`TrainContext` to report through. The shape follows
Dataloop's ``BaseModelAdapter`` (``train``, ``load``, ``save``, ``predict``) so adapters port over.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from trainfaas.services.core.errors import AdapterError, ConfigError, DatasetError


class Options(BaseModel):
    """Base of every adapter's declared options: unknown names are rejected, not ignored."""

    model_config = ConfigDict(extra="forbid")


class TrainContext(Protocol):
    """What an adapter may call while it trains. Every method is cheap and never raises."""

    resume_checkpoint: Path | None
    """The last checkpoint of a previous attempt of this execution, or None."""

    base_model: Path | None
    """Fine-tuning: the directory a previous trainfaas model of this architecture was saved to
    (by its adapter's ``save``), whose weights training starts from; None to start from scratch.
    A resume checkpoint, when there is one, wins over it."""

    def progress(self, percent: float, message: str = "") -> None: ...

    def metric(self, figure: str, legend: str, x: float, y: float) -> None: ...

    def checkpoint(self, path: str | Path, step: int, metrics: dict[str, float] | None = None, best: bool | None = None) -> None:
        """Report the checkpoint file (or folder) ``path`` written after optimizer step ``step``. The
        platform keeps an immutable copy of a file (replace a checkpoint file, never write it in place).
        ``best``: whether it is the best so far by the adapter's monitored figure; None: whether the
        file is named ``best`` (``best.pt``)."""

    def log(self, message: str) -> None: ...

    def should_stop(self) -> bool: ...


class NullContext:
    """A context that reports nowhere: for running an adapter by hand, in a notebook or a test."""

    resume_checkpoint: Path | None = None
    base_model: Path | None = None

    def __init__(self) -> None:
        self.stop_requested = False
        self.events: list[tuple[str, tuple[Any, ...]]] = []

    def progress(self, percent: float, message: str = "") -> None:
        self.events.append(("progress", (percent, message)))

    def metric(self, figure: str, legend: str, x: float, y: float) -> None:
        self.events.append(("metric", (figure, legend, x, y)))

    def checkpoint(self, path: str | Path, step: int, metrics: dict[str, float] | None = None, best: bool | None = None) -> None:
        self.events.append(("checkpoint", (str(path), step, metrics or {})))

    def log(self, message: str) -> None:
        self.events.append(("log", (message,)))

    def should_stop(self) -> bool:
        return self.stop_requested


class ModelAdapter:
    """Base class of model adapters.

    Subclasses set ``architectures`` (the names they serve; each gets a service
    ``mgmt-train-<architecture>``), ``task``, ``dataset_format`` (None when no data set is
    needed) and ``Options`` (a pydantic model of the declared options), and implement
    :meth:`train`. ``load``/``save``/``predict``/``evaluate`` are optional until a function needs them.
    ``diagnostic_options`` names the options that inject faults (see below).
    """

    architectures: ClassVar[tuple[str, ...]] = ()
    task: ClassVar[str] = ""
    dataset_format: ClassVar[str | None] = None
    Options: ClassVar[type[Options]] = Options
    # Options that inject faults (for fire drills): the API refuses a configuration that sets one
    # to other than its default unless the server runs with TRAINFAAS_DIAGNOSTICS=1.
    diagnostic_options: ClassVar[tuple[str, ...]] = ()
    # The subsets an adapter can take as separate data sets (image-labels folders, ``<label>/<image>``)
    # instead of one folder; it then implements :meth:`train_split`. Empty: one folder only.
    split_subsets: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        architecture: str,
        labels: list[str] | None = None,
        configuration: dict[str, Any] | None = None,
        context: TrainContext | None = None,
    ) -> None:
        self.architecture = architecture
        self.labels = list(labels or [])
        self.configuration = self.validate_configuration(configuration or {})
        self.context: TrainContext = context or NullContext()

    @classmethod
    def task_of(cls, architecture: str) -> str:
        """The task ``architecture`` trains. ``task`` unless an adapter serves several tasks
        (ultralytics YOLO: detection, and instance segmentation for its ``-seg`` models)."""
        return cls.task

    @classmethod
    def validate_configuration(cls, configuration: dict[str, Any]) -> dict[str, Any]:
        """Return the configuration with defaults filled in; raises pydantic.ValidationError."""
        return cls.Options.model_validate(configuration).model_dump(mode="json")

    @classmethod
    def options_schema(cls) -> dict[str, Any]:
        """The declared options (names, types, ranges, defaults) as JSON Schema."""
        return cls.Options.model_json_schema()

    @classmethod
    def check_dataset(cls, path: Path, configuration: dict[str, Any]) -> list[str]:
        """Check, before anything is queued, that ``path`` is a data set this adapter can train on
        with ``configuration`` (already validated); return its labels (after any label subset the
        configuration selects). Raises DatasetError naming what is missing and the layout expected.
        Must be cheap: it runs in the API, which imports no torch for it."""
        if cls.dataset_format is None:
            return []
        raise DatasetError(f"no reader for data set format {cls.dataset_format!r}", {"dataset": "unsupported format"})

    @classmethod
    def reference_model(cls, architecture: str) -> Any:
        """The architecture's reference configuration as a torch module (torchvision
        classification: the 1000-class ImageNet model), randomly initialised, for the architecture
        catalog's parameter count and checkpoint size. None when there is no torch model."""
        return None

    @classmethod
    def import_weights(cls, architecture: str, source: Path, destination: Path, labels: list[str] | None) -> list[str]:
        """Check that ``source`` (a weights file or folder the user already has) fits ``architecture``,
        and write it into ``destination`` as :meth:`save` writes a trained model, so that models
        fine-tune from it; return its labels (``labels``, which must match the number of classes of
        the weights' head, or names made up for them). Raises ConfigError naming ``weights`` (the
        first layer that does not fit, expected and found shapes) or ``labels``. Must never run code
        the file holds nor download anything. Default: this adapter takes no imported weights."""
        raise ConfigError(f"architecture {architecture} takes no imported weights",
                          {"architecture": "an architecture whose adapter imports weights (torchvision classification and"
                                           " segmentation, ultralytics YOLO, the BERT text and token classifiers)"})

    def train(self, data_path: Path | None, output_path: Path, **configuration: Any) -> dict[str, float]:
        """Train into ``output_path``; return the final metrics. Must honour ``should_stop()``."""
        raise NotImplementedError

    def train_split(self, subsets: dict[str, Path], output_path: Path, **configuration: Any) -> dict[str, float]:
        """Train on one folder per subset (those of ``split_subsets``), as :meth:`train` does on one data set."""
        raise DatasetError(f"{self.architecture} trains on one data set folder", {"datasets": "not supported by this architecture"})

    def save(self, local_path: Path, **kwargs: Any) -> None:
        raise NotImplementedError

    def load(self, local_path: Path, **kwargs: Any) -> None:
        raise NotImplementedError

    @classmethod
    def model_from_checkpoint(cls, checkpoint: Path, local_path: Path, architecture: str, labels: list[str],
                              configuration: dict[str, Any]) -> None:
        """Write into ``local_path`` the model ``checkpoint`` (a file or folder this adapter reported while
        training ``architecture`` on ``labels`` with ``configuration``) holds, as :meth:`save` writes one,
        so that :meth:`load` and fine-tuning read it. It runs in the API: copy, do not load, and never
        follow a link inside a checkpoint folder. Raises AdapterError when this adapter cannot."""
        raise AdapterError(f"the adapter {cls.__name__} cannot make a model from a checkpoint",
                           {"checkpoint_id": "a checkpoint of an architecture whose adapter makes models of its checkpoints"})

    @classmethod
    def import_saved(cls, architecture: str, source: Path, destination: Path, labels: list[str]) -> list[str]:
        """Check that the folder ``source`` holds a model as :meth:`save` writes one (the ``model/`` folder of a
        downloaded archive) of ``architecture`` predicting ``labels``, and write it into ``destination`` as
        :meth:`save` does; return its labels. Raises ConfigError naming ``archive`` for files this adapter
        cannot read, ``architecture`` or ``labels`` for a model of others. Must never run code the files
        hold. Default: this adapter imports no archives."""
        raise ConfigError(f"architecture {architecture} takes no model archives",
                          {"archive": "an archive of an architecture whose adapter imports them (torchvision classification and"
                                      " segmentation, ultralytics YOLO, the BERT text and token classifiers)"})

    @staticmethod
    def check_saved(architecture: str, labels: list[str], saved_architecture: Any, saved_labels: Any) -> None:
        """ConfigError unless a saved model's own architecture and labels are those its archive's manifest names."""
        if saved_architecture != architecture:
            raise ConfigError(f"the archive's model is a {str(saved_architecture)[:100]}, its manifest says {architecture}",
                              {"architecture": f"the manifest's architecture and the saved model's agree ({architecture})"})
        if list(saved_labels or []) != list(labels):
            raise ConfigError("the archive's model predicts other labels than its manifest names",
                              {"labels": "the manifest's labels, as the saved model names them"})

    def predict(self, batch: list[Any], **kwargs: Any) -> list[Any]:
        raise NotImplementedError

    def evaluate(self, data_path: Path, **kwargs: Any) -> dict[str, Any]:
        """Score the loaded model on a data set of ``dataset_format`` at ``data_path`` (``subset``:
        ``validation``, the default, or ``train``); return the task's metrics as JSON-able values.
        Raises DatasetError for a data set it cannot read."""
        raise AdapterError(f"{type(self).__name__} cannot evaluate a model: its adapter implements no evaluate()",
                           {"adapter": "an adapter that implements evaluate(data_path, **kwargs)"})
