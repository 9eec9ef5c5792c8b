"""Images handed to an image adapter's ``predict``: PIL images or numpy arrays."""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from trainfaas.services.core.errors import ConfigError


def to_pil_image(item: Any, verb: str) -> Image.Image:
    """A PIL image from a PIL image or a numpy array (H×W or H×W×C; floats are taken as 0..1).

    ``verb`` says what the caller does with it ("classify", "segment") in the error for anything else.
    """
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, np.ndarray) and item.ndim in (2, 3):
        array = item
        if array.dtype.kind == "f":
            array = np.rint(np.clip(array, 0.0, 1.0) * 255.0)
        array = np.clip(array, 0, 255).astype(np.uint8)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        return Image.fromarray(array)
    raise ConfigError(
        f"cannot {verb} a {type(item).__name__}: give PIL images or numpy arrays of shape HxW or HxWxC",
        {"batch": "items must be PIL images or numpy arrays"},
    )
