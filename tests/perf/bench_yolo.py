"""YOLO on the bundled shapes sample: how well the adapter's defaults train, and what the adapter costs.

1. ``yolo_shapes``: yolov8n trained with the adapter's default options on the shapes sample
   (240 training and 60 validation images of 128 pixels); the figure is the best validation
   mAP50 against a baseline of 0.5: ratio = mAP50 / 0.5, and the goal, ratio >= 1, is mAP50 >= 0.5.
2. ``yolo_overhead``: the same short training (``--overhead-epochs`` epochs at the imgsz a quick
   start chooses, the adapter's other defaults) through the adapter and through ``ultralytics.YOLO(yaml).train(...)`` called
   directly with the same arguments, in ``--repeats`` (3) alternating pairs in this run (direct then
   adapter, then adapter then direct, and so on, so that a drift of the machine's speed weighs on
   both sides alike). A run's rate is training images per second of wall time of the whole
   train() call (the adapter's data set check and view, callbacks and checkpoint copies included;
   the direct run's clock covers ``YOLO(yaml)`` and its train(), on a view built before it starts); the figure is the median of the
   adapter's rates against the median of the direct ones, and the spread (each side's min-max and
   the per-pair ratios) is printed and saved. Unless the accuracy training ran first, an untimed
   one-epoch direct run warms the process up before the pairs. The goal is at least 0.98 of direct.

    python -m tests.perf.bench_yolo [--overhead-epochs 3] [--repeats 3] [--skip-accuracy]
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

from tests.perf.common import load_average, pair_order, parse_arguments, report, scratch_dir, spread
from trainfaas.adapters import NullContext, yolo
from trainfaas.adapters.quick_start import derived_imgsz, image_sides
from trainfaas.adapters.shapes import write_shapes
from trainfaas.adapters.yolo_data import build_view, images_in, read_dataset

GOAL_MAP50 = 0.5
GOAL_OVERHEAD = 0.98


def accuracy(data: Path, work: Path) -> None:
    adapter = yolo.UltralyticsYolo("yolov8n", context=NullContext())
    started = time.perf_counter()
    metrics = adapter.train(data, work / "accuracy", **adapter.configuration)
    seconds = time.perf_counter() - started
    map50 = metrics["mAP50"]
    report("yolo_shapes", "mAP50", map50, GOAL_MAP50, 1.0, higher_is_better=True,
           extra={"epochs": metrics["epochs"], "train_s": seconds, "options": adapter.configuration, "metrics": metrics})


def _adapter_run(data: Path, output: Path, options: dict[str, Any]) -> float:
    adapter = yolo.UltralyticsYolo("yolov8n", configuration=options, context=NullContext())
    started = time.perf_counter()
    adapter.train(data, output, **adapter.configuration)
    return time.perf_counter() - started


def _direct_run(data: Path, output: Path, options: dict[str, Any]) -> float:
    """ultralytics alone, with the arguments the adapter passes, on the same view of the data set."""
    ultralytics = yolo.offline_ultralytics()
    adapter = yolo.UltralyticsYolo("yolov8n", configuration=options)
    view = build_view(read_dataset(data), output / "dataset", None, True)
    arguments = adapter.ultralytics_arguments(yolo.YoloOptions.model_validate(adapter.configuration), view, output)
    started = time.perf_counter()  # building the model from its YAML is part of calling ultralytics, as in the adapter's run
    model = ultralytics.YOLO("yolov8n.yaml", task="detect")
    model.train(**arguments)
    return time.perf_counter() - started


def overhead(data: Path, work: Path, epochs: int, repeats: int, train_images: int, warm_up: bool) -> None:
    # Both runs at the imgsz a quick start chooses for these images (ultralytics itself needs one).
    imgsz, _ = derived_imgsz(image_sides(images_in(data, data / "images" / "train"), longer=True))
    options = {"epochs": epochs, "imgsz": imgsz}
    runs = {"direct": _direct_run, "adapter": _adapter_run}
    if warm_up:  # ultralytics imports its trainer's modules on the first train() of a process: untimed
        _direct_run(data, work / "warm-up", {"epochs": 1, "imgsz": imgsz})
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for pair in range(repeats):
        for name in pair_order(pair, list(runs)):
            output = work / f"{name}-{pair}"
            seconds[name].append(runs[name](data, output, options))
            shutil.rmtree(output, ignore_errors=True)
            print(f"  pair {pair + 1}: {name:<7} {seconds[name][-1]:.1f} s (load {load_average()})", flush=True)
    rates = {name: [train_images * epochs / value for value in values] for name, values in seconds.items()}
    summary = spread(rates, "direct")
    report("yolo_overhead", "images_per_s", summary["median"]["adapter"], summary["median"]["direct"], GOAL_OVERHEAD,
           higher_is_better=True, extra={"epochs": epochs, "imgsz": imgsz, "pairs": repeats, "seconds": seconds,
                                         "images_per_s": rates, "spread": summary, "load_average": load_average()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--overhead-epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="alternating pairs of the adapter and direct runs")
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parse_arguments(parser, {"overhead_epochs": 1, "repeats": 1, "skip_accuracy": True})

    work = scratch_dir("tfyolo")
    try:
        summary = write_shapes(work / "shapes")
        data = Path(summary["path"])
        if not args.skip_accuracy:
            accuracy(data, work)
        overhead(data, work, args.overhead_epochs, args.repeats, summary["train_images"], warm_up=args.skip_accuracy)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
