"""The options of torchvision classification training (optimizers, learning-rate schedules) and the
augmentation and preprocessing of its images."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from trainfaas.adapters import classification_images as ci
from trainfaas.adapters import classification_options as co
from trainfaas.adapters.torchvision_classification import TorchvisionClassification


def options(**values: Any) -> co.ClassificationOptions:
    return co.ClassificationOptions(**values)


# ---- options --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configuration", "field"),
    [
        ({"epoch": 3}, ("epoch",)),
        ({"epochs": 0}, ("epochs",)),
        ({"max_steps": 0}, ("max_steps",)),
        ({"learning_rate": 0}, ("learning_rate",)),
        ({"optimizer": "adamax2"}, ("optimizer",)),
        ({"optimizer": "SparseAdam"}, ("optimizer",)),
        ({"optimizer": "muon"}, ("optimizer",)),
        ({"optimizer_args": {"nesterow": True}}, ("optimizer_args", "nesterow")),
        ({"optimizer": "adam", "optimizer_args": {"momentum": 0.9}}, ("optimizer_args", "momentum")),
        ({"optimizer_args": {"lr": 0.1}}, ("optimizer_args", "lr")),
        ({"optimizer_args": {"momentum": -0.5}}, ("optimizer_args", "momentum")),
        ({"optimizer": "adamw", "optimizer_args": {"betas": [0.9, 1.5]}}, ("optimizer_args", "betas")),
        ({"optimizer_args": {"nesterov": True, "momentum": 0}}, ("optimizer_args",)),
        ({"optimizer": "adagrad", "momentum": 0.9}, ("momentum",)),
        ({"optimizer": "rprop", "weight_decay": 0.01}, ("weight_decay",)),
        ({"optimizer": "adam", "momentum": 0.8, "optimizer_args": {"betas": [0.8, 0.99]}}, ("optimizer_args", "betas")),
        ({"weight_decay": 0.01, "optimizer_args": {"weight_decay": 0.01}}, ("optimizer_args", "weight_decay")),
        ({"lr_schedule": "linear"}, ("lr_schedule",)),
        ({"lr_min": 0.5, "learning_rate": 0.1}, ("lr_min",)),
        ({"lr_factor": 1}, ("lr_factor",)),
        ({"input_size": 8}, ("input_size",)),
        ({"input_size": 32, "val_crop_height": 40}, ("val_crop_height",)),
        ({"input_size": 16, "val_crop_width": 17}, ("val_crop_width",)),
        ({"randaugment_magnitude": 31}, ("randaugment_magnitude",)),
        ({"randaugment_disable": ["Rotate", "Blur"]}, ("randaugment_disable",)),
        ({"randaugment_color": False, "randaugment_disable": ["Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"]},
         ("randaugment_disable",)),
        ({"preprocess": "gamma"}, ("preprocess",)),
        ({"stretch_low": 60, "stretch_high": 40}, ("stretch_high",)),
        ({"batch_size": 5000}, ("batch_size",)),
        ({"label_smoothing": 1.5}, ("label_smoothing",)),
        ({"gradient_clip_norm": 0}, ("gradient_clip_norm",)),
        ({"labels": []}, ("labels",)),
        ({"max_hours": 0}, ("max_hours",)),
    ],
)
def test_bad_options_are_refused_naming_the_field(configuration: dict[str, Any], field: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        TorchvisionClassification.validate_configuration(configuration)
    assert [error["loc"] for error in caught.value.errors()] == [field]


def test_refusals_say_what_is_allowed() -> None:
    def message(configuration: dict[str, Any]) -> str:
        with pytest.raises(ValidationError) as caught:
            TorchvisionClassification.validate_configuration(configuration)
        return str(caught.value.errors()[0]["msg"])

    assert "AdamW" in message({"optimizer": "adamax2"}) and "RMSprop" in message({"optimizer": "adamax2"})
    assert "momentum, dampening, weight_decay, nesterov" in message({"optimizer_args": {"nesterow": True}})
    assert "learning_rate" in message({"optimizer_args": {"lr": 0.1}})
    assert "SGD's momentum must be a number from 0 to below 1" in message({"optimizer_args": {"momentum": -0.5}})
    assert "nesterov momentum requires a momentum" in message({"optimizer_args": {"nesterov": True, "momentum": 0}}).lower()
    assert "Equalize" in message({"randaugment_disable": ["Blur"]})


def optimizer_args_refusal(optimizer: str, arguments: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
    with pytest.raises(ValidationError) as caught:
        TorchvisionClassification.validate_configuration({"optimizer": optimizer, "optimizer_args": arguments})
    [found] = caught.value.errors()
    return found["loc"], str(found["msg"])


def test_an_unbounded_lbfgs_is_refused_without_running_a_step(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_step(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("validation must not run an optimizer step")

    monkeypatch.setattr(torch.optim.LBFGS, "step", no_step)
    loc, msg = optimizer_args_refusal("LBFGS", {"max_iter": 1e308, "tolerance_grad": -1, "tolerance_change": -1})
    assert loc == ("optimizer_args", "max_iter") and "less than or equal to 200" in msg and "from 1 to 200" in msg
    assert TorchvisionClassification.validate_configuration({"optimizer": "LBFGS", "optimizer_args": {"max_iter": 200}})


@pytest.mark.parametrize(
    ("optimizer", "name", "value"),
    [("LBFGS", "tolerance_grad", float("nan")), ("LBFGS", "tolerance_change", float("inf")), ("Adam", "eps", float("-inf")),
     ("AdamW", "betas", [0.9, float("nan")]), ("SGD", "momentum", 1e308), ("ASGD", "t0", float("inf")), ("LBFGS", "max_iter", float("nan"))],
)
def test_non_finite_optimizer_args_are_refused_naming_the_argument(optimizer: str, name: str, value: Any) -> None:
    loc, msg = optimizer_args_refusal(optimizer, {name: value})
    assert loc == ("optimizer_args", name) and f"{optimizer}'s {name} must be" in msg


@pytest.mark.parametrize(
    ("optimizer", "name", "value", "allowed"),
    [("LBFGS", "max_iter", 201, "from 1 to 200"), ("LBFGS", "max_eval", 10_000, "from 1 to 250"),
     ("LBFGS", "history_size", 1000, "from 1 to 100"), ("LBFGS", "history_size", 2.5, "from 1 to 100"), ("LBFGS", "max_iter", True, "from 1 to 200"),
     ("LBFGS", "tolerance_grad", -1, "from 0 to 1"),
     ("LBFGS", "line_search_fn", "armijo", "strong_wolfe"), ("Adam", "eps", 0, "above 0"), ("AdamW", "weight_decay", 2, "from 0 to 1"),
     ("Rprop", "etas", [0.5, 100], "at most 10"), ("Adagrad", "initial_accumulator_value", 1e9, "from 0 to 1000")],
)
def test_out_of_range_optimizer_args_are_refused_saying_what_is_allowed(optimizer: str, name: str, value: Any, allowed: str) -> None:
    loc, msg = optimizer_args_refusal(optimizer, {name: value})
    assert loc == ("optimizer_args", name) and allowed in msg


@pytest.mark.parametrize(("optimizer", "name"), [("Adam", "foreach"), ("SGD", "fused"), ("LBFGS", "capturable"), ("AdamW", "differentiable"),
                                                 ("LBFGS", "max_iterations")])
def test_unknown_optimizer_args_are_refused_listing_the_allowed_names(optimizer: str, name: str) -> None:
    loc, msg = optimizer_args_refusal(optimizer, {name: True})
    assert loc == ("optimizer_args", name)
    assert f"{optimizer} has no argument {name!r}: {optimizer} takes " in msg and "maximize" in msg


def test_good_lbfgs_and_adamw_arguments_are_kept_and_build_their_optimizer() -> None:
    lbfgs = {"max_iter": 50, "max_eval": 60, "history_size": 10, "tolerance_grad": 1e-5, "line_search_fn": "strong_wolfe"}
    adamw = {"betas": [0.85, 0.99], "eps": 1e-6, "amsgrad": True, "weight_decay": 0.05}
    for optimizer, arguments in (("LBFGS", lbfgs), ("AdamW", adamw)):
        configuration = TorchvisionClassification.validate_configuration({"optimizer": optimizer, "optimizer_args": arguments})
        assert configuration["optimizer_args"] == arguments
        built = co.make_optimizer(list(nn_model().parameters()), options(**configuration))
        assert type(built).__name__ == optimizer
        assert all(built.defaults[key] == (tuple(value) if isinstance(value, list) else value) for key, value in arguments.items())


@pytest.mark.parametrize("name", sorted(cls.__name__ for cls in co.OPTIMIZERS.values() if cls.__name__ not in co.UNSUPPORTED_OPTIMIZERS))
def test_every_torch_optimizer_is_accepted_by_name_in_any_case_and_trains(name: str) -> None:
    for spelling in (name, name.lower(), name.upper()):
        assert TorchvisionClassification.validate_configuration({"optimizer": spelling})["optimizer"] == name
    model = nn_model()
    optimizer = co.make_optimizer(list(model.parameters()), options(optimizer=name))
    assert type(optimizer).__name__ == name
    before = model.weight.detach().clone()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = model(torch.ones(4, 3)).square().mean()
        loss.backward()
        return loss

    optimizer.step(closure)
    assert not torch.equal(before, model.weight)


def nn_model() -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(3, 2)


def test_optimizer_args_win_over_the_shortcuts_which_win_over_the_recipe() -> None:
    assert co.optimizer_arguments(options()) == {"weight_decay": 5e-4, "momentum": 0.9, "nesterov": True}
    assert co.optimizer_arguments(options(optimizer="sgd", momentum=0.0)) == {"weight_decay": 5e-4, "momentum": 0.0, "nesterov": False}
    assert co.optimizer_arguments(options(optimizer_args={"momentum": 0.5, "dampening": 0.1})) == {
        "weight_decay": 5e-4, "momentum": 0.5, "dampening": 0.1, "nesterov": False}
    assert co.optimizer_arguments(options(optimizer="Adam", momentum=0.8, weight_decay=0.0)) == {"weight_decay": 0.0, "betas": (0.8, 0.999)}
    assert co.optimizer_arguments(options(optimizer="adamw", optimizer_args={"betas": [0.5, 0.9], "amsgrad": True})) == {
        "weight_decay": 5e-4, "betas": (0.5, 0.9), "amsgrad": True}
    assert co.optimizer_arguments(options(optimizer="RMSprop", momentum=0.3, optimizer_args={"alpha": 0.9})) == {
        "weight_decay": 5e-4, "momentum": 0.3, "alpha": 0.9}
    assert co.optimizer_arguments(options(optimizer="rprop")) == {}
    assert co.optimizer_arguments(options(optimizer="adagrad")) == {"weight_decay": 5e-4}


def test_the_learning_rate_schedules_are_functions_of_the_step() -> None:
    def rates(**values: Any) -> list[float]:
        chosen = options(learning_rate=1.0, warmup_steps=4, **values)
        return [co.learning_rate_at(step, 100, 4, chosen) for step in range(100)]

    for schedule in ("constant", "step", "cosine", "plateau"):
        assert rates(lr_schedule=schedule)[:5] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert set(rates(lr_schedule="constant")[4:]) == {1.0}
    step = rates(lr_schedule="step", lr_step_size=32, lr_gamma=0.5)
    assert step[4:36] == [1.0] * 32 and step[36:68] == [0.5] * 32 and step[68:] == [0.25] * 32
    assert rates(lr_schedule="step", lr_gamma=0.1)[99] == pytest.approx(0.01)  # two reductions, at thirds of the 96 steps
    cosine = rates(lr_schedule="cosine", lr_min=0.1)
    assert all(later <= earlier for earlier, later in zip(cosine[4:], cosine[5:], strict=False))
    assert cosine[52] == pytest.approx(0.55) and cosine[99] == pytest.approx(0.1, abs=1e-3)
    plateau = options(learning_rate=1.0, lr_schedule="plateau", lr_min=0.05)
    assert co.learning_rate_at(50, 100, 0, plateau, plateau_scale=0.1) == pytest.approx(0.1)
    assert co.learning_rate_at(50, 100, 0, plateau, plateau_scale=0.01) == 0.05
    # By default the warm-up lasts one epoch, or a fifth of training when that is shorter.
    assert co.resolved_warmup_steps(options(), 184, 23) == 23 and co.resolved_warmup_steps(options(), 50, 23) == 10


def test_reduce_on_plateau_waits_for_patience_evaluations_without_a_better_loss() -> None:
    plateau = co.Plateau()
    for loss in (1.0, 0.9, 0.95, 0.9, 0.91, 0.92, 0.8, 0.85):
        plateau.update(loss, patience=2, factor=0.5)
    assert plateau.scale == 0.5 and plateau.best_loss == 0.8 and plateau.stale == 1


def test_every_option_is_described() -> None:
    properties = TorchvisionClassification.options_schema()["properties"]
    assert {name for name, schema in properties.items() if not schema.get("description")} == set()


# ---- augmentation and preprocessing ---------------------------------------------------------------


def _batch(count: int = 64, size: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (count, 3, size, size), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def test_randaugment_without_colour_never_picks_a_colour_operation_and_leaves_out_disabled_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    picked: list[str] = []
    real_apply = ci._apply_op

    def spy(images: torch.Tensor, name: str, *args: Any, **kwargs: Any) -> torch.Tensor:
        picked.extend([name] * len(images))
        return real_apply(images, name, *args, **kwargs)

    monkeypatch.setattr(ci, "_apply_op", spy)
    ops = ci.randaugment_ops(color=False, disable=["Rotate"])
    assert ops == ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY")
    augment = ci.BatchRandAugment(ops, num_ops=2, magnitude=9)
    out = augment(_batch(), torch.Generator().manual_seed(0))

    assert out.dtype == torch.uint8 and out.shape == (64, 3, 16, 16)
    assert len(picked) == 128 and set(picked) == set(ops)
    assert ci.randaugment_ops(color=True, disable=[]) == ci.RANDAUGMENT_OPS and len(ci.RANDAUGMENT_OPS) == 14
    assert co.ClassificationOptions(randaugment_disable=["rotate", "EQUALIZE"]).randaugment_disable == ["Rotate", "Equalize"]


def test_randaugment_draws_per_image_from_its_generator_only() -> None:
    augment = ci.BatchRandAugment(ci.RANDAUGMENT_OPS, num_ops=2, magnitude=15)
    images = _batch()
    first = augment(images, torch.Generator().manual_seed(7))
    torch.manual_seed(123)  # the global generator plays no part
    assert torch.equal(first, augment(images, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, augment(images, torch.Generator().manual_seed(8)))
    changed = (first != images).flatten(1).any(dim=1)
    assert 0 < int(changed.sum()) < 64  # each image drew its own operations; Identity twice leaves some as they were


def test_random_crops_and_flips_are_batched_and_seeded() -> None:
    images = torch.arange(2 * 3 * 20 * 20, dtype=torch.float32).reshape(2, 3, 20, 20)
    crops = ci.random_resized_crop(images, (16, 12), 0.25, True, torch.Generator().manual_seed(0))
    assert crops.shape == (2, 3, 16, 12)
    assert torch.equal(crops, ci.random_resized_crop(images, (16, 12), 0.25, True, torch.Generator().manual_seed(0)))
    # On a left-to-right ramp, a crop is a ramp too: rising, or falling when it was mirrored.
    ramp = torch.arange(20.0).expand(16, 3, 20, 20).contiguous()
    steps = ci.random_resized_crop(ramp, (10, 10), 0.25, True, torch.Generator().manual_seed(0)).diff(dim=-1)
    rising, falling = (steps >= 0).flatten(1).all(dim=1), (steps <= 0).flatten(1).all(dim=1)
    assert bool((rising | falling).all()) and bool(rising.any()) and bool(falling.any())
    flipped = ci.random_flip(images, torch.Generator().manual_seed(3))
    assert all(torch.equal(f, i) or torch.equal(f, i.flip(-1)) for f, i in zip(flipped, images, strict=True))
    assert ci.center_crop(images, (16, 12)).shape == (2, 3, 16, 12)
    assert torch.equal(ci.center_crop(images, (16, 12))[0, 0, 0], images[0, 0, 2, 4:16])


def test_random_translations_move_whole_pixels_mirror_the_border_and_are_seeded() -> None:
    images = torch.arange(4 * 1 * 16 * 16, dtype=torch.float32).reshape(4, 1, 16, 16)
    assert torch.equal(ci.random_translate(images, (16, 16), 0.0, False, torch.Generator()), images)
    assert torch.equal(ci.random_translate(images, (12, 10), 0.0, False, torch.Generator()), ci.center_crop(images, (12, 10)))
    moved = ci.random_translate(images, (16, 16), 0.25, False, torch.Generator().manual_seed(5))
    assert torch.equal(moved, ci.random_translate(images, (16, 16), 0.25, False, torch.Generator().manual_seed(5)))
    for image, source in zip(moved, images, strict=True):
        # No resampling: every pixel is one of the image's own, and the inside keeps its neighbours.
        assert set(image.flatten().tolist()) <= set(source.flatten().tolist())
        steps = image[0, 4:12, 4:12]
        assert bool((steps.diff(dim=-1) == 1).all()) and bool((steps.diff(dim=-2) == 16).all())
    offsets = [int(image[0, 8, 8] - source[0, 8, 8]) for image, source in zip(moved, images, strict=True)]
    shifts = {(round(offset / 16), offset - 16 * round(offset / 16)) for offset in offsets}  # (rows, columns)
    assert len(shifts) > 1 and all(abs(rows) <= 4 and abs(columns) <= 4 for rows, columns in shifts)
    ramp = torch.arange(16.0).expand(32, 1, 16, 16).contiguous()
    mirrored = ci.random_translate(ramp, (16, 16), 0.125, True, torch.Generator().manual_seed(0))[..., 4:12].diff(dim=-1)
    rising, falling = (mirrored == 1).flatten(1).all(dim=1), (mirrored == -1).flatten(1).all(dim=1)
    assert bool((rising | falling).all()) and bool(rising.any()) and bool(falling.any())


@pytest.mark.parametrize("share", [-0.1, 0.6])
def test_random_translate_is_bounded(share: float) -> None:
    with pytest.raises(ValidationError) as raised:
        options(random_translate=share)
    assert raised.value.errors()[0]["loc"] == ("random_translate",)


def test_linear_stretch_and_clahe_change_pixels_deterministically() -> None:
    grey = np.tile(np.linspace(60, 120, 16, dtype=np.uint8), (16, 1))
    colour = np.stack([grey, grey // 2 + 10, 255 - grey], axis=-1)
    image = Image.fromarray(colour)
    none = ci.Pixels(16, ci.Preprocessing())(image)
    stretched = ci.Pixels(16, ci.Preprocessing("linear_stretch"))(image)
    assert [int(stretched[c].min()) for c in range(3)] == [0, 0, 0] and [int(stretched[c].max()) for c in range(3)] == [255] * 3
    percentile = ci.Pixels(16, ci.Preprocessing("linear_stretch", stretch_low=10, stretch_high=90))(image)
    assert int((percentile == 0).sum()) > int((stretched == 0).sum())
    clahe = ci.Preprocessing("clahe", clahe_clip_limit=4.0, clahe_tile_grid=2)
    equalised = ci.Pixels(16, clahe)(image)
    assert not torch.equal(equalised, none) and torch.equal(equalised, ci.Pixels(16, clahe)(image))
    grey_result = clahe(np.repeat(grey[..., None], 3, axis=2))
    assert (grey_result == grey_result[..., :1]).all() and not np.array_equal(grey_result[..., 0], grey)
    flat = np.full((4, 4, 3), 77, dtype=np.uint8)
    assert np.array_equal(ci.Preprocessing("linear_stretch")(flat), flat)
