"""Fuse: ProM3E over the cached cell embeddings, with each cell's own visible set.

A cell sees the requested modalities it has in the cache (a cell without a usable chip falls back to the
others); the fused product records which. What maps need is stored beside the embeddings, chunk by chunk:
the reconstructions of the query modalities (``image``, ``text``), μ, ‖σ‖₁ and the visible set.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from geoprom3e.engine.cache import EMBED_DIM, EmbeddingCache
from geoprom3e.engine.chunks import Chunk, iter_chunks
from geoprom3e.errors import CacheError, ConfigError
from geoprom3e.modalities import MODALITIES, parse_modalities
from geoprom3e.model import ProM3E

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FuseSettings:
    """How cells are fused."""

    visible: tuple[str, ...] = ("sat", "loc", "env")
    """Modalities a cell may show the model (each cell uses those it has)."""
    decode: tuple[str, ...] = ("image", "text")
    """Modalities reconstructed and stored for similarity maps."""
    n_samples: int = 5
    """Latent draws averaged before decoding (0 = decode μ), as published."""
    seed: int = 0
    """Seed of the latent draws (one generator per chunk, so Dask and single-process runs agree)."""
    batch_size: int = 8192
    """Cells per model call."""


def model_fingerprint(model: ProM3E) -> str:
    """SHA-256 (first 16 hex digits) of the model's config and weights."""
    h = hashlib.sha256(model.config.to_json().encode())
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def fused_group(settings: FuseSettings, fingerprint: str) -> str:
    """Name of the cache group holding one fused product."""
    key = json.dumps({"model": fingerprint, **asdict(settings), "batch_size": None}, sort_keys=True)
    return "fused_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def fuse_grid(
    cache: EmbeddingCache,
    model: ProM3E,
    settings: FuseSettings = FuseSettings(),
    *,
    progress: Callable[[int, int], None] | None = None,
    fingerprint: str | None = None,
) -> str:
    """Run ProM3E on every committed chunk of the cache; returns the fused group name (resumable).

    ``fingerprint`` is :func:`model_fingerprint` of ``model`` when the caller has it already (it hashes every weight).
    """
    vis = parse_modalities(list(settings.visible), model.config.num_modalities)
    dec = parse_modalities(list(settings.decode), model.config.num_modalities) if settings.decode else []
    names = [MODALITIES[i] for i in vis]
    have = [m for m in names if m in cache.modalities()]
    if not have:
        raise CacheError(
            f"cache {str(cache.path)!r} holds {', '.join(cache.modalities()) or 'no modality'}, none of the visible "
            f"set {','.join(names)}: embed one with `geoprom3e embed-grid --grid {cache.grid.name} --modalities "
            f"{','.join(names)}`"
        )
    fingerprint = fingerprint or model_fingerprint(model)
    group = fused_group(settings, fingerprint)
    _ensure_fused_arrays(cache, group, settings, model, have, dec, fingerprint)
    mask = cache.grid.mask()
    chunks = [ch for ch in iter_chunks(cache.grid, cache.chunk_size, mask) if not cache.is_committed(group, ch)]
    total = int(sum(mask[ch.slices].sum() for ch in chunks))
    for ch in chunks:
        missing = [m for m in have if not cache.is_committed(m, ch)]
        if missing:
            raise CacheError(
                f"chunk {ch.id} of {', '.join(missing)} is not in the cache yet (an interrupted embed-grid?): "
                f"rerun `geoprom3e embed-grid --grid {cache.grid.name}` to finish it"
            )
        n = _fuse_chunk(cache, group, ch, model, settings, have, dec, mask)
        if progress:
            progress(n, total)
    return group


