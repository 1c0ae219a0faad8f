"""Observation readers: iNaturalist/GBIF/Darwin Core/NEON tables (CSV, TSV, gzip, Parquet, GeoParquet)."""

from geoprom3e.io.observations.columns import CANDIDATES, ColumnOverrides, resolve_columns
from geoprom3e.io.observations.filters import ObservationFilter, ReadOptions
from geoprom3e.io.observations.reader import DROP_REASONS, FileStats, ObservationChunk, ObservationReader

__all__ = [
    "CANDIDATES",
    "DROP_REASONS",
    "ColumnOverrides",
    "FileStats",
    "ObservationChunk",
    "ObservationFilter",
    "ObservationReader",
    "ReadOptions",
    "resolve_columns",
]
