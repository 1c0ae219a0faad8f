"""Small random-weight encoders saved in exactly the layouts production loads (tests and the offline demo).

Every folder also gets ``geoprom3e.json`` saying the weights are random, so anything built on them says so.
Nothing here downloads: architectures are built from configs, weights are seeded random.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from geoprom3e.encoders.registry import NOTE_FILE

RANDOM_NOTE = "random weights of the right architecture (tests/demo): embeddings carry no meaning"
"""Note written into every folder made here."""


def _note(folder: Path) -> None:
    (folder / NOTE_FILE).write_text(json.dumps({"note": RANDOM_NOTE, "in_prom3e_space": False}))


def _vision_config(**kw: object) -> object:
    from transformers import CLIPVisionConfig

    base = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=224,
                patch_size=32, projection_dim=512)
    base.update(kw)
    return CLIPVisionConfig(**base)


def save_small_sat(folder: str | Path, seed: int = 0) -> Path:
    """A tiny ``CLIPVisionModelWithProjection`` (512-d projection) saved like ``MVRL/ecosat``."""
    from transformers import CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    folder = Path(folder)
    CLIPVisionModelWithProjection(_vision_config()).save_pretrained(str(folder), safe_serialization=True)
    _note(folder)
    return folder


def _tiny_clip_tokenizer_files(folder: Path) -> None:
    """Byte-level BPE vocabulary with no merges (every byte a token) in the CLIP tokenizer's file format."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    chars = [chr(c) for c in cs]
    vocab_list = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab_list)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
    }))


