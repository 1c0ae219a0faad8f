"""Picklable preprocessors (they run in DataLoader worker processes): photos, satellite chips, text, audio.

Each preprocessor maps ONE raw item to a CPU tensor (or a dict of tensors) and has ``collate(items)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from geoprom3e.encoders.images import load_image
from geoprom3e.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""ImageNet channel means (DESIGN §4: TaxaBind image and satellite towers)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""ImageNet channel standard deviations."""


def stack(items: list[Any]) -> Any:
    """Collate a list of tensors (or of dicts of tensors) along a new batch dimension."""
    if not items:
        raise InputError("nothing to encode: the input list is empty")
    if isinstance(items[0], dict):
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}
    return torch.stack(items)


@dataclass(frozen=True)
class ImageTransform:
    """Resize the shorter side, centre-crop, scale to [0, 1] and normalise per channel."""

    resize: int = 256
    """Shorter side after resizing (bicubic)."""
    crop: int = 224
    """Side of the centre crop fed to the network."""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    """Per-channel mean subtracted after scaling to [0, 1]."""
    std: tuple[float, float, float] = IMAGENET_STD
    """Per-channel standard deviation divided by."""

    def crop_uint8(self, img: Image.Image) -> torch.Tensor:
        """RGB PIL image → resized, centre-cropped [3, crop, crop] uint8 tensor (not yet normalised).

        Workers send uint8 (4× less to move between processes and to the GPU); :meth:`normalize` runs on the
        device.
        """
        w, h = img.size
        s = self.resize / min(w, h)
        nw, nh = max(self.crop, round(w * s)), max(self.crop, round(h * s))
        img = img.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - self.crop) // 2, (nh - self.crop) // 2
        img = img.crop((left, top, left + self.crop, top + self.crop))
        return torch.from_numpy(np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)))

    def resize_crop_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] (any dtype) → shorter side ``resize`` (bicubic, antialiased) → centre ``crop``, as float32.

        The on-device twin of :meth:`crop_uint8` (torch's bicubic kernel differs slightly from PIL's).
        """
        h, w = x.shape[-2:]
        s = self.resize / min(h, w)
        nh, nw = max(self.crop, round(h * s)), max(self.crop, round(w * s))
        y = torch.nn.functional.interpolate(x.float(), size=(nh, nw), mode="bicubic", antialias=True,
                                            align_corners=False).clamp_(0, 255)
        top, left = (nh - self.crop) // 2, (nw - self.crop) // 2
        return y[..., top : top + self.crop, left : left + self.crop]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 [..., 3, H, W] → float32 scaled to [0, 1] and normalised per channel (on ``x``'s device).

        Inputs larger than ``crop`` (native chips shipped as they are) are resized and cropped here first.
        """
        if tuple(x.shape[-2:]) != (self.crop, self.crop):
            x = self.resize_crop_tensor(x if x.ndim == 4 else x[None])
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(3, 1, 1)
        return (x.float() / 255.0 - mean) / std

    def from_pil(self, img: Image.Image) -> torch.Tensor:
        """RGB PIL image → normalised [3, crop, crop] float32 tensor."""
        return self.normalize(self.crop_uint8(img))


@dataclass(frozen=True)
class PhotoPreprocessor:
    """Ground photos (paths, bytes, PIL images or arrays) → uint8 [3, 224, 224] (normalised on the device)."""

    transform: ImageTransform = ImageTransform()
    """Resize/crop/normalise settings."""

    def __call__(self, item: Any) -> torch.Tensor:
        """One photo → tensor."""
        return self.transform.crop_uint8(load_image(item, min_side=self.transform.resize))

    def collate(self, items: list[torch.Tensor]) -> torch.Tensor:
        """Stack into a batch."""
        return stack(items)

    def batch(self, items: list[Any]) -> torch.Tensor:
        """Preprocess and stack a list of raw items."""
        return stack([self(x) for x in items])


