"""Quick start on data it has never seen: what a training given no options reaches, against a standard recipe.

Four small image sets are generated here, each unlike the bundled digits sample (other sides,
colours, class counts and file formats; see ``SETS`` and tests.generated_images). On each, in this
run and on this machine:

- ``quick``: resnet18 trained by the classification adapter with no options at all (a quick start:
  input size, epochs and everything else from the adapter's defaults and the data);
- the baseline, a standard recipe written out here: torchvision's resnet18 at the images' own side,
  SGD (momentum 0.9, Nesterov, weight decay 5e-4) at 0.05 with cosine decay, random crops (padding of
  an eighth of the side) and mirroring, ``--recipe-epochs`` epochs of 64 images.

Each line prints the quick start's validation accuracy against the recipe's (goal: ratio 0.96, which
is 0.95 where the recipe reaches 0.99) and the quick start's seconds (goal: under 180 s on two
cores, so the time line's baseline is 180). The goal is for sets the recipe learns (0.99 or more):
``colours32``, whose shapes differ from their background in colour only, is one it learns only in
part, and shows how the quick start fares there. The machine's load average is printed: other work on a
small machine moves the seconds, not the accuracies.

    python -m tests.perf.bench_quick_start [--sets shapes32,gray48,jpeg24,colours32] [--recipe-epochs 80]
"""
from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
import torchvision
from PIL import Image
from torch.nn import functional as F

from tests.generated_images import write_shapes
from tests.perf.common import parse_arguments, report, scratch_dir
from trainfaas.adapters import NullContext
from trainfaas.adapters import torchvision_classification as tc

SETS: dict[str, dict[str, Any]] = {
    "shapes32": dict(classes=3, side=32, train=100, validation=34, seed=11),
    "gray48": dict(classes=5, side=48, train=60, validation=20, seed=12, grayscale=True),
    "jpeg24": dict(classes=4, side=24, train=80, validation=25, seed=13, image_format="jpeg"),
    "colours32": dict(classes=3, side=32, train=100, validation=34, seed=14, colour_only=True),
}
GOAL_RATIO, BUDGET_S = 0.96, 180.0


def quick_start(data: Path, output: Path, max_steps: int | None) -> tuple[float, float, list[str]]:
    """Train with no options; return the validation accuracy, the seconds and the quick start's log lines."""
    context = NullContext()
    configuration = {"max_steps": max_steps} if max_steps else {}
    adapter = tc.TorchvisionClassification("resnet18", configuration=configuration, context=context)
    started = time.monotonic()
    metrics = adapter.train(data, output, **adapter.configuration)
    lines = [event[1][0] for event in context.events if event[0] == "log" and str(event[1][0]).startswith(("quick start", "resnet18:"))]
    return float(metrics["val_accuracy"]), time.monotonic() - started, lines


def tensors(folder: Path, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for index, name in enumerate(classes):
        for path in sorted((folder / name).iterdir()):
            with Image.open(path) as image:
                images.append(torchvision.transforms.functional.pil_to_tensor(image.convert("RGB")))
            labels.append(index)
    return torch.stack(images).float() / 255.0, torch.tensor(labels)


def recipe(data: Path, epochs: int) -> float:
    """The standard recipe's validation accuracy on ``data``."""
    torch.manual_seed(0)
    classes = sorted(path.name for path in (data / "train").iterdir())
    train_x, train_y = tensors(data / "train", classes)
    val_x, val_y = tensors(data / "validation", classes)
    mean, std = train_x.mean((0, 2, 3), keepdim=True), train_x.std((0, 2, 3), keepdim=True)
    side, pad = train_x.shape[-1], max(1, train_x.shape[-1] // 8)
    model = torchvision.models.resnet18(num_classes=len(classes))
    steps_per_epoch = math.ceil(len(train_y) / 64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train_y))
        for start in range(0, len(order), 64):
            index = order[start:start + 64]
            batch = F.pad(train_x[index], (pad,) * 4, mode="reflect")
            top, left = torch.randint(0, 2 * pad + 1, (2,)).tolist()
            batch = batch[..., top:top + side, left:left + side]
            if torch.rand(()) < 0.5:
                batch = batch.flip(-1)
            loss = F.cross_entropy(model((batch - mean) / std), train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        predicted = model((val_x - mean) / std).argmax(1)
    return float((predicted == val_y).float().mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS), help="which generated sets, comma-separated")
    parser.add_argument("--recipe-epochs", type=int, default=80, help="epochs of the standard recipe")
    parser.add_argument("--max-steps", type=int, default=0, help="cap the quick start's steps (0: as it chooses)")
    args = parse_arguments(parser, {"sets": "jpeg24", "recipe_epochs": 1, "max_steps": 2}, argv)
    root = scratch_dir("tfquick")
    for name in args.sets.split(","):
        data = write_shapes(root / name, **SETS[name])
        accuracy, seconds, lines = quick_start(data, root / f"{name}-out", args.max_steps or None)
        baseline = recipe(data, args.recipe_epochs)
        print(f"{name}: {SETS[name]}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        for line in lines:
            print(f"  {line}")
        report(f"quick_start_{name}", "val_accuracy", accuracy, baseline, GOAL_RATIO, higher_is_better=True,
               extra={"recipe_epochs": args.recipe_epochs})
        report(f"quick_start_{name}_seconds", "seconds", seconds, BUDGET_S, 1.0, extra={"load_average": os.getloadavg()})


if __name__ == "__main__":
    main()
