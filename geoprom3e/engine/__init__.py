"""The gridding engine: chunked gather → encode → cache, then ProM3E fusion over the cache.

>>> from geoprom3e.engine import EmbeddingCache, embed_grid, fuse_grid, FuseSettings  # doctest: +SKIP
"""

from geoprom3e.engine.cache import EmbeddingCache
from geoprom3e.engine.chunks import Chunk, iter_chunks
from geoprom3e.engine.fuse import FuseSettings, fuse_grid, fused_group, model_fingerprint
from geoprom3e.engine.inputs import CellInput, Gathered
from geoprom3e.engine.pipeline import EmbedReport, embed_grid, process_chunk

__all__ = [
    "CellInput",
    "Chunk",
    "EmbedReport",
    "EmbeddingCache",
    "FuseSettings",
    "Gathered",
    "embed_grid",
    "fuse_grid",
    "fused_group",
    "iter_chunks",
    "model_fingerprint",
    "process_chunk",
]
