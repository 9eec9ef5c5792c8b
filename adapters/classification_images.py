"""The images of torchvision classification: the image-folder subsets and their label plan, the
preprocessing saved with a model, and the augmentation that runs on whole batches on the training device.

Every image is converted to RGB (so grayscale images get three equal channels), resized to a square
of ``input_size`` pixels and preprocessed (none, a linear contrast stretch, or CLAHE). In training,
RandAugment, random resized crops, shifts and flips draw from a generator seeded by the step, so a resumed
run repeats them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from torchvision.datasets import ImageFolder
from torchvision.transforms import InterpolationMode
from torchvision.transforms.autoaugment import RandAugment, _apply_op

from trainfaas.adapters.confine import confined, files_under, shown
from trainfaas.adapters.datasets import IMAGE_SUFFIXES, _label_folders, choose_labels, count_images
from trainfaas.services.core.errors import DatasetError

if TYPE_CHECKING:
    from trainfaas.adapters.classification_options import ClassificationOptions

NEGATIVE_LABEL = "__negative__"
CROP_ASPECT_RATIOS = (3 / 4, 4 / 3)  # torchvision's RandomResizedCrop
MAGNITUDE_BINS = 31  # RandAugment's magnitudes 0..30


# ---- RandAugment ---------------------------------------------------------------------------------

RANDAUGMENT_OPS: tuple[str, ...] = tuple(RandAugment()._augmentation_space(MAGNITUDE_BINS, (32, 32)))
COLOUR_OPS: frozenset[str] = frozenset({"Brightness", "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize"})


def randaugment_ops(color: bool, disable: list[str]) -> tuple[str, ...]:
    """RandAugment's operations left after taking out the colour ones (unless ``color``) and ``disable``."""
    return tuple(op for op in RANDAUGMENT_OPS if (color or op not in COLOUR_OPS) and op not in disable)


class BatchRandAugment(RandAugment):
    """torchvision's RandAugment restricted to ``ops``, applied to a batch with a choice per image.

    torchvision's ``forward`` draws one choice for the whole input; here every image of a uint8
    batch [N, C, H, W] draws its own operations and signs (from ``generator``, so a seeded step
    repeats them), and the images that drew the same one are transformed together by
    torchvision's own operation. Magnitude and the operations' parameters are torchvision's.
    """

    def __init__(self, ops: tuple[str, ...], num_ops: int, magnitude: int) -> None:
        super().__init__(num_ops=num_ops, magnitude=magnitude, num_magnitude_bins=MAGNITUDE_BINS, interpolation=InterpolationMode.NEAREST)
        self.ops = ops

    def _augmentation_space(self, num_bins: int, image_size: tuple[int, int]) -> dict[str, tuple[torch.Tensor, bool]]:
        space = super()._augmentation_space(num_bins, image_size)
        return {op: space[op] for op in self.ops}

    def forward(self, img: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:  # type: ignore[override]
        images = img.clone()
        space = self._augmentation_space(self.num_magnitude_bins, (images.shape[-2], images.shape[-1]))
        names = list(space)
        for _ in range(self.num_ops):
            choices = torch.randint(len(names), (len(images),), generator=generator)
            negative = torch.randint(2, (len(images),), generator=generator)
            keys = choices * 2 + negative
            for key in keys.unique().tolist():
                name = names[key // 2]
                magnitudes, signed = space[name]
                magnitude = float(magnitudes[self.magnitude]) if magnitudes.ndim > 0 else 0.0
                if signed and key % 2:
                    magnitude = -magnitude
                index = (keys == key).nonzero().flatten().to(images.device)
                images[index] = _apply_op(images[index], name, magnitude, interpolation=self.interpolation, fill=None)
        return images


# ---- preprocessing and pixels ---------------------------------------------------------------------


@dataclass(frozen=True)
class Preprocessing:
    """What is done to every resized image (uint8 H×W×3) before it is standardised; saved with the model."""

    kind: str = "none"
    stretch_low: float = 0.0
    stretch_high: float = 100.0
    clahe_clip_limit: float = 2.0
    clahe_tile_grid: int = 8

    @classmethod
    def of(cls, options: ClassificationOptions) -> Preprocessing:
        return cls(options.preprocess, options.stretch_low, options.stretch_high, options.clahe_clip_limit, options.clahe_tile_grid)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        if self.kind == "linear_stretch":
            return _stretch(pixels, self.stretch_low, self.stretch_high)
        if self.kind == "clahe":
            return _clahe(pixels, self.clahe_clip_limit, self.clahe_tile_grid)
        return pixels


def _stretch(pixels: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map each channel's ``low`` and ``high`` percentiles to 0 and 255; a flat channel stays as it is."""
    values = pixels.reshape(-1, pixels.shape[-1]).astype(np.float32)
    if (low, high) == (0.0, 100.0):
        bottom, top = values.min(axis=0), values.max(axis=0)
    else:
        bottom, top = np.percentile(values, [low, high], axis=0)
    span = top - bottom
    flat = span <= 0
    scale = np.where(flat, 1.0, 255.0 / np.where(flat, 1.0, span))
    offset = np.where(flat, 0.0, bottom)
    return np.clip(np.rint((pixels - offset) * scale), 0, 255).astype(np.uint8)


def _clahe(pixels: np.ndarray, clip_limit: float, tile_grid: int) -> np.ndarray:
    """OpenCV's CLAHE on the lightness (CIELAB L) of a colour image, or on the grey of a grey one."""
    import cv2

    clahe = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tile_grid, tile_grid))
    if (pixels == pixels[..., :1]).all():
        grey = clahe.apply(np.ascontiguousarray(pixels[..., 0]))
        return np.repeat(grey[..., None], 3, axis=2)
    lab = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2LAB)
    lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


