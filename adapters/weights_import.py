"""Weights a user already has, checked against an architecture before they become a model.

A state dict is read with ``torch.load(weights_only=True)``: a file that would run code when
unpickled is refused, and the code does not run. The weights must fit the architecture: the model
is built, and every key and shape of its state dict is compared with the file's; the first layer
that differs is named, with the shape expected and the shape found. The number of classes is read
from the weights' head (the layers whose shape follows it), so that labels can be checked against it.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainfaas.services.core.errors import ConfigError

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
STATE_KEYS = ("model", "state_dict", "model_state_dict")


def read_state_dict(path: Path) -> dict[str, Any]:
    """The tensors of a torch weights file: a state dict, or a dict holding one under ``model``,
    ``state_dict`` or ``model_state_dict``. ConfigError naming ``weights`` for anything else, and
    for a file torch will not read without running code."""
    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling error: the file is refused unread
        raise ConfigError(f"the weights file is not one torch reads without running code: {str(error)[:300]}",
                          {"weights": "a torch state dict (.pt/.pth) of tensors, saved with torch.save(model.state_dict())"}) from None
    if isinstance(loaded, dict):
        for key in STATE_KEYS:
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ConfigError("the weights file holds no state dict of tensors",
                          {"weights": "a torch state dict (.pt/.pth), as torch.save(model.state_dict()) writes"})
    return {str(key).removeprefix("module."): value for key, value in loaded.items()}


def head_classes(build: Callable[[int], Any], state: dict[str, Any]) -> int:
    """The number of classes the weights' head predicts: the architecture is built with 2 and 3
    classes, and the first layer whose shape changes with them is read in the weights."""
    two, three = build(2).state_dict(), build(3).state_dict()
    for key, tensor in two.items():
        other = three.get(key)
        if other is None or tuple(other.shape) == tuple(tensor.shape):
            continue
        axis = next(i for i, (a, b) in enumerate(zip(tensor.shape, other.shape, strict=False)) if a != b)
        found = state.get(key)
        if found is None or found.dim() != tensor.dim():
            raise ConfigError(f"the weights have no head layer {key} of {tensor.dim()} dimensions",
                              {"weights": f"layer {key}: expected {tensor.dim()} dimensions, got "
                                          f"{'none' if found is None else tuple(found.shape)}"})
        return int(found.shape[axis]) + 2 - int(tensor.shape[axis])
    raise ConfigError("the architecture's head could not be found", {"architecture": "an architecture with a class head"})


def check_fits(model: Any, state: dict[str, Any]) -> None:
    """ConfigError (422) naming the first layer of ``model`` the weights lack or give another shape,
    or the first layer they hold that ``model`` has not."""
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise ConfigError(f"the weights lack layer {key} of the architecture",
                              {"weights": f"layer {key}: expected shape {list(tensor.shape)}, got none"})
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ConfigError(f"layer {key} of the weights has shape {list(state[key].shape)}, the architecture's {list(tensor.shape)}",
                              {"weights": f"layer {key}: expected shape {list(tensor.shape)}, got {list(state[key].shape)}"})
    extra = next((key for key in state if key not in expected), None)
    if extra is not None:
        raise ConfigError(f"the weights hold layer {extra}, which the architecture has not",
                          {"weights": f"layer {extra}: expected none, got shape {list(state[extra].shape)}"})


def labels_for(classes: int, labels: list[str] | None) -> list[str]:
    """The labels of a head of ``classes`` outputs: those given, which must be as many, else ``class_0``..."""
    if labels is None:
        return [f"class_{i}" for i in range(classes)]
    if len(labels) != classes:
        raise ConfigError(f"the weights predict {classes} classes, {len(labels)} labels were given",
                          {"labels": f"{classes} labels, one per class of the weights' head"})
    return list(labels)