def chip_to_rgb_uint8(chip: np.ndarray, reflectance_max: float = 2000.0) -> np.ndarray:
    """A [3, H, W] or [H, W, 3] chip → [H, W, 3] uint8.

    8-bit visual/TCI values (max ≤ 255) are kept; surface reflectance (digital numbers, e.g. Sentinel-2 L2A
    0..10000) is scaled so that ``reflectance_max`` maps to 255, like the Sentinel-2 true-colour image.
    NaN (nodata) becomes 0.
    """
    a = np.asarray(chip)
    if a.ndim != 3:
        raise InputError(f"satellite chip of shape {a.shape} is not 3-D: pass [3, H, W] or [H, W, 3] RGB")
    if a.shape[0] in (3, 4) and a.shape[2] not in (3, 4):
        a = a[:3].transpose(1, 2, 0)
    elif a.shape[2] in (3, 4):
        a = a[:, :, :3]
    else:
        raise InputError(f"satellite chip of shape {a.shape} has no 3 RGB bands first or last: pass R, G, B")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    a = np.nan_to_num(a.astype(np.float32), nan=0.0)
    if float(a.max(initial=0.0)) > 255.0:
        a = a * (255.0 / reflectance_max)
    return np.clip(a + 0.5, 0, 255).astype(np.uint8)


def read_chip(path: str | Path, bands: tuple[int, int, int] = (1, 2, 3)) -> np.ndarray:
    """Read RGB bands (1-based, default the first three, e.g. TCI_R, TCI_G, TCI_B) of a GeoTIFF chip → [3, H, W]."""
    import rasterio

    try:
        with rasterio.open(path) as ds:
            if ds.count < max(bands):
                raise InputError(
                    f"chip {str(path)!r} has {ds.count} band(s); bands {bands} were asked for: pass an RGB chip"
                )
            return ds.read(list(bands))
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"chip {str(path)!r} cannot be read ({str(exc)[:100]}): is it a GeoTIFF?") from None


@dataclass(frozen=True)
class ChipPreprocessor:
    """Sentinel-2 RGB chips (arrays or GeoTIFF paths) → uint8 [3, 224, 224] (DESIGN §4: resize 256 → crop 224).

    ImageNet normalisation happens on the encoder's device (:meth:`ImageTransform.normalize`).
    """

    transform: ImageTransform = ImageTransform()
    """Resize/crop/normalise settings."""
    reflectance_max: float = 2000.0
    """Reflectance DN mapped to 255 when a chip is not already 8-bit."""
    bands: tuple[int, int, int] = (1, 2, 3)
    """1-based R, G, B band indices read from GeoTIFF paths."""
    resize_on_device: bool = False
    """Ship chips at their native size (uint8) and resize/crop on the encoder's device (GPU): workers then only
    convert. Batches whose chips differ in size fall back to resizing on the CPU."""

    def __call__(self, item: Any) -> torch.Tensor:
        """One chip → uint8 tensor (224 px, or native size with ``resize_on_device``)."""
        if isinstance(item, (str, Path)):
            suffix = Path(item).suffix.lower()
            if suffix in (".tif", ".tiff"):
                arr = read_chip(item, self.bands)
            else:
                arr = np.asarray(load_image(item, min_side=None))
        elif isinstance(item, torch.Tensor):
            arr = item.numpy()
        else:
            arr = item
        rgb = chip_to_rgb_uint8(arr, self.reflectance_max)
        if self.resize_on_device:
            return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
        return self.transform.crop_uint8(Image.fromarray(rgb, mode="RGB"))

    def collate(self, items: list[torch.Tensor]) -> torch.Tensor:
        """Stack into a batch; chips of different native sizes are resized on the CPU first."""
        if len({tuple(t.shape) for t in items}) > 1:
            crop = self.transform.crop
            items = [t if tuple(t.shape[-2:]) == (crop, crop) else
                     self.transform.crop_uint8(Image.fromarray(t.numpy().transpose(1, 2, 0), mode="RGB"))
                     for t in items]
        return stack(items)

    def batch(self, items: list[Any]) -> torch.Tensor:
        """Preprocess and stack a list of raw items."""
        return self.collate([self(x) for x in items])


@dataclass(frozen=True)
class TensorPreprocessor:
    """Already-preprocessed tensors pass through (lets callers feed their own pipeline)."""

    def __call__(self, item: Any) -> torch.Tensor:
        """Identity on tensors."""
        return torch.as_tensor(item)

    def collate(self, items: list[torch.Tensor]) -> torch.Tensor:
        """Stack into a batch."""
        return stack(items)

    def batch(self, items: list[Any]) -> torch.Tensor:
        """Preprocess and stack a list of raw items."""
        return stack([self(x) for x in items])
