"""The options of torchvision classification training: the optimizer (any torch.optim class, with its
own arguments typed and bounded, see trainfaas.adapters.optimizer_arguments), the learning-rate schedule, and the rest.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from torch import nn

from trainfaas.adapters.classification_images import COLOUR_OPS, NEGATIVE_LABEL, RANDAUGMENT_OPS, randaugment_ops
from trainfaas.adapters.optimizer_arguments import check_arguments
from trainfaas.adapters.vision_training import StepOptions

SGD_MOMENTUM = 0.9
DEFAULT_WEIGHT_DECAY = 5e-4
PLATEAU_THRESHOLD = 1e-4  # relative improvement of the validation loss that counts, as torch's ReduceLROnPlateau


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


def _build_optimizer(options: ClassificationOptions) -> None:
    """Build the optimizer on a tiny parameter, without a step, so that torch's own checks of the
    arguments (taken together) run now, at the API, and not minutes into a training; raises what
    torch raises. The arguments are typed and bounded before (trainfaas.adapters.optimizer_arguments)."""
    make_optimizer([nn.Parameter(torch.ones(2, 2))], options)


# ---- options ------------------------------------------------------------------------------------


def _field_error(loc: tuple[str, ...], message: str, value: Any) -> ValidationError:
    """A validation error at ``loc`` (a nested location such as ``("optimizer_args", "betas")``)."""
    error = PydanticCustomError("invalid_option", "{message}", {"message": message})
    return ValidationError.from_exception_data("ClassificationOptions", [InitErrorDetails(type=error, loc=loc, input=value)])


class ClassificationOptions(StepOptions):
    """Options of torchvision classification training.

    ``input_size`` and ``epochs`` left unset are chosen from the data set when training starts
    (see :mod:`trainfaas.adapters.quick_start`), and the execution's log says which and why.
    """

    epochs: int | None = Field(
        None, ge=1, le=10000,
        description="Passes over the training subset (unless max_steps is set). None: 8, or more on a small data set so that"
                    " training takes at least 200 optimizer steps (at most 200 epochs).",
    )
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
            " They win over momentum and weight_decay; lr is learning_rate. Each is typed and bounded (finite numbers;"
            " LBFGS: max_iter at most 200, max_eval at most 250, history_size at most 100); torch's switches foreach,"
            " fused, capturable and differentiable are not options. Unknown names, values out of range and values torch"
            " refuses are refused when the model or the training is requested."
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
    input_size: int | None = Field(
        None,
        ge=16,
        le=1024,
        description=(
            "Side in pixels of the square every image is resized to. None: the median shorter side of the training"
            " images, rounded to a multiple of 8, between 16 and 224, and at least what the architecture takes"
            " (the digits sample's 8x8 images give 16, CIFAR-sized ones 32, photographs 224). The resnet,"
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
    random_translate: float | None = Field(
        None,
        ge=0,
        le=0.5,
        description=(
            "Train on shifted images: each training image (its crop) moves by a whole number of pixels, up to this share"
            " of its side, left/right and up/down independently, the uncovered border mirrored from the image (the"
            " pad-and-crop of CIFAR recipes, no resampling; mirrored too with horizontal_flip). 0 to 0.5; 0: off;"
            " ignored with random_crop. None: 0.125 on a small data set (quick start), else 0."
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
        if value is not None and info.data.get("input_size") is not None and value > info.data["input_size"]:
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
        typed, problems = check_arguments(name, accepted, self.optimizer_args)
        if problems:
            key, problem = next(iter(problems.items()))
            raise _field_error(("optimizer_args", key), problem, self.optimizer_args[key])
        self.optimizer_args = typed
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
            _build_optimizer(self)
        except (TypeError, ValueError, RuntimeError, AssertionError, IndexError, KeyError) as error:
            raise _field_error(("optimizer_args",), f"{name} refuses {optimizer_arguments(self)}: {error}", self.optimizer_args) from None
        return self


# ---- learning-rate schedule ------------------------------------------------------------------------


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


def crop_of(options: ClassificationOptions) -> tuple[int, int]:
    """(height, width) of the images the model sees: the val_crop options, input_size square by default."""
    return (options.val_crop_height or options.input_size, options.val_crop_width or options.input_size)
