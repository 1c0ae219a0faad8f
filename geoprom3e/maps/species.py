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
from geoprom3e.engine.chunks import iter_chunks
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
    chunks = list(iter_chunks(cache.grid, cache.chunk_size, mask))
    for k, ch in enumerate(chunks):
        rs, cs = ch.slices
        bits = np.asarray(g["visible_bits"][rs, cs])
        valid = (bits > 0) & mask[rs, cs]
        score = None
        if mode in ("recon", "hybrid"):
            rec = np.asarray(g[name][rs, cs, :], dtype=np.float32)
            rec /= np.maximum(np.linalg.norm(rec, axis=-1, keepdims=True), 1e-12)
            score = np.einsum("hwd,qd->qhw", np.nan_to_num(rec), q)
        if mode in ("inter", "hybrid"):
            acc = np.zeros((q.shape[0],) + ch.shape, np.float32)
            cnt = np.zeros(ch.shape, np.float32)
            for i, m in enumerate(MODALITIES):
                used = (bits >> i) & 1 == 1
                if not used.any():
                    continue
                emb, _ = cache.read_modality(m, ch)
                acc += np.einsum("hwd,qd->qhw", np.nan_to_num(emb), q) * used
                cnt += used
            inter = acc / np.maximum(cnt, 1)
            score = inter if score is None else alpha * inter + (1 - alpha) * score
        assert score is not None
        out[:, rs, cs] = np.where(valid, score, np.nan)
        if progress:
            progress(k + 1, len(chunks))
    return out
