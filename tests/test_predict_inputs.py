"""How the work process of a prediction reads its inputs and shapes what the adapter predicted."""
from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainfaas.functions.predict import InputError, decode_image, read_input, shaped
from trainfaas.services.core.inputs import MAX_TEXT_CHARS


def encoded(width: int, height: int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_inline_image_and_an_image_file_decode_to_rgb_images(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(encoded(5, 4, "L"))
    image = read_input({"file": str(tmp_path / "a.png")}, text=False)
    assert image.mode == "RGB" and image.size == (5, 4)
    assert read_input({"image": base64.b64encode(encoded(3, 2)).decode()}, text=False).size == (3, 2)


def test_an_image_over_the_pixel_cap_is_refused_before_its_pixels_are_decoded() -> None:
    with pytest.raises(InputError, match="pixels"):
        decode_image(encoded(8000, 8000, "1"))
    with pytest.raises(InputError, match="not an image"):
        decode_image(b"plain text")


def test_a_file_swapped_for_a_link_after_the_check_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", tmp_path / "input.txt")
    with pytest.raises(InputError, match="link"):
        read_input({"file": str(tmp_path / "input.txt")}, text=True)


def test_a_text_model_reads_texts_and_utf8_files_within_the_cap(tmp_path: Path) -> None:
    assert read_input({"text": "hello"}, text=True) == "hello"
    (tmp_path / "a.txt").write_text("from a file")
    assert read_input({"file": str(tmp_path / "a.txt")}, text=True) == "from a file"
    (tmp_path / "long.txt").write_text("x" * (MAX_TEXT_CHARS + 1))
    with pytest.raises(InputError, match="characters"):
        read_input({"file": str(tmp_path / "long.txt")}, text=True)
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match="UTF-8"):
        read_input({"file": str(tmp_path / "binary.txt")}, text=True)


def test_a_segmentation_becomes_a_mask_file_and_pixel_counts(tmp_path: Path) -> None:
    mask = np.zeros((4, 5), dtype=np.uint8)
    mask[0, :2] = 2
    out = shaped("semantic-segmentation", {"mask": mask, "labels": ["square"]}, ["circle", "square"], tmp_path, 3)
    assert out["pixels"] == {"background": 18, "square": 2} and out["labels"] == ["square"]
    assert Path(out["mask_path"]) == (tmp_path / "masks" / "3.png").resolve()
    assert np.array_equal(np.asarray(Image.open(out["mask_path"])), mask)
    assert shaped("detection", [{"label": "circle", "score": 0.5, "box": [0, 0, 1, 1]}], ["circle"], tmp_path, 0) == {
        "objects": [{"label": "circle", "score": 0.5, "box": [0, 0, 1, 1]}]}
