"""Products: one function per command. Each checks its settings before loading weights or touching outputs,
computes, writes, and returns a :class:`ProductResult` holding xarray Datasets (with a CRS) and the paths written.

>>> from geoprom3e.products import species_maps, Query  # doctest: +SKIP
>>> res = species_maps("cache/usa", [Query("image", "photo.jpg")], out_dir="maps")  # doctest: +SKIP
>>> res.maps[0].dataset["similarity"].rio.crs  # doctest: +SKIP
"""

from __future__ import annotations

from geoprom3e._lazy import lazy_exports

_EXPORTS = {
    "MapProduct": "geoprom3e.products.base",
    "ProductResult": "geoprom3e.products.base",
    "Query": "geoprom3e.products.base",
    "default_cache": "geoprom3e.products.base",
    "EmbedPlan": "geoprom3e.products.embed",
    "build_inputs": "geoprom3e.products.embed",
    "embed": "geoprom3e.products.embed",
    "plan_embed": "geoprom3e.products.embed",
    "species_maps": "geoprom3e.products.species",
    "similarity_from_cache": "geoprom3e.products.species",
    "uncertainty_from_cache": "geoprom3e.products.uncertainty",
    "uncertainty_map": "geoprom3e.products.uncertainty",
    "diversity_map": "geoprom3e.products.diversity",
    "compare_maps": "geoprom3e.products.compare",
    "VerifyResult": "geoprom3e.products.cache_ops",
    "verify_cache": "geoprom3e.products.cache_ops",
    "EmbeddingMapResult": "geoprom3e.products.embedding_map",
    "EmbeddingMapSettings": "geoprom3e.products.embedding_map",
    "embedding_maps": "geoprom3e.products.embedding_map",
    "ProbeResult": "geoprom3e.products.probe",
    "ProbeSettings": "geoprom3e.products.probe",
    "linear_probes": "geoprom3e.products.probe",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
