"""Image classification through the platform: what the default recipe reaches, and what the platform costs.

1. ``digits``: resnet18 trained with the classification adapter's default options on the bundled
   digits sample (1,437 training and 360 validation images of 8x8 pixels), through the real local
   stack (HTTP, database, queue, instance, work process), as ``trainfaas demo`` does. The figure is
   the final validation accuracy against a baseline of 1.0 (so ratio = accuracy); the goal is 0.97.
2. ``training_overhead``: training images per second of the same model (resnet18, 10 classes,
   16 pixels), data, batch size (64) and number of steps (``--steps``) in three ways, in
   ``--repeats`` (3) alternating rounds in this run (plain, work process, platform, then the reverse
   order, and so on, so that a drift of the machine's speed weighs on each side alike); each figure
   is the median of its side's rounds, and the spread (each side's min-max and the per-round ratios
   to the plain loop) is printed and saved:
   - through the platform: a training of the adapter (its default options but no random shift, ``max_steps`` steps)
     executed by the stack on its warm instance (the digits training, or a first one, started it);
     the figure is the ``train_samples_per_s`` the adapter returns, images per second of wall time
     from its first optimizer step to its last, with its validation passes and checkpoint writes left
     out (everything else a step costs counts: the stop question over the instance's pipe, seeding,
     the learning-rate schedule, the running loss and accuracy, and whatever else the instance does
     on the same CPUs meanwhile);
   - the baseline, a plain PyTorch loop over the same preloaded uint8 tensors (decoded by the
     adapter's own code): shuffle each epoch, index a batch, standardise it, forward, cross-entropy,
     backward, the same SGD (Nesterov momentum 0.9, weight decay 0.0005) at a fixed learning rate,
     timed from its first step to its last. It runs in a fresh process of its own, as a training's
     work process does, so that it shares no interpreter with the stack's scheduler threads.
   - ``training_overhead_work_process``: the same training run by ``functions.run.work`` in a
     spawned process, reporting over a pipe that this process drains, as an instance runs an
     attempt, but with no instance around it: the adapter's own cost per step, apart from the
     instance's.
   The goal is a ratio (platform / plain) of at least 0.98 for both.
   - ``plain_kept_memory``, not a goal: the plain loop again, with malloc set as a work process sets
     it (trainfaas.services.core.processes.keep_freed_memory: freed memory is reused, not handed back
     to the kernel and faulted in again). A work process gains from that setting what a plain loop
     with the defaults loses to page faults; against this side, the platform's figure is its own cost
     apart from that gain. Each side's minor page faults a step are printed beside its rate where
     the side can count them.

Both run on the same machine in the same run; the machine's load average is printed and saved,
since other work on a small machine moves these figures more than the platform does.

    python -m tests.perf.bench_training_overhead [--steps 69] [--repeats 3] [--skip-digits]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from tests.perf.common import bench_settings, load_average, pair_order, parse_arguments, report, scratch_dir, spread
from trainfaas.adapters import torchvision_classification as tc
from trainfaas.adapters import vision_data
from trainfaas.adapters.datasets import write_digits
from trainfaas.adapters.torch_support import float_tensor, training_device
from trainfaas.functions.run import work
from trainfaas.services.core.processes import keep_freed_memory
from trainfaas.services.core.protocol import Failure, ModelRef, Result, WorkSpec, decode_work_message
from trainfaas.services.local.stack import Stack
from trainfaas.services.sdk.client import Client

ARCHITECTURE = "resnet18"
GOAL_ACCURACY = 0.97
GOAL_OVERHEAD = 0.98
BATCH_SIZE = 64  # the adapter's default
# The plain loop shifts no image: neither do the platform's runs it is compared with (a quick start
# would add a random shift on a set this size; that is recipe, not overhead).
SAME_WORK = {"random_translate": 0.0}


def platform_training(client: Client, dataset: str, configuration: dict[str, Any], name: str) -> dict[str, float]:
    """Train through the stack; return the model's final metrics."""
    model = client.create_model(name, ARCHITECTURE, configuration=configuration)
    execution = client.train(model["id"], dataset=dataset)
    final = client.wait(execution["id"], timeout_s=1800)
    if final["status"] != "success":
        raise RuntimeError(f"training {execution['id']} ended {final['status']}: {final.get('error')}")
    return dict(client.get_model(model["id"])["metrics"])