def _ensure_fused_arrays(cache: EmbeddingCache, group: str, settings: FuseSettings, model: ProM3E,
                         have: Sequence[str], dec: Sequence[int], fingerprint: str) -> None:
    root = cache.root
    if group in root:
        return
    rows, cols = cache.grid.shape
    c = cache.chunk_size
    g = root.create_group(group)
    g.attrs.update({"settings": asdict(settings), "model": fingerprint, "model_config":
                    model.config.to_dict(), "visible_available": list(have)})
    for i in dec:
        g.create_array(f"recon_{MODALITIES[i]}", shape=(rows, cols, EMBED_DIM), chunks=(c, c, EMBED_DIM),
                       dtype="float16", fill_value=np.nan, compressors=None, dimension_names=("y", "x", "feature"))
    e = model.config.embed_dim
    g.create_array("mu", shape=(rows, cols, e), chunks=(c, c, e), dtype="float16", fill_value=np.nan,
                   compressors=None, dimension_names=("y", "x", "latent"))
    g.create_array("sigma_l1", shape=(rows, cols), chunks=(c, c), dtype="float32", fill_value=np.nan,
                   dimension_names=("y", "x"))
    g.create_array("visible_bits", shape=(rows, cols), chunks=(c, c), dtype="uint8", fill_value=0,
                   dimension_names=("y", "x"))


def _fuse_chunk(cache: EmbeddingCache, group: str, ch: Chunk, model: ProM3E, settings: FuseSettings,
                have: Sequence[str], dec: Sequence[int], mask: np.ndarray) -> int:
    h, w = ch.shape
    m = model.config.num_modalities
    emb = np.zeros((h, w, m, EMBED_DIM), np.float32)
    vis = np.zeros((h, w, m), bool)
    for name in have:
        i = MODALITIES.index(name)
        e, p = cache.read_modality(name, ch)
        vis[..., i] = p & mask[ch.slices]
        emb[..., i, :] = np.where(p[..., None], e, 0.0)
    cells = vis.any(-1)
    rr, cc = np.nonzero(cells)
    g = cache.root[group]
    out = {f"recon_{MODALITIES[i]}": np.full((h, w, EMBED_DIM), np.nan, np.float32) for i in dec}
    mu = np.full((h, w, model.config.embed_dim), np.nan, np.float32)
    sig = np.full((h, w), np.nan, np.float32)
    bits = np.zeros((h, w), np.uint8)
    gen = torch.Generator().manual_seed(settings.seed * 1_000_003 + ch.cr * 10_007 + ch.cc)
    dev = next(model.parameters()).device
    for s in range(0, rr.size, settings.batch_size):
        r, c = rr[s : s + settings.batch_size], cc[s : s + settings.batch_size]
        x = torch.from_numpy(emb[r, c]).to(dev)
        v = torch.from_numpy(vis[r, c]).to(dev)
        res = model.infer(x, v, n_samples=settings.n_samples, decode=list(dec), generator=gen)
        for k, i in enumerate(dec):
            out[f"recon_{MODALITIES[i]}"][r, c] = res.recon[:, k].float().cpu().numpy()
        mu[r, c] = res.mu.float().cpu().numpy()
        sig[r, c] = res.sigma_l1.float().cpu().numpy()
        bits[r, c] = (vis[r, c] * (1 << np.arange(m))).sum(-1).astype(np.uint8)
    rs, cs = ch.slices
    for k, arr in out.items():
        g[k][rs, cs, :] = arr.astype(np.float16)
    g["mu"][rs, cs, :] = mu.astype(np.float16)
    g["sigma_l1"][rs, cs] = sig
    g["visible_bits"][rs, cs] = bits
    cache.commit(group, ch, {"chunk": ch.id, "cells": int(rr.size)})
    return int(rr.size)


def visible_count(bits: np.ndarray) -> np.ndarray:
    """Number of modalities each cell showed the model, from ``visible_bits``."""
    return np.unpackbits(bits[..., None].astype(np.uint8), axis=-1).sum(-1)


def check_settings(settings: FuseSettings) -> None:
    """Validate fuse settings before any work."""
    if settings.n_samples < 0:
        raise ConfigError(f"n_samples = {settings.n_samples}: must be >= 0")
    if settings.batch_size < 1:
        raise ConfigError(f"batch_size = {settings.batch_size}: must be >= 1")
