"""Ground-photo and text towers.

Two sources share one interface:

* ``taxabind`` (default): open_clip ViT-B/16 ``hf-hub:MVRL/taxabind-vit-b-16`` with its own preprocessing and
  tokenizer. Needs the ``clip`` extra (``pip install 'geoprom3e[clip]'``: ``open_clip_torch``, which imports
  torchvision; see the README for the torch/torchvision pair that works on CPU-only machines).
* ``hf-clip``: a transformers ``CLIPModel`` folder (image + text) or ``CLIPVisionModelWithProjection`` folder
  (image only). No torchvision needed; the offline demo and the tests use it with small random weights, and any
  CLIP checkpoint converted to transformers loads the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from geoprom3e.encoders.base import EncoderInfo, FrozenEncoder
from geoprom3e.encoders.images import load_image
from geoprom3e.encoders.transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransform, PhotoPreprocessor, stack
from geoprom3e.errors import ConfigError, InputError, WeightsNotFoundError


def import_open_clip() -> Any:
    """``import open_clip`` or a one-line error that says how to install it."""
    try:
        import open_clip
    except ImportError as exc:
        raise ConfigError(
            f"the taxabind image/text encoder needs open_clip ({exc}): pip install 'geoprom3e[clip]' with a torch "
            "that has a matching torchvision (CPU machines: pip install torch==2.14.1 torchvision==0.29.1), or use "
            "source='hf-clip' with a transformers CLIP folder"
        ) from None
    return open_clip


@dataclass(frozen=True)
class OpenClipPhotoPreprocessor:
    """Photos → tensors with open_clip's own validation transform (after robust loading and EXIF fixes)."""

    transform: Any
    """open_clip ``preprocess_val`` (a picklable torchvision Compose)."""
    min_side: int = 256
    """Cheap JPEG downscale target before the transform."""

    def __call__(self, item: Any) -> torch.Tensor:
        """One photo → tensor."""
        return self.transform(load_image(item, min_side=self.min_side))

    def batch(self, items: list[Any]) -> torch.Tensor:
        """Preprocess and stack."""
        return stack([self(x) for x in items])


@dataclass(frozen=True)
class TextPreprocessor:
    """Strings → token ids [B, L] with the model's tokenizer."""

    tokenizer: Any
    """open_clip tokenizer (callable on a list of strings) or a transformers tokenizer."""
    hf: bool = False
    """True for a transformers tokenizer (returns a dict)."""

    def batch(self, items: list[Any]) -> Any:
        """Tokenise a list of strings (checked to be non-empty strings)."""
        bad = [i for i, t in enumerate(items) if not isinstance(t, str) or not t.strip()]
        if bad:
            raise InputError(f"text input rows {bad[:5]} are empty or not strings: pass taxonomic names or captions")
        if self.hf:
            tok = self.tokenizer(items, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
            return {"input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"]}
        return self.tokenizer(items)

    def __call__(self, item: Any) -> Any:
        """One string → tokens."""
        return self.batch([item])


def load_open_clip(path: Path) -> tuple[torch.nn.Module, Any, Any]:
    """(model, preprocess_val, tokenizer) from an open_clip folder (``open_clip_config.json`` + weights)."""
    open_clip = import_open_clip()
    try:
        model, _, preprocess_val = open_clip.create_model_and_transforms(f"local-dir:{path}")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{path}")
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise WeightsNotFoundError(
            f"cannot load open_clip weights from {path} ({str(exc).splitlines()[0][:120]}): it needs "
            "open_clip_config.json + open_clip_model.safetensors (as on hf-hub:MVRL/taxabind-vit-b-16)"
        ) from None
    return model, preprocess_val, tokenizer


class _OpenClipImage(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x)


class _OpenClipText(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens)


class ImageEncoder(FrozenEncoder):
    """Ground photos (paths, bytes, PIL images) → 512-d."""

    modality = "image"

    def __init__(self, module: torch.nn.Module, preprocessor: Any, info: EncoderInfo, **kw: Any) -> None:
        kw.setdefault("batch_size_cpu", 32)
        kw.setdefault("batch_size_gpu", 256)
        kw.setdefault("channels_last", True)
        super().__init__(module, info, **kw)
        self.preprocessor = preprocessor

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.net(batch)


