"""Image classification with any classification model torchvision ships, trained from scratch.

The data set is an image folder (see :mod:`adapters.datasets`). Every image is converted to RGB
(so grayscale images get three equal channels) and resized to a square of ``input_size`` pixels.
Pixels are standardised with per-channel statistics of the training subset, which are saved with
the model so that prediction sees the same inputs as training.

When the decoded training and validation images fit in :data:`PRELOAD_LIMIT_BYTES`, they are
decoded once and kept in memory (on the GPU when there is one) as 8-bit tensors; otherwise they
are decoded again every epoch by a DataLoader with ``num_workers`` worker processes.

Training runs on CUDA when torch sees a GPU, else on the CPU with torch's default thread count.
After every epoch the adapter evaluates the validation subset, reports loss and accuracy, and
writes ``<output>/checkpoints/last.pt``; a stop request is honoured between batches.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader
from torchvision import models as tv_models
from torchvision import transforms as tv_transforms
from torchvision.datasets import ImageFolder

from adapters.base import ModelAdapter, Options
from adapters.datasets import IMAGE_SUFFIXES, read_image_folder
from services.errors import AdapterError, ConfigError, DatasetError

CHECKPOINT_FORMAT = 1
MODEL_FILE = "model.pt"
PRELOAD_LIMIT_BYTES = 2 * 1024**3
STATISTICS_IMAGES = 2048
DECODE_BATCH_IMAGES = 256

ARCHITECTURES: tuple[str, ...] = tuple(sorted(tv_models.list_models(module=tv_models)))


class ClassificationOptions(Options):
    """Options of torchvision classification training.

    The defaults suit tiny images such as the bundled digits sample, on which resnet18 reaches 98 to
    99% validation accuracy in about a minute on two CPU cores. Larger images, and many of the
    architectures, want a larger ``input_size`` (see its description).
    """

    epochs: int = Field(8, ge=1, le=10000, description="Passes over the training subset.")
    batch_size: int = Field(64, ge=1, le=4096, description="Images per optimisation step.")
    learning_rate: float = Field(
        0.02,
        gt=0,
        le=10,
        description=(
            "Peak learning rate. It rises linearly from near zero over the first epoch (or the first fifth"
            " of training, if shorter), then falls along a cosine to zero at the last step."
        ),
    )
    optimizer: Literal["sgd", "adam", "adamw"] = Field(
        "sgd", description="sgd (with Nesterov momentum), adam, or adamw (decoupled weight decay)."
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="Momentum of sgd; for adam and adamw, the first moment's decay rate (beta1).")
    weight_decay: float = Field(5e-4, ge=0, le=1, description="L2 penalty for sgd and adam; decoupled weight decay for adamw.")
    input_size: int = Field(
        16,
        ge=16,
        le=1024,
        description=(
            "Side in pixels of the square every image is resized to. The default suits tiny images such as"
            " the 8x8 digits sample; CIFAR-sized images want about 32, photographs 224. The resnet,"
            " mobilenet, efficientnet_b*, regnet, mnasnet and shufflenet models take 16; others need more"
            " (densenet 29, vgg and convnext 32, alexnet 63, inception_v3 75, maxvit_t a multiple of 224,"
            " vit_* a multiple of their patch size). A size the architecture cannot take is refused when"
            " training starts, naming this option."
        ),
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of weight initialisation and shuffling.")
    num_workers: int = Field(
        0,
        ge=0,
        le=64,
        description=(
            "Worker processes that decode images; 0 decodes in the training process. Data sets that fit"
            " in memory are decoded only once, so this matters mostly for large ones."
        ),
    )
    label_smoothing: float = Field(0.0, ge=0, le=1, description="Share of each training target spread evenly over all labels.")


def _is_image_file(path: str) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


class _LabelledImageFolder(ImageFolder):
    """An ImageFolder whose label indexes come from the caller, not from its own sub-folders.

    The validation subset may lack some labels; numbering its folders on their own would then
    shift every later label's index.
    """

    def __init__(self, root: Path, labels: list[str], transform: Any) -> None:
        self._labels = list(labels)
        super().__init__(str(root), transform=transform, is_valid_file=_is_image_file, allow_empty=True)

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        return list(self._labels), {label: index for index, label in enumerate(self._labels)}


def _to_rgb(image: Any) -> Any:
    return image.convert("RGB")


def _pixel_transform(input_size: int) -> Any:
    """PIL image → uint8 tensor [3, input_size, input_size]; shared by training and prediction."""
    return tv_transforms.Compose(
        [
            tv_transforms.Lambda(_to_rgb),
            tv_transforms.Resize((input_size, input_size), antialias=True),
            tv_transforms.PILToTensor(),
        ]
    )


def _to_model_input(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images [N, 3, H, W] → standardised float images."""
    return (images.float().div_(255.0) - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # One generator per epoch, so that a resumed run shuffles exactly like an uninterrupted one.
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def _is_lone_trailing_sample(batch_images: int, batch_size: int) -> bool:
    # A batch of one cannot pass a BatchNorm layer in training mode once the spatial size is 1x1.
    return batch_images == 1 and batch_size > 1


def _steps_per_epoch(images: int, batch_size: int) -> int:
    full, rest = divmod(images, batch_size)
    return full + (1 if rest and not _is_lone_trailing_sample(rest, batch_size) else 0)


Batch = tuple[torch.Tensor, torch.Tensor]
"""uint8 images [N, 3, H, W] and label indexes [N], on the training device."""


class _InMemorySubset:
    """A subset decoded once into uint8 tensors on the training device."""

    def __init__(self, dataset: _LabelledImageFolder, device: torch.device, num_workers: int) -> None:
        loader: DataLoader[Batch] = DataLoader(dataset, batch_size=DECODE_BATCH_IMAGES, num_workers=num_workers)
        images, targets = [], []
        for batch_images, batch_targets in loader:
            images.append(batch_images)
            targets.append(batch_targets)
        self.images = torch.cat(images).to(device)
        self.targets = torch.cat(targets).to(device)

    def __len__(self) -> int:
        return len(self.targets)

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Batch]:
        """Yield (uint8 images, targets) batches, shuffled when ``generator`` is given."""
        order = torch.randperm(len(self), generator=generator) if generator is not None else torch.arange(len(self))
        order = order.to(self.targets.device)
        for start in range(0, len(self), batch_size):
            index = order[start : start + batch_size]
            yield self.images[index], self.targets[index]


