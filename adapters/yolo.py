"""Object detection and instance segmentation with ultralytics YOLO v8 and 11, trained from scratch.

Every model is built from the model YAML that ships inside the ultralytics package
(``yolov8n.yaml``, ``yolo11s-seg.yaml``, ...): no weights are ever downloaded. The data set is
in YOLO format (see :mod:`trainfaas.adapters.yolo_data`); the adapter trains on a view of it written into
the output directory, so that label subsets and dropped negatives never touch the data set.

Ultralytics runs the training loop; the adapter hooks its callbacks to report progress, metrics
and checkpoints, and to stop between batches when asked. Ultralytics writes its run (weights,
results.csv) to ``<output>/ultralytics``; the adapter copies the checkpoints it reports to
``<output>/checkpoints/last.pt`` and, when the epoch is the best so far by ultralytics' fitness
(0.1 mAP50 + 0.9 mAP50-95), links ``best.pt`` to that copy. These copies keep the optimizer state, so a rerun resumes from them.

Offline: ultralytics is imported only when a model is built, after this module has switched off
its online checks, settings sync, platform and logger integrations and placed a font where its
plotting would otherwise download Arial.ttf.

No pickle runs: every checkpoint and model file is loaded with ``torch.load(weights_only=True)``
against ultralytics' allow-list of its own and torch's model classes (ULTRALYTICS_SAFE_LOAD), the
adapter's own reads (:func:`_load_checkpoint`) and ultralytics' alike; the one ultralytics read
that asks for a full unpickle (strip_optimizer, on saving) runs with weights_only forced, on a file
the allow-list has already accepted.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

# Before ultralytics is imported anywhere in this process: its online checks read these once.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")
os.environ.setdefault("YOLO_AUTOINSTALL", "False")
# Ultralytics loads checkpoints with weights_only=True and its allow-list, never a full unpickle.
os.environ.setdefault("ULTRALYTICS_SAFE_LOAD", "1")

from pydantic import Field  # noqa: E402

from trainfaas.adapters import AdapterError, ConfigError, DatasetError, ModelAdapter, Options, weights_import, yolo_data  # noqa: E402
from trainfaas.adapters.evaluation import subset_of  # noqa: E402
from trainfaas.adapters.quick_start import YOLO_MIN_SIDE, derived_imgsz, image_sides  # noqa: E402
from trainfaas.services.core.files import atomic_copy, atomic_link_or_copy, atomic_path, atomic_write_text, copy_regular  # noqa: E402

VERSIONS: tuple[str, ...] = ("yolov8", "yolo11")
SIZES = "nsmlx"
SEGMENTATION_SUFFIX = "-seg"
ARCHITECTURES: tuple[str, ...] = tuple(
    f"{version}{size}{suffix}" for suffix in ("", SEGMENTATION_SUFFIX) for version in VERSIONS for size in SIZES
)
DETECTION = "detection"
INSTANCE_SEGMENTATION = "instance-segmentation"
MODEL_FILE = "model.pt"
INFO_FILE = "trainfaas.json"
RUN_FOLDER = "ultralytics"

# Ultralytics' integrations and telemetry, all off: nothing may leave the machine.
OFFLINE_SETTINGS: dict[str, Any] = {
    "sync": False, "api_key": "", "clearml": False, "comet": False, "dvc": False, "mlflow": False,
    "raytune": False, "tensorboard": False, "wandb": False,
}
FONTS: tuple[str, ...] = ("Arial.ttf", "Arial.Unicode.ttf")


class YoloOptions(Options):
    """Options of YOLO training; names follow ultralytics' own training arguments.

    The defaults suit the bundled shapes sample (128x128 images): yolov8n reaches mAP50 above
    0.5 on it in a few minutes on two CPU cores.
    """

    epochs: int = Field(50, ge=1, le=10000, description="Passes over the training images.")
    imgsz: int | None = Field(None, ge=32, le=4096, multiple_of=32, description="Side in pixels images are letterboxed to"
                              " (a multiple of 32). Unset (quick start): the median longer side of the training images,"
                              " within 64-640 (128 for the bundled sample).")
    batch: int = Field(16, ge=1, le=1024, description="Images per optimisation step.")
    optimizer: Literal["auto", "SGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSprop"] = Field(
        "auto", description="Optimizer. auto picks AdamW with a learning rate fitted to the classes for short trainings"
        " (under 10,000 steps), else SGD, and then ignores lr0 and momentum.")
    lr0: float = Field(0.01, gt=0, le=1, description="Initial learning rate (after warm-up).")
    lrf: float = Field(0.01, gt=0, le=1, description="Final learning rate as a fraction of lr0.")
    momentum: float = Field(0.937, ge=0, lt=1, description="SGD momentum, or Adam's beta1.")
    weight_decay: float = Field(0.0005, ge=0, le=0.1, description="L2 penalty on weights.")
    warmup_epochs: float = Field(3.0, ge=0, le=100, description="Epochs of linear learning-rate warm-up (fractions allowed).")
    cos_lr: bool = Field(False, description="Cosine learning-rate decay instead of linear.")
    mosaic: float = Field(1.0, ge=0, le=1, description="Probability of mosaic augmentation (four images in one).")
    close_mosaic: int = Field(10, ge=0, le=10000, description="Turn mosaic off for the last this many epochs (0 keeps it on).")
    patience: int = Field(100, ge=0, le=10000, description="Stop early after this many epochs without improvement (0 never stops early).")
    hsv_h: float = Field(0.015, ge=0, le=1, description="Hue augmentation (fraction).")
    hsv_s: float = Field(0.7, ge=0, le=1, description="Saturation augmentation (fraction).")
    hsv_v: float = Field(0.4, ge=0, le=1, description="Value (brightness) augmentation (fraction).")
    fliplr: float = Field(0.5, ge=0, le=1, description="Probability of a left-right flip.")
    flipud: float = Field(0.0, ge=0, le=1, description="Probability of an up-down flip.")
    scale: float = Field(0.5, ge=0, le=0.9, description="Random scaling gain (+/- this fraction).")
    translate: float = Field(0.1, ge=0, le=0.9, description="Random translation (+/- this fraction of the image).")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of initialisation, shuffling and augmentation.")
    workers: int = Field(0, ge=0, le=64, description="Data loader worker processes; 0 loads in the training process.")
    max_hours: float | None = Field(None, gt=0, le=10000, description="Stop after this many hours of training whatever"
                                    " epochs says (ultralytics' time); None trains for epochs.")
    save_period: int = Field(1, ge=1, le=10000, description="Write and report a checkpoint every this many epochs"
                             " (and always after the last epoch and on a stop).")
    fraction: float = Field(1.0, gt=0, le=1, description="Share of the training images to use.")
    amp: bool = Field(False, description="Mixed precision on a GPU (ignored on a CPU). Ultralytics checks it with"
                      " yolo26n.pt weights, which must then be in its weights directory: nothing is downloaded.")
    labels: list[str] | None = Field(None, min_length=1, description="Train on these labels of the data set only; None for all.")
    include_negatives: bool = Field(True, description="Keep training images that show none of the chosen labels.")


@lru_cache(maxsize=1)
def offline_ultralytics() -> Any:
    """Import ultralytics with every online path closed; return the module. Idempotent."""
    import ultralytics
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    changed = {key: value for key, value in OFFLINE_SETTINGS.items() if SETTINGS.get(key) != value}
    if changed:
        SETTINGS.update(changed)
    _install_fonts(Path(USER_CONFIG_DIR))
    return ultralytics


def _install_fonts(config_dir: Path) -> None:
    """Put matplotlib's DejaVu Sans where ultralytics looks for Arial, which it would otherwise
    download: its data set check asks for the font even when nothing is plotted."""
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    config_dir.mkdir(parents=True, exist_ok=True)
    for name in FONTS:
        if not (config_dir / name).exists():
            atomic_copy(source, config_dir / name)


def _device() -> str:
    import torch

    return "0" if torch.cuda.is_available() else "cpu"


def _metric_names(segments: bool) -> list[tuple[str, str, str]]:
    """(figure, legend, ultralytics key) of every figure reported per epoch."""
    losses = ("box_loss", "seg_loss", "cls_loss", "dfl_loss") if segments else ("box_loss", "cls_loss", "dfl_loss")
    names = [(loss, legend, f"{legend}/{loss}") for loss in losses for legend in ("train", "val")]
    for figure, key in (("precision", "precision"), ("recall", "recall"), ("mAP50", "mAP50"), ("mAP50-95", "mAP50-95")):
        names.append((figure, "val", f"metrics/{key}(B)"))
        if segments:
            names.append((figure, "mask", f"metrics/{key}(M)"))
    return names


def _final_key(figure: str, legend: str) -> str:
    """Name of a figure in the metrics train() returns: mAP50, mask_mAP50, val_box_loss, ..."""
    if legend == "val" and not figure.endswith("_loss"):
        return figure
    return f"{legend}_{figure}"


class UltralyticsYolo(ModelAdapter):
    """Trains ultralytics YOLO v8 and 11 detection and segmentation models from their YAML.

    ``task`` is the detection task; :meth:`task_of` tells each architecture's task (the ``-seg``
    ones segment instances).
    """

    architectures: ClassVar[tuple[str, ...]] = ARCHITECTURES
    task: ClassVar[str] = DETECTION
    dataset_format: ClassVar[str | None] = "yolo"
    Options: ClassVar[type[Options]] = YoloOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.weights: Path | None = None
        self.imgsz = int(self.configuration.get("imgsz") or YOLO_MIN_SIDE)  # chosen from the data by train() when unset
        self._predictor: Any = None

    @classmethod
    def task_of(cls, architecture: str) -> str:
        """The task ``architecture`` trains: instance-segmentation for ``-seg`` models, else detection."""
        return INSTANCE_SEGMENTATION if architecture.endswith(SEGMENTATION_SUFFIX) else DETECTION

    @property
    def segments(self) -> bool:
        return self.task_of(self.architecture) == INSTANCE_SEGMENTATION

    @classmethod
    def check_dataset(cls, path: Path, configuration: dict[str, Any]) -> list[str]:
        """Check the YOLO data set (every label file parsed); return the labels trained on.

        Segmentation needs polygons, which the API cannot tell from here (the architecture is not
        passed), so the polygon check runs again when a ``-seg`` model starts training."""
        dataset = yolo_data.read_dataset(Path(path), labels=configuration.get("labels"))
        return list(configuration.get("labels") or dataset.names)

    @classmethod
    def reference_model(cls, architecture: str) -> Any:
        """The COCO configuration (80 classes) built from the architecture's YAML, randomly initialised."""
        offline_ultralytics()
        from ultralytics.nn.tasks import DetectionModel, SegmentationModel

        model_class = SegmentationModel if cls.task_of(architecture) == INSTANCE_SEGMENTATION else DetectionModel
        return model_class(cfg=f"{architecture}.yaml", nc=80, verbose=False)

    # ---- training -----------------------------------------------------------------------------

    def train(self, data_path: Path | None, output_path: Path, **configuration: Any) -> dict[str, float]:
        """Train into ``output_path``; return the metrics of the best epoch, the epochs done and
        ``stopped`` (1.0) when a stop request ended training early.

        Metrics are reported per epoch with x = epochs completed (1 for the first). A stop
        request ends the epoch at the next batch; ultralytics then validates and saves that epoch
        as done, so a resumed run continues with the next one. Raises DatasetError for a missing
        or malformed data set, AdapterError for a base model of another architecture.
        """
        options = YoloOptions.model_validate({**self.configuration, **configuration})
        if data_path is None:
            raise DatasetError("YOLO training needs a YOLO data set", {"dataset": f"required: {yolo_data.LAYOUT}"})
        output = Path(output_path).resolve()
        dataset = yolo_data.read_dataset(Path(data_path), polygons=self.segments, labels=options.labels)
        shutil.rmtree(output / "dataset", ignore_errors=True)
        data_yaml = yolo_data.build_view(dataset, output / "dataset", options.labels, options.include_negatives, self.segments)
        if options.imgsz is None:
            imgsz, why = derived_imgsz(image_sides(yolo_data.images_in(dataset.root, dataset.image_dirs["train"]), longer=True))
            self.context.log(f"quick start: imgsz {imgsz}: {why}")
            options = options.model_copy(update={"imgsz": imgsz})
        self.labels, self.imgsz = list(options.labels or dataset.names), int(options.imgsz)
        run = _Run(self, options, output)
        model, arguments = self._model_and_arguments(options, data_yaml, output, run)
        if model is None:
            return run.result()
        for event, hook in run.callbacks().items():
            model.add_callback(event, hook)
        model.train(**arguments)
        self.weights = run.best_weights()
        self._predictor = None
        return run.result()

    def _model_and_arguments(self, options: YoloOptions, data_yaml: Path, output: Path, run: _Run) -> tuple[Any, dict[str, Any]]:
        """The YOLO model to train and its train() arguments: resumed, fine-tuned or from the YAML.

        Returns (None, {}) when the resume checkpoint is of a training that had already finished."""
        yolo = offline_ultralytics().YOLO
        arguments = self.ultralytics_arguments(options, data_yaml, output)
        resume = self.context.resume_checkpoint
        if resume is not None and Path(resume).exists():
            done, total = _checkpoint_epochs(Path(resume))
            self.context.log(f"resumed from checkpoint at step {done}")
            run.first_epoch = done + 1
            if done >= total:
                run.finish_from_checkpoint(Path(resume), done)
                return None, {}
            # Ultralytics keeps the checkpoint's own arguments on resume, save for a few it allows.
            return yolo(str(resume)), {**arguments, "resume": True}
        base = self.context.base_model
        if base is not None:
            info = _read_info(Path(base))
            if info.get("architecture") != self.architecture:
                raise AdapterError(
                    f"base model {base} is a {info.get('architecture')}, not a {self.architecture}",
                    {"base_model": f"a model of architecture {self.architecture}"},
                )
            self.context.log(f"fine-tuning from {base}")
            return yolo(str(Path(base) / MODEL_FILE), task=self._ultralytics_task()), arguments
        return yolo(f"{self.architecture}.yaml", task=self._ultralytics_task()), arguments

    def _ultralytics_task(self) -> str:
        return "segment" if self.segments else "detect"

    def ultralytics_arguments(self, options: YoloOptions, data_yaml: Path, output: Path) -> dict[str, Any]:
        """ultralytics train() arguments: the options, explicit paths, and no plots, downloads or AMP on a CPU."""
        device = _device()
        passed = options.model_dump(exclude={"max_hours", "save_period", "amp", "labels", "include_negatives"})
        return {
            **passed,
            "data": str(data_yaml),
            "time": options.max_hours,
            "amp": options.amp and device != "cpu",
            "device": device,
            "save_dir": str(output / RUN_FOLDER),
            "exist_ok": True,
            "plots": False,
            "val": True,
            "save": True,
            "verbose": False,
        }

    # ---- the trained model ----------------------------------------------------------------------

    def save(self, local_path: Path, **kwargs: Any) -> None:
        """Write ``local_path/model.pt`` (the best weights, without optimizer state) and
        ``local_path/trainfaas.json`` (architecture, labels, imgsz)."""
        weights = self._require_weights()
        offline_ultralytics()
        from ultralytics.utils.torch_utils import strip_optimizer

        _load_checkpoint(weights)  # refused unless the allow-list accepts it, whose globals it registers
        with atomic_path(Path(local_path) / MODEL_FILE) as partial, _weights_only():
            strip_optimizer(str(weights), str(partial))
        info = {"architecture": self.architecture, "labels": self.labels, "imgsz": self.imgsz, "task": self.task_of(self.architecture)}
        atomic_write_text(Path(local_path) / INFO_FILE, json.dumps(info, indent=2))

    @classmethod
    def import_weights(cls, architecture: str, source: Path, destination: Path, labels: list[str] | None) -> list[str]:
        """An ultralytics checkpoint, read against the allow-list (never a full unpickle), whose model
        must be ``architecture`` layer for layer; written as :meth:`save` writes a trained model."""
        try:
            checkpoint = _load_checkpoint(Path(source))
        except AdapterError:
            raise ConfigError("the checkpoint is not one ultralytics loads without running code (an object outside its allow-list)",
                              {"weights": "an ultralytics checkpoint of model classes only"}) from None
        model = checkpoint.get("ema") or checkpoint.get("model")
        if model is None or not hasattr(model, "state_dict"):
            raise ConfigError("the checkpoint holds no model", {"weights": "an ultralytics checkpoint (best.pt, last.pt, yolov8n.pt)"})
        names = getattr(model, "names", None) or {}
        classes = len(names) if names else int((getattr(model, "yaml", None) or {}).get("nc", 0))
        chosen = weights_import.labels_for(classes, labels if labels is not None else [str(names[i]) for i in sorted(names)] or None)
        expected = _model_class(cls.task_of(architecture))(f"{architecture}.yaml", nc=classes, verbose=False)
        weights_import.check_fits(expected, {key: value for key, value in model.state_dict().items()})
        offline_ultralytics()
        from ultralytics.utils.torch_utils import strip_optimizer

        with atomic_path(Path(destination) / MODEL_FILE) as partial, _weights_only():
            strip_optimizer(str(source), str(partial))
        imgsz = int((checkpoint.get("train_args") or {}).get("imgsz") or 640)
        info = {"architecture": architecture, "labels": chosen, "imgsz": imgsz, "task": cls.task_of(architecture)}
        atomic_write_text(Path(destination) / INFO_FILE, json.dumps(info, indent=2))
        return chosen

    @classmethod
    def model_from_checkpoint(cls, checkpoint: Path, local_path: Path, architecture: str, labels: list[str],
                              configuration: dict[str, Any]) -> None:
        """The ultralytics checkpoint copied as ``model.pt`` (its optimizer state is left unread by every load)
        beside the ``trainfaas.json`` :meth:`save` writes, with the imgsz the training ran with (its
        configuration's, or the one a quick start chose, which the checkpoint's arguments hold)."""
        if not copy_regular(Path(checkpoint), Path(local_path) / MODEL_FILE):
            raise AdapterError(f"checkpoint {checkpoint} is not a regular file", {"checkpoint_id": "a YOLO checkpoint file"})
        imgsz = cls.validate_configuration(configuration)["imgsz"] or _checkpoint_imgsz(Path(checkpoint))
        info = {"architecture": architecture, "labels": list(labels), "imgsz": int(imgsz), "task": cls.task_of(architecture)}
        atomic_write_text(Path(local_path) / INFO_FILE, json.dumps(info, indent=2))

    @classmethod
    def import_saved(cls, architecture: str, source: Path, destination: Path, labels: list[str]) -> list[str]:
        """``model.pt`` and ``trainfaas.json`` as :meth:`save` writes them: the weights imported as
        :meth:`import_weights` does (allow-list, layer by layer), the imgsz kept."""
        try:
            info = _read_info(Path(source))
            imgsz = int(info["imgsz"])
        except (AdapterError, KeyError, TypeError, ValueError):
            raise ConfigError(f"the archive holds no {INFO_FILE} of a YOLO model", {"archive": f"model/{INFO_FILE} and model/{MODEL_FILE}"}) from None
        cls.check_saved(architecture, labels, info.get("architecture"), info.get("labels"))
        chosen = cls.import_weights(architecture, Path(source) / MODEL_FILE, destination, labels)
        info = {"architecture": architecture, "labels": chosen, "imgsz": imgsz, "task": cls.task_of(architecture)}
        atomic_write_text(Path(destination) / INFO_FILE, json.dumps(info, indent=2))
        return chosen

    def load(self, local_path: Path, **kwargs: Any) -> None:
        """Read a model written by :meth:`save`; its architecture, labels and imgsz replace this adapter's."""
        info = _read_info(Path(local_path))
        self.architecture, self.labels, self.imgsz = info["architecture"], list(info["labels"]), int(info["imgsz"])
        self.weights = Path(local_path) / MODEL_FILE
        self._predictor = None

    def predict(self, batch: list[Any], **kwargs: Any) -> list[list[dict[str, Any]]]:
        """Detect objects in PIL images or RGB numpy arrays (H×W×3 uint8).

        Returns, per image, ``[{"label", "score", "box": [x1, y1, x2, y2]}]`` in pixels of that
        image, plus ``"polygon": [[x, y], ...]`` for segmentation models. ``conf`` (default 0.25)
        is the lowest score kept.
        """
        if not batch:
            return []
        if self._predictor is None:
            self._predictor = offline_ultralytics().YOLO(str(self._require_weights()), task=self._ultralytics_task())
        images = [_to_pil_image(item) for item in batch]
        results = self._predictor.predict(images, imgsz=self.imgsz, conf=kwargs.get("conf", 0.25), device=_device(), verbose=False)
        return [self._objects(result) for result in results]

    def evaluate(self, data_path: Path, **kwargs: Any) -> dict[str, Any]:
        """Validate the model with ultralytics on the ``subset`` (``validation`` by default, or ``train``) of a
        YOLO data set that names every label of the model: ``mAP50``, ``mAP50-95``, ``precision`` and
        ``recall`` of the boxes, the same ``per_class`` (classes with instances in the subset) and, for
        segmentation models, ``mask_mAP50`` and ``mask_mAP50-95``. The view ultralytics reads and its
        run go under ``output_path`` (default: a temporary folder)."""
        subset = subset_of(kwargs)
        weights = self._require_weights()
        dataset = yolo_data.read_dataset(Path(data_path), polygons=self.segments)
        missing = [label for label in self.labels if label not in dataset.names]
        if missing:
            raise DatasetError(f"the data set does not name the model's labels {missing[:20]}", {"dataset": "a YOLO data set naming every label of the model"})
        output = Path(kwargs.get("output_path") or tempfile.mkdtemp(prefix="trainfaas-evaluation-")).resolve()
        shutil.rmtree(output / "evaluation", ignore_errors=True)
        data_yaml = yolo_data.build_view(dataset, output / "evaluation" / "dataset", self.labels, True, self.segments)
        model = offline_ultralytics().YOLO(str(weights), task=self._ultralytics_task())
        results = model.val(data=str(data_yaml), split="val" if subset == "validation" else "train", imgsz=self.imgsz, batch=16,
                            device=_device(), workers=0, plots=False, verbose=False, save_json=False,
                            save_dir=str(output / "evaluation" / RUN_FOLDER))
        box = results.box
        per_class = {self.labels[int(c)]: {"precision": float(box.p[i]), "recall": float(box.r[i]), "mAP50": float(box.ap50[i]),
                                           "mAP50-95": float(box.ap[i])} for i, c in enumerate(box.ap_class_index)}
        metrics = {"mAP50": float(box.map50), "mAP50-95": float(box.map), "precision": float(box.mp), "recall": float(box.mr),
                   "per_class": per_class, "labels": list(self.labels)}
        if self.segments:
            metrics.update({"mask_mAP50": float(results.seg.map50), "mask_mAP50-95": float(results.seg.map)})
        return metrics

    def _objects(self, result: Any) -> list[dict[str, Any]]:
        boxes = result.boxes
        polygons = result.masks.xy if self.segments and result.masks is not None else None
        objects = []
        for index in range(len(boxes)):
            found: dict[str, Any] = {
                "label": self.labels[int(boxes.cls[index])],
                "score": float(boxes.conf[index]),
                "box": [float(v) for v in boxes.xyxy[index].tolist()],
            }
            if polygons is not None:
                found["polygon"] = [[float(x), float(y)] for x, y in polygons[index].tolist()]
            objects.append(found)
        return objects

    def _require_weights(self) -> Path:
        if self.weights is None or not Path(self.weights).exists():
            raise AdapterError("no model yet: train or load one first", {"model": "not trained or loaded"})
        return Path(self.weights)


