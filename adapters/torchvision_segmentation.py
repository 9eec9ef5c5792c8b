"""Semantic segmentation with every segmentation model torchvision ships, trained from scratch or fine-tuned.

The data set is an image-mask directory (see :mod:`trainfaas.adapters.masks`; the bundled "shapes" sample
is one). Images are converted to RGB and resized to a square of ``input_size`` pixels, masks with
nearest-neighbour sampling. Pixels are standardised with per-channel statistics of the training
subset, saved with the model so that prediction sees the inputs training saw. Class 0 is
background; ``labels[i]`` is class ``i + 1``; mask value 255 is ignored by the loss and the scores.

Training counts optimizer steps (see :mod:`trainfaas.adapters.vision_training`, which runs the loop,
its seeding, evaluations and checkpoints, as for classification). Every evaluation scores the
validation subset (loss, mIoU and pixel accuracy from a confusion matrix); ``best.pt`` holds the
state with the best validation mIoU so far.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import Field, ValidationInfo, field_validator
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset
from torchvision import models as tv_models
from torchvision.models import segmentation as tv_segmentation

from trainfaas.adapters import AdapterError, ConfigError, DatasetError, ModelAdapter, Options
from trainfaas.adapters.evaluation import subset_of
from trainfaas.adapters.images import to_pil_image
from trainfaas.adapters.masks import IGNORE_VALUE, read_image_mask, select_labels, value_map
from trainfaas.adapters.quick_start import SEGMENTATION_MIN_SIDE, derived_segmentation_size, image_sides
from trainfaas.adapters.torch_support import training_device
from trainfaas.adapters.vision_data import Subset, open_subsets, to_model_input
from trainfaas.adapters.vision_training import StepOptions, StepTraining, VisionAdapter

CHECKPOINT_FORMAT = 1
DECODE_BATCH_IMAGES = 64
AUX_LOSS_WEIGHT = 0.5  # torchvision's segmentation reference recipe
POLY_POWER = 0.9
STEP_MILESTONES = (0.7, 0.9)  # fractions of training after which the "step" schedule divides by 10

ARCHITECTURES: tuple[str, ...] = tuple(sorted(tv_models.list_models(module=tv_segmentation)))
WITHOUT_AUX_HEAD: frozenset[str] = frozenset(name for name in ARCHITECTURES if name.startswith("lraspp"))


class SegmentationOptions(StepOptions):
    """Options of torchvision semantic segmentation training.

    The defaults suit the bundled shapes sample (240 training images of 128 pixels, trained at 64)
    with lraspp_mobilenet_v3_large: 900 steps of 8 images that reach a validation mIoU of about 0.5
    (background included) and a pixel accuracy of 0.95. Each step costs about 0.06 s on two idle
    CPU cores. Larger images want a larger ``input_size``: the mobilenet models see a 1/16 grid.
    """

    epochs: int = Field(30, ge=1, le=10000, description="Passes over the training subset (unless max_steps is set).")
    batch_size: int = Field(8, ge=1, le=1024, description="Images per optimizer step.")
    learning_rate: float = Field(
        0.006, gt=0, le=10, description="Peak learning rate, reached after warmup_steps and then lowered by lr_schedule."
    )
    optimizer: Literal["sgd", "adam", "adamw"] = Field(
        "adamw", description="sgd (with Nesterov momentum), adam, or adamw (decoupled weight decay)."
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="Momentum of sgd; for adam and adamw, the first moment's decay rate (beta1).")
    weight_decay: float = Field(1e-4, ge=0, le=1, description="L2 penalty for sgd and adam; decoupled weight decay for adamw.")
    lr_schedule: Literal["poly", "cosine", "step"] = Field(
        "poly",
        description=(
            "How the learning rate falls after warm-up: poly ((1 - progress) ** 0.9, the usual segmentation"
            " schedule), cosine (to zero), or step (divided by 10 at 70% and again at 90% of the steps)."
        ),
    )
    warmup_steps: int = Field(20, ge=0, le=1_000_000, description="Steps over which the learning rate rises linearly to its peak.")
    input_size: int | None = Field(
        None, ge=32, le=2048, description="Side in pixels of the square every image and mask is resized to. Unset (quick"
        " start): half the median shorter side of the training images, a multiple of 16 within 64-512 (64 for the"
        " bundled sample)."
    )
    horizontal_flip: bool = Field(True, description="Mirror each training image (and its mask) with probability 1/2.")
    random_scale_min: float = Field(
        1.0,
        ge=0.25,
        le=4,
        description=(
            "Smallest random zoom of a training image before it is cropped (zoom > 1) or padded with ignored"
            " pixels (zoom < 1) back to input_size. Off by default (both 1): short runs from scratch learn faster"
            " without it; larger data sets and longer runs gain from a range such as 0.5 to 2."
        ),
    )
    random_scale_max: float = Field(1.0, ge=0.25, le=4, description="Largest random zoom of a training image; at least random_scale_min.")
    aux_loss: bool | None = Field(
        None,
        description=(
            "Train the auxiliary head on an earlier backbone stage too (weight 0.5), as torchvision's reference"
            " recipe does for fcn and deeplabv3. None or false: no auxiliary head. lraspp models have none."
        ),
    )
    batch_norm_momentum: float = Field(
        0.1,
        gt=0,
        le=1,
        description=(
            "Momentum of every BatchNorm layer's running statistics (PyTorch's default). torchvision's"
            " mobilenet_v3 backbones use 0.01, tuned for long ImageNet runs: in a short run from scratch their"
            " running statistics lag far behind the weights and evaluation suffers."
        ),
    )
    labels: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None,
        min_length=1,
        description=(
            "Train on these labels of the data set only (numbered in the data set's order); pixels of the others"
            " become background. None: all labels."
        ),
    )
    include_negatives: bool = Field(
        True,
        description=(
            "Keep training images with no pixel of a chosen label. Validation always keeps every image, so"
            " that false positives on such images count."
        ),
    )
    @field_validator("random_scale_max")
    @classmethod
    def _at_least_the_minimum(cls, value: float, info: ValidationInfo) -> float:
        if value < info.data.get("random_scale_min", value):
            raise ValueError("must be at least random_scale_min")
        return value


# ---- data ---------------------------------------------------------------------------------------


def _resized_pair(image_path: Path, mask_path: Path, size: int, table: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 image [3, size, size] and uint8 class mask [size, size] (values mapped by ``table``)."""
    with Image.open(image_path) as image:
        pixels = np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    with Image.open(mask_path) as mask:
        values = np.asarray(mask.resize((size, size), Image.Resampling.NEAREST), dtype=np.uint8)
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous(), torch.from_numpy(table[values])


