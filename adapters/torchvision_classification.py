"""Image classification with any classification model torchvision ships, trained from scratch or fine-tuned.

The data set is an image folder (see :mod:`trainfaas.adapters.datasets`). Every image is converted to RGB
(so grayscale images get three equal channels), resized to a square of ``input_size`` pixels and
preprocessed (``preprocess``: none, a linear contrast stretch, or CLAHE). The model sees images of
``val_crop_height`` x ``val_crop_width`` pixels (``input_size`` square unless set): a centre crop
at validation and prediction; in training a random resized crop (``random_crop``), the crop shifted
by a few pixels (``random_translate``) or the same centre crop. Pixels are standardised with
per-channel statistics of the training subset. The statistics, the preprocessing and the crop are
saved with the model, so prediction sees the inputs training saw.

When the decoded training and validation images fit in memory they are decoded once and kept (on
the GPU when there is one) as 8-bit tensors; otherwise they are decoded again on every pass (see
:mod:`trainfaas.adapters.vision_data`). Either way, augmentation (RandAugment, random crops, shifts and flips)
runs on whole batches on the training device.

Training counts optimizer steps (see :mod:`trainfaas.adapters.vision_training`, which runs the loop,
its seeding, evaluations and checkpoints). Every evaluation scores the validation subset (loss,
accuracy, macro precision, recall and F1); ``best.pt`` holds the state with the best validation
accuracy so far (lower validation loss breaks ties).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from torchvision import models as tv_models

from trainfaas.adapters import AdapterError, ConfigError, DatasetError, ModelAdapter, Options
from trainfaas.adapters.classification_images import (
    BatchRandAugment,
    LabelledImageFolder,
    LabelPlan,
    Pixels,
    Preprocessing,
    center_crop,
    count_split,
    plan_labels,
    randaugment_ops,
    random_flip,
    random_resized_crop,
    random_translate,
)
from trainfaas.adapters.classification_options import (
    ClassificationOptions,
    Plateau,
    crop_of,
    learning_rate_at,
    make_optimizer,
    optimizer_arguments,
    resolved_warmup_steps,
)
from trainfaas.adapters.evaluation import classification_scores, subset_of
from trainfaas.adapters.images import to_pil_image
from trainfaas.adapters.quick_start import (
    QUICK_EPOCHS,
    QUICK_MIN_SIDE,
    derived_epochs,
    derived_input_size,
    derived_translate,
    image_sides,
)
from trainfaas.adapters.torch_support import training_device
from trainfaas.adapters.vision_data import Subset, open_subsets, to_model_input
from trainfaas.adapters.vision_training import StepTraining, VisionAdapter

CHECKPOINT_FORMAT = 2
MODEL_FORMAT = 2
DECODE_BATCH_IMAGES = 256
SPLIT = ("train", "validation")  # the subsets, of one folder or taken as separate data sets

ARCHITECTURES: tuple[str, ...] = tuple(sorted(tv_models.list_models(module=tv_models)))


# ---- models ---------------------------------------------------------------------------------------


# Architectures trained with auxiliary classifiers, and the weight of each auxiliary loss: 0.3 for
# GoogLeNet's two (Szegedy et al. 2014), 0.4 for Inception v3's one (Szegedy et al. 2015).
AUX_LOSS_WEIGHTS = {"googlenet": 0.3, "inception_v3": 0.4}
# Inception v3's auxiliary head pools a 17x17 map with a 5x5 window then convolves 5x5: it needs
# crops of at least its reference 299 pixels a side. GoogLeNet's pools adaptively and takes any size.
AUX_MIN_SIDE = {"googlenet": 1, "inception_v3": 299}


def has_aux_heads(architecture: str, size: tuple[int, int]) -> bool:
    """Whether ``architecture`` trains with its auxiliary classifiers on crops of ``size``."""
    return architecture in AUX_LOSS_WEIGHTS and min(size) >= AUX_MIN_SIDE[architecture]


def _builder_arguments(architecture: str, size: tuple[int, int], aux: bool | None = None) -> dict[str, Any]:
    """Constructor arguments some architectures need beyond ``weights`` and ``num_classes``.
    ``aux`` (default: whether the size allows them) builds the auxiliary classifiers."""
    if architecture in AUX_LOSS_WEIGHTS:
        # Initialise explicitly to skip torchvision's warning about its default changing.
        return {"aux_logits": has_aux_heads(architecture, size) if aux is None else aux, "init_weights": True}
    if architecture.startswith("vit_"):
        return {"image_size": size[0]}
    if architecture.startswith("maxvit_"):
        return {"input_size": size}
    return {}


def build_model(architecture: str, num_classes: int, input_size: int, crop: tuple[int, int] | None = None,
                aux: bool | None = None) -> nn.Module:
    """A randomly initialised ``architecture`` with ``num_classes`` outputs, checked on one image of
    ``crop`` (height, width), by default ``input_size`` square. googlenet and inception_v3 get their
    auxiliary classifiers when the crop allows them, unless ``aux`` says otherwise.

    Raises AdapterError for an unknown architecture and ConfigError, naming ``input_size`` (or the
    ``val_crop_*`` options when a crop is set), when the architecture cannot take images of that size.
    """
    if architecture not in ARCHITECTURES:
        raise AdapterError(f"torchvision has no classification model {architecture!r}", {"architecture": "unknown to torchvision"})
    size = crop or (input_size, input_size)
    try:
        model = tv_models.get_model(architecture, weights=None, num_classes=num_classes, **_builder_arguments(architecture, size, aux))
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, *size))
    except (RuntimeError, ValueError, AssertionError) as error:
        problem = f"{architecture} cannot take {size[0]}x{size[1]} images"
        fields = ("input_size",) if size == (input_size, input_size) else ("val_crop_height", "val_crop_width")
        raise ConfigError(f"{problem} ({error}); choose another {' or '.join(fields)}", dict.fromkeys(fields, problem)) from error
    return model


QUICK_SIZES = (32, 64, 96, 128, 160, 192, 224, 256, 299)


def _smallest_fitting(architecture: str, num_classes: int, wanted: int) -> int:
    """``wanted``, or the next of ``QUICK_SIZES`` that ``architecture`` can take (the largest one's ConfigError if none can)."""
    sizes = (wanted, *(size for size in QUICK_SIZES if size > wanted))
    for size in sizes[:-1]:
        try:
            build_model(architecture, num_classes, size)
        except ConfigError:
            continue
        return size
    build_model(architecture, num_classes, sizes[-1])
    return sizes[-1]


def _head_keys(architecture: str, num_classes: int, size: tuple[int, int]) -> set[str]:
    """The state-dict keys of the layers whose shape follows the number of classes (built on the meta
    device, so this allocates nothing)."""
    shapes = []
    for classes in (num_classes, num_classes + 1):
        with torch.device("meta"):
            model = tv_models.get_model(architecture, weights=None, num_classes=classes, **_builder_arguments(architecture, size))
        shapes.append({key: value.shape for key, value in model.state_dict().items()})
    return {key for key, shape in shapes[0].items() if shapes[1].get(key) != shape}



def _logits(outputs: Any) -> torch.Tensor:
    # Models built with auxiliary heads return a named tuple in training mode.
    return outputs.logits if hasattr(outputs, "logits") else outputs


def _aux_logits(outputs: Any) -> list[torch.Tensor]:
    """The auxiliary classifiers' logits of a training-mode output (GoogLeNetOutputs, InceptionOutputs)."""
    return [value for name, value in getattr(outputs, "_asdict", dict)().items() if name.startswith("aux") and value is not None]


def saved_with_aux_heads(state: dict[str, Any]) -> bool:
    """Whether a saved state dict holds auxiliary classifiers (models saved before they were trained have none)."""
    return any(key.startswith(("aux1.", "aux2.", "AuxLogits.")) for key in state)


def _aux_note(architecture: str, model: nn.Module, crop: tuple[int, int], resumed: bool | None) -> str:
    """The log line that says whether, and why (not), the auxiliary classifiers train."""
    if getattr(model, "aux_logits", False):
        return f"auxiliary classifiers trained too (each loss weighted {AUX_LOSS_WEIGHTS[architecture]})"
    if resumed is False:
        return "auxiliary classifiers left out: the checkpoint resumed was written without them"
    return (f"auxiliary classifiers left out: {architecture}'s needs crops of at least {AUX_MIN_SIDE[architecture]}"
            f" pixels a side, these are {crop[0]}x{crop[1]}")


def _resumed_aux(architecture: str, checkpoint: Path | None) -> bool | None:
    """Whether the checkpoint a training resumes from holds auxiliary classifiers (one written before
    they were trained has none, and the run continues without them); None when there is nothing to resume."""
    if architecture not in AUX_LOSS_WEIGHTS or checkpoint is None or not Path(checkpoint).exists():
        return None
    return saved_with_aux_heads(torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=True)["model"])


