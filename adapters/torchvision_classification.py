"""Image classification with any classification model torchvision ships, trained from scratch or fine-tuned.

The data set is an image folder (see :mod:`trainfaas.adapters.datasets`). Every image is converted to RGB
(so grayscale images get three equal channels), resized to a square of ``input_size`` pixels and
preprocessed (``preprocess``: none, a linear contrast stretch, or CLAHE). The model sees images of
``val_crop_height`` x ``val_crop_width`` pixels (``input_size`` square unless set): a centre crop
at validation and prediction; in training a random resized crop (``random_crop``) or the same
centre crop. Pixels are standardised with per-channel statistics of the training subset. The
statistics, the preprocessing and the crop are saved with the model, so prediction sees the inputs
training saw.

When the decoded training and validation images fit in :data:`PRELOAD_LIMIT_BYTES`, they are
decoded once and kept in memory (on the GPU when there is one) as 8-bit tensors; otherwise they
are decoded again on every pass by a DataLoader with ``num_workers`` worker processes. Either
way, augmentation (RandAugment, random crops and flips) runs on whole batches on the training
device.

Training counts optimizer steps. Every ``eval_every_steps`` (by default once an epoch) it scores
the validation subset (loss, accuracy, macro precision, recall and F1) and every
``checkpoint_every_steps`` (by default at every evaluation) it writes
``<output>/checkpoints/last.pt``; ``best.pt`` holds the state with the best validation accuracy
so far (lower validation loss breaks ties). Both hold the whole training state, so either can be
resumed. The shuffle order is seeded per epoch and the augmentation per step, so a resumed run
takes the same batches as an uninterrupted one. A stop request is honoured between steps and ends
with a checkpoint.
"""

from __future__ import annotations

import inspect
import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader
from torchvision import models as tv_models
from torchvision.datasets import ImageFolder
from torchvision.transforms import InterpolationMode
from torchvision.transforms.autoaugment import RandAugment, _apply_op
from trainfaas.adapters.base import ModelAdapter, Options
from trainfaas.adapters.datasets import IMAGE_SUFFIXES, choose_labels, count_images
from trainfaas.adapters.images import to_pil_image
from trainfaas.adapters.torch_support import batch_starts, float_tensor, save_atomically, training_device
from trainfaas.services.core.errors import AdapterError, ConfigError, DatasetError

CHECKPOINT_FORMAT = 2
MODEL_FORMAT = 2
MODEL_FILE = "model.pt"
PRELOAD_LIMIT_BYTES = 2 * 1024**3
STATISTICS_IMAGES = 2048
DECODE_BATCH_IMAGES = 256
NEGATIVE_LABEL = "__negative__"
SGD_MOMENTUM = 0.9
DEFAULT_WEIGHT_DECAY = 5e-4
PLATEAU_THRESHOLD = 1e-4  # relative improvement of the validation loss that counts, as torch's ReduceLROnPlateau
CROP_ASPECT_RATIOS = (3 / 4, 4 / 3)  # torchvision's RandomResizedCrop
MAGNITUDE_BINS = 31  # RandAugment's magnitudes 0..30

ARCHITECTURES: tuple[str, ...] = tuple(sorted(tv_models.list_models(module=tv_models)))


# ---- optimizers ------------------------------------------------------------------------------------


def _torch_optimizers() -> dict[str, type[torch.optim.Optimizer]]:
    """torch.optim's optimizer classes by lower-case name."""
    found = {}
    for name in torch.optim.__all__:
        candidate = getattr(torch.optim, name, None)
        if isinstance(candidate, type) and issubclass(candidate, torch.optim.Optimizer) and candidate is not torch.optim.Optimizer:
            found[name.lower()] = candidate
    return found


OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = _torch_optimizers()
UNSUPPORTED_OPTIMIZERS: dict[str, str] = {
    "SparseAdam": "it needs sparse gradients, which these models do not produce",
    "Muon": "it takes 2-D weights only, and these models also have convolutions, biases and norms",
}
# Constructor parameters that are not the optimizer's own settings.
RESERVED_ARGUMENTS: dict[str, str] = {"self": "", "params": "", "defaults": "", "lr": "set learning_rate instead"}


def optimizer_parameters(optimizer: str) -> list[str]:
    """The keyword arguments ``optimizer`` (a canonical torch.optim class name) takes in ``optimizer_args``."""
    signature = inspect.signature(getattr(torch.optim, optimizer).__init__)
    return [name for name in signature.parameters if name not in RESERVED_ARGUMENTS]


def optimizer_arguments(options: ClassificationOptions) -> dict[str, Any]:
    """The keyword arguments (the learning rate aside) the optimizer is built with.

    Precedence: ``optimizer_args`` first; then ``momentum`` (the optimizer's ``momentum``, or the
    first of its ``betas``) and ``weight_decay``; then the recipe's defaults: weight decay 0.0005
    for every optimizer that takes one, and for SGD momentum 0.9 with Nesterov (when momentum > 0
    and dampening is 0). Whatever none of them sets keeps torch's default.
    """
    name = options.optimizer
    accepted = set(optimizer_parameters(name))
    arguments: dict[str, Any] = {}
    if "weight_decay" in accepted:
        arguments["weight_decay"] = DEFAULT_WEIGHT_DECAY if options.weight_decay is None else options.weight_decay
    momentum = SGD_MOMENTUM if options.momentum is None and name == "SGD" else options.momentum
    if momentum is not None:
        if "momentum" in accepted:
            arguments["momentum"] = momentum
        elif "betas" in accepted:
            default_betas = inspect.signature(getattr(torch.optim, name).__init__).parameters["betas"].default
            arguments["betas"] = (momentum, default_betas[1])
    given = {key: tuple(value) if isinstance(value, list) else value for key, value in options.optimizer_args.items()}
    arguments.update(given)
    if name == "SGD" and "nesterov" not in given:
        arguments["nesterov"] = arguments.get("momentum", 0) > 0 and arguments.get("dampening", 0) == 0
    return arguments


def make_optimizer(parameters: list[nn.Parameter], options: ClassificationOptions) -> torch.optim.Optimizer:
    """``options.optimizer`` over ``parameters`` at ``options.learning_rate`` (see optimizer_arguments)."""
    return getattr(torch.optim, options.optimizer)(parameters, lr=options.learning_rate, **optimizer_arguments(options))


def _try_optimizer(options: ClassificationOptions) -> None:
    """Build the optimizer on a tiny parameter and take one step, so that torch's own checks of the
    arguments run now (at the API) and not minutes into a training; raises what torch raises."""
    weight = nn.Parameter(torch.ones(2, 2))
    optimizer = make_optimizer([weight], options)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (weight * weight).sum()
        loss.backward()
        return loss

    optimizer.step(closure)


# ---- RandAugment ---------------------------------------------------------------------------------

RANDAUGMENT_OPS: tuple[str, ...] = tuple(RandAugment()._augmentation_space(MAGNITUDE_BINS, (32, 32)))
COLOUR_OPS: frozenset[str] = frozenset({"Brightness", "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize"})