class TextEncoder(FrozenEncoder):
    """Strings (taxonomic names, captions) → 512-d."""

    modality = "text"

    def __init__(self, module: torch.nn.Module, preprocessor: TextPreprocessor, info: EncoderInfo, **kw: Any):
        kw.setdefault("batch_size_cpu", 256)
        kw.setdefault("batch_size_gpu", 1024)
        super().__init__(module, info, **kw)
        self.preprocessor = preprocessor

    def items(self, raw: Any) -> Any:
        """One string is a list of one."""
        return [raw] if isinstance(raw, str) else list(raw)

    def _forward(self, batch: Any) -> torch.Tensor:
        return self.net(**batch) if isinstance(batch, dict) else self.net(batch)


def open_clip_encoder(modality: str, path: Path, info: EncoderInfo, **kw: Any) -> FrozenEncoder:
    """The taxabind open_clip image or text encoder from a local folder."""
    model, preprocess_val, tokenizer = load_open_clip(path)
    if modality == "image":
        return ImageEncoder(_OpenClipImage(model), OpenClipPhotoPreprocessor(preprocess_val), info, **kw)
    return TextEncoder(_OpenClipText(model), TextPreprocessor(tokenizer), info, **kw)


# --- transformers CLIP folders ----------------------------------------------------------------------------------
def _first_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    for name in ("image_embeds", "text_embeds", "pooler_output"):
        v = getattr(out, name, None)
        if isinstance(v, torch.Tensor):
            return v
    return out[0]


class _HFImage(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self.model, "get_image_features"):
            return _first_tensor(self.model.get_image_features(pixel_values=x))
        return self.model(pixel_values=x).image_embeds


class _HFText(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return _first_tensor(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))


def image_transform_from_folder(path: Path) -> ImageTransform:
    """Resize/crop/mean/std from a transformers ``preprocessor_config.json``; DESIGN §4 values when absent."""
    cfg_path = path / "preprocessor_config.json"
    if not cfg_path.is_file():
        return ImageTransform()
    cfg = json.loads(cfg_path.read_text())
    size = cfg.get("size", 256)
    size = size.get("shortest_edge", size.get("height", 256)) if isinstance(size, dict) else size
    crop = cfg.get("crop_size", 224)
    crop = crop.get("height", 224) if isinstance(crop, dict) else crop
    return ImageTransform(int(size), int(crop), tuple(cfg.get("image_mean", IMAGENET_MEAN)),
                          tuple(cfg.get("image_std", IMAGENET_STD)))


def hf_clip_encoder(modality: str, path: Path, info: EncoderInfo, **kw: Any) -> FrozenEncoder:
    """Image or text encoder from a transformers CLIP folder (``CLIPModel`` or ``CLIPVisionModelWithProjection``)."""
    import transformers

    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise WeightsNotFoundError(f"{path} has no config.json: save the CLIP model with transformers save_pretrained")
    model_type = json.loads(cfg_file.read_text()).get("model_type", "")
    if not (model_type == "clip" or (model_type == "clip_vision_model" and modality == "image")):
        need = "CLIPModel (image + text)" if modality == "text" else "CLIPModel or CLIPVisionModelWithProjection"
        raise WeightsNotFoundError(
            f"{path} holds a {model_type!r} model; the hf-clip {modality} encoder needs a {need}"
        )
    try:
        if model_type == "clip":
            model = transformers.CLIPModel.from_pretrained(str(path))
        else:
            model = transformers.CLIPVisionModelWithProjection.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise WeightsNotFoundError(
            f"cannot load transformers CLIP from {path} ({str(exc).splitlines()[0][:120]})"
        ) from None
    if modality == "image":
        return ImageEncoder(_HFImage(model), PhotoPreprocessor(image_transform_from_folder(path)), info, **kw)
    try:
        tokenizer = transformers.CLIPTokenizer.from_pretrained(str(path))
    except (OSError, ValueError, TypeError) as exc:
        raise WeightsNotFoundError(
            f"{path} has no CLIP tokenizer files (vocab.json, merges.txt) for the text encoder ({type(exc).__name__})"
        ) from None
    return TextEncoder(_HFText(model), TextPreprocessor(tokenizer, hf=True), info, **kw)
