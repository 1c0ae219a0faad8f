"""``geoprom3e diversity-map``: Shannon diversity and species richness maps from observation records."""

from __future__ import annotations

import click

from geoprom3e.cli.grids import grid_from_cli, grid_options
from geoprom3e.maps.smoothing import SMOOTHING_METHODS as _SMOOTHING


@click.command("diversity-map")
@click.argument("observations", nargs=-1, required=True, type=click.Path(path_type=str))
@grid_options()
@click.option("--sigma", default=2.0, show_default=True, type=float,
              help="Gaussian σ in cells (the paper's 2.0); 0 = no smoothing.")
@click.option("--smoothing", type=click.Choice(_SMOOTHING), default="paper", show_default=True,
              help="paper: empty/masked cells count as 0; normalized: divided by the smoothed land mask; none.")
@click.option("--lat-column", default=None, help="Latitude column [auto: latitude, decimalLatitude, lat].")
@click.option("--lon-column", default=None, help="Longitude column [auto: longitude, decimalLongitude, lon].")
@click.option("--species-column", default=None,
              help="Species column [auto: species, taxon_species_name, scientific_name, scientificName].")
@click.option("--abundance-column", default=None,
              help="Weight Shannon by this abundance column (implies --abundance).")
@click.option("--abundance", "use_abundance", is_flag=True,
              help="Weight Shannon by abundance [auto: individualCount, abundance, count, value].")
@click.option("--rank", default=None, help="Keep only this taxon rank, e.g. species (needs a rank column).")
@click.option("--rank-column", default=None, help="Taxon rank column [auto: taxonRank, taxon_rank].")
@click.option("--quality-grade", default=None, help="Keep only this iNaturalist quality grade, e.g. research.")
@click.option("--quality-column", default=None, help="Quality grade column [auto: quality_grade].")
@click.option("--date-from", default=None, metavar="YYYY-MM-DD", help="Keep records observed on or after this day.")
@click.option("--date-to", default=None, metavar="YYYY-MM-DD", help="Keep records observed on or before this day.")
@click.option("--date-column", default=None, help="Date column [auto: observed_on, eventDate, observation_datetime].")
@click.option("--drop-invalid-coordinates", is_flag=True,
              help="Drop and count latitudes/longitudes out of range instead of refusing the file.")
@click.option("--out", "out_dir", default="maps", show_default=True, type=click.Path(path_type=str),
              help="Output folder.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs in --out.")
@click.option("--no-png", is_flag=True, help="Skip the PNG quicklooks.")
@click.option("--no-checksums", is_flag=True, help="Skip SHA-256 checksums of the inputs in the manifest.")
def diversity_map_cmd(observations, grid_name, bbox, shape, res, crs, mask, sigma, smoothing, lat_column, lon_column,
                      species_column, abundance_column, use_abundance, rank, rank_column, quality_grade, quality_column,
                      date_from, date_to, date_column, drop_invalid_coordinates, out_dir, overwrite, no_png,
                      no_checksums) -> None:  # noqa: ANN001
    """Shannon diversity and species richness per cell from OBSERVATIONS, Gaussian-smoothed.

    OBSERVATIONS are iNaturalist CSV exports, GBIF simple CSV or Darwin Core occurrence.txt (tab-separated),
    NEON-style tables, Parquet or GeoParquet; .gz works. Writes to --out: diversity.tif (COG, bands shannon,
    richness, shannon_raw, richness_raw, n_records; smoothed first) with diversity.qml for QGIS,
    diversity.nc (CF-1.8), one PNG per band, diversity.manifest.json and diversity.settings.json.

    \b
    Examples:
      geoprom3e diversity-map inat.csv --out maps/
      geoprom3e diversity-map occurrence.txt --rank species --grid usa-500x1000 --sigma 2 --out maps/
      geoprom3e diversity-map obs.csv.gz --quality-grade research --date-from 2015-01-01 --out maps/
      geoprom3e diversity-map neon.csv.gz --abundance-column value --smoothing normalized --out maps/
      geoprom3e diversity-map obs.parquet --grid usa-250x500 --bbox -115 31 -109 37 --out arizona/
    """
    from geoprom3e.cli.progress import Bars
    from geoprom3e.io.observations import ColumnOverrides, ObservationFilter, ReadOptions
    from geoprom3e.maps.diversity import DiversitySettings
    from geoprom3e.products import diversity_map

    grid = grid_from_cli(grid_name, bbox, shape, res, crs, mask)
    options = ReadOptions(
        columns=ColumnOverrides(lat=lat_column, lon=lon_column, species=species_column, abundance=abundance_column,
                                rank=rank_column, quality=quality_column, date=date_column),
        filters=ObservationFilter(rank=rank, quality_grade=quality_grade, date_from=date_from, date_to=date_to,
                                  drop_invalid_coordinates=drop_invalid_coordinates),
        use_abundance=use_abundance or abundance_column is not None,
    )
    settings = DiversitySettings(sigma=sigma, smoothing=smoothing)
    with Bars() as bars:
        res = diversity_map(observations, grid, out_dir=out_dir, settings=settings, read_options=options,
                            overwrite=overwrite, png=not no_png, checksums=not no_checksums, progress=bars)
    click.echo(res.summary)
    click.echo(f"wrote {len(res.paths)} files to {res.maps[0].outputs.geotiff.parent}")


def register(group: click.Group) -> None:
    """Attach the map commands."""
    group.add_command(diversity_map_cmd)