@dataclass(frozen=True)
class Pixels:
    """PIL image → preprocessed uint8 tensor [3, size, size]; shared by training and prediction (picklable,
    for DataLoader workers)."""

    size: int
    preprocessing: Preprocessing

    def __call__(self, image: Image.Image) -> torch.Tensor:
        resized = image.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
        pixels = self.preprocessing(np.array(resized, dtype=np.uint8))
        return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).contiguous()


def _is_image_file(path: str) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


class LabelledImageFolder(ImageFolder):
    """An ImageFolder whose class indexes come from the caller, not from its own sub-folders.

    The validation subset may lack some labels; numbering its folders on their own would then
    shift every later label's index. Folders missing from ``class_index`` are not read; several
    folders may share an index (the negative class). Its folders are walked by
    :func:`~trainfaas.adapters.confine.files_under`: an image that leads outside the data set's folder
    (the subset's parent) raises DatasetError naming it, and symlinked folders are not walked into.
    """

    def __init__(self, root: Path, labels: list[str], class_index: dict[str, int], transform: Any) -> None:
        self._labels, self._class_index = list(labels), dict(class_index)
        super().__init__(str(root), transform=transform, is_valid_file=_is_image_file, allow_empty=True)

    @staticmethod
    def make_dataset(directory: str | Path, class_to_idx: dict[str, int], extensions: tuple[str, ...] | None = None,
                     is_valid_file: Any = None, allow_empty: bool = False) -> list[tuple[str, int]]:
        """(image path, class index) of every image under each label folder of ``class_to_idx``, sorted."""
        root = Path(directory).parent.resolve()
        samples: list[tuple[str, int]] = []
        for label in sorted(class_to_idx):
            folder = confined(root, Path(directory) / label)
            if folder.is_dir():
                images = sorted(p for p in files_under(root, folder) if _is_image_file(str(p)))
                samples += [(str(image), class_to_idx[label]) for image in images]
        return samples

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        return list(self._labels), dict(self._class_index)


@dataclass(frozen=True)
class LabelPlan:
    """The model's labels and, for each folder of the data set to read, its class index."""

    labels: list[str]
    class_index: dict[str, int]
    counts: dict[str, int]  # images to read per subset


def count_split(paths: dict[str, Path]) -> dict[str, dict[str, int]]:
    """Images per label of each subset of a training on separate data sets, one ``<label>/<image>`` folder each
    (every entry confined to its own folder)."""
    images: dict[str, dict[str, int]] = {}
    for subset, path in paths.items():
        root = Path(path).resolve()
        if not root.is_dir():
            raise DatasetError(f"the {subset} data set {root} is not a directory", {f"datasets.{subset}": "an existing folder"})
        images[subset] = _label_folders(root, root)
    return images


