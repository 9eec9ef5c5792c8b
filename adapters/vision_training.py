"""The training loop the torchvision adapters share, counted in optimizer steps.

Every ``eval_every_steps`` (by default once an epoch) a run scores the validation subset, and every
``checkpoint_every_steps`` (by default at every evaluation) it writes ``<output>/checkpoints/last.pt``;
``best.pt`` holds the state with the best validation score so far. Both hold the whole training
state, so either can be resumed. The shuffle order is seeded per epoch and the augmentation and
dropout per step, so a resumed run takes the same batches and draws as an uninterrupted one. A stop
request is honoured between steps and ends with a checkpoint; a spent ``max_hours`` budget ends
training after an evaluation and a checkpoint.

A run starts from the resume checkpoint when the context has one, else from the weights and pixel
statistics of the context's base model (fine-tuning), else from the model as built and the
statistics of the training subset. What differs between tasks (the model's inputs, its loss, its
validation scores and the checkpoint's own keys) is a subclass's: see :class:`StepTraining`.
:class:`VisionAdapter` is the adapters' shared part: the trained model, its pixel statistics and the
``model.pt`` file ``save`` writes and ``load`` reads.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import nn

from trainfaas.adapters import weights_import
from trainfaas.adapters.base import ModelAdapter, Options
from trainfaas.adapters.torch_support import (
    batch_starts,
    default_generators,
    float_tensor,
    save_torch,
    seeded,
    step_seed,
    synchronized_time,
    training_device,
)
from trainfaas.adapters.vision_data import Standardisation, Subset, channel_statistics, standardisation
from trainfaas.services.core.errors import AdapterError, ConfigError, DatasetError
from trainfaas.services.core.files import atomic_link_or_copy, copy_regular

MODEL_FILE = "model.pt"


class StepOptions(Options):
    """The options every step-trained vision adapter declares; each sets ``epochs`` and ``batch_size`` to suit it."""

    epochs: int
    batch_size: int
    max_steps: int | None = Field(None, ge=1, le=10_000_000, description="Optimizer steps to train for; when set it replaces epochs.")
    eval_every_steps: int | None = Field(
        None, ge=1, le=10_000_000, description="Score the validation subset every this many steps; None: at the end of every epoch."
    )
    checkpoint_every_steps: int | None = Field(
        None, ge=1, le=10_000_000, description="Write checkpoints/last.pt every this many steps; None: at every evaluation."
    )
    max_hours: float | None = Field(
        None, gt=0, le=10000, description="Wall-clock budget: once spent, training evaluates, checkpoints and ends early."
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of weight initialisation, shuffling and augmentation.")
    num_workers: int = Field(
        0,
        ge=0,
        le=64,
        description=(
            "Worker processes that decode images; 0 decodes in the training process. Data sets that fit"
            " in memory are decoded only once, so this matters mostly for large ones."
        ),
    )


@dataclass
class Window:
    """The training loss (and hits) of each step since the last evaluation, left on the device until the
    evaluation reads them: a step neither waits for the device nor does arithmetic it need not."""

    losses: list[torch.Tensor] = field(default_factory=list)
    hits: list[torch.Tensor] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    def add(self, loss: torch.Tensor, size: int, hits: torch.Tensor | None) -> None:
        self.losses.append(loss)
        self.sizes.append(size)
        if hits is not None:
            self.hits.append(hits)

    def figures(self) -> dict[str, float]:
        """Mean training loss (and accuracy, when hits were counted) over the images of these steps."""
        if not self.sizes:
            return {}
        sizes = torch.tensor(self.sizes, dtype=torch.float64)
        losses = torch.stack(self.losses).double().cpu()
        seen = float(sizes.sum())
        figures = {"train_loss": float((losses * sizes).sum()) / seen}
        if self.hits:
            figures["train_accuracy"] = float(torch.stack(self.hits).sum()) / seen
        return figures


class StepTraining:
    """One training run of a vision adapter: its state, the step loop and its checkpoints.

    A subclass sets the class attributes and implements the hooks below; it sets the state its
    hooks read before calling ``__init__``, which starts the run (resumed, fine-tuned or fresh).
    """

    checkpoint_format: ClassVar[int]
    reported: ClassVar[tuple[tuple[str, str, str], ...]]
    """(figure, legend, metrics key) of every figure reported at an evaluation."""
    summary: ClassVar[tuple[tuple[str, str], ...]]
    """(words, metrics key) of the figures in the progress message."""
    best: tuple[float, ...]
    """The validation score of best.pt (compared as a tuple); a subclass sets where it starts."""
    random_draws: bool = False
    """Whether a training step draws random numbers for its inputs (augmentation)."""
    gradient_clip_norm: float | None = None

    def __init__(self, adapter: ModelAdapter, labels: list[str], options: StepOptions, model: nn.Module,
                 optimizer: torch.optim.Optimizer, subsets: dict[str, Subset]) -> None:
        self.context, self.architecture, self.labels, self.options = adapter.context, adapter.architecture, labels, options
        self.model, self.optimizer, self.subsets = model, optimizer, subsets
        self.device = subsets["train"].device
        self.steps_per_epoch = len(batch_starts(len(subsets["train"]), options.batch_size))
        if self.steps_per_epoch == 0:
            raise DatasetError("training needs at least 2 images", {"dataset": "the train subset has a single image"})
        self.total_steps = options.max_steps or self.steps_per_epoch * options.epochs
        self.eval_interval = options.eval_every_steps or self.steps_per_epoch
        self.checkpoint_interval = options.checkpoint_every_steps or self.eval_interval
        self.parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
        self.generators = default_generators(self.device)
        self.step = 0
        self.metrics: dict[str, float] = {}
        self.learning_rate = math.nan  # the rate the optimizer holds now
        mean, std = self._resume() or self._fine_tune() or channel_statistics(subsets["train"], options.seed)
        self.mean, self.std = float_tensor(list(mean), self.device), float_tensor(list(std), self.device)
        self.standardise = standardisation(self.mean, self.std)

    # ---- what a task defines ------------------------------------------------------------------

    def learning_rate_at(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based)."""
        raise NotImplementedError

    def train_inputs(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's inputs and the loss's targets for a training batch; ``generator`` (None unless
        random_draws) is the only source of random draws."""
        raise NotImplementedError

    def loss(self, outputs: Any, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The training loss of the model's ``outputs``, and the number of hits when the task counts them."""
        raise NotImplementedError

    def score(self, subset: Subset) -> tuple[dict[str, float], tuple[float, ...]]:
        """Validation figures of the model (in eval mode, without gradients) and the score best.pt keeps the highest of."""
        raise NotImplementedError

    def restore(self, saved: dict[str, Any]) -> None:
        """Take the step and the task's own state from a checkpoint."""
        raise NotImplementedError

    def own_state(self) -> dict[str, Any]:
        """The checkpoint's task-specific keys."""
        raise NotImplementedError

    def from_base_model(self, saved: dict[str, Any]) -> set[str]:
        """Fine-tuning from the saved model ``saved``: the state-dict keys to leave freshly initialised."""
        return set()

    # ---- starting -----------------------------------------------------------------------------

    def _resume(self) -> tuple[list[float], list[float]] | None:
        """Continue the run saved in ``context.resume_checkpoint``; its pixel statistics, or None without one."""
        resume = self.context.resume_checkpoint
        if resume is None or not Path(resume).exists():
            return None
        saved = torch.load(resume, map_location=self.device, weights_only=True)
        self._check_same_model(saved, self.labels, f"checkpoint {resume}")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.metrics = dict(saved.get("metrics") or {})
        self.restore(saved)
        self.context.log(f"resumed from checkpoint at step {self.step}")
        return saved["mean"], saved["std"]

    def _fine_tune(self) -> tuple[list[float], list[float]] | None:
        """Start from the weights and pixel statistics of ``context.base_model``, or None without one. Layers
        whose shape differs, and those from_base_model names, keep their fresh initialisation."""
        base = self.context.base_model
        if base is None:
            return None
        saved = torch.load(Path(base) / MODEL_FILE, map_location=self.device, weights_only=True)
        self._check_same_model(saved, None, f"base model {base}")
        own, fresh_keys = self.model.state_dict(), self.from_base_model(saved)
        fitting = {key: value for key, value in saved["model"].items()
                   if key in own and own[key].shape == value.shape and key not in fresh_keys}
        self.model.load_state_dict(fitting, strict=False)
        fresh = sorted({key.rsplit(".", 1)[0] for key in own if key not in fitting})
        self.context.log(f"fine-tuning from {base}" + (f"; freshly initialised: {', '.join(fresh)}" if fresh else ""))
        return list(saved["mean"]), list(saved["std"])

    def _check_same_model(self, saved: dict[str, Any], labels: list[str] | None, what: str) -> None:
        if saved.get("architecture") != self.architecture or (labels is not None and saved.get("labels") != labels):
            raise AdapterError(
                f"{what} is of {saved.get('architecture')} with labels {saved.get('labels')},"
                f" not of {self.architecture} with labels {labels}",
                {"resume_checkpoint" if what.startswith("checkpoint") else "base_model": "another model's weights"},
            )

    # ---- the loop -----------------------------------------------------------------------------

    def train(self, checkpoints: Path) -> dict[str, float]:
        """Run optimizer steps from ``self.step`` to the end, evaluating and checkpointing on schedule; return
        the last evaluation's figures, ``steps``, ``epochs``, ``train_samples_per_s`` (images a second of the
        steps alone) and ``stopped`` or ``time_limited`` when training ended early."""
        started_s = time.monotonic()
        outside_steps_s = 0.0  # evaluations and checkpoints, left out of the throughput
        train, trained_images, window = self.subsets["train"], 0, Window()
        finish: dict[str, float] = {}
        self.model.train()
        while self.step < self.total_steps and not finish:
            epoch, first_batch = divmod(self.step, self.steps_per_epoch)
            order = torch.randperm(len(train), generator=seeded(step_seed(self.options.seed, epoch)))
            for images, targets in train.batches(self.options.batch_size, order, first_batch):
                if self.context.should_stop():
                    finish = {"stopped": 1.0}
                    break
                self._step(images, targets, window)
                trained_images += len(targets)
                if self.options.max_hours is not None and time.monotonic() - started_s > self.options.max_hours * 3600:
                    finish = {"time_limited": 1.0}
                evaluate, last = self._due(bool(finish))
                if evaluate or last:
                    pause_s = synchronized_time(self.device)
                    best = evaluate and self._evaluate(window)
                    window = Window() if evaluate else window
                    self._save(checkpoints, (["last.pt"] if last else []) + (["best.pt"] if best else []))
                    outside_steps_s += time.monotonic() - pause_s
                if finish or self.step == self.total_steps:
                    break
        if finish.get("stopped"):
            self._save(checkpoints, ["last.pt"])
        steps_s = synchronized_time(self.device) - started_s - outside_steps_s
        throughput = {"train_samples_per_s": trained_images / steps_s} if trained_images and steps_s > 0 else {}
        return {**self.metrics, "steps": float(self.step), "epochs": self.step / self.steps_per_epoch, **throughput, **finish}

    def _due(self, finishing: bool) -> tuple[bool, bool]:
        """Whether to evaluate, and whether to write last.pt, after the step just taken."""
        ended = self.step == self.total_steps
        return (self.step % self.eval_interval == 0 or ended or finishing,
                self.step % self.checkpoint_interval == 0 or ended or finishing)

    def _step(self, images: torch.Tensor, targets: torch.Tensor, window: Window) -> None:
        """One optimizer step. Its randomness is seeded by the step, so a resumed run repeats it."""
        seed = step_seed(self.options.seed, self.step)
        for generator in self.generators:  # dropout, stochastic depth
            generator.manual_seed(seed)
        inputs, targets = self.train_inputs(images, targets, seeded(seed) if self.random_draws else None)
        rate = self.learning_rate_at(self.step)
        if rate != self.learning_rate:
            for group in self.optimizer.param_groups:
                group["lr"] = rate
            self.learning_rate = rate
        outputs: list[Any] = []

        def closure() -> torch.Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            loss, hits = self.loss(self.model(inputs), targets)
            loss.backward()
            if self.gradient_clip_norm is not None:
                nn.utils.clip_grad_norm_(self.parameters, self.gradient_clip_norm)
            outputs[:] = [loss.detach(), hits]
            return loss

        # Every torch optimizer takes a closure; LBFGS needs one, as it evaluates the loss several times.
        self.optimizer.step(closure)
        window.add(outputs[0], len(targets), outputs[1])
        self.step += 1

    def _evaluate(self, window: Window) -> bool:
        """Score the validation subset, report the figures, and say whether this is the best state so far."""
        self.model.eval()
        with torch.no_grad():
            figures, score = self.score(self.subsets["validation"])
        self.model.train()
        self.metrics = {**window.figures(), **figures, "learning_rate": self.learning_rate}
        self._report()
        if score > self.best:
            self.best = score
            return True
        return False

    def _report(self) -> None:
        for figure, legend, key in self.reported:
            if key in self.metrics:
                self.context.metric(figure, legend, self.step, self.metrics[key])
        summary = " ".join(f"{words} {self.metrics[key]:.4f}" for words, key in self.summary)
        self.context.progress(
            100.0 * self.step / self.total_steps,
            f"step {self.step}/{self.total_steps} (epoch {self.step / self.steps_per_epoch:.1f}) {summary}",
        )

    # ---- checkpoints --------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The whole training state, as a checkpoint holds it."""
        return {
            "format": self.checkpoint_format,
            "architecture": self.architecture,
            "labels": self.labels,
            **self.own_state(),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "step": self.step,
            "metrics": dict(self.metrics),
            "options": self.options.model_dump(mode="json"),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def _save(self, checkpoints: Path, names: list[str]) -> None:
        """Write the training state once under the first of ``names`` and give the others the same bytes."""
        if not names:
            return
        first = checkpoints / names[0]
        save_torch(self.state(), first)
        for name in names[1:]:
            atomic_link_or_copy(first, checkpoints / name)  # replaced, never written in place
        reported = {key: value for key, value in self.metrics.items() if key.startswith(("val_", "train_"))}
        for name in names:
            self.context.checkpoint(checkpoints / name, step=self.step, metrics=reported)


class VisionAdapter(ModelAdapter):
    """What the torchvision adapters share around their runs: the trained model, the input size and the
    pixel statistics it was trained with, and the model file ``save`` writes and ``load`` reads."""

    background_classes: ClassVar[int] = 0  # outputs of the head that are no label (segmentation: the background)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model: nn.Module | None = None
        self.input_size = 0
        # Per-channel pixel statistics (0..1 scale) the model's inputs are standardised with.
        self.mean: list[float] = []
        self.std: list[float] = []

    @classmethod
    def model_from_checkpoint(cls, checkpoint: Path, local_path: Path, architecture: str, labels: list[str],
                              configuration: dict[str, Any]) -> None:
        """A checkpoint holds what ``model.pt`` does (and the optimizer state besides): copied as it is, as a
        regular file only (a link the training put in its place is not followed)."""
        if not copy_regular(Path(checkpoint), Path(local_path) / MODEL_FILE):
            raise AdapterError(f"checkpoint {checkpoint} is not a regular file", {"checkpoint_id": "a checkpoint file"})

    @classmethod
    def import_saved(cls, architecture: str, source: Path, destination: Path, labels: list[str]) -> list[str]:
        """``model.pt`` as :meth:`save` writes it, read with weights_only (no code runs) and loaded into the
        architecture layer by layer; written again by :meth:`save`."""
        adapter = cls(architecture)
        try:
            adapter.load(Path(source))
        except Exception as error:  # noqa: BLE001 - whatever torch raises on a file it refuses or weights that do not fit
            raise ConfigError(f"the archive's {MODEL_FILE} is not a {architecture} model saved by trainfaas: {str(error)[:300]}",
                              {"archive": f"model/{MODEL_FILE} as a training of {architecture} saves it"}) from None
        cls.check_saved(architecture, labels, adapter.architecture, adapter.labels)
        adapter.save(Path(destination))
        return list(adapter.labels)
    import_mean_std: ClassVar[tuple[list[float], list[float]]] = (weights_import.IMAGENET_MEAN, weights_import.IMAGENET_STD)

    @classmethod
    def import_model(cls, architecture: str, num_classes: int, state: dict[str, Any]) -> nn.Module:
        """The architecture built for imported weights ``state`` with ``num_classes`` outputs."""
        raise NotImplementedError

    @classmethod
    def import_input_size(cls, architecture: str) -> int:
        return 224

    @classmethod
    def import_weights(cls, architecture: str, source: Path, destination: Path, labels: list[str] | None) -> list[str]:
        """A torch state dict, read with weights_only, whose keys and shapes must be the architecture's;
        saved with the ImageNet pixel statistics torchvision's own weights are trained with."""
        state = weights_import.read_state_dict(source)
        classes = weights_import.head_classes(lambda n: cls.import_model(architecture, n, state), state)
        names = weights_import.labels_for(classes - cls.background_classes, labels)
        model = cls.import_model(architecture, classes, state)
        weights_import.check_fits(model, state)
        model.load_state_dict(state)
        adapter = cls(architecture, labels=names)
        adapter.model, adapter.input_size = model, cls.import_input_size(architecture)
        adapter.mean, adapter.std = list(cls.import_mean_std[0]), list(cls.import_mean_std[1])
        adapter.save(destination)
        return names

    def _adopt(self, run: StepTraining) -> None:
        """Take the labels, model, input size and pixel statistics of ``run`` as this adapter's."""
        self.labels, self.model, self.input_size = run.labels, run.model, run.options.input_size  # type: ignore[attr-defined]
        self.mean, self.std = run.mean.tolist(), run.std.tolist()

    def _save_model(self, local_path: Path, model_format: int, **own: Any) -> None:
        """Write ``local_path/model.pt``: weights, labels, architecture, input size, pixel statistics and ``own``."""
        model = self._require_model()
        payload = {"format": model_format, "architecture": self.architecture, "labels": self.labels, "input_size": self.input_size,
                   **own, "mean": list(self.mean), "std": list(self.std), "model": model.state_dict()}
        save_torch(payload, Path(local_path) / MODEL_FILE)

    def _read_model(self, local_path: Path) -> dict[str, Any]:
        """The model file :meth:`_save_model` wrote, on the training device; its architecture, labels, input size
        and pixel statistics replace this adapter's."""
        saved = torch.load(Path(local_path) / MODEL_FILE, map_location=training_device(), weights_only=True)
        self.architecture, self.labels = saved["architecture"], list(saved["labels"])
        self.input_size, self.mean, self.std = int(saved["input_size"]), list(saved["mean"]), list(saved["std"])
        return dict(saved)

    def _standardisation(self, device: torch.device) -> Standardisation:
        return standardisation(float_tensor(self.mean, device), float_tensor(self.std, device))

    def _require_model(self) -> nn.Module:
        if self.model is None:
            raise AdapterError("no model yet: train or load one first", {"model": "not trained or loaded"})
        return self.model