def work_process_training(data: Path, configuration: dict[str, Any]) -> dict[str, float]:
    """Train in a spawned work process (trainfaas.functions.run.work) as an instance would; return the final metrics."""
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe(duplex=True)
    output = scratch_dir("tfbench")
    spec = WorkSpec(execution_id="bench", attempt=1, function="train_model", input={"configuration": configuration},
                    output_path=str(output), data_path=str(data), model=ModelRef(id="bench", architecture=ARCHITECTURE))
    stop_event = context.Event()  # held here until the child has it: its semaphore goes with the last reference
    process = context.Process(target=work, args=(spec, child_end, stop_event))
    process.start()
    child_end.close()
    try:
        while True:
            message = decode_work_message(parent_end.recv_bytes())  # progress, metrics and logs, then the result or the failure
            if isinstance(message, Result):
                return dict(message.output["metrics"])
            if isinstance(message, Failure):
                raise RuntimeError(f"the work process failed: {message.message}")
    finally:
        process.join(timeout=60)


def preloaded_digits(data: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The training images and labels as the adapter preloads them (uint8 on the device), and its pixel statistics."""
    options = tc.ClassificationOptions(input_size=16)  # what a quick start chooses for the 8x8 digits
    plan = tc.plan_labels(data, None, False)
    pixels = tc.Pixels(options.input_size, tc.Preprocessing.of(options))
    device = training_device()
    folder = tc.LabelledImageFolder(data / "train", plan.labels, plan.class_index, pixels)
    train = vision_data.Subset(folder, device, 0, preload=True, decode_batch=tc.DECODE_BATCH_IMAGES)  # type: ignore[arg-type]
    mean, std = vision_data.channel_statistics(train, options.seed)
    assert train.images is not None and train.targets is not None
    return train.images, train.targets, float_tensor(mean, device), float_tensor(std, device)


def plain_training(data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], steps: int) -> tuple[float, float]:
    """``steps`` steps of a hand-written loop; returns training images per second and minor page faults per step."""
    images, targets, mean, std = data
    torch.manual_seed(0)
    model = tc.build_model(ARCHITECTURE, 10, 16).to(images.device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, nesterov=True, weight_decay=5e-4)
    mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    # Full batches and the last partial one, as the adapter takes them (it skips a lone last image only).
    starts = [start for start in range(0, len(targets), BATCH_SIZE) if len(targets) - start > 1]
    started, done, seen = time.perf_counter(), 0, 0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    while done < steps:
        order = torch.randperm(len(targets)).to(images.device)
        for start in starts[: steps - done]:
            index = order[start : start + BATCH_SIZE]
            inputs = (images[index].float() / 255.0 - mean) / std
            loss = F.cross_entropy(model(inputs), targets[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done, seen = done + 1, seen + len(index)
    if images.device.type == "cuda":
        torch.cuda.synchronize()
    rate = seen / (time.perf_counter() - started)
    return rate, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps


def plain_training_in_a_process(data: Path, steps: int, keep_memory: bool = False) -> tuple[float, float]:
    """plain_training in a fresh interpreter (this module's --plain-worker); returns its images per
    second and page faults per step. ``keep_memory``: with malloc set as a work process sets it."""
    done = subprocess.run([sys.executable, "-m", "tests.perf.bench_training_overhead", "--plain-worker", str(data), "--steps", str(steps),
                           *(["--keep-freed-memory"] if keep_memory else [])], check=True, capture_output=True, text=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return float(figures["images_per_s"]), float(figures["faults_per_step"])


def warm_catalog(settings: Any) -> None:
    """Measure the architecture catalog now if its cache is stale, so that the stack's background
    measurement does not run during the timings."""
    from trainfaas.adapters.architectures import cache_is_current

    if not cache_is_current():
        print("  measuring the architecture catalog first (its cache is stale)")
        subprocess.run([sys.executable, "-m", "trainfaas.adapters.architectures", settings.adapters], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def overhead_rounds(client: Client, data: Path, steps: int, rounds: int) -> dict[str, list[float]]:
    """``rounds`` alternating rounds of the three trainings (plain, work process, platform; the next
    round in the reverse order); each side's images per second, round by round."""
    rates: dict[str, list[float]] = {"plain": [], "work_process": [], "platform": [], "plain_kept_memory": []}
    for round_ in range(rounds):
        for side in pair_order(round_, list(rates)):
            faults = ""
            if side.startswith("plain"):
                rate, per_step = plain_training_in_a_process(data, steps, keep_memory=side == "plain_kept_memory")
                faults = f", {per_step:.0f} page faults a step"
            elif side == "work_process":
                rate = work_process_training(data, {"max_steps": steps, **SAME_WORK})["train_samples_per_s"]
            else:
                rate = platform_training(client, "digits", {"max_steps": steps, **SAME_WORK}, f"bench-overhead-{round_ + 1}")["train_samples_per_s"]
            rates[side].append(rate)
            print(f"  round {round_ + 1}: {side:<17} {rate:.1f} images/s{faults} (load {load_average()})", flush=True)
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=69, help="optimizer steps of each overhead run (69 = 3 epochs of digits)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds of the three trainings")
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--plain-worker", metavar="DATA", help=argparse.SUPPRESS)
    parser.add_argument("--keep-freed-memory", action="store_true", help=argparse.SUPPRESS)
    args = parse_arguments(parser, {"steps": 2, "repeats": 1, "skip_digits": True})
    if args.plain_worker:
        if args.keep_freed_memory and not keep_freed_memory():
            print("  (malloc could not be set on this system: plain_kept_memory is the plain loop again)", file=sys.stderr)
        rate, faults = plain_training(preloaded_digits(Path(args.plain_worker)), args.steps)
        print(json.dumps({"images_per_s": rate, "faults_per_step": faults}))
        return 0

    settings = bench_settings()
    data = settings.dataset_roots[0] / "digits"
    write_digits(data)
    warm_catalog(settings)
    print(f"load average before: {load_average()} ({os.cpu_count()} cores)")
    passed = True
    with Stack(settings):
        client = Client.from_settings(settings)
        if not args.skip_digits:
            started = time.perf_counter()
            metrics = platform_training(client, "digits", {}, "bench-digits")
            seconds = time.perf_counter() - started
            print(f"  digits with the defaults: val_accuracy {metrics['val_accuracy']:.4f} after {metrics['steps']:.0f} steps,"
                  f" {seconds:.1f} s end to end, {metrics['train_samples_per_s']:.1f} images/s")
            passed &= report("digits", "val_accuracy", metrics["val_accuracy"], 1.0, GOAL_ACCURACY, higher_is_better=True,
                             extra={"architecture": ARCHITECTURE, "options": "defaults", "end_to_end_s": round(seconds, 1),
                                    "metrics": metrics, "load_average": load_average()})

        else:
            platform_training(client, "digits", {"max_steps": 1}, "bench-warm-up")  # the instance starts cold
        rates = overhead_rounds(client, data, args.steps, args.repeats)
    summary = spread(rates, "plain")
    extra = {"architecture": ARCHITECTURE, "steps": args.steps, "batch_size": BATCH_SIZE, "images_per_s": rates,
             "rounds": args.repeats, "spread": summary, "device": str(training_device()), "load_average": load_average()}
    median = summary["median"]
    passed &= report("training_overhead", "images_per_s", median["platform"], median["plain"], GOAL_OVERHEAD,
                     higher_is_better=True, extra=extra)
    passed &= report("training_overhead_work_process", "images_per_s", median["work_process"], median["plain"], GOAL_OVERHEAD,
                     higher_is_better=True, extra=extra)
    print(f"  not a goal: platform / plain_kept_memory {median['platform'] / median['plain_kept_memory']:.3f}, work_process /"
          f" plain_kept_memory {median['work_process'] / median['plain_kept_memory']:.3f} (the platform's cost apart from its malloc setting)")
    print(f"load average after: {load_average()}")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