def plan_labels(path: Path | None, chosen: list[str] | None, include_negatives: bool,
                images: dict[str, dict[str, int]] | None = None) -> LabelPlan:
    """Check the data set at ``path`` (or the ``images`` per label of each subset, counted already)
    against a label subset; raises DatasetError naming what to change."""
    images = images if images is not None else count_images(Path(str(path)))
    dataset_labels = sorted(images["train"])
    labels = choose_labels(dataset_labels, chosen)
    class_index = {label: index for index, label in enumerate(labels)}
    others = [label for label in dataset_labels if label not in class_index]
    if include_negatives and others:
        if NEGATIVE_LABEL in dataset_labels:
            raise DatasetError(f"the data set has a label {NEGATIVE_LABEL}, the name of the negative class",
                               {"configuration.include_negatives": "set to false, or rename that folder"})
        class_index.update({label: len(labels) for label in others})
        labels = [*labels, NEGATIVE_LABEL]
    counts = {subset: sum(n for label, n in images[subset].items() if label in class_index) for subset in images}
    if len(labels) < 2:
        raise DatasetError(f"a classifier needs at least two classes, not {shown(labels) or 'none'}",
                           {"configuration.labels": "choose at least two labels, or set include_negatives"})
    if counts["train"] < 2 or counts["validation"] < 1:
        raise DatasetError(
            f"the chosen labels have {counts['train']} training and {counts['validation']} validation images",
            {"configuration.labels": "choose labels with at least 2 training images and 1 validation image"},
        )
    return LabelPlan(labels, class_index, counts)


# ---- crops and flips -------------------------------------------------------------------------------


def center_crop(images: torch.Tensor, crop: tuple[int, int]) -> torch.Tensor:
    """The centre ``crop`` (height, width) of images [..., H, W] (a view; unchanged when the sizes match)."""
    height, width = images.shape[-2:]
    if (height, width) == crop:
        return images
    top, left = (height - crop[0]) // 2, (width - crop[1]) // 2
    return images[..., top : top + crop[0], left : left + crop[1]]


def random_resized_crop(images: torch.Tensor, crop: tuple[int, int], min_scale: float, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crops of float images [N, C, H, W], resized (bilinear) to ``crop``, in one batched resampling.

    Each crop covers min_scale..1 of the image's area with an aspect ratio in CROP_ASPECT_RATIOS
    (clamped to the image), as torchvision's RandomResizedCrop; with ``flip``, half of them are
    mirrored too. Random draws come from ``generator`` only.
    """
    count = len(images)
    area = min_scale + (1.0 - min_scale) * torch.rand(count, generator=generator)
    low, high = (math.log(ratio) for ratio in CROP_ASPECT_RATIOS)
    ratio = torch.exp(low + (high - low) * torch.rand(count, generator=generator))
    width, height = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
    # Affine grids work in [-1, 1] coordinates: a crop of half-extent w is centred anywhere within 1 - w.
    centre_x = (1.0 - width) * (2.0 * torch.rand(count, generator=generator) - 1.0)
    centre_y = (1.0 - height) * (2.0 * torch.rand(count, generator=generator) - 1.0)
    mirror = torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(count)
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = width * mirror, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
    grid = F.affine_grid(theta.to(images.device, images.dtype), [count, images.shape[1], *crop], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_translate(images: torch.Tensor, crop: tuple[int, int], share: float, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """The centre ``crop`` of float images [N, C, H, W], each moved by a whole number of pixels, up to
    ``share`` of the crop's side in each direction (drawn per image and axis), the uncovered border
    filled by reflecting the image: the pad-and-crop of the CIFAR recipes, without resampling; with
    ``flip``, half of them are mirrored too. Random draws come from ``generator`` only."""
    count, (height, width) = len(images), images.shape[-2:]
    reach_y, reach_x = int(share * crop[0]), int(share * crop[1])
    shift_y = torch.randint(-reach_y, reach_y + 1, (count,), generator=generator)
    shift_x = torch.randint(-reach_x, reach_x + 1, (count,), generator=generator)
    mirror = torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(count)
    # In [-1, 1] coordinates of the whole image a pixel is 2 / side wide; the crop's half-extent is crop / side.
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = mirror * crop[1] / width, 2.0 * shift_x / width
    theta[:, 1, 1], theta[:, 1, 2] = crop[0] / height, 2.0 * shift_y / height
    grid = F.affine_grid(theta.to(images.device, images.dtype), [count, images.shape[1], *crop], align_corners=False)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="reflection", align_corners=False)


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image [N, C, H, W] left to right with probability 1/2 (draws from ``generator``)."""
    flips = (torch.rand(len(images), generator=generator) < 0.5).to(images.device)
    return torch.where(flips.view(-1, 1, 1, 1), images.flip(-1), images)
