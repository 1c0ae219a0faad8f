"""Fuse: ProM3E over the cached cell embeddings, with each cell's own visible set.

A cell sees the requested modalities it has in the cache (a cell without a usable chip falls back to the
others). The products land in the cache, chunk by chunk, in one group per model and settings: μ, ‖σ‖₁ and the
visible set (the core, computed together), and reconstructions of query modalities, added on demand.

Each committed chunk records the checksums of the input chunks it was computed from, so a product follows its
inputs: a modality added, a chunk healed or recomputed makes exactly those chunks stale, and the next map
recomputes them. Latent draws depend on (seed, cell) only (``geoprom3e.engine.draws``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from geoprom3e.engine.cache import CORE_PRODUCTS, EmbeddingCache, Window, recon_key
from geoprom3e.engine.chunks import Chunk
from geoprom3e.engine.draws import cell_eps_mean
from geoprom3e.errors import CacheError, ConfigError
from geoprom3e.modalities import EMBED_DIM, MODALITIES, parse_modalities
from geoprom3e.model import ProM3E
from geoprom3e.progress import ProgressCallback, report

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FuseSettings:
    """How cells are fused; validated on construction."""

    visible: tuple[str, ...] = ("sat", "loc", "env")
    """Modalities a cell may show the model (each cell uses those it has)."""
    n_samples: int = 5
    """Latent draws averaged before decoding (0 = decode μ), as published."""
    seed: int = 0
    """Seed of the latent draws (per cell, so any chunking and any worker count agree)."""
    batch_size: int = 8192
    """Cells per model call."""

    def __post_init__(self) -> None:
        vis = self.visible.split(",") if isinstance(self.visible, str) else list(self.visible)
        if not vis:
            raise ConfigError("--visible is empty: name at least one modality, e.g. --visible sat,loc")
        names = tuple(MODALITIES[i] for i in parse_modalities(vis))
        object.__setattr__(self, "visible", names)
        if isinstance(self.n_samples, bool) or not isinstance(self.n_samples, int) or self.n_samples < 0:
            raise ConfigError(f"--n-samples {self.n_samples!r}: must be an integer >= 0 (0 decodes the mean)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"--seed {self.seed!r}: must be an integer >= 0")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size {self.batch_size!r}: must be an integer >= 1")


def model_fingerprint(model: ProM3E) -> str:
    """SHA-256 (first 16 hex digits) of the model's config and weights."""
    h = hashlib.sha256(model.config.to_json().encode())
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def fused_group(settings: FuseSettings, fingerprint: str) -> str:
    """Readable name of the cache group holding one fused product: visible set, draws, seed and model."""
    return f"{'-'.join(settings.visible)}_n{settings.n_samples}_seed{settings.seed}_model-{fingerprint[:12]}"


def fuse_grid(
    cache: EmbeddingCache,
    model: ProM3E,
    settings: FuseSettings = FuseSettings(),
    *,
    decode: Sequence[str] = (),
    window: Window | None = None,
    progress: ProgressCallback | None = None,
    fingerprint: str | None = None,
    checkpoint: str | None = None,
) -> str:
    """Bring the fused products of ``window`` (default: the whole cache) up to date; returns the group name.

    Computes the chunks whose products are missing or were computed from other inputs, and the
    reconstructions of ``decode`` (e.g. ``("image",)``) where asked. ``fingerprint`` is
    :func:`model_fingerprint` of ``model`` when the caller has it already (it hashes every weight).
    """
    dec = [MODALITIES[i] for i in parse_modalities(list(decode), model.config.num_modalities)] if decode else []
    have = [m for m in settings.visible if m in cache.modalities()]
    if not have:
        raise CacheError(
            f"cache {str(cache.path)!r} holds {', '.join(cache.modalities()) or 'no modality'}, none of the visible "
            f"set {','.join(settings.visible)}: embed one with `geoprom3e embed-grid --cache {cache.path} "
            f"--modalities {','.join(m for m in settings.visible if m in ('sat', 'loc', 'env')) or 'loc'}`"
        )
    fingerprint = fingerprint or model_fingerprint(model)
    name = fused_group(settings, fingerprint)
    attrs = {"checkpoint": checkpoint or "", "model_fingerprint": fingerprint, "visible": list(settings.visible),
             "n_samples": settings.n_samples, "seed": settings.seed, "model_config": model.config.to_dict(),
             "draws": "per cell: SplitMix64(seed, cell index) normals, mean of n_samples"}
    cache.ensure_fused(name, attrs, model.config.embed_dim, dec)
    window = window or cache.window()
    chunks = cache.chunks(window)
    with cache.fuse_lock(name):
        todo = []
        for ch in chunks:
            inputs = _inputs(cache, have, ch)
            core = cache.fused_marker(name, "core", ch)
            stale = [] if core is not None and core.get("inputs") == inputs else ["core"]
            for m in dec:
                rec = cache.fused_marker(name, recon_key(m), ch)
                if rec is None or rec.get("inputs") != inputs:
                    stale.append(recon_key(m))
            if stale:
                todo.append((ch, inputs, stale))
        mask = cache.grid.mask()
        total = int(sum(mask[ch.slices].sum() for ch, _, _ in todo))
        if todo:
            log.info("fusing %d of %d chunks of %s", len(todo), len(chunks), name)
        for ch, inputs, stale in todo:
            n = _fuse_chunk(cache, name, ch, model, settings, have, inputs, stale, mask)
            report(progress, "fuse", n, total)
    return name


