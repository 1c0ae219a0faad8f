"""Open user photos robustly: JPEG/PNG/WebP/TIFF, EXIF orientation, any colour mode → RGB, cheap downscale.

A corrupt or unsupported file raises :class:`~geoprom3e.errors.InputError` naming the file.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from geoprom3e.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif")
"""File endings accepted as photos (the content decides the decoder, not the name)."""

_MAX_PIXELS = 16 * 89_478_485  # 16x PIL's bomb limit: large camera panoramas are fine, absurd files are not


def _to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any PIL mode → 8-bit RGB; transparent pixels are composited over ``background``."""
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = np.nanpercentile(a, [0.0, 100.0]) if a.size else (0.0, 1.0)
        a = np.clip((a - lo) / max(hi - lo, 1e-12) * 255.0, 0, 255).astype(np.uint8)
        img = Image.fromarray(a, mode="L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def load_image(source: Any, *, min_side: int | None = 256) -> Image.Image:
    """Open ``source`` (path, bytes, file object, PIL image or HxWx3/HxW uint8 array) as an RGB PIL image.

    EXIF orientation is applied. JPEGs much larger than needed are decoded at 1/2, 1/4 or 1/8 scale by the
    decoder itself (``Image.draft``) so that the shorter side stays ≥ ``min_side``; other formats are reduced
    after decoding. ``min_side=None`` keeps full resolution.
    """
    if isinstance(source, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(source))
    if isinstance(source, np.ndarray):
        if source.ndim == 2 or (source.ndim == 3 and source.shape[2] in (1, 3, 4)):
            arr = source if source.dtype == np.uint8 else np.clip(source, 0, 255).astype(np.uint8)
            return _to_rgb(Image.fromarray(arr.squeeze(-1) if arr.ndim == 3 and arr.shape[2] == 1 else arr))
        raise InputError(f"image array of shape {source.shape} is not HxW or HxWx(1|3|4): pass an RGB photo")
    name = str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "<bytes>")
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    if isinstance(source, (str, Path)) and not Path(source).is_file():
        raise InputError(f"image {name!r} does not exist: check the path")
    old = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = _MAX_PIXELS
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp)
            if min_side and img.format == "JPEG":
                w, h = img.size
                scale = max(min_side / min(w, h), 1e-9)
                # the decoder picks a scale ≥ the request: ask for the smallest size keeping min_side
                img.draft("RGB", (max(1, int(w * scale)) + 1, max(1, int(h * scale)) + 1))
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(
            f"image {name!r} cannot be read ({type(exc).__name__}: {str(exc)[:100]}): is it a complete JPEG, PNG, "
            "WebP or TIFF file?"
        ) from None
    finally:
        Image.MAX_IMAGE_PIXELS = old
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not make a readable photo unusable
        pass
    img = _to_rgb(img)
    if min_side:
        w, h = img.size
        factor = int(min(w, h) // min_side)
        if factor >= 2:
            img = img.reduce(factor)
    return img
