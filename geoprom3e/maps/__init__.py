"""Maps: diversity and richness from observations, smoothing, species similarity, uncertainty, comparisons.

Names are imported lazily so ``geoprom3e.maps.<module>`` stays cheap to import.
"""

from __future__ import annotations

from geoprom3e._lazy import lazy_exports

_EXPORTS = {
    "DIVERSITY_LAYERS": "geoprom3e.maps.diversity",
    "DiversityAccumulator": "geoprom3e.maps.diversity",
    "DiversityResult": "geoprom3e.maps.diversity",
    "DiversityRun": "geoprom3e.maps.diversity",
    "DiversitySettings": "geoprom3e.maps.diversity",
    "compute_diversity": "geoprom3e.maps.diversity",
    "diversity_from_chunks": "geoprom3e.maps.diversity",
    "write_diversity_map": "geoprom3e.maps.diversity",
    "SMOOTHING_METHODS": "geoprom3e.maps.smoothing",
    "smooth": "geoprom3e.maps.smoothing",
    # maps from the ProM3E embedding cache (other modules of this package)
    "similarity_maps": "geoprom3e.maps.species",
    "uncertainty_layers": "geoprom3e.maps.uncertainty",
    "Comparison": "geoprom3e.maps.compare",
    "compare_rasters": "geoprom3e.maps.compare",
    "read_band": "geoprom3e.maps.compare",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
