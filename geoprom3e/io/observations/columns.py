"""Which column holds what: auto-detection over common iNaturalist, GBIF, Darwin Core and NEON names."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

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
    # read when present (presence semantics and filters)
    "status": ("occurrenceStatus", "occurrence_status"),
    "count": ("individualCount", "individual_count"),
    "quantity": ("organismQuantity", "organism_quantity"),
    "uncertainty": ("coordinateUncertaintyInMeters", "coordinate_uncertainty_in_meters", "positional_accuracy",
                    "public_positional_accuracy"),
    "basis": ("basisOfRecord", "basis_of_record"),
    "year": ("year",),
    "observer": ("recordedBy", "recorded_by", "user_login", "user_id", "observer", "user_name"),
    "name": ("scientificName", "scientific_name", "taxon_name"),
}

_DICT = pa.dictionary(pa.int32(), pa.string())

#: Arrow type each role is read as (everything else: string).
ROLE_TYPES = {
    "lat": pa.float64(), "lon": pa.float64(), "species": _DICT, "name": _DICT, "abundance": pa.float64(),
    "uncertainty": pa.float64(), "year": pa.float64(), "count": pa.float64(),
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
    "status": "--status-column",
    "count": "--count-column",
    "quantity": "--quantity-column",
    "uncertainty": "--uncertainty-column",
    "basis": "--basis-column",
    "year": "--year-column",
    "observer": "--observer-column",
    "name": "--name-column",
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
    """Observation date column (ISO 8601), used by the date and year filters and duplicate removal."""
    status: str | None = None
    """``occurrenceStatus`` column (``ABSENT`` records are absences)."""
    count: str | None = None
    """``individualCount`` column (0 = absence)."""
    quantity: str | None = None
    """``organismQuantity`` column (0 = absence)."""
    uncertainty: str | None = None
    """Coordinate uncertainty in metres (``coordinateUncertaintyInMeters``, iNaturalist ``positional_accuracy``)."""
    basis: str | None = None
    """``basisOfRecord`` column."""
    year: str | None = None
    """Year column (else the year is read from the date column)."""
    observer: str | None = None
    """Observer column (``recordedBy``, iNaturalist ``user_login``), used by duplicate removal."""
    name: str | None = None
    """Scientific name at any rank (``scientificName``): names records identified above species rank."""


def resolve_columns(header: list[str], roles: list[str], overrides: ColumnOverrides, source: str,
                    optional: list[str] = ()) -> dict[str, str]:
    """Map each role in ``roles`` to a column of ``header``; raise a one-line error naming the fix.

    Roles in ``optional`` are mapped when a column is found and left out otherwise (a column named by an
    override must still exist).
    """
    by_lower = {h.lower(): h for h in header}
    out: dict[str, str] = {}
    for role in [*roles, *(r for r in optional if r not in roles)]:
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
            if role not in roles:
                continue
            raise ObservationError(
                f"{source} has no {role} column (looked for {', '.join(CANDIDATES[role])}; found: {_list(header)}): "
                f"pass {FLAGS[role]} NAME"
            )
    return out


def _list(header: list[str], limit: int = 25) -> str:
    shown = ", ".join(header[:limit])
    return shown + (f", … ({len(header)} in all)" if len(header) > limit else "")
