"""The gridding engine: chunked gather → encode → cache, then ProM3E fusion over the cache.

Names load their module on first use, so a gather process (which needs only the inputs) never imports torch.

>>> from geoprom3e.engine import EmbeddingCache, embed_grid, fuse_grid, FuseSettings  # doctest: +SKIP
"""

from geoprom3e._lazy import lazy_exports

_EXPORTS = {
    "CellInput": "geoprom3e.engine.inputs",
    "Chunk": "geoprom3e.engine.chunks",
    "EmbedReport": "geoprom3e.engine.pipeline",
    "EmbeddingCache": "geoprom3e.engine.cache",
    "FuseSettings": "geoprom3e.engine.fuse",
    "Gathered": "geoprom3e.engine.inputs",
    "embed_grid": "geoprom3e.engine.pipeline",
    "fuse_grid": "geoprom3e.engine.fuse",
    "fused_group": "geoprom3e.engine.fuse",
    "iter_chunks": "geoprom3e.engine.chunks",
    "model_fingerprint": "geoprom3e.engine.fuse",
    "process_chunk": "geoprom3e.engine.pipeline",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
