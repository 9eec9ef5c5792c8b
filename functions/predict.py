"""``predict_model``: run a trained model on a few inputs with its architecture's adapter.

The inputs were checked by the API (files inside the data roots, inline payloads within their
caps); each is decoded here under the same caps, and one that cannot be read gets an ``error``
of its own while the others are still predicted. A segmentation's masks are written as PNG files
into the attempt's output directory, ``masks/<n>.png``.
"""
from __future__ import annotations

import base64
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from trainfaas.adapters.base import ModelAdapter
from trainfaas.functions.context import ProcessContext
from trainfaas.functions.evaluate import loaded_adapter
from trainfaas.services.core.inputs import DEFAULT_TOP_K, MAX_FILE_BYTES, MAX_IMAGE_PIXELS, MAX_TEXT_CHARS
from trainfaas.services.core.protocol import WorkSpec

TEXT_TASKS = ("text-classification", "token-classification")


class InputError(ValueError):
    """An input that cannot be read; its prediction carries the message instead."""


def _file_bytes(name: str) -> bytes:
    path = Path(name)
    if path.resolve() != path:  # resolved by the API: a link swapped in since then leads elsewhere
        raise InputError("the file changed into a link since the request was checked")
    with path.open("rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"the file is larger than {MAX_FILE_BYTES} bytes")
    return data


def decode_image(data: bytes) -> Image.Image:
    """An RGB image from encoded bytes; refused beyond MAX_IMAGE_PIXELS, before its pixels are decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise InputError(f"an image of {width}x{height} pixels is larger than {MAX_IMAGE_PIXELS} pixels")
            return image.convert("RGB")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever PIL (or a library that patched Image.open: ultralytics) raises on bytes it cannot read
        raise InputError(f"not an image PIL reads ({type(exc).__name__}: {exc})") from None


def read_input(item: dict[str, Any], text: bool) -> Any:
    """The input as the adapter's predict takes it: a string for text models, else a PIL image."""
    if "text" in item:
        return str(item["text"])[:MAX_TEXT_CHARS]
    data = base64.b64decode(item["image"]) if "image" in item else _file_bytes(item["file"])
    if not text:
        return decode_image(data)
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("a text model reads UTF-8 text files") from None
    if len(decoded) > MAX_TEXT_CHARS:
        raise InputError(f"the text has {len(decoded)} characters, more than {MAX_TEXT_CHARS}")
    return decoded


def shaped(task: str, result: Any, labels: list[str], output: Path, index: int) -> dict[str, Any]:
    """The adapter's prediction for one input as JSON: a mask becomes a file and its pixel counts."""
    if task == "semantic-segmentation":
        mask = np.asarray(result["mask"], dtype=np.uint8)
        path = output / "masks" / f"{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask, mode="L").save(path)
        values, counts = np.unique(mask, return_counts=True)
        names = ["background", *labels]  # mask value 0 is background, i + 1 is labels[i]
        pixels = {names[int(v)] if int(v) < len(names) else str(int(v)): int(c) for v, c in zip(values, counts, strict=True)}
        return {"labels": result["labels"], "mask_path": str(path.resolve()), "pixels": pixels}
    if isinstance(result, list):
        return {"objects": result}
    return dict(result) if isinstance(result, dict) else {"prediction": result}  # an adapter of your own may return anything JSON-able


def predict_one(adapter: ModelAdapter, task: str, item: dict[str, Any], top_k: int, output: Path, index: int) -> dict[str, Any]:
    value = read_input(item, task in TEXT_TASKS)
    result = adapter.predict([value], top_k=top_k)[0]
    return shaped(task, result, adapter.labels, output, index)


def predict_model(context: ProcessContext, job: WorkSpec) -> dict[str, Any]:
    """Predict each input of ``job.input["inputs"]``; return ``{"predictions": [...]}`` in their order."""
    adapter = loaded_adapter(context, job)
    task = adapter.task_of(adapter.architecture)
    items = list(job.input.get("inputs") or [])
    top_k = int(job.input.get("top_k") or DEFAULT_TOP_K)
    output = Path(job.output_path)
    predictions = []
    for index, item in enumerate(items):
        if context.should_stop():
            break
        try:
            predictions.append({"input": item.get("name", f"input {index}"), **predict_one(adapter, task, item, top_k, output, index)})
        except (InputError, OSError, ValueError) as exc:
            predictions.append({"input": item.get("name", f"input {index}"), "error": str(exc)[:500]})
        context.progress(100.0 * (index + 1) / max(len(items), 1), f"predicted {index + 1} of {len(items)}")
    return {"task": task, "labels": adapter.labels, "predictions": predictions}