def randaugment_ops(color: bool, disable: list[str]) -> tuple[str, ...]:
    """RandAugment's operations left after taking out the colour ones (unless ``color``) and ``disable``."""
    return tuple(op for op in RANDAUGMENT_OPS if (color or op not in COLOUR_OPS) and op not in disable)


class BatchRandAugment(RandAugment):
    """torchvision's RandAugment restricted to ``ops``, applied to a batch with a choice per image.

    torchvision's ``forward`` draws one choice for the whole input; here every image of a uint8
    batch [N, C, H, W] draws its own operations and signs (from ``generator``, so a seeded step
    repeats them), and the images that drew the same one are transformed together by
    torchvision's own operation. Magnitude and the operations' parameters are torchvision's.
    """

    def __init__(self, ops: tuple[str, ...], num_ops: int, magnitude: int) -> None:
        super().__init__(num_ops=num_ops, magnitude=magnitude, num_magnitude_bins=MAGNITUDE_BINS, interpolation=InterpolationMode.NEAREST)
        self.ops = ops

    def _augmentation_space(self, num_bins: int, image_size: tuple[int, int]) -> dict[str, tuple[torch.Tensor, bool]]:
        space = super()._augmentation_space(num_bins, image_size)
        return {op: space[op] for op in self.ops}

    def forward(self, img: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:  # type: ignore[override]
        images = img.clone()
        space = self._augmentation_space(self.num_magnitude_bins, (images.shape[-2], images.shape[-1]))
        names = list(space)
        for _ in range(self.num_ops):
            choices = torch.randint(len(names), (len(images),), generator=generator)
            negative = torch.randint(2, (len(images),), generator=generator)
            keys = choices * 2 + negative
            for key in keys.unique().tolist():
                name = names[key // 2]
                magnitudes, signed = space[name]
                magnitude = float(magnitudes[self.magnitude]) if magnitudes.ndim > 0 else 0.0
                if signed and key % 2:
                    magnitude = -magnitude
                index = (keys == key).nonzero().flatten().to(images.device)
                images[index] = _apply_op(images[index], name, magnitude, interpolation=self.interpolation, fill=None)
        return images


# ---- options ------------------------------------------------------------------------------------


def _field_error(loc: tuple[str, ...], message: str, value: Any) -> ValidationError:
    """A validation error at ``loc`` (a nested location such as ``("optimizer_args", "betas")``)."""
    error = PydanticCustomError("invalid_option", "{message}", {"message": message})
    return ValidationError.from_exception_data("ClassificationOptions", [InitErrorDetails(type=error, loc=loc, input=value)])


class ClassificationOptions(Options):
    """Options of torchvision classification training.

    The defaults suit tiny images such as the bundled digits sample, on which resnet18 reaches 98 to
    99% validation accuracy in 184 steps (8 epochs of 64 images), about a minute on two idle CPU
    cores. Larger images, and many of the architectures, want a larger ``input_size`` (see its
    description).
    """

    epochs: int = Field(8, ge=1, le=10000, description="Passes over the training subset (unless max_steps is set).")
    max_steps: int | None = Field(None, ge=1, le=10_000_000, description="Optimizer steps to train for; when set it replaces epochs.")
    batch_size: int = Field(64, ge=1, le=4096, description="Images per optimizer step.")
    learning_rate: float = Field(
        0.02, gt=0, le=10, description="Peak learning rate, reached at the end of the warm-up and then shaped by lr_schedule."
    )
    optimizer: str = Field(
        "SGD",
        description=(
            "Any optimizer torch.optim exports, by class name, in any case: "
            + ", ".join(sorted(cls.__name__ for cls in OPTIMIZERS.values() if cls.__name__ not in UNSUPPORTED_OPTIMIZERS))
            + " (SparseAdam and Muon cannot train these models). LBFGS is given a closure."
        ),
    )
    optimizer_args: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "The optimizer's own keyword arguments, as its constructor names them (SGD: momentum, dampening, nesterov,"
            " weight_decay; Adam: betas, eps, amsgrad, …; RMSprop: alpha, momentum, centered, …). Lists become tuples."
            " They win over momentum and weight_decay; lr is learning_rate. Unknown names and values torch refuses are"
            " refused when the training is requested."
        ),
    )
    momentum: float | None = Field(
        None,
        ge=0,
        lt=1,
        description=(
            "Shortcut for the optimizer's momentum (SGD, RMSprop) or the first of its betas (Adam, AdamW, Adamax,"
            " NAdam, RAdam). None: 0.9 with Nesterov for SGD, torch's default for the others. Refused for an"
            " optimizer that takes neither, or together with optimizer_args.momentum or .betas."
        ),
    )
    weight_decay: float | None = Field(
        None,
        ge=0,
        le=1,
        description=(
            "Shortcut for the optimizer's weight_decay (L2 penalty; decoupled for AdamW). None: 0.0005 for every"
            " optimizer that takes weight decay. Refused for one that does not (Rprop, LBFGS), or together with"
            " optimizer_args.weight_decay."
        ),
    )
    lr_schedule: Literal["constant", "step", "cosine", "plateau"] = Field(
        "cosine",
        description=(
            "How the learning rate moves after the warm-up: constant; step (multiplied by lr_gamma every lr_step_size"
            " steps); cosine (down to lr_min at the last step); plateau (multiplied by lr_factor when the validation"
            " loss has not improved for lr_patience evaluations, down to lr_min)."
        ),
    )
    warmup_steps: int | None = Field(
        None,
        ge=0,
        le=1_000_000,
        description="Steps over which the learning rate rises linearly to its peak; None: one epoch or a fifth of the steps, whichever is fewer.",
    )
    lr_min: float = Field(0.0, ge=0, le=10, description="Floor of the cosine and plateau schedules; below learning_rate.")
    lr_step_size: int | None = Field(
        None, ge=1, le=10_000_000, description="step schedule: steps between two reductions; None: a third of the steps after the warm-up."
    )
    lr_gamma: float = Field(0.1, gt=0, le=1, description="step schedule: factor the learning rate is multiplied by at each reduction.")
    lr_patience: int = Field(
        3, ge=0, le=1000, description="plateau schedule: evaluations without a better validation loss before the rate is reduced."
    )
    lr_factor: float = Field(0.1, gt=0, lt=1, description="plateau schedule: factor the learning rate is multiplied by at each reduction.")
    gradient_clip_norm: float | None = Field(
        None, gt=0, le=1e6, description="Clip the gradients' global L2 norm to this before each step; None: no clipping."
    )
    label_smoothing: float = Field(0.0, ge=0, le=1, description="Share of each training target spread evenly over all labels.")
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
    val_crop_height: int | None = Field(
        None,
        ge=8,
        le=1024,
        description=(
            "Height of the images the model sees, cut from the input_size square: a centre crop at validation and"
            " prediction, and in training a random crop (random_crop) or the same centre crop. None: input_size."
            " At most input_size."
        ),
    )
    val_crop_width: int | None = Field(None, ge=8, le=1024, description="Width of the crop, as val_crop_height. None: input_size.")
    random_crop: bool = Field(
        False,
        description=(
            "Train on random crops, as torchvision's RandomResizedCrop: a region of random_crop_scale to all of the"
            " input_size square's area, with an aspect ratio between 3/4 and 4/3, resized (bilinear) to the crop size."
        ),
    )
    random_crop_scale: float = Field(0.25, gt=0, le=1, description="Smallest share of the image's area a random crop covers.")
    horizontal_flip: bool = Field(False, description="Mirror each training image left to right with probability 1/2.")
    randaugment: bool | None = Field(
        None, description="Apply RandAugment to every training image (randaugment_num_ops random operations). None or false: off."
    )
    randaugment_num_ops: int = Field(2, ge=1, le=10, description="RandAugment operations applied in a row to each image.")
    randaugment_magnitude: int = Field(9, ge=0, le=30, description="Strength of every RandAugment operation, 0 to 30.")
    randaugment_color: bool = Field(
        True,
        description="Keep RandAugment's colour operations (" + ", ".join(op for op in RANDAUGMENT_OPS if op in COLOUR_OPS) + "); false: geometric ones only.",
    )
    randaugment_disable: list[str] = Field(
        default_factory=list,
        max_length=len(RANDAUGMENT_OPS),
        description="RandAugment operations to leave out, any of: " + ", ".join(RANDAUGMENT_OPS) + " (any case).",
    )
    preprocess: Literal["none", "linear_stretch", "clahe"] = Field(
        "none",
        description=(
            "Applied to every image after resizing, in training, validation and prediction alike: none;"
            " linear_stretch (each channel of each image maps its stretch_low..stretch_high percentiles to 0..255);"
            " clahe (OpenCV's contrast-limited adaptive histogram equalisation of the lightness)."
        ),
    )
    stretch_low: float = Field(0.0, ge=0, le=100, description="linear_stretch: percentile of each channel that becomes 0.")
    stretch_high: float = Field(100.0, ge=0, le=100, description="linear_stretch: percentile that becomes 255; above stretch_low.")
    clahe_clip_limit: float = Field(2.0, gt=0, le=1000, description="clahe: contrast limit (OpenCV's clipLimit).")
    clahe_tile_grid: int = Field(8, ge=1, le=64, description="clahe: the image is equalised in tiles of a tile_grid x tile_grid grid.")
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
    labels: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, min_length=1, description="Train on these labels of the data set only (in the data set's order). None: all labels."
    )
    include_negatives: bool = Field(
        False,
        description=(
            "With labels: keep the images of the other labels as one more class, " + NEGATIVE_LABEL + " (\"none of"
            " these\"), in training and validation. False: leave them out."
        ),
    )

    @field_validator("optimizer")
    @classmethod
    def _a_torch_optimizer(cls, value: str) -> str:
        found = OPTIMIZERS.get(value.lower())
        usable = sorted(known.__name__ for known in OPTIMIZERS.values() if known.__name__ not in UNSUPPORTED_OPTIMIZERS)
        if found is None:
            raise ValueError(f"unknown optimizer {value!r}; choose one of {', '.join(usable)}")
        if found.__name__ in UNSUPPORTED_OPTIMIZERS:
            raise ValueError(f"{found.__name__} cannot train these models: {UNSUPPORTED_OPTIMIZERS[found.__name__]}; choose one of {', '.join(usable)}")
        return found.__name__

    @field_validator("lr_min")
    @classmethod
    def _below_the_peak(cls, value: float, info: ValidationInfo) -> float:
        if value >= info.data.get("learning_rate", math.inf):
            raise ValueError("must be below learning_rate")
        return value

    @field_validator("val_crop_height", "val_crop_width")
    @classmethod
    def _within_the_image(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and value > info.data.get("input_size", value):
            raise ValueError(f"must be at most input_size ({info.data['input_size']}): the crop is cut from the resized image")
        return value

    @field_validator("randaugment_disable")
    @classmethod
    def _known_operations(cls, value: list[str], info: ValidationInfo) -> list[str]:
        by_lower = {op.lower(): op for op in RANDAUGMENT_OPS}
        unknown = [name for name in value if name.lower() not in by_lower]
        if unknown:
            raise ValueError(f"unknown RandAugment operations {', '.join(unknown)}; choose among {', '.join(RANDAUGMENT_OPS)}")
        chosen = list(dict.fromkeys(by_lower[name.lower()] for name in value))
        if not randaugment_ops(info.data.get("randaugment_color", True), chosen):
            raise ValueError("leaves RandAugment no operation; disable fewer (Identity counts as one)")
        return chosen

    @field_validator("stretch_high")
    @classmethod
    def _above_the_low_percentile(cls, value: float, info: ValidationInfo) -> float:
        if value <= info.data.get("stretch_low", -1.0):
            raise ValueError("must be above stretch_low")
        return value

    @model_validator(mode="after")
    def _optimizer_takes_its_arguments(self) -> ClassificationOptions:
        name = self.optimizer
        accepted = optimizer_parameters(name)
        for key in self.optimizer_args:
            if key in RESERVED_ARGUMENTS or key not in accepted:
                hint = RESERVED_ARGUMENTS.get(key) or f"{name} takes {', '.join(accepted)}"
                raise _field_error(("optimizer_args", key), f"{name} has no argument {key!r}: {hint}", self.optimizer_args[key])
        if self.momentum is not None:
            if "momentum" not in accepted and "betas" not in accepted:
                raise _field_error(("momentum",), f"{name} takes neither momentum nor betas; leave momentum unset", self.momentum)
            clash = next((key for key in ("momentum", "betas") if key in self.optimizer_args), None)
            if clash:
                raise _field_error(("optimizer_args", clash), f"set momentum or optimizer_args.{clash}, not both", self.optimizer_args[clash])
        if self.weight_decay is not None:
            if "weight_decay" not in accepted:
                raise _field_error(("weight_decay",), f"{name} takes no weight decay; leave weight_decay unset", self.weight_decay)
            if "weight_decay" in self.optimizer_args:
                raise _field_error(("optimizer_args", "weight_decay"), "set weight_decay or optimizer_args.weight_decay, not both",
                                   self.optimizer_args["weight_decay"])
        try:
            _try_optimizer(self)
        except (TypeError, ValueError, RuntimeError, AssertionError, IndexError, KeyError) as error:
            raise _field_error(("optimizer_args",), f"{name} refuses {optimizer_arguments(self)}: {error}", self.optimizer_args) from None
        return self


# ---- preprocessing and pixels ---------------------------------------------------------------------


@dataclass(frozen=True)
class Preprocessing:
    """What is done to every resized image (uint8 H×W×3) before it is standardised; saved with the model."""

    kind: str = "none"
    stretch_low: float = 0.0
    stretch_high: float = 100.0
    clahe_clip_limit: float = 2.0
    clahe_tile_grid: int = 8

    @classmethod
    def of(cls, options: ClassificationOptions) -> Preprocessing:
        return cls(options.preprocess, options.stretch_low, options.stretch_high, options.clahe_clip_limit, options.clahe_tile_grid)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        if self.kind == "linear_stretch":
            return _stretch(pixels, self.stretch_low, self.stretch_high)
        if self.kind == "clahe":
            return _clahe(pixels, self.clahe_clip_limit, self.clahe_tile_grid)
        return pixels


def _stretch(pixels: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map each channel's ``low`` and ``high`` percentiles to 0 and 255; a flat channel stays as it is."""
    values = pixels.reshape(-1, pixels.shape[-1]).astype(np.float32)
    if (low, high) == (0.0, 100.0):
        bottom, top = values.min(axis=0), values.max(axis=0)
    else:
        bottom, top = np.percentile(values, [low, high], axis=0)
    span = top - bottom
    flat = span <= 0
    scale = np.where(flat, 1.0, 255.0 / np.where(flat, 1.0, span))
    offset = np.where(flat, 0.0, bottom)
    return np.clip(np.rint((pixels - offset) * scale), 0, 255).astype(np.uint8)


def _clahe(pixels: np.ndarray, clip_limit: float, tile_grid: int) -> np.ndarray:
    """OpenCV's CLAHE on the lightness (CIELAB L) of a colour image, or on the grey of a grey one."""
    import cv2

    clahe = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tile_grid, tile_grid))
    if (pixels == pixels[..., :1]).all():
        grey = clahe.apply(np.ascontiguousarray(pixels[..., 0]))
        return np.repeat(grey[..., None], 3, axis=2)
    lab = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2LAB)
    lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


