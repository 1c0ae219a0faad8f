"""Maps: diversity and richness from observations, smoothing (and, from other modules, species/uncertainty).

Names are imported lazily so ``geoprom3e.maps.<module>`` stays cheap to import.
"""

from __future__ import annotations

import importlib

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
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'geoprom3e.maps' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