def _inputs(cache: EmbeddingCache, have: Sequence[str], ch: Chunk) -> dict[str, str]:
    out = {}
    for m in have:
        info = cache.marker(m, ch)
        if info is None:
            raise CacheError(
                f"chunk {ch.id} of {m} is not in cache {str(cache.path)!r} yet (an interrupted or repaired "
                f"embed-grid?): run `geoprom3e embed-grid --cache {cache.path} --modalities {m}` to finish it"
            )
        out[m] = str(info.get("digest"))
    return out


def _fuse_chunk(cache: EmbeddingCache, name: str, ch: Chunk, model: ProM3E, settings: FuseSettings,
                have: Sequence[str], inputs: dict[str, str], stale: list[str], mask: np.ndarray) -> int:
    h, w = ch.shape
    m = model.config.num_modalities
    emb, vis = chunk_inputs(cache, have, ch, mask, m)
    rr, cc = np.nonzero(vis.any(-1))
    recons = [k for k in stale if k.startswith("recon_")]
    out: dict[str, np.ndarray] = {k: np.full((h, w, EMBED_DIM), np.nan, np.float32) for k in recons}
    core = {"mu": np.full((h, w, model.config.embed_dim), np.nan, np.float32),
            "sigma_l1": np.full((h, w), np.nan, np.float32), "visible_bits": np.zeros((h, w), np.uint8)}
    cells = (rr + ch.r0).astype(np.int64) * cache.grid.cols + (cc + ch.c0)
    eps = cell_eps_mean(settings.seed, cells, settings.n_samples)
    dev = next(model.parameters()).device
    dec_idx = [MODALITIES.index(k[len("recon_"):]) for k in recons]
    for s in range(0, rr.size, settings.batch_size):
        r, c = rr[s : s + settings.batch_size], cc[s : s + settings.batch_size]
        x = torch.from_numpy(emb[r, c]).to(dev)
        v = torch.from_numpy(vis[r, c]).to(dev)
        res = model.infer(x, v, n_samples=0, decode=[])
        core["mu"][r, c] = res.mu.float().cpu().numpy()
        core["sigma_l1"][r, c] = res.sigma_l1.float().cpu().numpy()
        core["visible_bits"][r, c] = (vis[r, c] * (1 << np.arange(m))).sum(-1).astype(np.uint8)
        if dec_idx:
            e = torch.from_numpy(eps[s : s + settings.batch_size]).to(dev, res.mu.dtype)[:, None]
            for k, rec in zip(recons, decode_latent(model, res.mu, res.logvar, e, dec_idx)):
                out[k][r, c] = rec
    if "core" in stale:
        cache.write_fused(name, ch, core, inputs, "core")
    for k in recons:
        cache.write_fused(name, ch, {k: out[k]}, inputs, k)
    return int(rr.size)


def chunk_inputs(cache: EmbeddingCache, have: Sequence[str], ch: Chunk, mask: np.ndarray,
                 num_modalities: int = len(MODALITIES)) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings float32 [h, w, M, 512], visible bool [h, w, M]) of one chunk: each masked-in cell shows the
    modalities of ``have`` it holds (checksums verified)."""
    h, w = ch.shape
    emb = np.zeros((h, w, num_modalities, EMBED_DIM), np.float32)
    vis = np.zeros((h, w, num_modalities), bool)
    for mod in have:
        i = MODALITIES.index(mod)
        e, p = cache.read_modality(mod, ch)
        vis[..., i] = p & mask[ch.slices]
        emb[..., i, :] = np.where(p[..., None], e.astype(np.float32), 0.0)
    if not np.isfinite(emb[vis]).all():
        raise cache.corrupt(",".join(have), ch, "a present cell holds a non-finite embedding")
    return emb, vis


def decode_latent(model: ProM3E, mu: torch.Tensor, logvar: torch.Tensor, eps_mean: torch.Tensor,
                  decoders: Sequence[int]) -> list[np.ndarray]:
    """Reconstructions [B, 512] from ``z = μ + exp(logvar / 2) · eps_mean`` (the published inference)."""
    with torch.inference_mode():
        was = model.training
        model.eval()
        try:
            z = mu + torch.exp(logvar / 2) * eps_mean
            return [torch.nn.functional.normalize(model.decoders[i](z), dim=-1).float().cpu().numpy()
                    for i in decoders]
        finally:
            model.train(was)


def read_window(cache: EmbeddingCache, name: str, window: Window, product: str, keys: Sequence[str],
                fill: dict[str, Any]) -> dict[str, np.ndarray]:
    """Arrays ``keys`` of fused ``product`` over ``window`` (checksums verified), cells outside chunks = ``fill``."""
    rows, cols = window.grid.shape
    g = cache.root[f"fused/{name}"]
    out = {k: np.full((rows, cols, *g[k].shape[2:]), fill[k], dtype=g[k].dtype) for k in keys}
    for ch in cache.chunks(window):
        block = cache.read_fused(name, product, ch, keys)
        src, dst = window.clip(ch)
        for k in keys:
            out[k][dst] = block[k][src]
    return out


__all__ = ["CORE_PRODUCTS", "FuseSettings", "chunk_inputs", "decode_latent", "fuse_grid", "fused_group",
           "model_fingerprint", "read_window"]


def settings_dict(settings: FuseSettings) -> dict[str, Any]:
    """JSON-ready settings."""
    return asdict(settings)