@dataclass(frozen=True)
class _Pixels:
    """PIL image → preprocessed uint8 tensor [3, size, size]; shared by training and prediction (picklable,
    for DataLoader workers)."""

    size: int
    preprocessing: Preprocessing

    def __call__(self, image: Image.Image) -> torch.Tensor:
        resized = image.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
        pixels = self.preprocessing(np.array(resized, dtype=np.uint8))
        return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).contiguous()


def _is_image_file(path: str) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


class _LabelledImageFolder(ImageFolder):
    """An ImageFolder whose class indexes come from the caller, not from its own sub-folders.

    The validation subset may lack some labels; numbering its folders on their own would then
    shift every later label's index. Folders missing from ``class_index`` are not read; several
    folders may share an index (the negative class).
    """

    def __init__(self, root: Path, labels: list[str], class_index: dict[str, int], transform: Any) -> None:
        self._labels, self._class_index = list(labels), dict(class_index)
        super().__init__(str(root), transform=transform, is_valid_file=_is_image_file, allow_empty=True)

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        return list(self._labels), dict(self._class_index)


@dataclass(frozen=True)
class LabelPlan:
    """The model's labels and, for each folder of the data set to read, its class index."""

    labels: list[str]
    class_index: dict[str, int]
    counts: dict[str, int]  # images to read per subset