class _Run:
    """One training's bookkeeping: the ultralytics callbacks that report to the context."""

    def __init__(self, adapter: UltralyticsYolo, options: YoloOptions, output: Path) -> None:
        self.adapter = adapter
        self.context = adapter.context
        self.options = options
        self.checkpoints = output / "checkpoints"
        self.run_folder = output / RUN_FOLDER
        self.names = _metric_names(adapter.segments)
        self.first_epoch = 1
        self.epochs_done = 0
        self.training_epoch = -1
        self.stopped = False
        self.last_metrics: dict[str, float] = {}
        self.best_metrics: dict[str, float] = {}

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_train_batch_end": self.on_train_batch_end,
            "on_train_epoch_end": self.on_train_epoch_end,
            "on_model_save": self.on_model_save,
            "on_fit_epoch_end": self.on_fit_epoch_end,
        }

    def on_train_batch_end(self, trainer: Any) -> None:
        # Ultralytics breaks out of the epoch, validates and saves the checkpoint (on_model_save).
        if not trainer.stop and self.context.should_stop():
            self.stopped = trainer.stop = True
            self.context.log(f"stop requested: ending epoch {trainer.epoch + 1} early and saving a checkpoint")

    def on_train_epoch_end(self, trainer: Any) -> None:
        self.training_epoch = trainer.epoch

    def on_model_save(self, trainer: Any) -> None:
        """Copy the checkpoint ultralytics just wrote, every save_period epochs, at the end and on a stop."""
        done = trainer.epoch + 1
        if done % self.options.save_period and not trainer.stop and done < trainer.epochs:
            return
        metrics = self._figures(trainer)
        last = self.checkpoints / "last.pt"
        atomic_copy(Path(trainer.last), last)
        self.context.checkpoint(last, step=done, metrics=metrics)
        if trainer.best_fitness == trainer.fitness:
            best = self.checkpoints / "best.pt"
            atomic_link_or_copy(last, best)  # the same bytes; last.pt is replaced, never written in place
            self.context.checkpoint(best, step=done, metrics=metrics)

    def on_fit_epoch_end(self, trainer: Any) -> None:
        figures = self._figures(trainer)
        if trainer.epoch != self.training_epoch:
            # Ultralytics' closing validation of best.pt, reported as the epoch after the last.
            self.best_metrics = figures
            return
        done = self.epochs_done = trainer.epoch + 1
        self.last_metrics = figures
        for figure, legend, _key in self.names:
            value = figures.get(_final_key(figure, legend))
            if value is not None:
                self.context.metric(figure, legend, done, value)
        summary = " ".join(f"{key} {figures[key]:.4f}" for key in ("train_box_loss", "val_box_loss", "mAP50", "mAP50-95") if key in figures)
        self.context.progress(100.0 * done / max(trainer.epochs, 1), f"epoch {done}/{trainer.epochs} {summary}")

    def _figures(self, trainer: Any) -> dict[str, float]:
        """This epoch's figures under trainfaas names (train_box_loss, val_box_loss, mAP50, mask_mAP50, ...)."""
        raw = {**trainer.label_loss_items(trainer.tloss, prefix="train"), **(trainer.metrics or {})}
        figures = {}
        for figure, legend, key in self.names:
            if key in raw and math.isfinite(float(raw[key])):
                figures[_final_key(figure, legend)] = float(raw[key])
        return figures

    def finish_from_checkpoint(self, checkpoint: Path, done: int) -> None:
        """A rerun of a training that had finished: take its weights and metrics, train no more."""
        self.epochs_done = done
        self.last_metrics = _checkpoint_metrics(checkpoint, self.names)
        self.adapter.weights = checkpoint

    def best_weights(self) -> Path | None:
        """Ultralytics' best.pt (the best epoch even between checkpoints), else the last checkpoint."""
        for path in (self.run_folder / "weights" / "best.pt", self.checkpoints / "best.pt", self.checkpoints / "last.pt"):
            if path.exists():
                return path
        return None

    def result(self) -> dict[str, float]:
        # The closing validation of best.pt scores it but reports no validation losses.
        result = {**self.last_metrics, **self.best_metrics, "epochs": float(self.epochs_done)}
        if self.stopped:
            result["stopped"] = 1.0
        return result


