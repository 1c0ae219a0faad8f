"""``embedding-map`` and ``probe``: every cell's ProM3E representations as data, RGB maps and linear probes.

Each parses its options and makes one call into :mod:`geoprom3e.products`.
"""

from __future__ import annotations

import click

from geoprom3e.cli.engine import _fuse, _model_options, _require_cache, resolve_grid_and_cache
from geoprom3e.cli.grids import grid_options
from geoprom3e.cli.progress import Bars
from geoprom3e.engine.hidden import TOKEN_HELP
from geoprom3e.maps.components import METHODS
from geoprom3e.maps.probe import TASKS


@click.command("embedding-map")
@grid_options()
@_model_options
@click.option("--tokens", default="mu,logvar,registers", show_default=True, help=f"Tokens to write: {TOKEN_HELP}.")
@click.option("--method", type=click.Choice(METHODS), default="ica", show_default=True,
              help="Components of the RGB maps: FastICA or PCA.")
@click.option("--components", default=3, show_default=True, type=int,
              help="Components fitted per token (the RGB shows the first three).")
@click.option("--sample", default=100_000, show_default=True, type=int,
              help="Cells the components are fitted on (a seeded sample; all cells when fewer).")
def embedding_map_cmd(grid_name, bbox, shape, res, crs, mask, checkpoint, cache, visible, n_samples, seed,  # noqa: ANN001
                      device, out, overwrite, no_png, tokens, method, components, sample) -> None:
    """Write every cell's ProM3E representations as a georeferenced Zarr, and an RGB map of each token.

    The Zarr (OUT/representations.zarr) holds one float16 [lat, lon, feature] variable per token with the grid's
    CRS (xr.open_zarr + rioxarray). Each token's first three FastICA/PCA components, fitted on a seeded sample
    of cells and applied to all of them, become an RGB GeoTIFF and PNG (supp. Figs 1-3); each channel is
    stretched between robust percentiles that the band tags state. --seed seeds the draws, the sample and ICA.

    \b
    Examples:
      geoprom3e embedding-map --tokens mu,logvar,registers --out emb/
      geoprom3e embedding-map --tokens token:sat,token:loc,emb:sat,emb:loc --method pca --out emb/
      geoprom3e embedding-map --bbox -115 31 -109 37 --tokens registers --sample 20000 --out arizona/
    """
    from geoprom3e.products import EmbeddingMapSettings, embedding_maps
    from geoprom3e.products.base import check_device

    fuse = _fuse(visible, n_samples, seed)
    settings = EmbeddingMapSettings(tokens=tokens, method=method, components=components, sample=sample, seed=seed)
    check_device(device)
    grid, cache = resolve_grid_and_cache(cache, grid_name, bbox, shape, res, crs, mask)
    _require_cache(cache, grid_name, bbox, build_hint=False)
    with Bars() as bars:
        res = embedding_maps(cache, grid=grid, out_dir=out, checkpoint=checkpoint, fuse=fuse, settings=settings,
                            device=device, overwrite=overwrite, png=not no_png, progress=bars)
    for note in res.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {res.zarr}")
    for t in res.tokens:
        click.echo(f"wrote {t.geotiff}")


@click.command("probe")
@click.option("--target", "targets", required=True, multiple=True,
              help="What to predict: RASTER[:BAND] (GeoTIFF, band number or name) or VECTOR.geojson:FIELD; "
                   "repeat it for a table with one column per target and their average.")
@grid_options()
@_model_options
@click.option("--tokens", default="mu,logvar,registers,tokens", show_default=True,
              help=f"ProM3E tokens to probe: {TOKEN_HELP}. The encoders' embeddings and coordinates are always "
                   "probed as baselines.")
@click.option("--task", type=click.Choice(TASKS), default=None,
              help="classify (logistic regression) or regress (ridge) [default: from the target's values].")
@click.option("--block-size", default=8, show_default=True, type=int,
              help="Cells per side of a cross-validation block (whole blocks go to train or test).")
@click.option("--max-cells", default=50_000, show_default=True, type=int,
              help="Labelled cells probed at most (a seeded sample beyond that).")
def probe_cmd(targets, grid_name, bbox, shape, res, crs, mask, checkpoint, cache, visible, n_samples, seed,  # noqa: ANN001
              device, out, overwrite, no_png, tokens, task, block_size, max_cells) -> None:
    """Linear probes from each cell's representations to your own labels (supp. Table 5), with spatial blocks.

    Each token (and all of them together) is probed beside the frozen encoders' own embeddings (the TaxaBind
    baseline) and the cell coordinates alone; the table gives accuracy and macro-F1 (classes) or R² and RMSE.
    Writes OUT/probe_<target>.json and .md (and OUT/probe_all.* for several targets) and prints the table.

    \b
    Examples:
      geoprom3e probe --target landcover.tif --out probe/
      geoprom3e probe --target ecoregions.geojson:NA_L3NAME --block-size 16 --out probe/
      geoprom3e probe --target elevation.tif:1 --task regress --tokens mu,registers --out probe/
      geoprom3e probe --target biome.tif --target ecoregions.geojson:NA_L3NAME --out probe/
    """
    from geoprom3e.products import ProbeSettings, linear_probes
    from geoprom3e.products.base import check_device

    fuse = _fuse(visible, n_samples, seed)
    settings = ProbeSettings(tokens=tokens, task=task, block_size=block_size, max_cells=max_cells, seed=seed)
    check_device(device)
    grid, cache = resolve_grid_and_cache(cache, grid_name, bbox, shape, res, crs, mask)
    _require_cache(cache, grid_name, bbox, build_hint=False)
    with Bars() as bars:
        res = linear_probes(list(targets), cache, grid=grid, out_dir=out, checkpoint=checkpoint, fuse=fuse,
                            settings=settings, device=device, overwrite=overwrite, progress=bars)
    click.echo(res.table)
    for p in res.paths:
        click.echo(f"wrote {p}")


def register(group: click.Group) -> None:
    """Attach ``embedding-map`` and ``probe``."""
    for cmd in (embedding_map_cmd, probe_cmd):
        group.add_command(cmd)