def save_small_hf_clip(folder: str | Path, seed: int = 0) -> Path:
    """A tiny transformers ``CLIPModel`` (image + text, 512-d) with a byte-level tokenizer: the no-open_clip source."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=514,
                max_position_embeddings=77, bos_token_id=512, eos_token_id=513, pad_token_id=513)
    vision = _vision_config().to_dict()
    cfg = CLIPConfig(text_config=text, vision_config=vision, projection_dim=512)
    CLIPModel(cfg).save_pretrained(str(folder), safe_serialization=True)
    _tiny_clip_tokenizer_files(folder)
    _note(folder)
    return folder


def _save_open_clip(folder: str | Path, model_cfg: dict | None, seed: int) -> Path:
    """Random open_clip CLIP weights + ``open_clip_config.json`` in the ``MVRL/taxabind-vit-b-16`` layout
    (``model_cfg`` None: the real ``ViT-B-16`` sizes)."""
    from safetensors.torch import save_file

    from geoprom3e.encoders.clip import import_open_clip

    open_clip = import_open_clip()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model_cfg = model_cfg or open_clip.get_model_config("ViT-B-16")
    preprocess_cfg = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "interpolation": "bicubic",
                      "resize_mode": "shortest"}
    cfg = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    torch.manual_seed(seed)
    model = open_clip.CLIP(**model_cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    _note(folder)
    return folder


def save_small_open_clip(folder: str | Path, seed: int = 0) -> Path:
    """A tiny open_clip ViT saved like ``hf-hub:MVRL/taxabind-vit-b-16`` (needs the ``clip`` extra)."""
    return _save_open_clip(folder, {
        "embed_dim": 512,
        "vision_cfg": {"image_size": 224, "layers": 1, "width": 64, "head_width": 32, "patch_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }, seed)


def save_small_loc(folder: str | Path, seed: int = 0, hidden: int = 64, prefix: str = "") -> Path:
    """A narrow GeoCLIP location encoder (σ = 1, 16, 256) saved as ``config.json`` + ``model.safetensors``.

    ``prefix`` (e.g. ``"location_encoder."``) mimics wrapper modules seen in published checkpoints.
    """
    from safetensors.torch import save_file

    from geoprom3e.encoders.loc import SIGMAS, GeoCLIPLocationEncoder

    torch.manual_seed(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = GeoCLIPLocationEncoder(SIGMAS, hidden).state_dict()
    save_file({prefix + k: v.contiguous() for k, v in sd.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"sigma": list(SIGMAS), "model_type": "geoclip-location-encoder"}))
    _note(folder)
    return folder


def save_small_env(folder: str | Path, seed: int = 0, depth: int = 1) -> Path:
    """A SINR residual MLP (20 → 512, ``depth`` residual layers) with a class head, saved like ``MVRL/ecoclim``."""
    from safetensors.torch import save_file

    from geoprom3e.encoders.env import SINRNet

    torch.manual_seed(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = SINRNet(20, 512, depth).state_dict()
    sd["class_emb.weight"] = torch.randn(10, 512)  # the species head the encoder ignores
    save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"num_inputs": 20, "num_filts": 512, "depth": depth}))
    _note(folder)
    return folder


def save_small_audio(folder: str | Path, seed: int = 0) -> Path:
    """A tiny CLAP audio tower (``ClapAudioModelWithProjection``) + feature extractor, saved like ``MVRL/ecosound``."""
    from transformers import ClapAudioConfig, ClapAudioModelWithProjection, ClapFeatureExtractor

    torch.manual_seed(seed)
    folder = Path(folder)
    cfg = ClapAudioConfig(spec_size=256, window_size=8, num_mel_bins=64, depths=[1, 1], num_attention_heads=[1, 2],
                          hidden_size=32, patch_embeds_hidden_size=16, projection_dim=512, enable_fusion=False)
    ClapAudioModelWithProjection(cfg).save_pretrained(str(folder), safe_serialization=True)
    ClapFeatureExtractor(feature_size=64, sampling_rate=48_000, max_length_s=10).save_pretrained(str(folder))
    _note(folder)
    return folder


def make_hf_cache(cache_dir: str | Path, repo_id: str, src: str | Path, revision_sha: str | None = None) -> Path:
    """Lay ``src``'s files out as a Hugging Face cache entry: ``models--org--name/{blobs,refs/main,snapshots/<sha>}``.

    Blobs are named by their sha256 (as the hub names LFS files), snapshot files are relative symlinks.
    Returns the snapshot folder.
    """
    cache_dir = Path(cache_dir)
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    sha = revision_sha or hashlib.sha1(repo_id.encode()).hexdigest()
    snap = repo / "snapshots" / sha
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(sha)
    for f in sorted(Path(src).iterdir()):
        if not f.is_file():
            continue
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        blob = repo / "blobs" / digest
        if not blob.exists():
            shutil.copyfile(f, blob)
        link = snap / f.name
        if link.exists() or link.is_symlink():
            link.unlink()
        os.symlink(os.path.relpath(blob, snap), link)
    return snap


def write_covariate_stack(
    path: str | Path, bbox: tuple[float, float, float, float] = (-125.0, 24.5, -66.5, 49.5), res: float = 0.5,
    crs: str = "EPSG:4326", bands: int = 20, seed: int = 0, named: bool = True,
) -> Path:
    """A smooth synthetic 20-band covariate GeoTIFF (elevation, bio1..bio19) with a NaN corner, for env tests."""
    import rasterio
    from rasterio.transform import from_origin

    from geoprom3e.encoders.env import COVARIATES

    w, s, e, n = bbox
    width, height = int(round((e - w) / res)), int(round((n - s) / res))
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    data = np.stack([(b + 1) * 10 + np.sin(xx / (3 + b)) * 50 + yy * rng.uniform(0.5, 2) for b in range(bands)])
    data = data.astype(np.float32)
    data[:, :2, :2] = np.nan
    profile = dict(driver="GTiff", width=width, height=height, count=bands, dtype="float32", crs=crs,
                   transform=from_origin(w, n, res, res), nodata=np.nan)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        if named:
            for i in range(bands):
                ds.set_band_description(i + 1, COVARIATES[i] if i < len(COVARIATES) else f"extra{i}")
    return Path(path)


def save_vit_b16_sat(folder: str | Path, seed: int = 0) -> Path:
    """A full-size ViT-B/16 ``CLIPVisionModelWithProjection`` (random weights, ``MVRL/ecosat`` shape) for benchmarks."""
    from transformers import CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    folder = Path(folder)
    cfg = _vision_config(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                         patch_size=16)
    CLIPVisionModelWithProjection(cfg).save_pretrained(str(folder), safe_serialization=True)
    _note(folder)
    return folder


def save_open_clip_vit_b16(folder: str | Path, seed: int = 0) -> Path:
    """open_clip ``ViT-B-16`` with random weights in the ``MVRL/taxabind-vit-b-16`` layout (benchmarks)."""
    return _save_open_clip(folder, None, seed)