def _model_class(task: str) -> Any:
    """Ultralytics' model class of a task, built from a model YAML."""
    offline_ultralytics()
    from ultralytics.nn.tasks import DetectionModel, SegmentationModel

    return SegmentationModel if task == INSTANCE_SEGMENTATION else DetectionModel


def _load_checkpoint(path: Path) -> dict[str, Any]:
    """An ultralytics checkpoint, read with ``torch.load(weights_only=True)`` and ultralytics'
    allow-list of model classes: a file holding anything else (a pickle that runs code) is refused
    with AdapterError, never unpickled."""
    offline_ultralytics()
    from ultralytics.nn.tasks import torch_safe_load

    try:
        checkpoint, _ = torch_safe_load(str(path), safe_only=True)
    except Exception as error:  # noqa: BLE001 - an unpickling error of any kind: the file is refused
        raise AdapterError(f"{path} is not a checkpoint this adapter loads without running code: {str(error)[:500]}",
                           {"checkpoint": "an ultralytics checkpoint of model classes only"}) from None
    return dict(checkpoint)


@contextmanager
def _weights_only() -> Iterator[None]:
    """Within it, every torch.load is weights_only=True, even one that asks for a full unpickle."""
    before = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = before


def _checkpoint_epochs(path: Path) -> tuple[int, int]:
    """(epochs completed, epochs planned) of an ultralytics training checkpoint."""
    checkpoint = _load_checkpoint(path)
    return int(checkpoint.get("epoch", -1)) + 1, int((checkpoint.get("train_args") or {}).get("epochs", 0))


