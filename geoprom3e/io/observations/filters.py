"""Record filters (absences, rank, quality grade, dates, years, uncertainty, basis of record, duplicates)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from geoprom3e.errors import ConfigError
from geoprom3e.io.observations.archive import MAX_ARCHIVE_BYTES, MAX_RATIO
from geoprom3e.io.observations.columns import ColumnOverrides

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_YEARS = re.compile(r"^\s*(\d{4})\s*(?:-\s*(\d{4})\s*)?$")

#: GBIF's basisOfRecord vocabulary (Darwin Core class names such as ``HumanObservation`` map onto it).
BASIS_OF_RECORD = (
    "HUMAN_OBSERVATION", "MACHINE_OBSERVATION", "OBSERVATION", "PRESERVED_SPECIMEN", "FOSSIL_SPECIMEN",
    "LIVING_SPECIMEN", "MATERIAL_SAMPLE", "MATERIAL_CITATION", "OCCURRENCE", "LITERATURE", "UNKNOWN",
)

#: What to do with records identified only above species rank (genus, tribe, family, ...).
ABOVE_SPECIES_RULES = ("drop", "count")


def normalize_basis(value: str) -> str:
    """``HumanObservation`` / ``human observation`` / ``HUMAN_OBSERVATION`` → ``HUMAN_OBSERVATION``."""
    v = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", value.strip())
    return re.sub(r"[\s\-]+", "_", v).upper()


def parse_years(text: str) -> tuple[int, int]:
    """``2010-2020`` → (2010, 2020); ``2015`` → (2015, 2015); raise :class:`ConfigError` otherwise."""
    m = _YEARS.match(text or "")
    if not m:
        raise ConfigError(f"--years {text!r} is not a year range: use A-B, e.g. --years 2010-2020 (or one year)")
    a, b = int(m.group(1)), int(m.group(2) or m.group(1))
    if a > b:
        raise ConfigError(f"--years {text}: {a} is after {b}: write the earlier year first")
    return a, b


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
    keep_absences: bool = False
    """Keep absence records (``occurrenceStatus`` ABSENT, ``individualCount`` 0, ``organismQuantity`` 0).

    By default they are dropped, each counted under its reason: an absence is not a presence."""
    max_coordinate_uncertainty: float | None = None
    """Drop records whose coordinate uncertainty (metres) exceeds this; records without a value are kept."""
    basis_of_record: tuple[str, ...] | None = None
    """Keep only these ``basisOfRecord`` values (GBIF vocabulary, see :data:`BASIS_OF_RECORD`)."""
    years: tuple[int, int] | None = None
    """Keep records whose year (year column, else the date's first four digits) lies in [A, B]."""
    above_species: str = "drop"
    """Records whose species is empty but whose scientific name is set (identified to genus or coarser, as in
    iNaturalist and GBIF exports): ``drop`` (default; counted as 'identified above species rank') or ``count``
    (each such name counts as one taxon, which can inflate richness where its species are also recorded)."""
    drop_duplicates: bool = False
    """Drop exact duplicates: same taxon, coordinates, day and observer (columns absent count as equal).

    Holds a 64-bit hash per distinct kept record (8 bytes each: 0.8 GB per 100M records) and about doubles
    the reading time; off by default."""

    def __post_init__(self) -> None:
        for name in ("date_from", "date_to"):
            v = getattr(self, name)
            if v is not None and not _DATE.match(v):
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} {v!r} is not a date: use YYYY-MM-DD, e.g. {flag} 2015-01-31")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ConfigError(f"--date-from {self.date_from} is after --date-to {self.date_to}: swap them")
        if self.max_coordinate_uncertainty is not None and not self.max_coordinate_uncertainty > 0:
            raise ConfigError(f"--max-coordinate-uncertainty {self.max_coordinate_uncertainty} must be > 0 (metres)")
        if self.basis_of_record is not None:
            values = tuple(normalize_basis(v) for v in self.basis_of_record if v.strip())
            unknown = [v for v, n in zip(self.basis_of_record, values) if n not in BASIS_OF_RECORD]
            if unknown or not values:
                raise ConfigError(f"--basis-of-record {', '.join(unknown) or '(empty)'!s} is unknown: choose from "
                                  f"{', '.join(BASIS_OF_RECORD)}")
            object.__setattr__(self, "basis_of_record", values)
        if self.years is not None:
            a, b = self.years
            if a > b:
                raise ConfigError(f"--years {a}-{b}: {a} is after {b}: write the earlier year first")
        if self.above_species not in ABOVE_SPECIES_RULES:
            raise ConfigError(f"--above-species {self.above_species!r} is unknown: choose one of "
                              f"{', '.join(ABOVE_SPECIES_RULES)}")


@dataclass(frozen=True)
class ReadOptions:
    """Everything that decides how observation files are read."""

    columns: ColumnOverrides = field(default_factory=ColumnOverrides)
    """Column overrides (``None`` = auto-detect)."""
    filters: ObservationFilter = field(default_factory=ObservationFilter)
    """Record filters."""
    use_abundance: bool = False
    """Read an abundance column (auto-detected unless ``columns.abundance`` is set) to weight records."""
    chunk_bytes: int = 4 * 2**20
    """Approximate size of each block read from a text file. pyarrow parses several blocks ahead, so Arrow
    memory is ~35× this (measured: 4 MiB → 143 MB, 32 MiB → 1.1 GB); 4 MiB was also the fastest here."""
    chunk_rows: int = 1_000_000
    """Rows per chunk read from a Parquet file."""
    max_archive_bytes: int = MAX_ARCHIVE_BYTES
    """Largest total uncompressed size a zip archive may declare (zip-bomb guard, checked before reading)."""
    max_compression_ratio: float = MAX_RATIO
    """Largest compression ratio of a zip member over 16 MiB (zip-bomb guard, checked before reading)."""

    def roles(self) -> list[str]:
        """The column roles this read needs."""
        f = self.filters
        roles = ["lat", "lon", "species"]
        if self.use_abundance:
            roles.append("abundance")
        if f.rank is not None:
            roles.append("rank")
        if f.quality_grade is not None:
            roles.append("quality")
        if f.date_from is not None or f.date_to is not None:
            roles.append("date")
        if f.max_coordinate_uncertainty is not None:
            roles.append("uncertainty")
        if f.basis_of_record is not None:
            roles.append("basis")
        return roles

    def optional_roles(self) -> list[str]:
        """Roles read when the file has them (absence columns, scientific name, date, year, observer); the date
        gives the maps' STAC items their time range."""
        f = self.filters
        out = ["name", "date"]
        if not f.keep_absences:
            out += ["status", "count", "quantity"]
        if f.years is not None:
            out += ["year"]
        if f.drop_duplicates:
            out += ["observer"]
        return out
