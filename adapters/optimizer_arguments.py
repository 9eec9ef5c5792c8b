"""The typed, bounded ``optimizer_args`` of each torch optimizer the classification adapter trains with.

Every argument an optimizer takes here is declared with its type and range: finite numbers only, and
ranges that keep one optimizer step a bounded amount of work (LBFGS's ``max_iter``, ``max_eval`` and
``history_size`` above all). Names an optimizer's table lacks are refused, listing the ones it has;
torch's implementation switches (``foreach``, ``fused``, ``capturable``, ``differentiable``) are not
options.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model


def _whole(value: Any) -> Any:
    """A float that is a whole number as an int, so that 1e308 is out of range rather than unreadable."""
    if isinstance(value, bool):
        raise ValueError("Input should be a whole number, not true or false")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError("Input should be a finite whole number")
        return int(min(max(value, -2.0**62), 2.0**62))
    return value


def _count(most: int) -> Any:
    return Annotated[int, BeforeValidator(_whole), Field(ge=1, le=most)]


Unit = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]

# name: (type, what is allowed); an optimizer's table picks its names from here or declares its own.
SHARED: dict[str, tuple[Any, str]] = {
    "betas": (tuple[Unit, Unit], "two numbers, each from 0 to below 1"),
    "eps": (Positive, "a number above 0, at most 1"),
    "weight_decay": (Fraction, "a number from 0 to 1"),
    "momentum": (Unit, "a number from 0 to below 1"),
    "dampening": (Fraction, "a number from 0 to 1"),
    **{switch: (bool, "true or false") for switch in ("nesterov", "amsgrad", "maximize", "centered", "decoupled_weight_decay")},
    "alpha": (Fraction, "a number from 0 to 1"),
    "rho": (Fraction, "a number from 0 to 1"),
    "lr_decay": (Fraction, "a number from 0 to 1"),
    "initial_accumulator_value": (Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)], "a number from 0 to 1000"),
    "momentum_decay": (Fraction, "a number from 0 to 1"),
}
LBFGS_LIMITS = {"max_iter": 200, "max_eval": 250, "history_size": 100}
OWN: dict[str, dict[str, tuple[Any, str]]] = {
    "LBFGS": {
        "max_iter": (_count(LBFGS_LIMITS["max_iter"]), f"a whole number from 1 to {LBFGS_LIMITS['max_iter']}"),
        "max_eval": (_count(LBFGS_LIMITS["max_eval"]), f"a whole number from 1 to {LBFGS_LIMITS['max_eval']}"),
        "tolerance_grad": (Fraction, "a number from 0 to 1"),
        "tolerance_change": (Fraction, "a number from 0 to 1"),
        "history_size": (_count(LBFGS_LIMITS["history_size"]), f"a whole number from 1 to {LBFGS_LIMITS['history_size']}"),
        "line_search_fn": (Literal["strong_wolfe"] | None, "\"strong_wolfe\" or null"),
    },
    "ASGD": {
        "lambd": (Fraction, "a number from 0 to 1"),
        "alpha": (Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)], "a number from 0 to 10"),
        "t0": (Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)], "a number from 0 to 1e9"),
    },
    "Rprop": {
        "etas": (tuple[Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)], Annotated[float, Field(gt=1, le=10, allow_inf_nan=False)]],
                 "two numbers: the decrease, above 0 and below 1, and the increase, above 1, at most 10"),
        "step_sizes": (tuple[Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)], Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)]],
                       "two numbers: the smallest step, from 0 to 1, and the largest, above 0, at most 1000"),
    },
    "Adafactor": {
        "beta2_decay": (Annotated[float, Field(ge=-1, le=0, allow_inf_nan=False)], "a number from -1 to 0"),
        "eps": (tuple[Positive | None, Positive], "two numbers above 0, at most 1 (the first may be null)"),
        "d": (Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)], "a number above 0, at most 100"),
    },
}


def allowed_arguments(optimizer: str, accepted: list[str]) -> dict[str, tuple[Any, str]]:
    """The arguments ``optimizer`` takes in ``optimizer_args``, of the ones its constructor ``accepted``:
    name -> (type, what is allowed)."""
    own = OWN.get(optimizer, {})
    return {name: own.get(name) or SHARED[name] for name in accepted if name in own or name in SHARED}


def _arguments_model(optimizer: str, allowed: dict[str, tuple[Any, str]]) -> type[BaseModel]:
    fields: dict[str, Any] = {name: (kind, None) for name, (kind, _) in allowed.items()}
    return create_model(f"{optimizer}Arguments", __config__=ConfigDict(extra="forbid", strict=False), **fields)


def check_arguments(optimizer: str, accepted: list[str], given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """``given`` typed and checked against ``optimizer``'s table: (the arguments, {name: what is wrong and
    what is allowed}); the arguments are only meaningful when the second is empty."""
    allowed = allowed_arguments(optimizer, accepted)
    unknown = [name for name in given if name not in allowed]
    if unknown:
        hint = "set learning_rate instead" if unknown[0] == "lr" else f"{optimizer} takes {', '.join(allowed) or 'none'}"
        return {}, {unknown[0]: f"{optimizer} has no argument {unknown[0]!r}: {hint}"}
    try:
        typed = _arguments_model(optimizer, allowed).model_validate(given)
    except ValidationError as error:
        problems = {}
        for item in error.errors():
            name = str(item["loc"][0])
            problems.setdefault(name, f"{item['msg']}; {optimizer}'s {name} must be {allowed[name][1]}")
        return {}, problems
    return typed.model_dump(include=set(given)), {}