def _checkpoint_imgsz(path: Path) -> int:
    """The imgsz an ultralytics training checkpoint was trained at."""
    return int((_load_checkpoint(path).get("train_args") or {}).get("imgsz") or YOLO_MIN_SIDE)


def _checkpoint_metrics(path: Path, names: list[tuple[str, str, str]]) -> dict[str, float]:
    raw = _load_checkpoint(path).get("train_metrics") or {}
    return {_final_key(figure, legend): float(raw[key]) for figure, legend, key in names if key in raw}


def _read_info(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((path / INFO_FILE).read_text()))
    except (OSError, ValueError) as error:
        raise AdapterError(f"{path} holds no model saved by this adapter ({error})", {"base_model": f"a directory with {INFO_FILE} and {MODEL_FILE}"}) from None


def _to_pil_image(item: Any) -> Any:
    """A PIL RGB image from a PIL image or an RGB (or grayscale) numpy array."""
    import numpy as np
    from PIL import Image

    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, np.ndarray) and item.ndim in (2, 3):
        array = item
        if array.dtype.kind == "f":
            array = np.rint(np.clip(array, 0.0, 1.0) * 255.0)
        return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).convert("RGB")
    raise DatasetError(f"cannot detect objects in a {type(item).__name__}: give PIL images or numpy arrays",
                       {"batch": "items must be PIL images or HxW or HxWxC numpy arrays"})
