"""``diversity_map``: Shannon diversity and species richness per cell from observation records."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from geoprom3e.grid import GridSpec
from geoprom3e.io.observations import ReadOptions
from geoprom3e.maps.diversity import DiversitySettings, diversity_attrs, diversity_layer_info, write_diversity_map
from geoprom3e.products.base import DEFAULT_OUT, MapProduct, ProductResult, dataset
from geoprom3e.progress import ProgressCallback, report


def diversity_map(
    observations: Sequence[str | Path],
    grid: GridSpec,
    *,
    out_dir: str | Path = DEFAULT_OUT,
    settings: DiversitySettings | None = None,
    read_options: ReadOptions | None = None,
    overwrite: bool = False,
    png: bool = True,
    checksums: bool = True,
    progress: ProgressCallback | None = None,
) -> ProductResult:
    """Read records, compute the diversity layers and write ``diversity.{tif,qml,nc}``, PNGs, manifest, STAC item."""
    settings = settings or DiversitySettings()
    read_options = read_options or ReadOptions()
    run = write_diversity_map(observations, out_dir, grid, settings, read_options, overwrite=overwrite, png=png,
                              checksums=checksums,
                              progress=lambda n: report(progress, "read records", n, unit="records"))
    weighted = read_options.use_abundance
    info = diversity_layer_info(settings, grid, weighted)
    attrs = diversity_attrs(settings, grid, weighted)
    prod = MapProduct("diversity", dataset(grid, run.result.layers, info, attrs), run.outputs)
    return ProductResult([prod], run.result.summary(), {"counts": run.result.counts})
