"""Species maps: cosine similarity between a query embedding (a photo, a text) and every grid cell.

Three scores (DESIGN §3, the paper's retrieval modes):

* ``recon`` (intra-modal): the query against the model's reconstruction of the query's modality for the
  cell (a photo is compared with the photo embedding ProM3E expects at that place);
* ``inter`` (inter-modal): the query against the cell's own embeddings in the shared space (mean over the
  modalities the cell showed the model);
* ``hybrid``: ``alpha · inter + (1 − alpha) · recon``. The published code does not give the weight.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from geoprom3e.engine.cache import EmbeddingCache
from geoprom3e.errors import CacheError, ConfigError, InputError
from geoprom3e.modalities import MODALITIES

MODES = ("recon", "inter", "hybrid")


def similarity_maps(
    cache: EmbeddingCache,
    group: str,
    queries: np.ndarray,
    *,
    modality: str = "image",
    mode: str = "recon",
    alpha: float = 0.5,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """[Q, rows, cols] float32 similarity of each query [Q, 512] with every cell (NaN where no value)."""
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r} is unknown: use one of {', '.join(MODES)}")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha = {alpha}: must be in [0, 1] (weight of the inter-modal score in hybrid mode)")
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != 512 or not np.isfinite(q).all():
        raise InputError(f"query embeddings have shape {q.shape}: expected finite [n_queries, 512]")
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    g = cache.root[group]
    name = f"recon_{modality}"
    if mode != "inter" and name not in g:
        have = [k[6:] for k in g.array_keys() if k.startswith("recon_")]
        raise CacheError(f"the fused cache holds reconstructions of {', '.join(have)}, not {modality!r}: "
                         f"fuse again with decode including {modality!r}")
    rows, cols = cache.grid.shape
    out = np.full((q.shape[0], rows, cols), np.nan, np.float32)
    mask = cache.grid.mask()
    band = cache.chunk_size
    starts = [r0 for r0 in range(0, rows, band) if mask[r0 : r0 + band].any()]
    for k, r0 in enumerate(starts):  # one band of chunk rows at a time: Zarr reads its chunks concurrently
        rs = slice(r0, min(r0 + band, rows))
        bits = np.asarray(g["visible_bits"][rs])
        valid = (bits > 0) & mask[rs]
        if not valid.any():
            continue
        score = None
        if mode in ("recon", "hybrid"):
            score = _cosine(np.asarray(g[name][rs]), q, valid)
        if mode in ("inter", "hybrid"):
            acc = np.zeros((q.shape[0],) + valid.shape, np.float32)
            cnt = np.zeros(valid.shape, np.float32)
            for i, m in enumerate(MODALITIES):
                used = (bits >> i) & 1 == 1
                if not used.any():
                    continue
                if f"emb_{m}" not in cache.root:
                    raise CacheError(f"the cache has no {m!r} embeddings for inter mode: rerun embed-grid")
                acc += _cosine(np.asarray(cache.root[f"emb_{m}"][rs]), q, used & valid)
                cnt += used
            inter = acc / np.maximum(cnt, 1)
            score = inter if score is None else alpha * inter + (1 - alpha) * score
        assert score is not None
        out[:, rs] = np.where(valid, score, np.nan)
        if progress:
            progress(k + 1, len(starts))
    return out


def _cosine(vectors: np.ndarray, q: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """[Q, h, w] dot products of unit queries [Q, 512] with the [h, w, 512] (float16) vectors of ``valid`` cells.

    Only valid cells are converted (in blocks, with torch's vectorised float16 → float32), others give 0.
    """
    import torch

    h, w, _ = vectors.shape
    rows = vectors[valid]
    out = np.zeros((q.shape[0], h, w), np.float32)
    if not rows.size:
        return out
    qt = torch.from_numpy(np.ascontiguousarray(q.T))
    flat = np.empty((rows.shape[0], q.shape[0]), np.float32)
    for s in range(0, rows.shape[0], 16384):
        v = torch.from_numpy(rows[s : s + 16384]).float().nan_to_num_(0.0)
        flat[s : s + 16384] = (v @ qt).numpy()
    out[:, valid] = flat.T
    return out