class _StreamedSubset:
    """A subset decoded anew on every pass, for data sets too large to hold in memory."""

    def __init__(self, dataset: _LabelledImageFolder, device: torch.device, num_workers: int) -> None:
        self.dataset = dataset
        self.device = device
        self.num_workers = num_workers

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Batch]:
        loader: DataLoader[Batch] = DataLoader(
            self.dataset,
            batch_size=batch_size,
            shuffle=generator is not None,
            generator=generator,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        for images, targets in loader:
            yield images.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)


Subset = _InMemorySubset | _StreamedSubset


def _open_subsets(
    data_path: Path, labels: list[str], counts: dict[str, int], options: ClassificationOptions, device: torch.device
) -> dict[str, Subset]:
    transform = _pixel_transform(options.input_size)
    datasets = {name: _LabelledImageFolder(data_path / name, labels, transform) for name in counts}
    decoded_bytes = sum(counts.values()) * 3 * options.input_size**2
    kind = _InMemorySubset if decoded_bytes <= PRELOAD_LIMIT_BYTES else _StreamedSubset
    return {name: kind(dataset, device, options.num_workers) for name, dataset in datasets.items()}


def _channel_statistics(subset: Subset, seed: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation (0..1 scale) of up to STATISTICS_IMAGES training images."""
    total = torch.zeros(3, dtype=torch.float64)
    total_squares = torch.zeros(3, dtype=torch.float64)
    pixels = 0
    for images, _ in subset.batches(DECODE_BATCH_IMAGES, _epoch_generator(seed, -1)):
        values = images.double().div_(255.0).transpose(0, 1).reshape(3, -1).cpu()
        total += values.sum(dim=1)
        total_squares += values.square().sum(dim=1)
        pixels += values.shape[1]
        if pixels >= STATISTICS_IMAGES * images.shape[-1] * images.shape[-2]:
            break
    mean = total / pixels
    # A constant channel would divide by zero; a floor keeps it at a harmless scale.
    std = (total_squares / pixels - mean.square()).clamp_min(0).sqrt().clamp_min(1e-3)
    return mean.tolist(), std.tolist()


def _builder_arguments(architecture: str, input_size: int) -> dict[str, Any]:
    """Constructor arguments some architectures need beyond ``weights`` and ``num_classes``."""
    if architecture in ("googlenet", "inception_v3"):
        # Auxiliary heads change the training output type; initialise explicitly to skip a warning.
        return {"aux_logits": False, "init_weights": True}
    if architecture.startswith("vit_"):
        return {"image_size": input_size}
    if architecture.startswith("maxvit_"):
        return {"input_size": (input_size, input_size)}
    return {}


def build_model(architecture: str, num_classes: int, input_size: int) -> nn.Module:
    """A randomly initialised ``architecture`` with ``num_classes`` outputs, checked on one image.

    Raises AdapterError for an unknown architecture and ConfigError (naming ``input_size``) when
    the architecture cannot take images of that size.
    """
    if architecture not in ARCHITECTURES:
        raise AdapterError(f"torchvision has no classification model {architecture!r}", {"architecture": "unknown to torchvision"})
    try:
        model = tv_models.get_model(architecture, weights=None, num_classes=num_classes, **_builder_arguments(architecture, input_size))
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size))
    except (RuntimeError, ValueError, AssertionError) as error:
        raise ConfigError(
            f"{architecture} cannot take {input_size}x{input_size} images ({error}); choose another input_size",
            {"input_size": f"{architecture} cannot take {input_size}x{input_size} images"},
        ) from error
    return model


def _make_optimizer(model: nn.Module, options: ClassificationOptions) -> torch.optim.Optimizer:
    parameters = model.parameters()
    if options.optimizer == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=options.learning_rate,
            momentum=options.momentum,
            nesterov=options.momentum > 0,
            weight_decay=options.weight_decay,
        )
    optimizer_class = torch.optim.AdamW if options.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(parameters, lr=options.learning_rate, betas=(options.momentum, 0.999), weight_decay=options.weight_decay)


def learning_rate_at(step: int, total_steps: int, warmup_steps: int, peak_rate: float) -> float:
    """Linear warm-up to ``peak_rate`` over ``warmup_steps``, then a cosine decay to zero."""
    if step < warmup_steps:
        return peak_rate * (step + 1) / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    return peak_rate * 0.5 * (1.0 + math.cos(math.pi * min(step - warmup_steps, decay_steps) / decay_steps))


def _save_atomically(payload: dict[str, Any], path: Path) -> None:
    """Write with torch.save through a temporary file, so a crash never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    torch.save(payload, partial)
    os.replace(partial, path)


def _logits(outputs: Any) -> torch.Tensor:
    # Models built with auxiliary heads return a named tuple in training mode.
    return outputs.logits if hasattr(outputs, "logits") else outputs


@dataclass
class _Run:
    """The state of one training run: what an epoch needs and what a checkpoint keeps."""

    architecture: str
    labels: list[str]
    options: ClassificationOptions
    model: nn.Module
    optimizer: torch.optim.Optimizer
    mean: torch.Tensor
    std: torch.Tensor
    steps_per_epoch: int
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.options.epochs

    @property
    def warmup_steps(self) -> int:
        return min(self.steps_per_epoch, max(self.total_steps // 5, 1))

    def checkpoint(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "architecture": self.architecture,
            "labels": self.labels,
            "input_size": self.options.input_size,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "epoch": self.epoch,
            "metrics": self.metrics,
            "options": self.options.model_dump(mode="json"),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }


class TorchvisionClassification(ModelAdapter):
    """Trains torchvision's classification models from random weights on an image-folder data set."""

    architectures: ClassVar[tuple[str, ...]] = ARCHITECTURES
    task: ClassVar[str] = "classification"
    dataset_format: ClassVar[str | None] = "image-folder"
    Options: ClassVar[type[Options]] = ClassificationOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model: nn.Module | None = None
        self.input_size = 0
        # Per-channel pixel statistics (0..1 scale) the model's inputs are standardised with.
        self.mean: list[float] = []
        self.std: list[float] = []

    @classmethod
    def check_dataset(cls, path: Path, configuration: dict[str, Any]) -> list[str]:
        return read_image_folder(Path(path))[0]

    @classmethod
    def reference_model(cls, architecture: str) -> nn.Module:
        """The ImageNet configuration: 1000 classes at the architecture's usual 224 pixels (299 for inception_v3)."""
        return tv_models.get_model(architecture, weights=None, num_classes=1000, **_builder_arguments(architecture, 224))

    def train(self, data_path: Path | None, output_path: Path, **configuration: Any) -> dict[str, float]:
        """Train into ``output_path``; return the last epoch's metrics and the epochs completed.

        Checkpoints go to ``output_path/checkpoints/last.pt`` after every epoch and on a stop
        request. A stop mid-epoch checkpoints the weights as they are but counts only completed
        epochs, so a resumed run repeats the interrupted epoch. Raises DatasetError for a missing
        or malformed data set, ConfigError for an input_size the architecture cannot take.
        """
        options = ClassificationOptions.model_validate({**self.configuration, **configuration})
        if data_path is None:
            raise DatasetError("image classification needs an image-folder data set", {"dataset": "missing"})
        labels, counts = read_image_folder(Path(data_path))
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        torch.manual_seed(options.seed)
        model = build_model(self.architecture, len(labels), options.input_size).to(device)
        subsets = _open_subsets(Path(data_path), labels, counts, options, device)
        run = self._start_run(model, labels, options, subsets, device)
        self.labels, self.model, self.input_size = labels, model, options.input_size
        self.mean, self.std = run.mean.tolist(), run.std.tolist()
        return self._train_epochs(run, subsets, Path(output_path) / "checkpoints" / "last.pt")

    def _start_run(
        self,
        model: nn.Module,
        labels: list[str],
        options: ClassificationOptions,
        subsets: dict[str, Subset],
        device: torch.device,
    ) -> _Run:
        """A fresh run, or the one saved in ``context.resume_checkpoint`` when there is one."""
        optimizer = _make_optimizer(model, options)
        steps = _steps_per_epoch(len(subsets["train"]), options.batch_size)
        resume = self.context.resume_checkpoint
        if resume is None or not Path(resume).exists():
            mean, std = _channel_statistics(subsets["train"], options.seed)
            mean_tensor, std_tensor = _tensor(mean, device), _tensor(std, device)
            return _Run(self.architecture, labels, options, model, optimizer, mean_tensor, std_tensor, steps)
        saved = torch.load(resume, map_location=device, weights_only=True)
        if saved.get("architecture") != self.architecture or saved.get("labels") != labels:
            raise AdapterError(
                f"checkpoint {resume} is of {saved.get('architecture')} with labels {saved.get('labels')},"
                f" not of {self.architecture} with labels {labels}",
                {"resume_checkpoint": "another model's checkpoint"},
            )
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        run = _Run(
            architecture=self.architecture,
            labels=labels,
            options=options,
            model=model,
            optimizer=optimizer,
            mean=_tensor(saved["mean"], device),
            std=_tensor(saved["std"], device),
            steps_per_epoch=steps,
            epoch=int(saved["epoch"]),
            metrics=dict(saved.get("metrics", {})),
        )
        self.context.log(f"resumed from {resume} after epoch {run.epoch}")
        return run

    def _train_epochs(self, run: _Run, subsets: dict[str, Subset], checkpoint_path: Path) -> dict[str, float]:
        loss_function = nn.CrossEntropyLoss(label_smoothing=run.options.label_smoothing)
        while run.epoch < run.options.epochs:
            train_figures = self._train_one_epoch(run, subsets["train"], loss_function)
            if train_figures is None:
                self._save_checkpoint(run, checkpoint_path)
                return {**run.metrics, "epochs": float(run.epoch), "stopped": 1.0}
            run.epoch += 1
            val_loss, val_accuracy = _evaluate(run, subsets["validation"])
            run.metrics = {
                "train_loss": train_figures[0],
                "train_accuracy": train_figures[1],
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
            }
            self._report_epoch(run)
            self._save_checkpoint(run, checkpoint_path)
        return {**run.metrics, "epochs": float(run.epoch)}

    def _train_one_epoch(self, run: _Run, subset: Subset, loss_function: nn.Module) -> tuple[float, float] | None:
        """Mean training loss and accuracy of one epoch, or None when a stop was requested."""
        run.model.train()
        # Reseeded per epoch so that dropout and the like repeat after a resume.
        torch.manual_seed(run.options.seed * 1_000_003 + run.epoch)
        loss_sum, correct, seen = 0.0, 0, 0
        step = run.epoch * run.steps_per_epoch
        for images, targets in subset.batches(run.options.batch_size, _epoch_generator(run.options.seed, run.epoch)):
            if self.context.should_stop():
                return None
            if _is_lone_trailing_sample(len(targets), run.options.batch_size):
                continue
            for group in run.optimizer.param_groups:
                group["lr"] = learning_rate_at(step, run.total_steps, run.warmup_steps, run.options.learning_rate)
            logits = _logits(run.model(_to_model_input(images, run.mean, run.std)))
            loss = loss_function(logits, targets)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
            step += 1
            loss_sum += loss.item() * len(targets)
            correct += int((logits.argmax(dim=1) == targets).sum())
            seen += len(targets)
        return loss_sum / max(seen, 1), correct / max(seen, 1)

    def _report_epoch(self, run: _Run) -> None:
        epoch, epochs, figures = run.epoch, run.options.epochs, run.metrics
        for figure, legend, key in (
            ("loss", "train", "train_loss"),
            ("loss", "val", "val_loss"),
            ("accuracy", "train", "train_accuracy"),
            ("accuracy", "val", "val_accuracy"),
        ):
            self.context.metric(figure, legend, epoch, figures[key])
        self.context.progress(
            100.0 * epoch / epochs,
            f"epoch {epoch}/{epochs} train loss {figures['train_loss']:.4f}"
            f" val loss {figures['val_loss']:.4f} val accuracy {figures['val_accuracy']:.4f}",
        )

    def _save_checkpoint(self, run: _Run, path: Path) -> None:
        _save_atomically(run.checkpoint(), path)
        self.context.checkpoint(path, step=run.epoch, metrics=dict(run.metrics))

    def save(self, local_path: Path, **kwargs: Any) -> None:
        """Write ``local_path/model.pt``: weights, labels, architecture, input size and pixel statistics."""
        model = self._require_model()
        payload = {
            "format": CHECKPOINT_FORMAT,
            "architecture": self.architecture,
            "labels": self.labels,
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "model": model.state_dict(),
        }
        _save_atomically(payload, Path(local_path) / MODEL_FILE)

    def load(self, local_path: Path, **kwargs: Any) -> None:
        """Read a model written by :meth:`save`; its architecture and labels replace this adapter's."""
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        saved = torch.load(Path(local_path) / MODEL_FILE, map_location=device, weights_only=True)
        self.architecture, self.labels = saved["architecture"], list(saved["labels"])
        self.input_size, self.mean, self.std = int(saved["input_size"]), list(saved["mean"]), list(saved["std"])
        model = build_model(self.architecture, len(self.labels), self.input_size)
        model.load_state_dict(saved["model"])
        self.model = model.to(device).eval()

    def predict(self, batch: list[Any], **kwargs: Any) -> list[dict[str, Any]]:
        """Classify PIL images or numpy arrays (H×W or H×W×C; uint8 0..255, or floats 0..1).

        Returns one ``{"label": str, "score": float}`` per item, score being the softmax
        probability of the label.
        """
        model = self._require_model()
        if not batch:
            return []
        device = next(model.parameters()).device
        transform = _pixel_transform(self.input_size)
        images = torch.stack([transform(_to_pil_image(item)) for item in batch]).to(device)
        model.eval()
        with torch.no_grad():
            logits = _logits(model(_to_model_input(images, _tensor(self.mean, device), _tensor(self.std, device))))
            scores, indexes = logits.softmax(dim=1).max(dim=1)
        return [{"label": self.labels[int(i)], "score": float(s)} for s, i in zip(scores, indexes, strict=True)]

    def _require_model(self) -> nn.Module:
        if self.model is None:
            raise AdapterError("no model yet: train or load one first", {"model": "not trained or loaded"})
        return self.model


def _tensor(values: list[float], device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=device)


def _evaluate(run: _Run, subset: Subset) -> tuple[float, float]:
    """Mean cross-entropy (without label smoothing) and accuracy of ``subset``."""
    run.model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for images, targets in subset.batches(max(run.options.batch_size, DECODE_BATCH_IMAGES)):
            logits = _logits(run.model(_to_model_input(images, run.mean, run.std)))
            loss_sum += float(nn.functional.cross_entropy(logits, targets, reduction="sum"))
            correct += int((logits.argmax(dim=1) == targets).sum())
    return loss_sum / len(subset), correct / len(subset)


def _to_pil_image(item: Any) -> Any:
    """A PIL image from a PIL image or a numpy array; floats are taken as 0..1."""
    import numpy as np
    from PIL import Image

    if isinstance(item, Image.Image):
        return item
    if isinstance(item, np.ndarray) and item.ndim in (2, 3):
        array = item
        if array.dtype.kind == "f":
            array = np.rint(np.clip(array, 0.0, 1.0) * 255.0)
        array = np.clip(array, 0, 255).astype(np.uint8)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        return Image.fromarray(array)
    raise ConfigError(
        f"cannot classify a {type(item).__name__}: give PIL images or numpy arrays of shape HxW or HxWxC",
        {"batch": "items must be PIL images or numpy arrays"},
    )