def plan_labels(path: Path, chosen: list[str] | None, include_negatives: bool) -> LabelPlan:
    """Check the data set at ``path`` against a label subset; raises DatasetError naming what to change."""
    images = count_images(Path(path))
    dataset_labels = sorted(images["train"])
    labels = choose_labels(dataset_labels, chosen)
    class_index = {label: index for index, label in enumerate(labels)}
    others = [label for label in dataset_labels if label not in class_index]
    if include_negatives and others:
        if NEGATIVE_LABEL in dataset_labels:
            raise DatasetError(f"the data set has a label {NEGATIVE_LABEL}, the name of the negative class",
                               {"configuration.include_negatives": "set to false, or rename that folder"})
        class_index.update({label: len(labels) for label in others})
        labels = [*labels, NEGATIVE_LABEL]
    counts = {subset: sum(n for label, n in images[subset].items() if label in class_index) for subset in images}
    if len(labels) < 2:
        raise DatasetError(f"a classifier needs at least two classes, not {labels}",
                           {"configuration.labels": "choose at least two labels, or set include_negatives"})
    if counts["train"] < 2 or counts["validation"] < 1:
        raise DatasetError(
            f"the chosen labels have {counts['train']} training and {counts['validation']} validation images",
            {"configuration.labels": "choose labels with at least 2 training images and 1 validation image"},
        )
    return LabelPlan(labels, class_index, counts)


# ---- batches ---------------------------------------------------------------------------------------


Batch = tuple[torch.Tensor, torch.Tensor]
"""uint8 images [N, 3, H, W] and label indexes [N], on the training device."""






