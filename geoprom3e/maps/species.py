"""Species maps: cosine similarity between query embeddings (photos, texts) and grid cells (array maths only).

Three scores (the paper's retrieval modes; the weights are defined once in :mod:`geoprom3e.scores`):

* ``recon`` (intra-modal): the query against the model's reconstruction of the query's modality for the cell;
* ``inter`` (inter-modal): the query against the cell's own embeddings (mean over the modalities it showed);
* ``hybrid``: ``alpha · inter + (1 − alpha) · recon``.

The products layer reads blocks of cells from the embedding cache and calls :func:`similarity_block`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from geoprom3e.errors import ConfigError, InputError
from geoprom3e.modalities import EMBED_DIM
from geoprom3e.scores import SCORE_MODES, check_alpha, hybrid_score

MODES = SCORE_MODES


def check_mode(mode: str) -> str:
    """``mode`` if it is a known score mode, else :class:`ConfigError` listing them."""
    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r} is unknown: use one of {', '.join(MODES)}")
    return mode


def unit_queries(queries: np.ndarray) -> np.ndarray:
    """Queries [Q, 512] as float32 unit vectors; :class:`InputError` for any other shape or non-finite values."""
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != EMBED_DIM or not np.isfinite(q).all():
        raise InputError(f"query embeddings have shape {q.shape}: expected finite [n_queries, {EMBED_DIM}]")
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def cosine(vectors: np.ndarray, q: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """[Q, h, w] dot products of unit queries [Q, 512] with the [h, w, 512] vectors of ``valid`` cells (others 0).

    Only valid cells are converted (in blocks, with torch's vectorised float16 → float32).
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


def similarity_block(
    q: np.ndarray,
    valid: np.ndarray,
    *,
    mode: str = "recon",
    alpha: float = 0.5,
    recon: np.ndarray | None = None,
    inter: Sequence[tuple[np.ndarray, np.ndarray]] = (),
) -> np.ndarray:
    """[Q, h, w] similarity of unit queries ``q`` with a block of cells (NaN where not ``valid``).

    Args:
        q: [Q, 512] unit query embeddings (:func:`unit_queries`).
        valid: [h, w] cells that have a value.
        mode: ``recon``, ``inter`` or ``hybrid``.
        alpha: weight of the inter-modal score in ``hybrid``.
        recon: [h, w, 512] the model's reconstruction of the query modality (``recon``/``hybrid``).
        inter: (embeddings [h, w, 512], used [h, w]) for each modality the cells showed the model.
    """
    check_mode(mode)
    alpha = check_alpha(alpha)
    score = None
    if mode in ("recon", "hybrid"):
        if recon is None:
            raise ConfigError(f"mode {mode!r} needs the reconstruction of the query modality")
        score = cosine(recon, q, valid)
    if mode in ("inter", "hybrid"):
        acc = np.zeros((q.shape[0],) + valid.shape, np.float32)
        cnt = np.zeros(valid.shape, np.float32)
        for emb, used in inter:
            acc += cosine(emb, q, used & valid)
            cnt += used & valid
        inter_score = acc / np.maximum(cnt, 1)
        score = inter_score if score is None else hybrid_score(inter_score, score, alpha)
    return np.where(valid, score, np.nan).astype(np.float32)