class _PairFiles(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """(image, mask) files decoded on demand: a map-style dataset a DataLoader can split over workers."""

    def __init__(self, pairs: list[tuple[Path, Path]], size: int, table: list[int]) -> None:
        self.pairs, self.size, self.table = pairs, size, np.asarray(table, dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _resized_pair(*self.pairs[index], self.size, self.table)


def _has_chosen_label(mask_path: Path, table: list[int]) -> bool:
    with Image.open(mask_path) as mask:
        return any(0 < table[value] < IGNORE_VALUE for _, value in mask.getcolors(256) or [])



def _augment(images: torch.Tensor, masks: torch.Tensor, options: SegmentationOptions, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal flips and zooms of standardised images [N, 3, S, S] and long masks [N, S, S].

    A zoom above 1 is cropped back to S at a random place; below 1 it is padded with zeros
    (the mean pixel) and ignored mask pixels. Random draws come from ``generator`` only.
    """
    size = images.shape[-1]
    flips = torch.rand(len(images), generator=generator) < 0.5 if options.horizontal_flip else torch.zeros(len(images), dtype=torch.bool)
    scales = options.random_scale_min + torch.rand(len(images), generator=generator) * (options.random_scale_max - options.random_scale_min)
    corners = torch.rand(len(images), 2, generator=generator)
    out_images, out_masks = [], []
    for image, mask, flip, scale, corner in zip(images, masks, flips.tolist(), scales.tolist(), corners.tolist(), strict=True):
        if flip:
            image, mask = image.flip(-1), mask.flip(-1)
        side = max(round(size * scale), 8)
        if side != size:
            image = F.interpolate(image[None], size=(side, side), mode="bilinear", align_corners=False)[0]
            mask = F.interpolate(mask[None, None].float(), size=(side, side), mode="nearest")[0, 0].long()
            image, mask = _crop_or_pad(image, mask, size, corner)
        out_images.append(image)
        out_masks.append(mask)
    return torch.stack(out_images), torch.stack(out_masks)


def _crop_or_pad(image: torch.Tensor, mask: torch.Tensor, size: int, corner: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    side = image.shape[-1]
    top, left = (int(fraction * abs(side - size)) for fraction in corner)
    if side > size:
        return image[:, top : top + size, left : left + size], mask[top : top + size, left : left + size]
    padded_image = image.new_zeros(3, size, size)
    padded_mask = mask.new_full((size, size), IGNORE_VALUE)
    padded_image[:, top : top + side, left : left + side] = image
    padded_mask[top : top + side, left : left + side] = mask
    return padded_image, padded_mask


# ---- model, optimizer, schedule ---------------------------------------------------------------


def set_batch_norm_momentum(model: nn.Module, momentum: float) -> nn.Module:
    """Set the running-statistics momentum of every BatchNorm layer of ``model``; returns ``model``."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = momentum
    return model


def build_model(architecture: str, num_classes: int, aux_loss: bool | None = None) -> nn.Module:
    """A randomly initialised ``architecture`` (backbone too) with ``num_classes`` output classes.

    Raises AdapterError for an architecture torchvision lacks and ConfigError naming ``aux_loss``
    when an auxiliary head is asked of a model that has none.
    """
    if architecture not in ARCHITECTURES:
        raise AdapterError(f"torchvision has no segmentation model {architecture!r}", {"architecture": "unknown to torchvision"})
    if architecture in WITHOUT_AUX_HEAD:
        if aux_loss:
            raise ConfigError(f"{architecture} has no auxiliary head", {"aux_loss": f"must be false or null for {architecture}"})
        return tv_models.get_model(architecture, weights=None, weights_backbone=None, num_classes=num_classes)
    return tv_models.get_model(architecture, weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=bool(aux_loss))


def _make_optimizer(model: nn.Module, options: SegmentationOptions) -> torch.optim.Optimizer:
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    if options.optimizer == "sgd":
        return torch.optim.SGD(
            parameters, lr=options.learning_rate, momentum=options.momentum, nesterov=options.momentum > 0, weight_decay=options.weight_decay
        )
    optimizer_class = torch.optim.AdamW if options.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(parameters, lr=options.learning_rate, betas=(options.momentum, 0.999), weight_decay=options.weight_decay)


def learning_rate_at(step: int, total_steps: int, options: SegmentationOptions) -> float:
    """The learning rate of optimizer step ``step`` (0-based): linear warm-up, then ``lr_schedule``."""
    peak, warmup = options.learning_rate, min(options.warmup_steps, max(total_steps - 1, 0))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
    if options.lr_schedule == "poly":
        return peak * (1.0 - progress) ** POLY_POWER
    if options.lr_schedule == "cosine":
        return peak * 0.5 * (1.0 + math.cos(math.pi * progress))
    return peak * 0.1 ** sum(progress >= milestone for milestone in STEP_MILESTONES)


def _loss(outputs: dict[str, torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
    loss = F.cross_entropy(outputs["out"], masks, ignore_index=IGNORE_VALUE)
    if "aux" in outputs:
        loss = loss + AUX_LOSS_WEIGHT * F.cross_entropy(outputs["aux"], masks, ignore_index=IGNORE_VALUE)
    return loss


def _has_aux_head(model: nn.Module) -> bool:
    return getattr(model, "aux_classifier", None) is not None


# ---- scores -------------------------------------------------------------------------------------


def confusion_matrix(predictions: torch.Tensor, targets: torch.Tensor, classes: int) -> torch.Tensor:
    """[classes, classes] pixel counts, rows the true class, columns the predicted one; 255 skipped."""
    valid = targets != IGNORE_VALUE
    index = targets[valid].long() * classes + predictions[valid].long()
    return torch.bincount(index, minlength=classes * classes).reshape(classes, classes).cpu()


def scores(matrix: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """Per-class IoU (NaN for a class neither present nor predicted), mIoU over the others, pixel accuracy."""
    matrix = matrix.double()
    hits = matrix.diag()
    union = matrix.sum(dim=0) + matrix.sum(dim=1) - hits
    iou = torch.where(union > 0, hits / union.clamp_min(1), torch.full_like(hits, math.nan))
    mean_iou = float(iou.nanmean()) if bool((union > 0).any()) else 0.0
    return iou, mean_iou, float(hits.sum() / matrix.sum().clamp_min(1))


# ---- training ------------------------------------------------------------------------------------


class SegmentationTraining(StepTraining):
    """A segmentation run: per-pixel cross-entropy (plus the auxiliary head's, weighted 0.5) on flipped and
    zoomed images, scored by mIoU and pixel accuracy from a confusion matrix."""

    checkpoint_format: ClassVar[int] = CHECKPOINT_FORMAT
    reported: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("loss", "train", "train_loss"), ("loss", "val", "val_loss"), ("mIoU", "val", "val_mIoU"),
        ("pixel_accuracy", "val", "val_pixel_accuracy"),
    )
    summary: ClassVar[tuple[tuple[str, str], ...]] = (
        ("val loss", "val_loss"), ("val mIoU", "val_mIoU"), ("pixel accuracy", "val_pixel_accuracy"))
    best: tuple[float, ...] = (-1.0,)  # val mIoU of best.pt
    options: SegmentationOptions

    def __init__(self, adapter: ModelAdapter, labels: list[str], options: SegmentationOptions, model: nn.Module,
                 subsets: dict[str, Subset]) -> None:
        self.random_draws = options.horizontal_flip or options.random_scale_min != 1.0 or options.random_scale_max != 1.0
        super().__init__(adapter, labels, options, model, _make_optimizer(model, options), subsets)

    def learning_rate_at(self, step: int) -> float:
        return learning_rate_at(step, self.total_steps, self.options)

    def train_inputs(self, images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = to_model_input(images, self.standardise), masks.long()
        return (inputs, targets) if generator is None else _augment(inputs, targets, self.options, generator)

    def loss(self, outputs: Any, targets: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _loss(outputs, targets), None

    def score(self, subset: Subset) -> tuple[dict[str, float], tuple[float, ...]]:
        classes = len(self.labels) + 1
        matrix = torch.zeros(classes, classes, dtype=torch.long)
        loss_sum, pixels = torch.zeros((), device=self.device), torch.zeros((), dtype=torch.long, device=self.device)
        for images, masks in subset.batches(max(self.options.batch_size, subset.decode_batch)):
            logits = self.model(to_model_input(images, self.standardise))["out"]
            targets = masks.long()
            loss_sum += F.cross_entropy(logits, targets, ignore_index=IGNORE_VALUE, reduction="sum")
            pixels += (targets != IGNORE_VALUE).sum()
            matrix += confusion_matrix(logits.argmax(dim=1), targets, classes)
        iou, mean_iou, accuracy = scores(matrix)
        figures = {"val_loss": float(loss_sum) / max(int(pixels), 1), "val_mIoU": mean_iou, "val_pixel_accuracy": accuracy}
        for name, value in zip(["background", *self.labels], iou.tolist(), strict=True):
            if not math.isnan(value):
                figures[f"val_IoU_{name}"] = value
        return figures, (mean_iou,)

    def restore(self, saved: dict[str, Any]) -> None:
        self.step, self.best = int(saved["step"]), (float(saved["best_miou"]),)

    def own_state(self) -> dict[str, Any]:
        return {"input_size": self.options.input_size, "aux_loss": _has_aux_head(self.model), "best_miou": self.best[0]}


# ---- the adapter ----------------------------------------------------------------------------------


class TorchvisionSegmentation(VisionAdapter):
    """Trains torchvision's semantic segmentation models on an image-mask data set, from random weights or
    from an earlier model of the same architecture."""

    architectures: ClassVar[tuple[str, ...]] = ARCHITECTURES
    task: ClassVar[str] = "semantic-segmentation"
    dataset_format: ClassVar[str | None] = "image-mask"
    Options: ClassVar[type[Options]] = SegmentationOptions

    @classmethod
    def check_dataset(cls, path: Path, configuration: dict[str, Any]) -> list[str]:
        return select_labels(read_image_mask(Path(path)).labels, configuration.get("labels"))

    @classmethod
    def reference_model(cls, architecture: str) -> nn.Module:
        """The 21-class (Pascal VOC) model, with the auxiliary head torchvision's published weights
        carry (fcn and deeplabv3 have one, lraspp none), so that the parameter count matches them."""
        return build_model(architecture, 21, aux_loss=architecture not in WITHOUT_AUX_HEAD)

    background_classes: ClassVar[int] = 1

    @classmethod
    def import_model(cls, architecture: str, num_classes: int, state: dict[str, Any]) -> nn.Module:
        with_aux = architecture not in WITHOUT_AUX_HEAD and any(key.startswith("aux_classifier.") for key in state)
        return build_model(architecture, num_classes, aux_loss=with_aux)

    @classmethod
    def import_input_size(cls, architecture: str) -> int:
        return SEGMENTATION_MIN_SIDE

    def train(self, data_path: Path | None, output_path: Path, **configuration: Any) -> dict[str, float]:
        """Train into ``output_path``; return the last evaluation's metrics, steps and epochs.

        Final metrics: ``train_loss`` (over the steps since the evaluation before), ``val_loss``,
        ``val_mIoU``, ``val_pixel_accuracy``, ``val_IoU_<label>`` per class (background included;
        NaN-free: a class absent from the validation subset and never predicted is left out),
        ``learning_rate``, ``steps``, ``epochs``, ``train_samples_per_s`` and, when training ended
        early, ``stopped`` (a stop request) or ``time_limited`` (max_hours). Raises DatasetError for a
        missing or malformed data set, ConfigError for an impossible option, AdapterError for a
        checkpoint or base model of another architecture or labels.
        """
        options = SegmentationOptions.model_validate({**self.configuration, **configuration})
        if data_path is None:
            raise DatasetError("semantic segmentation needs an image-mask data set", {"dataset": "missing"})
        dataset = read_image_mask(Path(data_path))
        labels = select_labels(dataset.labels, options.labels)
        table = value_map(dataset.labels, labels)
        if options.input_size is None:
            size, why = derived_segmentation_size(image_sides([image for image, _ in dataset.pairs["train"]]))
            self.context.log(f"quick start: input_size {size}: {why}")
            options = options.model_copy(update={"input_size": size})
        device = training_device()
        torch.manual_seed(options.seed)
        model = build_model(self.architecture, len(labels) + 1, options.aux_loss)
        model = set_batch_norm_momentum(model, options.batch_norm_momentum).to(device)
        subsets = self._open_subsets(dataset.pairs, table, options, device)
        run = SegmentationTraining(self, labels, options, model, subsets)
        self._adopt(run)
        self.context.log(
            f"{self.architecture}: {len(labels)} labels and background, {len(subsets['train'])} training and"
            f" {len(subsets['validation'])} validation images, {run.total_steps} steps of {options.batch_size}"
            f" ({run.steps_per_epoch} an epoch); {options.optimizer} at {options.learning_rate} ({options.lr_schedule},"
            f" warm-up {options.warmup_steps}); images {options.input_size}x{options.input_size};"
            f" {'preloaded' if subsets['train'].images is not None else 'streamed'} on {device}"
        )
        return run.train(Path(output_path) / "checkpoints")

    def _open_subsets(
        self, pairs: dict[str, list[tuple[Path, Path]]], table: list[int], options: SegmentationOptions, device: torch.device
    ) -> dict[str, Subset]:
        train_pairs = pairs["train"]
        if not options.include_negatives:
            train_pairs = [pair for pair in train_pairs if _has_chosen_label(pair[1], table)]
            self.context.log(f"include_negatives=false: kept {len(train_pairs)} of {len(pairs['train'])} training images")
            if len(train_pairs) < 2:
                raise DatasetError(
                    f"only {len(train_pairs)} training images show a chosen label; training needs at least 2",
                    {"configuration.include_negatives": "set to true, or choose other labels"},
                )
        files = {"train": _PairFiles(train_pairs, options.input_size, table),
                 "validation": _PairFiles(pairs["validation"], options.input_size, table)}
        return open_subsets(files, 4 * options.input_size**2, device, options.num_workers, DECODE_BATCH_IMAGES)  # type: ignore[arg-type]

    # ---- saved models and prediction ----------------------------------------------------------

    def save(self, local_path: Path, **kwargs: Any) -> None:
        """Write ``local_path/model.pt``: weights, labels, architecture, input size, auxiliary head and pixel statistics."""
        self._save_model(local_path, CHECKPOINT_FORMAT, aux_loss=_has_aux_head(self._require_model()))

    def load(self, local_path: Path, **kwargs: Any) -> None:
        """Read a model written by :meth:`save`; its architecture and labels replace this adapter's."""
        saved = self._read_model(local_path)
        model = build_model(self.architecture, len(self.labels) + 1, bool(saved["aux_loss"]))
        model.load_state_dict(saved["model"])
        self.model = model.to(training_device()).eval()

    def predict(self, batch: list[Any], **kwargs: Any) -> list[dict[str, Any]]:
        """Segment PIL images or numpy arrays (H×W or H×W×C; uint8 0..255, or floats 0..1).

        Returns one ``{"mask": uint8 array H×W, "labels": [...]}`` per item, at the item's own
        size: mask value 0 is background and ``i + 1`` is ``self.labels[i]`` (the data set's
        convention); ``labels`` lists the labels with at least one pixel.
        """
        model = self._require_model()
        device = next(model.parameters()).device
        standardise = self._standardisation(device)
        model.eval()
        results = []
        with torch.no_grad():
            for item in batch:
                image = to_pil_image(item, "segment").convert("RGB")
                pixels = np.asarray(image.resize((self.input_size, self.input_size), Image.Resampling.BILINEAR))
                tensor = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].to(device)
                logits = model(to_model_input(tensor, standardise))["out"]
                logits = F.interpolate(logits, size=(image.height, image.width), mode="bilinear", align_corners=False)
                mask = logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()
                present = sorted(int(value) for value in np.unique(mask) if value > 0)
                results.append({"mask": mask, "labels": [self.labels[value - 1] for value in present]})
        return results

    def evaluate(self, data_path: Path, **kwargs: Any) -> dict[str, Any]:
        """Score the model on the ``subset`` (``validation`` by default, or ``train``) of an image-mask data
        set at the model's input size: ``mIoU``, ``pixel_accuracy``, ``per_class`` IoU (background
        included; null for a class neither present nor predicted), ``labels`` and ``images``. Data set
        labels the model does not know count as background, as in training."""
        model = self._require_model()
        subset = subset_of(kwargs)
        dataset = read_image_mask(Path(data_path))
        files = _PairFiles(dataset.pairs[subset], self.input_size, value_map(dataset.labels, self.labels))
        if not len(files):
            raise DatasetError(f"the {subset} subset has no images", {"subset": "a subset with images"})
        device = next(model.parameters()).device
        standardise = self._standardisation(device)
        classes = len(self.labels) + 1
        matrix = torch.zeros(classes, classes, dtype=torch.long)
        model.eval()
        loader = torch.utils.data.DataLoader(files, batch_size=int(kwargs.get("batch_size", 16)))
        with torch.no_grad():
            for done, (images, masks) in enumerate(loader):
                predicted = model(to_model_input(images.to(device), standardise))["out"].argmax(dim=1)
                matrix += confusion_matrix(predicted, masks.to(device), classes)
                self.context.progress(min(99.0, 10.0 + 90.0 * (done + 1) * 16 / len(files)), f"scored {done + 1} batches")
        iou, mean_iou, pixel_accuracy = scores(matrix)
        names = ["background", *self.labels]
        return {"mIoU": mean_iou, "pixel_accuracy": pixel_accuracy, "images": len(files), "labels": names,
                "per_class": {name: {"IoU": None if math.isnan(float(value)) else float(value)} for name, value in zip(names, iou, strict=True)}}