class _Subset:
    """A subset's images, decoded once into uint8 tensors on the training device when they fit, else on every pass."""

    def __init__(self, dataset: _LabelledImageFolder, device: torch.device, num_workers: int, preload: bool) -> None:
        self.dataset, self.device, self.num_workers = dataset, device, num_workers
        self.images: torch.Tensor | None = None
        self.targets: torch.Tensor | None = None
        if preload:
            decoded = list(self._decode(torch.arange(len(dataset)), DECODE_BATCH_IMAGES))
            self.images = torch.cat([images for images, _ in decoded]).to(device)
            self.targets = torch.cat([targets for _, targets in decoded]).to(device)

    def __len__(self) -> int:
        return len(self.dataset)

    def _decode(self, order: torch.Tensor, batch_size: int) -> Iterator[Batch]:
        loader: DataLoader[Batch] = DataLoader(
            self.dataset, batch_size=batch_size, sampler=order.tolist(), num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        yield from loader

    def batches(self, batch_size: int, order: torch.Tensor | None = None, first_batch: int = 0) -> Iterator[Batch]:
        """Yield batches in ``order`` (default: file order) from batch number ``first_batch`` on;
        a lone trailing image is left out (see trainfaas.adapters.torch_support.is_lone_trailing_sample)."""
        order = torch.arange(len(self)) if order is None else order
        starts = batch_starts(len(order), batch_size)[first_batch:]
        if not starts:
            return
        order = order[starts[0] : starts[-1] + batch_size]
        if self.images is not None and self.targets is not None:
            index = order.to(self.device)
            for start in range(0, len(index), batch_size):
                part = index[start : start + batch_size]
                yield self.images[part], self.targets[part]
            return
        for images, targets in self._decode(order, batch_size):
            yield images.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _epoch_seed(seed: int, epoch: int) -> int:
    # One seed per epoch (and per step for augmentation), so that a resumed run repeats an uninterrupted one.
    return seed * 1_000_003 + epoch


def _channel_statistics(subset: _Subset, seed: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation (0..1 scale) of up to STATISTICS_IMAGES training images."""
    total = torch.zeros(3, dtype=torch.float64)
    total_squares = torch.zeros(3, dtype=torch.float64)
    pixels = 0
    order = torch.randperm(len(subset), generator=_seeded(_epoch_seed(seed, -1)))[:STATISTICS_IMAGES]
    for images, _ in subset.batches(DECODE_BATCH_IMAGES, order):
        values = images.double().div_(255.0).transpose(0, 1).reshape(3, -1).cpu()
        total += values.sum(dim=1)
        total_squares += values.square().sum(dim=1)
        pixels += values.shape[1]
    mean = total / max(pixels, 1)
    # A constant channel would divide by zero; a floor keeps it at a harmless scale.
    std = (total_squares / max(pixels, 1) - mean.square()).clamp_min(0).sqrt().clamp_min(1e-3)
    return mean.tolist(), std.tolist()


def standardisation(mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The scale and shift [1, 3, 1, 1] that standardise uint8 pixels with ``mean`` and ``std`` (0..1 scale)."""
    return (1.0 / (255.0 * std)).view(1, -1, 1, 1), (-mean / std).view(1, -1, 1, 1)


def _to_model_input(images: torch.Tensor, standardise: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """uint8 images [N, 3, H, W] → standardised float images, (pixel / 255 - mean) / std, in two in-place passes."""
    scale, shift = standardise
    return images.float().mul_(scale).add_(shift)


def center_crop(images: torch.Tensor, crop: tuple[int, int]) -> torch.Tensor:
    """The centre ``crop`` (height, width) of images [..., H, W] (a view; unchanged when the sizes match)."""
    height, width = images.shape[-2:]
    if (height, width) == crop:
        return images
    top, left = (height - crop[0]) // 2, (width - crop[1]) // 2
    return images[..., top : top + crop[0], left : left + crop[1]]


def random_resized_crop(images: torch.Tensor, crop: tuple[int, int], min_scale: float, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crops of float images [N, C, H, W], resized (bilinear) to ``crop``, in one batched resampling.

    Each crop covers min_scale..1 of the image's area with an aspect ratio in CROP_ASPECT_RATIOS
    (clamped to the image), as torchvision's RandomResizedCrop; with ``flip``, half of them are
    mirrored too. Random draws come from ``generator`` only.
    """
    count = len(images)
    area = min_scale + (1.0 - min_scale) * torch.rand(count, generator=generator)
    low, high = (math.log(ratio) for ratio in CROP_ASPECT_RATIOS)
    ratio = torch.exp(low + (high - low) * torch.rand(count, generator=generator))
    width, height = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
    # Affine grids work in [-1, 1] coordinates: a crop of half-extent w is centred anywhere within 1 - w.
    centre_x = (1.0 - width) * (2.0 * torch.rand(count, generator=generator) - 1.0)
    centre_y = (1.0 - height) * (2.0 * torch.rand(count, generator=generator) - 1.0)
    mirror = torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(count)
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = width * mirror, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
    grid = F.affine_grid(theta.to(images.device, images.dtype), [count, images.shape[1], *crop], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image [N, C, H, W] left to right with probability 1/2 (draws from ``generator``)."""
    flips = (torch.rand(len(images), generator=generator) < 0.5).to(images.device)
    return torch.where(flips.view(-1, 1, 1, 1), images.flip(-1), images)


# ---- model and schedule ------------------------------------------------------------------------


def _builder_arguments(architecture: str, size: tuple[int, int]) -> dict[str, Any]:
    """Constructor arguments some architectures need beyond ``weights`` and ``num_classes``."""
    if architecture in ("googlenet", "inception_v3"):
        # Auxiliary heads change the training output type; initialise explicitly to skip a warning.
        return {"aux_logits": False, "init_weights": True}
    if architecture.startswith("vit_"):
        return {"image_size": size[0]}
    if architecture.startswith("maxvit_"):
        return {"input_size": size}
    return {}


def build_model(architecture: str, num_classes: int, input_size: int, crop: tuple[int, int] | None = None) -> nn.Module:
    """A randomly initialised ``architecture`` with ``num_classes`` outputs, checked on one image of
    ``crop`` (height, width), by default ``input_size`` square.

    Raises AdapterError for an unknown architecture and ConfigError, naming ``input_size`` (or the
    ``val_crop_*`` options when a crop is set), when the architecture cannot take images of that size.
    """
    if architecture not in ARCHITECTURES:
        raise AdapterError(f"torchvision has no classification model {architecture!r}", {"architecture": "unknown to torchvision"})
    size = crop or (input_size, input_size)
    try:
        model = tv_models.get_model(architecture, weights=None, num_classes=num_classes, **_builder_arguments(architecture, size))
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, *size))
    except (RuntimeError, ValueError, AssertionError) as error:
        problem = f"{architecture} cannot take {size[0]}x{size[1]} images"
        fields = ("input_size",) if size == (input_size, input_size) else ("val_crop_height", "val_crop_width")
        raise ConfigError(f"{problem} ({error}); choose another {' or '.join(fields)}", dict.fromkeys(fields, problem)) from error
    return model


def _head_keys(architecture: str, num_classes: int, size: tuple[int, int]) -> set[str]:
    """The state-dict keys of the layers whose shape follows the number of classes (built on the meta
    device, so this allocates nothing)."""
    shapes = []
    for classes in (num_classes, num_classes + 1):
        with torch.device("meta"):
            model = tv_models.get_model(architecture, weights=None, num_classes=classes, **_builder_arguments(architecture, size))
        shapes.append({key: value.shape for key, value in model.state_dict().items()})
    return {key for key, shape in shapes[0].items() if shapes[1].get(key) != shape}


def resolved_warmup_steps(options: ClassificationOptions, total_steps: int, steps_per_epoch: int) -> int:
    """``warmup_steps``, or by default one epoch or a fifth of the steps, whichever is fewer."""
    if options.warmup_steps is None:
        return min(steps_per_epoch, max(total_steps // 5, 1))
    return min(options.warmup_steps, total_steps)


def learning_rate_at(step: int, total_steps: int, warmup_steps: int, options: ClassificationOptions, plateau_scale: float = 1.0) -> float:
    """The learning rate of optimizer step ``step`` (0-based): a linear warm-up to ``learning_rate``
    over ``warmup_steps``, then ``lr_schedule``. A pure function of the step except for the plateau
    schedule, whose reductions so far come in as ``plateau_scale``."""
    peak = options.learning_rate
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    after = step - warmup_steps
    if options.lr_schedule == "constant":
        return peak
    if options.lr_schedule == "step":
        size = options.lr_step_size or max((total_steps - warmup_steps) // 3, 1)
        return peak * options.lr_gamma ** (after // size)
    if options.lr_schedule == "cosine":
        progress = min(after / max(total_steps - warmup_steps, 1), 1.0)
        return options.lr_min + (peak - options.lr_min) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(peak * plateau_scale, options.lr_min)


@dataclass
class Plateau:
    """Reduce-on-plateau state, as torch's ReduceLROnPlateau (mode min, relative threshold 1e-4, no cooldown)."""

    scale: float = 1.0
    best_loss: float = math.inf
    stale: int = 0

    def update(self, val_loss: float, patience: int, factor: float) -> None:
        """Count one evaluation; multiply ``scale`` by ``factor`` after more than ``patience`` without improvement."""
        if val_loss < self.best_loss * (1.0 - PLATEAU_THRESHOLD):
            self.best_loss, self.stale = val_loss, 0
            return
        self.stale += 1
        if self.stale > patience:
            self.scale *= factor
            self.stale = 0




def _copy_atomically(source: Path, path: Path) -> None:
    """Make ``path`` hold ``source``'s bytes: a hard link where the file system has them (files are
    only ever replaced, never written in place, so the two never change together), else a copy."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:
        shutil.copyfile(source, partial)
    os.replace(partial, path)


def _logits(outputs: Any) -> torch.Tensor:
    # Models built with auxiliary heads return a named tuple in training mode.
    return outputs.logits if hasattr(outputs, "logits") else outputs






def _default_generators(device: torch.device) -> list[torch.Generator]:
    """The generators dropout and the like draw from on ``device``. Seeding them directly costs a few
    microseconds a step; torch.manual_seed visits every backend and costs a hundred times more."""
    generators = [torch.default_generator]
    if device.type == "cuda":
        generators.append(torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()])
    return generators


def _synchronized_time(device: torch.device) -> float:
    """time.monotonic() once the device has done the work queued so far (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.monotonic()


# ---- training ------------------------------------------------------------------------------------


@dataclass
class _Window:
    """The training loss and hits of each step since the last evaluation, left on the device until the
    evaluation reads them: a step neither waits for the device nor does arithmetic it need not."""

    losses: list[torch.Tensor] = field(default_factory=list)
    hits: list[torch.Tensor] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    def add(self, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        self.losses.append(loss)
        self.hits.append((logits.argmax(dim=1) == targets).sum())
        self.sizes.append(len(targets))

    def figures(self) -> dict[str, float]:
        """Mean training loss and accuracy over the images of these steps (none: no figures)."""
        if not self.sizes:
            return {}
        sizes = torch.tensor(self.sizes, dtype=torch.float64)
        losses = torch.stack(self.losses).double().cpu()
        seen = float(sizes.sum())
        return {"train_loss": float((losses * sizes).sum()) / seen, "train_accuracy": float(torch.stack(self.hits).sum()) / seen}


@dataclass
class _Run:
    """The state of one training run: what the loop needs and what a checkpoint keeps."""

    architecture: str
    labels: list[str]
    options: ClassificationOptions
    model: nn.Module
    optimizer: torch.optim.Optimizer
    mean: torch.Tensor
    std: torch.Tensor
    preprocessing: Preprocessing
    steps_per_epoch: int
    step: int = 0
    best: tuple[float, float] = (-1.0, -math.inf)  # (val accuracy, -val loss) of best.pt
    plateau: Plateau = field(default_factory=Plateau)
    metrics: dict[str, float] = field(default_factory=dict)
    learning_rate: float = math.nan  # the rate the optimizer holds now
    # Derived from the options once, so that a step does no more than it must.
    total_steps: int = field(init=False)
    warmup_steps: int = field(init=False)
    eval_interval: int = field(init=False)
    checkpoint_interval: int = field(init=False)
    crop: tuple[int, int] = field(init=False)
    parameters: list[nn.Parameter] = field(init=False)
    loss_function: nn.Module = field(init=False)
    augment: BatchRandAugment | None = field(init=False)
    random_draws: bool = field(init=False)
    standardise: tuple[torch.Tensor, torch.Tensor] = field(init=False)
    generators: list[torch.Generator] = field(init=False)

    def __post_init__(self) -> None:
        options = self.options
        self.total_steps = options.max_steps or self.steps_per_epoch * options.epochs
        self.warmup_steps = resolved_warmup_steps(options, self.total_steps, self.steps_per_epoch)
        self.eval_interval = options.eval_every_steps or self.steps_per_epoch
        self.checkpoint_interval = options.checkpoint_every_steps or self.eval_interval
        self.crop = _crop_of(options)
        self.parameters = [parameter for parameter in self.model.parameters() if parameter.requires_grad]
        self.loss_function = nn.CrossEntropyLoss(label_smoothing=options.label_smoothing)
        self.augment = None
        if options.randaugment:
            ops = randaugment_ops(options.randaugment_color, options.randaugment_disable)
            self.augment = BatchRandAugment(ops, options.randaugment_num_ops, options.randaugment_magnitude)
        self.random_draws = bool(options.randaugment or options.random_crop or options.horizontal_flip)
        self.standardise = standardisation(self.mean, self.std)
        self.generators = _default_generators(self.mean.device)

    def rate_at(self, step: int) -> float:
        return learning_rate_at(step, self.total_steps, self.warmup_steps, self.options, self.plateau.scale)

    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "architecture": self.architecture,
            "labels": self.labels,
            "input_size": self.options.input_size,
            "crop": list(self.crop),
            "preprocess": asdict(self.preprocessing),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "step": self.step,
            "best": list(self.best),
            "plateau": asdict(self.plateau),
            "metrics": dict(self.metrics),
            "options": self.options.model_dump(mode="json"),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }


class TorchvisionClassification(ModelAdapter):
    """Trains torchvision's classification models on an image-folder data set, from random weights or
    from an earlier model of the same architecture."""

    architectures: ClassVar[tuple[str, ...]] = ARCHITECTURES
    task: ClassVar[str] = "classification"
    dataset_format: ClassVar[str | None] = "image-folder"
    Options: ClassVar[type[Options]] = ClassificationOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model: nn.Module | None = None
        self.input_size = 0
        self.crop: tuple[int, int] | None = None
        self.preprocessing = Preprocessing()
        # Per-channel pixel statistics (0..1 scale) the model's inputs are standardised with.
        self.mean: list[float] = []
        self.std: list[float] = []

    @classmethod
    def check_dataset(cls, path: Path, configuration: dict[str, Any]) -> list[str]:
        return plan_labels(Path(path), configuration.get("labels"), bool(configuration.get("include_negatives"))).labels

    @classmethod
    def reference_model(cls, architecture: str) -> nn.Module:
        """The ImageNet configuration: 1000 classes at the architecture's usual 224 pixels (299 for inception_v3)."""
        return tv_models.get_model(architecture, weights=None, num_classes=1000, **_builder_arguments(architecture, (224, 224)))

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
        device = training_device()
        torch.manual_seed(options.seed)
        model = build_model(self.architecture, len(plan.labels), options.input_size, _crop_of(options)).to(device)
        preprocessing = Preprocessing.of(options)
        subsets = self._open_subsets(Path(data_path), plan, options, preprocessing, device)
        run = self._start_run(model, plan.labels, options, preprocessing, subsets["train"], device)
        self.labels, self.model, self.input_size, self.crop = plan.labels, model, options.input_size, run.crop
        self.preprocessing, self.mean, self.std = preprocessing, run.mean.tolist(), run.std.tolist()
        self.context.log(
            f"{self.architecture}: {len(plan.labels)} classes, {len(subsets['train'])} training and {len(subsets['validation'])}"
            f" validation images, {run.total_steps} steps of {options.batch_size} ({run.steps_per_epoch} an epoch);"
            f" {options.optimizer} {optimizer_arguments(options)} at {options.learning_rate} ({options.lr_schedule},"
            f" warm-up {run.warmup_steps}); images {run.crop[0]}x{run.crop[1]} from {options.input_size}, preprocess {options.preprocess};"
            f" {'preloaded' if subsets['train'].images is not None else 'streamed'} on {device}"
            + (f" with {torch.get_num_threads()} threads" if device.type == "cpu" else "")
        )
        return self._train_steps(run, subsets, Path(output_path) / "checkpoints")

    def _open_subsets(
        self, data_path: Path, plan: LabelPlan, options: ClassificationOptions, preprocessing: Preprocessing, device: torch.device
    ) -> dict[str, _Subset]:
        pixels = _Pixels(options.input_size, preprocessing)
        decoded_bytes = sum(plan.counts.values()) * 3 * options.input_size**2
        preload = decoded_bytes <= PRELOAD_LIMIT_BYTES
        return {
            name: _Subset(_LabelledImageFolder(data_path / name, plan.labels, plan.class_index, pixels), device, options.num_workers, preload)
            for name in ("train", "validation")
        }

    def _start_run(
        self, model: nn.Module, labels: list[str], options: ClassificationOptions, preprocessing: Preprocessing,
        train: _Subset, device: torch.device,
    ) -> _Run:
        """A fresh run, the one saved in ``context.resume_checkpoint``, or one fine-tuning ``context.base_model``."""
        optimizer = make_optimizer([parameter for parameter in model.parameters() if parameter.requires_grad], options)
        steps_per_epoch = len(batch_starts(len(train), options.batch_size))
        resume = self.context.resume_checkpoint
        if resume is not None and Path(resume).exists():
            saved = torch.load(resume, map_location=device, weights_only=True)
            self._check_same_model(saved, labels, f"checkpoint {resume}")
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            # Checkpoints of format 1 counted whole epochs.
            step = int(saved["step"]) if "step" in saved else int(saved.get("epoch", 0)) * steps_per_epoch
            run = _Run(self.architecture, labels, options, model, optimizer, float_tensor(saved["mean"], device), float_tensor(saved["std"], device),
                       preprocessing, steps_per_epoch, step, tuple(saved.get("best", (-1.0, -math.inf))),
                       Plateau(**saved.get("plateau", {})), dict(saved.get("metrics") or {}))
            self.context.log(f"resumed from checkpoint at step {run.step}")
            return run
        base = self.context.base_model
        if base is not None:
            mean, std = self._load_base_model(model, Path(base), labels, options, device)
        else:
            mean, std = _channel_statistics(train, options.seed)
        return _Run(self.architecture, labels, options, model, optimizer, float_tensor(mean, device), float_tensor(std, device), preprocessing, steps_per_epoch)

    def _check_same_model(self, saved: dict[str, Any], labels: list[str] | None, what: str) -> None:
        if saved.get("architecture") != self.architecture or (labels is not None and saved.get("labels") != labels):
            raise AdapterError(
                f"{what} is of {saved.get('architecture')} with labels {saved.get('labels')},"
                f" not of {self.architecture} with labels {labels}",
                {"resume_checkpoint" if what.startswith("checkpoint") else "base_model": "another model's weights"},
            )

    def _load_base_model(
        self, model: nn.Module, base: Path, labels: list[str], options: ClassificationOptions, device: torch.device
    ) -> tuple[list[float], list[float]]:
        """Start from a saved model's weights and pixel statistics. The classifier head starts afresh
        when the labels differ, and so does any layer whose shape differs."""
        saved = torch.load(base / MODEL_FILE, map_location=device, weights_only=True)
        self._check_same_model(saved, None, f"base model {base}")
        own = model.state_dict()
        fresh_head = set() if list(saved["labels"]) == labels else _head_keys(self.architecture, len(labels), _crop_of(options))
        fitting = {key: value for key, value in saved["model"].items()
                   if key in own and own[key].shape == value.shape and key not in fresh_head}
        model.load_state_dict(fitting, strict=False)
        fresh = sorted({key.rsplit(".", 1)[0] for key in own if key not in fitting})
        self.context.log(f"fine-tuning from {base}" + (f"; freshly initialised: {', '.join(fresh)}" if fresh else ""))
        if saved.get("preprocess", asdict(Preprocessing())) != asdict(Preprocessing.of(options)):
            self.context.log(f"the base model was trained with preprocessing {saved.get('preprocess')}; this training uses {options.preprocess}")
        return list(saved["mean"]), list(saved["std"])

    def _train_steps(self, run: _Run, subsets: dict[str, _Subset], checkpoints: Path) -> dict[str, float]:
        """Run optimizer steps from ``run.step`` to the end, evaluating and checkpointing on schedule."""
        started_s = time.monotonic()
        outside_steps_s = 0.0  # evaluations and checkpoints, left out of the throughput
        train, device, trained_images = subsets["train"], run.mean.device, 0
        window = _Window()
        finish: dict[str, float] = {}
        run.model.train()
        while run.step < run.total_steps and not finish:
            epoch, first_batch = divmod(run.step, run.steps_per_epoch)
            order = torch.randperm(len(train), generator=_seeded(_epoch_seed(run.options.seed, epoch)))
            for images, targets in train.batches(run.options.batch_size, order, first_batch):
                if self.context.should_stop():
                    finish = {"stopped": 1.0}
                    break
                self._step(run, images, targets, window)
                trained_images += len(targets)
                ended = run.step == run.total_steps
                evaluate = run.step % run.eval_interval == 0 or ended
                over_time = run.options.max_hours is not None and time.monotonic() - started_s > run.options.max_hours * 3600
                if evaluate or over_time or run.step % run.checkpoint_interval == 0:
                    pause_s = _synchronized_time(device)
                    best = False
                    if evaluate or over_time:
                        best = self._evaluate(run, subsets["validation"], window)
                        window = _Window()
                        finish = {"time_limited": 1.0} if over_time else {}
                    last = bool(finish) or ended or run.step % run.checkpoint_interval == 0
                    self._save(run, checkpoints, (["last.pt"] if last else []) + (["best.pt"] if best else []))
                    outside_steps_s += time.monotonic() - pause_s
                if finish or ended:
                    break
        if finish.get("stopped"):
            self._save(run, checkpoints, ["last.pt"])
        steps_s = _synchronized_time(device) - started_s - outside_steps_s
        throughput = {"train_samples_per_s": trained_images / steps_s} if trained_images and steps_s > 0 else {}
        return {**run.metrics, "steps": float(run.step), "epochs": run.step / run.steps_per_epoch, **throughput, **finish}

    def _step(self, run: _Run, images: torch.Tensor, targets: torch.Tensor, window: _Window) -> None:
        """One optimizer step. Its randomness is seeded by the step, so a resumed run repeats it."""
        seed = _epoch_seed(run.options.seed, run.step)
        for generator in run.generators:  # dropout, stochastic depth
            generator.manual_seed(seed)
        inputs = self._train_inputs(run, images, _seeded(seed) if run.random_draws else None)
        rate = run.rate_at(run.step)
        if rate != run.learning_rate:
            for group in run.optimizer.param_groups:
                group["lr"] = rate
            run.learning_rate = rate
        outputs: list[torch.Tensor] = []

        def closure() -> torch.Tensor:
            run.optimizer.zero_grad(set_to_none=True)
            logits = _logits(run.model(inputs))
            loss = run.loss_function(logits, targets)
            loss.backward()
            if run.options.gradient_clip_norm is not None:
                nn.utils.clip_grad_norm_(run.parameters, run.options.gradient_clip_norm)
            outputs[:] = [loss.detach(), logits.detach()]
            return loss

        # Every torch optimizer takes a closure; LBFGS needs one, as it evaluates the loss several times.
        run.optimizer.step(closure)
        window.add(outputs[0], outputs[1], targets)
        run.step += 1

    def _train_inputs(self, run: _Run, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Standardised training images at the crop size, augmented as the options say."""
        options = run.options
        if generator is None:
            return _to_model_input(center_crop(images, run.crop), run.standardise)
        if run.augment is not None:
            images = run.augment(images, generator)
        if options.random_crop:
            return random_resized_crop(_to_model_input(images, run.standardise), run.crop, options.random_crop_scale,
                                       options.horizontal_flip, generator)
        inputs = _to_model_input(center_crop(images, run.crop), run.standardise)
        return random_flip(inputs, generator) if options.horizontal_flip else inputs

    def _evaluate(self, run: _Run, subset: _Subset, window: _Window) -> bool:
        """Score the validation subset, report the figures, and say whether this is the best state so far."""
        # Imported here, not with the module: scikit-learn costs over a CPU-second to import, and the module
        # is imported by the API and by an instance's waiting work process, which may share the CPUs with a training.
        from sklearn.metrics import precision_recall_fscore_support

        run.model.eval()
        loss_sum, predictions, truths = torch.zeros((), device=run.mean.device), [], []
        with torch.no_grad():
            for images, targets in subset.batches(max(run.options.batch_size, DECODE_BATCH_IMAGES)):
                logits = _logits(run.model(_to_model_input(center_crop(images, run.crop), run.standardise)))
                loss_sum += F.cross_entropy(logits, targets, reduction="sum")
                predictions.append(logits.argmax(dim=1))
                truths.append(targets)
        predicted, truth = torch.cat(predictions).cpu().numpy(), torch.cat(truths).cpu().numpy()
        precision, recall, f1, _ = precision_recall_fscore_support(truth, predicted, average="macro", zero_division=0)
        val_loss = float(loss_sum) / max(len(truth), 1)
        accuracy = float((predicted == truth).mean()) if len(truth) else 0.0
        run.metrics = {**window.figures(), "val_loss": val_loss, "val_accuracy": accuracy, "val_precision": float(precision),
                       "val_recall": float(recall), "val_f1": float(f1), "learning_rate": run.learning_rate}
        if run.options.lr_schedule == "plateau" and run.step > run.warmup_steps:
            run.plateau.update(val_loss, run.options.lr_patience, run.options.lr_factor)
        self._report(run)
        run.model.train()
        if (accuracy, -val_loss) > run.best:
            run.best = (accuracy, -val_loss)
            return True
        return False

    def _report(self, run: _Run) -> None:
        figures = run.metrics
        for figure, legend, key in (
            ("loss", "train", "train_loss"), ("loss", "val", "val_loss"), ("accuracy", "train", "train_accuracy"),
            ("accuracy", "val", "val_accuracy"), ("precision", "val", "val_precision"), ("recall", "val", "val_recall"),
            ("f1", "val", "val_f1"), ("learning_rate", "train", "learning_rate"),
        ):
            if key in figures:
                self.context.metric(figure, legend, run.step, figures[key])
        self.context.progress(
            100.0 * run.step / run.total_steps,
            f"step {run.step}/{run.total_steps} (epoch {run.step / run.steps_per_epoch:.1f}) val loss {figures['val_loss']:.4f}"
            f" val accuracy {figures['val_accuracy']:.4f} val f1 {figures['val_f1']:.4f}",
        )

    def _save(self, run: _Run, checkpoints: Path, names: list[str]) -> None:
        """Write the training state once under the first of ``names`` and link the others to it."""
        if not names:
            return
        first = checkpoints / names[0]
        save_atomically(run.state(), first)
        for name in names[1:]:
            _copy_atomically(first, checkpoints / name)
        reported = {key: value for key, value in run.metrics.items() if key.startswith(("val_", "train_"))}
        for name in names:
            self.context.checkpoint(checkpoints / name, step=run.step, metrics=reported)

    # ---- saved models and prediction ----------------------------------------------------------

    def save(self, local_path: Path, **kwargs: Any) -> None:
        """Write ``local_path/model.pt``: weights, labels, architecture, input size, crop, preprocessing and pixel statistics."""
        model = self._require_model()
        payload = {
            "format": MODEL_FORMAT,
            "architecture": self.architecture,
            "labels": self.labels,
            "input_size": self.input_size,
            "crop": list(self.crop or (self.input_size, self.input_size)),
            "preprocess": asdict(self.preprocessing),
            "mean": list(self.mean),
            "std": list(self.std),
            "model": model.state_dict(),
        }
        save_atomically(payload, Path(local_path) / MODEL_FILE)

    def load(self, local_path: Path, **kwargs: Any) -> None:
        """Read a model written by :meth:`save`; its architecture, labels and preprocessing replace this adapter's."""
        device = training_device()
        saved = torch.load(Path(local_path) / MODEL_FILE, map_location=device, weights_only=True)
        self.architecture, self.labels = saved["architecture"], list(saved["labels"])
        self.input_size, self.mean, self.std = int(saved["input_size"]), list(saved["mean"]), list(saved["std"])
        crop = saved.get("crop") or (self.input_size, self.input_size)
        self.crop = (int(crop[0]), int(crop[1]))
        self.preprocessing = Preprocessing(**saved.get("preprocess", {}))
        model = build_model(self.architecture, len(self.labels), self.input_size, self.crop)
        model.load_state_dict(saved["model"])
        self.model = model.to(device).eval()

    def predict(self, batch: list[Any], **kwargs: Any) -> list[dict[str, Any]]:
        """Classify PIL images or numpy arrays (H×W or H×W×C; uint8 0..255, or floats 0..1), resized,
        preprocessed and cropped as in training.

        Returns one ``{"label": str, "score": float}`` per item, score being the softmax
        probability of the label.
        """
        model = self._require_model()
        if not batch:
            return []
        device = next(model.parameters()).device
        pixels = _Pixels(self.input_size, self.preprocessing)
        images = torch.stack([pixels(to_pil_image(item, "classify")) for item in batch]).to(device)
        images = center_crop(images, self.crop or (self.input_size, self.input_size))
        model.eval()
        with torch.no_grad():
            logits = _logits(model(_to_model_input(images, standardisation(float_tensor(self.mean, device), float_tensor(self.std, device)))))
            scores, indexes = logits.softmax(dim=1).max(dim=1)
        return [{"label": self.labels[int(i)], "score": float(s)} for s, i in zip(scores, indexes, strict=True)]

    def _require_model(self) -> nn.Module:
        if self.model is None:
            raise AdapterError("no model yet: train or load one first", {"model": "not trained or loaded"})
        return self.model


def _crop_of(options: ClassificationOptions) -> tuple[int, int]:
    return (options.val_crop_height or options.input_size, options.val_crop_width or options.input_size)

