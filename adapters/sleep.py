"""The diagnostic architecture ``sleep``: trains by sleeping, for fire drills, tests and benchmarks.

It reports progress and a fake loss, writes checkpoints, honours should_stop(), resumes from
the last checkpoint of a previous attempt, and can fail on purpose: raise, exit with a code,
or allocate memory; or diverge, its loss turning NaN as a training's does when it blows up.
Those fault-injection options are refused by the API unless the server runs with
TRAINFAAS_DIAGNOSTICS=1 (and allocate_mb is bounded by TRAINFAAS_DIAGNOSTICS_MAX_ALLOCATE_MB).
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from trainfaas.adapters import ModelAdapter, Options
from trainfaas.services.core.errors import AdapterError, ConfigError
from trainfaas.services.core.files import atomic_write_text


class SleepOptions(Options):
    seconds: float = Field(5.0, ge=0, le=7 * 86400, description="How long training lasts.")
    steps: int = Field(10, ge=1, le=100000, description="Steps to split the time into; one progress report each.")
    raise_error: str | None = Field(None, max_length=500, description="Raise RuntimeError with this message at fail_at.")
    exit_code: int | None = Field(None, ge=0, le=255, description="Exit the work process with this code at fail_at.")
    allocate_mb: int = Field(0, ge=0, le=1024 * 1024, description="Allocate this much memory at fail_at and hold it.")
    fail_at: float = Field(0.5, ge=0, le=1, description="Fraction of the steps after which to raise/exit/allocate.")
    diverge: bool = Field(False, description="Report the loss (samples, checkpoints, final metrics) as NaN, as a diverged training does.")


class SleepAdapter(ModelAdapter):
    architectures = ("sleep",)
    task = "diagnostic"
    dataset_format = None
    Options = SleepOptions
    diagnostic_options = ("raise_error", "exit_code", "allocate_mb", "fail_at", "diverge")

    def train(self, data_path: Path | None, output_path: Path, **configuration: Any) -> dict[str, float]:
        opts = SleepOptions(**configuration)
        self.diverge = opts.diverge
        step = self._resume_step()
        self.steps_done = step
        step_s = opts.seconds / opts.steps
        fail_step = int(opts.fail_at * opts.steps)
        checkpoint = output_path / "checkpoint.json"
        while step < opts.steps:
            if self.context.should_stop():
                self._save_checkpoint(checkpoint, step)
                return {"steps": float(step), "stopped": 1.0}
            if step == fail_step:
                self._misbehave(opts)
            time.sleep(step_s)
            step += 1
            self.steps_done = step
            self.context.metric("loss", "train", step, self._loss(step))
            self.context.progress(100.0 * step / opts.steps, f"step {step}/{opts.steps}")
            self._save_checkpoint(checkpoint, step)
        return {"steps": float(step), "loss": self._loss(step)}

    def _loss(self, step: int) -> float:
        return math.nan if getattr(self, "diverge", False) else 1.0 / max(step, 1)

    def _resume_step(self) -> int:
        resume = self.context.resume_checkpoint
        if resume is None or not resume.exists():
            base = getattr(self.context, "base_model", None)
            if base is not None:
                # A fine-tune starts from the base model's step count, as a real adapter starts from its weights.
                saved = json.loads((Path(base) / "model.json").read_text())
                self.context.log(f"fine-tuning from {base} trained for {saved.get('steps', 0)} steps")
            return 0
        step = int(json.loads(resume.read_text())["step"])
        self.context.log(f"resumed from step {step} of {resume}")
        return step

    def _save_checkpoint(self, path: Path, step: int) -> None:
        atomic_write_text(path, json.dumps({"step": step}))
        self.context.checkpoint(path, step, {"loss": self._loss(step)})

    def _misbehave(self, opts: SleepOptions) -> None:
        if opts.allocate_mb:
            self.hold = bytearray(opts.allocate_mb * 1024 * 1024)
            for offset in range(0, len(self.hold), 4096):  # touch every page so it is really resident
                self.hold[offset] = 1
        if opts.raise_error:
            raise RuntimeError(opts.raise_error)
        if opts.exit_code is not None:
            os._exit(opts.exit_code)

    def save(self, local_path: Path, **kwargs: Any) -> None:
        atomic_write_text(Path(local_path) / "model.json", json.dumps({"architecture": "sleep", "steps": getattr(self, "steps_done", 0)}))

    @classmethod
    def model_from_checkpoint(cls, checkpoint: Path, local_path: Path, architecture: str, labels: list[str],
                              configuration: dict[str, Any]) -> None:
        try:
            steps = int(json.loads(Path(checkpoint).read_text())["step"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AdapterError(f"{checkpoint} is not a checkpoint of this adapter ({exc})", {"checkpoint_id": "a sleep checkpoint"}) from None
        atomic_write_text(Path(local_path) / "model.json", json.dumps({"architecture": "sleep", "steps": steps}))

    @classmethod
    def import_saved(cls, architecture: str, source: Path, destination: Path, labels: list[str]) -> list[str]:
        """``model.json`` as :meth:`save` writes it: JSON of the sleep architecture and a whole number of steps."""
        try:
            saved = json.loads((Path(source) / "model.json").read_text()[:4096])
            steps = int(saved["steps"])
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError("the archive holds no model.json of a sleep model", {"archive": "model/model.json as sleep saves it"}) from None
        cls.check_saved(architecture, labels, saved.get("architecture"), labels)
        atomic_write_text(Path(destination) / "model.json", json.dumps({"architecture": "sleep", "steps": steps}))
        return list(labels)

    def load(self, local_path: Path, **kwargs: Any) -> None:
        json.loads((local_path / "model.json").read_text())

    def predict(self, batch: list[Any], **kwargs: Any) -> list[Any]:
        return [None for _ in batch]
