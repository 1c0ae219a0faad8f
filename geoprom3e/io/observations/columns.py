"""Which column holds what: auto-detection over common iNaturalist, GBIF, Darwin Core and NEON names."""

from __future__ import annotations

from dataclasses import dataclass

from geoprom3e.errors import ObservationError

#: Candidate names per role, most specific first; matched case-insensitively.
CANDIDATES: dict[str, tuple[str, ...]] = {
    "lat": ("latitude", "decimalLatitude", "decimal_latitude", "lat"),
    "lon": ("longitude", "decimalLongitude", "decimal_longitude", "lon", "lng", "long"),
    "species": ("species", "taxon_species_name", "scientific_name", "scientificName", "species_name", "taxon_name"),
    "abundance": ("individualCount", "individual_count", "abundance", "organismQuantity", "count", "value"),
    "rank": ("taxonRank", "taxon_rank", "rank"),
    "quality": ("quality_grade", "qualityGrade"),
    "date": ("observed_on", "eventDate", "event_date", "observation_datetime", "date"),
}

#: The flag that overrides each role, quoted in error messages.
FLAGS = {
    "lat": "--lat-column",
    "lon": "--lon-column",
    "species": "--species-column",
    "abundance": "--abundance-column",
    "rank": "--rank-column",
    "quality": "--quality-column",
    "date": "--date-column",
}


@dataclass(frozen=True)
class ColumnOverrides:
    """Column names given by the user; ``None`` means auto-detect from :data:`CANDIDATES`."""

    lat: str | None = None
    """Latitude column (decimal degrees, WGS84)."""
    lon: str | None = None
    """Longitude column (decimal degrees, WGS84)."""
    species: str | None = None
    """Species name column."""
    abundance: str | None = None
    """Abundance (individual count) column, used only when abundance weighting is on."""
    rank: str | None = None
    """Taxon rank column, used only with a rank filter."""
    quality: str | None = None
    """iNaturalist quality grade column, used only with a quality-grade filter."""
    date: str | None = None
    """Observation date column (ISO 8601), used only with a date filter."""


def resolve_columns(header: list[str], roles: list[str], overrides: ColumnOverrides, source: str) -> dict[str, str]:
    """Map each role in ``roles`` to a column of ``header``; raise a one-line error naming the fix."""
    by_lower = {h.lower(): h for h in header}
    out: dict[str, str] = {}
    for role in roles:
        given = getattr(overrides, role)
        if given is not None:
            if given in header:
                out[role] = given
                continue
            if given.lower() in by_lower:
                out[role] = by_lower[given.lower()]
                continue
            raise ObservationError(
                f"{FLAGS[role]} {given!r} is not a column of {source} (columns: {_list(header)}): fix the name"
            )
        for cand in CANDIDATES[role]:
            if cand.lower() in by_lower:
                out[role] = by_lower[cand.lower()]
                break
        else:
            raise ObservationError(
                f"{source} has no {role} column (looked for {', '.join(CANDIDATES[role])}; found: {_list(header)}): "
                f"pass {FLAGS[role]} NAME"
            )
    return out


def _list(header: list[str], limit: int = 25) -> str:
    shown = ", ".join(header[:limit])
    return shown + (f", … ({len(header)} in all)" if len(header) > limit else "")
