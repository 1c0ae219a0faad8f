"""Record filters (rank, quality grade, date window) and the options that shape a read."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from geoprom3e.errors import ConfigError
from geoprom3e.io.observations.columns import ColumnOverrides

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class ObservationFilter:
    """Which records to keep; every dropped record is counted under its reason."""

    rank: str | None = None
    """Keep only this taxon rank (case-insensitive, e.g. ``species``); needs a rank column."""
    quality_grade: str | None = None
    """Keep only this iNaturalist quality grade (e.g. ``research``); needs a quality_grade column."""
    date_from: str | None = None
    """Keep records observed on or after this day (``YYYY-MM-DD``)."""
    date_to: str | None = None
    """Keep records observed on or before this day (``YYYY-MM-DD``)."""
    drop_invalid_coordinates: bool = False
    """Drop (and count) latitudes outside −90..90 / longitudes outside −180..180 instead of refusing the file."""

    def __post_init__(self) -> None:
        for name in ("date_from", "date_to"):
            v = getattr(self, name)
            if v is not None and not _DATE.match(v):
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} {v!r} is not a date: use YYYY-MM-DD, e.g. {flag} 2015-01-31")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ConfigError(f"--date-from {self.date_from} is after --date-to {self.date_to}: swap them")


@dataclass(frozen=True)
class ReadOptions:
    """Everything that decides how observation files are read."""

    columns: ColumnOverrides = field(default_factory=ColumnOverrides)
    """Column overrides (``None`` = auto-detect)."""
    filters: ObservationFilter = field(default_factory=ObservationFilter)
    """Record filters."""
    use_abundance: bool = False
    """Read an abundance column (auto-detected unless ``columns.abundance`` is set) to weight records."""
    chunk_bytes: int = 32 * 2**20
    """Approximate size of each chunk read from a text file (bounds memory for 10M+ records)."""
    chunk_rows: int = 1_000_000
    """Rows per chunk read from a Parquet file."""

    def roles(self) -> list[str]:
        """The column roles this read needs."""
        roles = ["lat", "lon", "species"]
        if self.use_abundance:
            roles.append("abundance")
        if self.filters.rank is not None:
            roles.append("rank")
        if self.filters.quality_grade is not None:
            roles.append("quality")
        if self.filters.date_from is not None or self.filters.date_to is not None:
            roles.append("date")
        return roles
