"""Text adapters: what their defaults reach on the bundled samples.

Trains ``bert-tiny`` on the ``text`` sample and ``bert-tiny-ner`` on the ``ner`` sample, each with
the adapter's default options, directly through the adapter (no stack), and reports the last
validation figure against the goal: text accuracy >= 0.9 and entity-level F1 (seqeval) >= 0.8.
The baseline is the goal itself, so ratio = value / goal and a pass needs ratio >= 1. Training
time is saved with the JSON record.

    python -m tests.perf.bench_text
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from tests.perf.common import parse_arguments, report, scratch_dir
from trainfaas.adapters import NullContext
from trainfaas.adapters.text_samples import write_ner, write_text
from trainfaas.adapters.transformers_text import TextClassification, TokenClassification


def train_defaults(adapter_class: type, architecture: str, data: Path, output: Path,
                   changes: dict[str, int] | None = None) -> tuple[dict[str, float], float]:
    """Train with the default options (and ``changes``); return the final metrics and the training time in seconds."""
    adapter = adapter_class(architecture, configuration=changes or {}, context=NullContext())
    started = time.perf_counter()
    metrics = adapter.train(data, output, **adapter.configuration)
    return metrics, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-steps", type=int, default=None, help="train this many steps instead of the defaults' epochs")
    args = parse_arguments(parser, {"max_steps": 2})
    changes = {"max_steps": args.max_steps} if args.max_steps else {}
    root = scratch_dir("tftext")
    text, text_s = train_defaults(TextClassification, "bert-tiny", Path(write_text(root / "text")["path"]), root / "text-out", changes)
    ner, ner_s = train_defaults(TokenClassification, "bert-tiny-ner", Path(write_ner(root / "ner")["path"]), root / "ner-out", changes)
    passed = report("text_accuracy", "accuracy", text["val_accuracy"], 0.9, 1.0, higher_is_better=True,
                    extra={"architecture": "bert-tiny", "train_s": round(text_s, 1), "steps": text["steps"]})
    passed &= report("ner_f1", "f1", ner["val_f1"], 0.8, 1.0, higher_is_better=True,
                     extra={"architecture": "bert-tiny-ner", "train_s": round(ner_s, 1), "steps": ner["steps"]})
    print(f"training time: text {text_s:.1f} s, ner {ner_s:.1f} s")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
