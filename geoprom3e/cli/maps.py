"""``geoprom3e diversity-map``: Shannon diversity and species richness maps from observation records."""

from __future__ import annotations

import click

from geoprom3e.cli.grids import grid_from_cli, grid_options
from geoprom3e.io.observations.filters import ABOVE_SPECIES_RULES as _ABOVE_SPECIES
from geoprom3e.maps.smoothing import SMOOTHING_METHODS as _SMOOTHING


@click.command("diversity-map")
@click.argument("observations", nargs=-1, required=True, type=click.Path(path_type=str))
@grid_options()
@click.option("--sigma", default=2.0, show_default=True, type=float,
              help="Gaussian σ in cells (the paper's 2.0); 0 = no smoothing.")
@click.option("--smoothing", type=click.Choice(_SMOOTHING), default="paper", show_default=True,
              help="paper: empty/masked cells count as 0; normalized: divided by the smoothed land mask; none.")
@click.option("--per-area", is_flag=True,
              help="Also write richness_per_km2 = richness_raw / cell_area_km2 (every output carries cell_area_km2; "
                   "richness is not linear in area, so prefer an equal-area grid such as usa-5km-albers).")
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
@click.option("--keep-absences", is_flag=True,
              help="Count absence records as presences. Default: drop (and count) occurrenceStatus=ABSENT, "
                   "individualCount=0 and organismQuantity=0.")
@click.option("--max-coordinate-uncertainty", type=float, default=None, metavar="METRES",
              help="Drop records whose coordinate uncertainty exceeds METRES [column: coordinateUncertaintyInMeters, "
                   "positional_accuracy]; records without a value are kept.")
@click.option("--basis-of-record", default=None, metavar="LIST",
              help="Keep only these basisOfRecord values, comma-separated, e.g. HUMAN_OBSERVATION,PRESERVED_SPECIMEN "
                   "(DwC names like HumanObservation work too).")
@click.option("--years", default=None, metavar="A-B",
              help="Keep records from years A to B inclusive (year column, else the date's year), e.g. 2010-2020.")
@click.option("--above-species", type=click.Choice(_ABOVE_SPECIES), default="drop", show_default=True,
              help="Records identified only to genus or coarser (species empty, scientific name set, as in "
                   "iNaturalist and GBIF exports): drop them (counted as 'identified above species rank'), or count "
                   "each such name as one taxon.")
@click.option("--drop-duplicates", is_flag=True,
              help="Drop exact duplicates: same taxon, coordinates, day and observer (recordedBy, user_login).")
@click.option("--observer-column", default=None, help="Observer column [auto: recordedBy, user_login, user_id].")
@click.option("--out", "out_dir", default="maps", show_default=True, type=click.Path(path_type=str),
              help="Output folder.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs in --out.")
@click.option("--no-png", is_flag=True, help="Skip the PNG quicklooks.")
@click.option("--no-checksums", is_flag=True, help="Skip SHA-256 checksums of the inputs in the manifest.")
def diversity_map_cmd(observations, grid_name, bbox, shape, res, crs, mask, sigma, smoothing, per_area, lat_column,
                      lon_column, species_column, abundance_column, use_abundance, rank, rank_column, quality_grade,
                      quality_column, date_from, date_to, date_column, drop_invalid_coordinates, keep_absences,
                      max_coordinate_uncertainty, basis_of_record, years, above_species, drop_duplicates,
                      observer_column, out_dir, overwrite, no_png, no_checksums) -> None:  # noqa: ANN001
    """Shannon diversity and species richness per cell from OBSERVATIONS, Gaussian-smoothed.

    OBSERVATIONS are iNaturalist CSV exports, GBIF downloads (Darwin Core Archive .zip or simple CSV .zip),
    IPT exports (.zip with meta.xml), Darwin Core occurrence.txt, NEON-style tables, Parquet or GeoParquet;
    .gz works. Absences are dropped by default, and every dropped record is counted by reason in the
    manifest's drop table. Writes to --out: diversity.tif (COG, bands shannon, richness, shannon_raw,
    richness_raw, n_records (coverage: 0 = no records), cell_area_km2; smoothed first) with diversity.qml for
    QGIS (cells with value 0 transparent), diversity.nc (CF-1.8, cell bounds, cell_measures), one PNG per band,
    diversity.manifest.json and diversity.settings.json.

    \b
    Examples:
      geoprom3e diversity-map inat.csv --out maps/
      geoprom3e diversity-map gbif-download.zip --years 2010-2020 --max-coordinate-uncertainty 1000 --out maps/
      geoprom3e diversity-map occurrence.txt --rank species --grid usa-500x1000 --sigma 2 --out maps/
      geoprom3e diversity-map obs.csv.gz --quality-grade research --date-from 2015-01-01 --out maps/
      geoprom3e diversity-map neon.csv.gz --abundance-column value --smoothing normalized --out maps/
      geoprom3e diversity-map obs.parquet --grid usa-250x500 --bbox -115 31 -109 37 --out arizona/
    """
    from geoprom3e.cli.progress import Bars
    from geoprom3e.io.observations import ColumnOverrides, ObservationFilter, ReadOptions
    from geoprom3e.io.observations.filters import parse_years
    from geoprom3e.maps.diversity import DiversitySettings
    from geoprom3e.products import diversity_map

    grid = grid_from_cli(grid_name, bbox, shape, res, crs, mask)
    options = ReadOptions(
        columns=ColumnOverrides(lat=lat_column, lon=lon_column, species=species_column, abundance=abundance_column,
                                rank=rank_column, quality=quality_column, date=date_column, observer=observer_column),
        filters=ObservationFilter(
            rank=rank, quality_grade=quality_grade, date_from=date_from, date_to=date_to,
            drop_invalid_coordinates=drop_invalid_coordinates, keep_absences=keep_absences,
            max_coordinate_uncertainty=max_coordinate_uncertainty,
            basis_of_record=None if basis_of_record is None else tuple(basis_of_record.split(",")),
            years=None if years is None else parse_years(years), above_species=above_species,
            drop_duplicates=drop_duplicates,
        ),
        use_abundance=use_abundance or abundance_column is not None,
    )
    settings = DiversitySettings(sigma=sigma, smoothing=smoothing, per_area=per_area)
    with Bars() as bars:
        res = diversity_map(observations, grid, out_dir=out_dir, settings=settings, read_options=options,
                            overwrite=overwrite, png=not no_png, checksums=not no_checksums, progress=bars)
    click.echo(res.summary)
    click.echo(f"wrote {len(res.paths)} files to {res.maps[0].outputs.geotiff.parent}")


def register(group: click.Group) -> None:
    """Attach the map commands."""
    group.add_command(diversity_map_cmd)
