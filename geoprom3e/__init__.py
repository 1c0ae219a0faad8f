"""geoprom3e: maps of species, uncertainty and diversity from the ProM3E multimodal ecology model.

The public API (names import their module on first use)::

    from geoprom3e import get_grid, species_maps, uncertainty_map, diversity_map, Query, ProM3E
"""

from geoprom3e._lazy import lazy_exports
from geoprom3e._version import __version__  # noqa: F401
from geoprom3e.errors import GeoProm3eError  # noqa: F401
from geoprom3e.modalities import MODALITIES  # noqa: F401

_EXPORTS = {
    # grids
    "GridSpec": "geoprom3e.grid",
    "get_grid": "geoprom3e.grid",
    "list_grids": "geoprom3e.grid",
    # the embedding cache and the engine
    "EmbeddingCache": "geoprom3e.engine",
    "FuseSettings": "geoprom3e.engine",
    "embed_grid": "geoprom3e.engine",
    "fuse_grid": "geoprom3e.engine",
    # products: one per command
    "Query": "geoprom3e.products",
    "ProductResult": "geoprom3e.products",
    "build_inputs": "geoprom3e.products",
    "embed": "geoprom3e.products",
    "species_maps": "geoprom3e.products",
    "uncertainty_map": "geoprom3e.products",
    "diversity_map": "geoprom3e.products",
    "compare_maps": "geoprom3e.products",
    "verify_cache": "geoprom3e.products",
    "embedding_maps": "geoprom3e.products",
    "linear_probes": "geoprom3e.products",
    "EmbeddingMapSettings": "geoprom3e.products",
    "ProbeSettings": "geoprom3e.products",
    # the model and encoders
    "ProM3E": "geoprom3e.model",
    "get_encoder": "geoprom3e.encoders",
    # settings
    "DiversitySettings": "geoprom3e.maps",
    "ImageryRequest": "geoprom3e.imagery",
    "ReadOptions": "geoprom3e.io",
    "ProgressEvent": "geoprom3e.progress",
}

__all__ = ["MODALITIES", "GeoProm3eError", "__version__", *sorted(_EXPORTS)]  # noqa: PLE0604

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