# ---- training -------------------------------------------------------------------------------------


class ClassificationTraining(StepTraining):
    """A classification run: cross-entropy on (augmented) crops, scored by accuracy and macro precision,
    recall and F1. The learning rate follows ``lr_schedule``; the plateau schedule's state is checkpointed."""

    checkpoint_format: ClassVar[int] = CHECKPOINT_FORMAT
    reported: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("loss", "train", "train_loss"), ("loss", "val", "val_loss"), ("accuracy", "train", "train_accuracy"),
        ("accuracy", "val", "val_accuracy"), ("precision", "val", "val_precision"), ("recall", "val", "val_recall"),
        ("f1", "val", "val_f1"), ("learning_rate", "train", "learning_rate"),
    )
    summary: ClassVar[tuple[tuple[str, str], ...]] = (("val loss", "val_loss"), ("val accuracy", "val_accuracy"), ("val f1", "val_f1"))
    best: tuple[float, ...] = (-1.0, -math.inf)  # (val accuracy, -val loss) of best.pt
    options: ClassificationOptions

    def __init__(self, adapter: ModelAdapter, labels: list[str], options: ClassificationOptions, model: nn.Module,
                 subsets: dict[str, Subset], preprocessing: Preprocessing) -> None:
        self.preprocessing, self.crop, self.plateau = preprocessing, crop_of(options), Plateau()
        self.loss_function = nn.CrossEntropyLoss(label_smoothing=options.label_smoothing)
        self.augment: BatchRandAugment | None = None
        if options.randaugment:
            ops = randaugment_ops(options.randaugment_color, options.randaugment_disable)
            self.augment = BatchRandAugment(ops, options.randaugment_num_ops, options.randaugment_magnitude)
        self.random_draws = bool(options.randaugment or options.random_crop or options.horizontal_flip or options.random_translate)
        self.gradient_clip_norm = options.gradient_clip_norm
        optimizer = make_optimizer([parameter for parameter in model.parameters() if parameter.requires_grad], options)
        super().__init__(adapter, labels, options, model, optimizer, subsets)
        self.warmup_steps = resolved_warmup_steps(options, self.total_steps, self.steps_per_epoch)

    def learning_rate_at(self, step: int) -> float:
        return learning_rate_at(step, self.total_steps, self.warmup_steps, self.options, self.plateau.scale)

    def train_inputs(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised training images at the crop size, augmented as the options say."""
        options = self.options
        if generator is None:
            return to_model_input(center_crop(images, self.crop), self.standardise), targets
        if self.augment is not None:
            images = self.augment(images, generator)
        if options.random_crop:
            crops = random_resized_crop(to_model_input(images, self.standardise), self.crop, options.random_crop_scale,
                                        options.horizontal_flip, generator)
            return crops, targets
        if options.random_translate:
            shifted = random_translate(to_model_input(images, self.standardise), self.crop, options.random_translate,
                                       options.horizontal_flip, generator)
            return shifted, targets
        inputs = to_model_input(center_crop(images, self.crop), self.standardise)
        return (random_flip(inputs, generator) if options.horizontal_flip else inputs), targets

    def loss(self, outputs: Any, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = _logits(outputs)
        loss = self.loss_function(logits, targets)
        for aux in _aux_logits(outputs):
            loss = loss + AUX_LOSS_WEIGHTS[self.architecture] * self.loss_function(aux, targets)
        return loss, (logits.detach().argmax(dim=1) == targets).sum()

    def score(self, subset: Subset) -> tuple[dict[str, float], tuple[float, ...]]:
        # Imported here, not with the module: scikit-learn costs over a CPU-second to import, and the module
        # is imported by the API and by an instance's waiting work process, which may share the CPUs with a training.
        from sklearn.metrics import precision_recall_fscore_support

        loss_sum, predictions, truths = torch.zeros((), device=self.device), [], []
        for images, targets in subset.batches(max(self.options.batch_size, subset.decode_batch)):
            logits = _logits(self.model(to_model_input(center_crop(images, self.crop), self.standardise)))
            loss_sum += F.cross_entropy(logits, targets, reduction="sum")
            predictions.append(logits.argmax(dim=1))
            truths.append(targets)
        predicted, truth = torch.cat(predictions).cpu().numpy(), torch.cat(truths).cpu().numpy()
        precision, recall, f1, _ = precision_recall_fscore_support(truth, predicted, average="macro", zero_division=0)
        val_loss = float(loss_sum) / max(len(truth), 1)
        accuracy = float((predicted == truth).mean()) if len(truth) else 0.0
        if self.options.lr_schedule == "plateau" and self.step > self.warmup_steps:
            self.plateau.update(val_loss, self.options.lr_patience, self.options.lr_factor)
        figures = {"val_loss": val_loss, "val_accuracy": accuracy, "val_precision": float(precision), "val_recall": float(recall),
                   "val_f1": float(f1)}
        return figures, (accuracy, -val_loss)

    def restore(self, saved: dict[str, Any]) -> None:
        # Checkpoints of format 1 counted whole epochs.
        self.step = int(saved["step"]) if "step" in saved else int(saved.get("epoch", 0)) * self.steps_per_epoch
        self.best = tuple(saved.get("best", (-1.0, -math.inf)))
        self.plateau = Plateau(**saved.get("plateau", {}))

    def own_state(self) -> dict[str, Any]:
        return {"input_size": self.options.input_size, "crop": list(self.crop), "preprocess": asdict(self.preprocessing),
                "best": list(self.best), "plateau": asdict(self.plateau)}

    def from_base_model(self, saved: dict[str, Any]) -> set[str]:
        """The classifier head starts afresh when the labels differ."""
        if saved.get("preprocess", asdict(Preprocessing())) != asdict(self.preprocessing):
            self.context.log(f"the base model was trained with preprocessing {saved.get('preprocess')}; this training uses {self.options.preprocess}")
        return set() if list(saved["labels"]) == self.labels else _head_keys(self.architecture, len(self.labels), self.crop)


def _open_subsets(paths: dict[str, Path], plan: LabelPlan, options: ClassificationOptions, preprocessing: Preprocessing,
                  device: torch.device) -> dict[str, Subset]:
    pixels = Pixels(options.input_size, preprocessing)
    folders = {name: LabelledImageFolder(paths[name], plan.labels, plan.class_index, pixels) for name in SPLIT}
    return open_subsets(folders, 3 * options.input_size**2, device, options.num_workers, DECODE_BATCH_IMAGES)  # type: ignore[arg-type]


# ---- the adapter ----------------------------------------------------------------------------------


class TorchvisionClassification(VisionAdapter):
    """Trains torchvision's classification models on an image-folder data set, from random weights or
    from an earlier model of the same architecture."""

    architectures: ClassVar[tuple[str, ...]] = ARCHITECTURES
    task: ClassVar[str] = "classification"
    dataset_format: ClassVar[str | None] = "image-folder"
    split_subsets: ClassVar[tuple[str, ...]] = SPLIT
    Options: ClassVar[type[Options]] = ClassificationOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.crop: tuple[int, int] | None = None
        self.preprocessing = Preprocessing()

    @classmethod
    def check_dataset(cls, path: Path, configuration: dict[str, Any]) -> list[str]:
        return plan_labels(Path(path), configuration.get("labels"), bool(configuration.get("include_negatives"))).labels

    @classmethod
    def reference_model(cls, architecture: str) -> nn.Module:
        """The ImageNet configuration: 1000 classes at the architecture's usual 224 pixels (299 for inception_v3)."""
        side = 299 if architecture == "inception_v3" else 224
        return tv_models.get_model(architecture, weights=None, num_classes=1000, **_builder_arguments(architecture, (side, side)))

    @classmethod
    def import_model(cls, architecture: str, num_classes: int, state: dict[str, Any]) -> nn.Module:
        side = cls.import_input_size(architecture)
        return build_model(architecture, num_classes, side, aux=saved_with_aux_heads(state))

    @classmethod
    def import_input_size(cls, architecture: str) -> int:
        return 299 if architecture == "inception_v3" else 224

    def train(self, data_path: Path | None, output_path: Path, **configuration: Any) -> dict[str, float]:
        """Train into ``output_path``; return the last evaluation's metrics, steps and epochs.

        Final metrics: ``train_loss``, ``train_accuracy`` (over the steps since the evaluation before),
        ``val_loss``, ``val_accuracy``, ``val_precision``, ``val_recall``, ``val_f1`` (macro averages
        over the labels present in the validation subset or predicted), ``learning_rate``, ``steps``,
        ``epochs``, ``train_samples_per_s`` (training images per second of the optimizer steps,
        evaluations and checkpoints left out) and, when training ended early, ``stopped`` (a stop
        request) or ``time_limited`` (max_hours). Raises DatasetError for a missing or malformed
        data set, ConfigError for an image size the architecture cannot take, AdapterError for a
        checkpoint or base model of another architecture.
        """
        options = ClassificationOptions.model_validate({**self.configuration, **configuration})
        if data_path is None:
            raise DatasetError("image classification needs an image-folder data set", {"dataset": "missing"})
        plan = plan_labels(Path(data_path), options.labels, options.include_negatives)
        return self._train({name: Path(data_path) / name for name in SPLIT}, plan, options, Path(output_path))

    def train_split(self, subsets: dict[str, Path], output_path: Path, **configuration: Any) -> dict[str, float]:
        """Train as :meth:`train` does, on separate folders for train and validation, each ``<label>/<image>``."""
        options = ClassificationOptions.model_validate({**self.configuration, **configuration})
        paths = {name: Path(subsets[name]) for name in SPLIT}
        plan = plan_labels(None, options.labels, options.include_negatives, count_split(paths))
        return self._train(paths, plan, options, Path(output_path))

    def _train(self, paths: dict[str, Path], plan: LabelPlan, options: ClassificationOptions, output_path: Path) -> dict[str, float]:
        device = training_device()
        options = self._quick_start(options, paths["train"], plan)
        torch.manual_seed(options.seed)
        aux = _resumed_aux(self.architecture, self.context.resume_checkpoint)
        model = build_model(self.architecture, len(plan.labels), options.input_size or 0, crop_of(options), aux).to(device)
        preprocessing = Preprocessing.of(options)
        subsets = _open_subsets(paths, plan, options, preprocessing, device)
        run = ClassificationTraining(self, plan.labels, options, model, subsets, preprocessing)
        self._adopt(run)
        self.crop, self.preprocessing = run.crop, preprocessing
        self.context.log(
            f"{self.architecture}: {len(plan.labels)} classes, {len(subsets['train'])} training and {len(subsets['validation'])}"
            f" validation images, {run.total_steps} steps of {options.batch_size} ({run.steps_per_epoch} an epoch);"
            f" {options.optimizer} {optimizer_arguments(options)} at {options.learning_rate} ({options.lr_schedule},"
            f" warm-up {run.warmup_steps}); images {run.crop[0]}x{run.crop[1]} from {options.input_size}, preprocess {options.preprocess};"
            f" {'preloaded' if subsets['train'].images is not None else 'streamed'} on {device}"
            + (f" with {torch.get_num_threads()} threads" if device.type == "cpu" else "")
        )
        if self.architecture in AUX_LOSS_WEIGHTS:
            self.context.log(_aux_note(self.architecture, model, run.crop, aux))
        return run.train(Path(output_path) / "checkpoints")

    def _quick_start(self, options: ClassificationOptions, train_path: Path, plan: LabelPlan) -> ClassificationOptions:
        """``options`` with an unset ``input_size``, ``epochs`` and ``random_translate`` chosen from the data set, each choice logged."""
        chosen: dict[str, Any] = {}
        if options.input_size is None:
            folder = LabelledImageFolder(train_path, plan.labels, plan.class_index, None)
            crops = [side for side in (options.val_crop_height, options.val_crop_width) if side is not None]
            wanted, why = derived_input_size(image_sides([path for path, _ in folder.samples]), max([QUICK_MIN_SIDE, *crops]))
            chosen["input_size"] = _smallest_fitting(self.architecture, len(plan.labels), wanted)
            if chosen["input_size"] != wanted:
                why += f"; {self.architecture} needs at least {chosen['input_size']}"
            self.context.log(f"quick start: input_size {chosen['input_size']}: {why}")
        if options.epochs is None and options.max_steps is None:
            chosen["epochs"], why = derived_epochs(plan.counts["train"], options.batch_size)
            self.context.log(f"quick start: epochs {chosen['epochs']}: {why}")
        elif options.epochs is None:
            chosen["epochs"] = QUICK_EPOCHS  # max_steps decides; epochs only names the default
        if options.random_translate is None:
            if options.random_crop:
                chosen["random_translate"] = 0.0  # random resized crops already move the image
            else:
                chosen["random_translate"], why = derived_translate(plan.counts["train"], len(plan.labels))
                self.context.log(f"quick start: random_translate {chosen['random_translate']:g}: {why}")
        return options.model_copy(update=chosen) if chosen else options

    # ---- saved models and prediction ----------------------------------------------------------

    def save(self, local_path: Path, **kwargs: Any) -> None:
        """Write ``local_path/model.pt``: weights, labels, architecture, input size, crop, preprocessing and pixel statistics."""
        self._save_model(local_path, MODEL_FORMAT, crop=list(self.crop or (self.input_size, self.input_size)),
                         preprocess=asdict(self.preprocessing))

    def load(self, local_path: Path, **kwargs: Any) -> None:
        """Read a model written by :meth:`save`; its architecture, labels and preprocessing replace this adapter's."""
        saved = self._read_model(local_path)
        crop = saved.get("crop") or (self.input_size, self.input_size)
        self.crop = (int(crop[0]), int(crop[1]))
        self.preprocessing = Preprocessing(**saved.get("preprocess", {}))
        model = build_model(self.architecture, len(self.labels), self.input_size, self.crop,
                            aux=saved_with_aux_heads(saved["model"]))
        model.load_state_dict(saved["model"])
        self.model = model.to(training_device()).eval()

    def predict(self, batch: list[Any], **kwargs: Any) -> list[dict[str, Any]]:
        """Classify PIL images or numpy arrays (H×W or H×W×C; uint8 0..255, or floats 0..1), resized,
        preprocessed and cropped as in training.

        Returns one ``{"label": str, "score": float, "scores": [{"label", "score"}, ...]}`` per item,
        score being the softmax probability of the label and ``scores`` the ``top_k`` (default 5)
        most probable labels, most probable first.
        """
        model = self._require_model()
        if not batch:
            return []
        device = next(model.parameters()).device
        pixels = Pixels(self.input_size, self.preprocessing)
        images = torch.stack([pixels(to_pil_image(item, "classify")) for item in batch]).to(device)
        probabilities = self._probabilities(model, images)
        top_k = max(1, min(int(kwargs.get("top_k", 5)), len(self.labels)))
        scores, indexes = probabilities.topk(top_k, dim=1)
        return [{"label": self.labels[int(row[0])], "score": float(values[0]),
                 "scores": [{"label": self.labels[int(i)], "score": float(v)} for v, i in zip(values, row, strict=True)]}
                for values, row in zip(scores.tolist(), indexes.tolist(), strict=True)]

    def _probabilities(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities of uint8 images [N, 3, input_size, input_size], centre-cropped as in training."""
        images = center_crop(images, self.crop or (self.input_size, self.input_size))
        model.eval()
        with torch.no_grad():
            return _logits(model(to_model_input(images, self._standardisation(images.device)))).softmax(dim=1)

    def evaluate(self, data_path: Path, **kwargs: Any) -> dict[str, Any]:
        """Score the model on the ``subset`` (``validation`` by default, or ``train``) of an image folder:
        ``accuracy``, macro ``precision``, ``recall`` and ``f1``, ``per_class`` precision, recall, F1 and
        support, and the ``confusion_matrix`` (rows true labels, columns predicted, in ``labels`` order).
        Folders of labels the model does not know are not read."""
        model = self._require_model()
        subset = subset_of(kwargs)
        options = ClassificationOptions.model_validate(self.configuration)
        plan = plan_labels(Path(data_path), options.labels, options.include_negatives)
        known = {folder: self.labels.index(plan.labels[i]) for folder, i in plan.class_index.items() if plan.labels[i] in self.labels}
        folder = LabelledImageFolder(Path(data_path) / subset, self.labels, known, Pixels(self.input_size, self.preprocessing))
        device = next(model.parameters()).device
        truths, predictions = [], []
        loader = torch.utils.data.DataLoader(folder, batch_size=int(kwargs.get("batch_size", 64)))
        for done, (images, targets) in enumerate(loader):
            predictions.append(self._probabilities(model, images.to(device)).argmax(dim=1).cpu())
            truths.append(targets)
            self.context.progress(min(99.0, 10.0 + 90.0 * (done + 1) * loader.batch_size / max(len(folder), 1)), f"scored {done + 1} batches")
        if not truths:
            raise DatasetError(f"the {subset} subset has no image of the model's labels", {"subset": "a subset with images"})
        return classification_scores(torch.cat(truths).numpy(), torch.cat(predictions).numpy(), self.labels)
