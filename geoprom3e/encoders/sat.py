"""Satellite tower: transformers ``CLIPVisionModelWithProjection`` (``MVRL/ecosat``), ``image_embeds`` output.

Input: RGB Sentinel-2 chips (arrays [3, H, W] / [H, W, 3], or GeoTIFF paths whose first three bands are R, G, B
such as TCI_R, TCI_G, TCI_B), resized 256 → centre-crop 224 with ImageNet normalisation (DESIGN §4).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoprom3e.encoders.base import EncoderInfo, FrozenEncoder
from geoprom3e.encoders.transforms import ChipPreprocessor
from geoprom3e.errors import WeightsNotFoundError


def load_clip_vision(path: Path) -> torch.nn.Module:
    """``CLIPVisionModelWithProjection.from_pretrained(path)`` with a one-line error."""
    from transformers import CLIPVisionModelWithProjection

    try:
        return CLIPVisionModelWithProjection.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise WeightsNotFoundError(
            f"cannot load a CLIPVisionModelWithProjection from {path} ({str(exc).splitlines()[0][:120]}): "
            "it needs config.json + model.safetensors as saved by transformers"
        ) from None


class _ImageEmbeds(torch.nn.Module):
    def __init__(self, vision: torch.nn.Module) -> None:
        super().__init__()
        self.vision = vision

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vision(pixel_values=pixel_values).image_embeds


class SatEncoder(FrozenEncoder):
    """RGB chips → 512-d in the TaxaBind satellite space."""

    modality = "sat"

    def __init__(self, vision: torch.nn.Module, info: EncoderInfo, *, reflectance_max: float = 2000.0,
                 resize_on_device: bool | None = None, **kw: Any):
        kw.setdefault("batch_size_cpu", 32)
        kw.setdefault("batch_size_gpu", 256)
        kw.setdefault("channels_last", True)
        super().__init__(_ImageEmbeds(vision), info, **kw)
        # Measured on an H100 fed by 14 workers: resizing in the workers (3.9k chips/s) beats shipping native chips
        # and resizing on the GPU (3.1k chips/s): moving bytes between processes costs more than the resize.
        self.preprocessor = ChipPreprocessor(reflectance_max=reflectance_max, resize_on_device=bool(resize_on_device))

    def items(self, raw: Any) -> Any:
        """A [B, 3, H, W] array is B chips; one chip or one path is a list of one."""
        if isinstance(raw, (np.ndarray, torch.Tensor)) and raw.ndim == 4:
            return list(raw)
        return super().items(raw)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.net(batch)
