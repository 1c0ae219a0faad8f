"""Maps: the array maths of every map (diversity and richness, smoothing, cell area, species similarity,
uncertainty, spatial statistics, comparisons). Arrays in, arrays out: reading files and caches and writing outputs
is the products layer's job (``geoprom3e.products``).

Names are imported lazily so ``geoprom3e.maps.<module>`` stays cheap to import.
"""

from __future__ import annotations

from geoprom3e._lazy import lazy_exports

_EXPORTS = {
    "DIVERSITY_LAYERS": "geoprom3e.maps.diversity",
    "DiversityAccumulator": "geoprom3e.maps.diversity",
    "DiversityResult": "geoprom3e.maps.diversity",
    "DiversitySettings": "geoprom3e.maps.diversity",
    "diversity_from_chunks": "geoprom3e.maps.diversity",
    "SMOOTHING_METHODS": "geoprom3e.maps.smoothing",
    "smooth": "geoprom3e.maps.smoothing",
    "cell_area": "geoprom3e.maps.area",
    "PairCounts": "geoprom3e.maps.pair_counts",
    "morans_i": "geoprom3e.maps.spatial_stats",
    "modified_ttest": "geoprom3e.maps.spatial_stats",
    "similarity_block": "geoprom3e.maps.species",
    "uncertainty_layers": "geoprom3e.maps.uncertainty",
    "Comparison": "geoprom3e.maps.compare",
    "compare_rasters": "geoprom3e.maps.compare",
    "read_band": "geoprom3e.maps.compare",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
