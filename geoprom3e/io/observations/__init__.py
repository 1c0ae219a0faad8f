"""Observation readers: iNaturalist/GBIF/Darwin Core/NEON tables (CSV, TSV, gzip, Parquet, GeoParquet) and
Darwin Core Archives / GBIF download zips; absences and filtered records are dropped and counted by reason."""

from geoprom3e.io.observations.columns import CANDIDATES, ColumnOverrides, resolve_columns
from geoprom3e.io.observations.filters import (
    ABOVE_SPECIES_RULES,
    BASIS_OF_RECORD,
    ObservationFilter,
    ReadOptions,
    parse_years,
)
from geoprom3e.io.observations.reader import DROP_REASONS, FileStats, ObservationChunk, ObservationReader

__all__ = [
    "ABOVE_SPECIES_RULES",
    "BASIS_OF_RECORD",
    "CANDIDATES",
    "DROP_REASONS",
    "ColumnOverrides",
    "FileStats",
    "ObservationChunk",
    "ObservationFilter",
    "ObservationReader",
    "ReadOptions",
    "parse_years",
    "resolve_columns",
]
