"""Presence semantics: absences, the usual filters and duplicates, each counted by reason in the drop table."""

import numpy as np
import pytest

from geoprom3e.errors import ConfigError, ObservationError
from geoprom3e.grid.presets import get_grid
from geoprom3e.io.observations import ObservationFilter, ReadOptions
from geoprom3e.io.observations.filters import BASIS_OF_RECORD, parse_years
from geoprom3e.products.diversity import compute_diversity

# three records in one Kansas cell of usa-250x500: one presence, one ABSENT, one counted 0
THREE = (
    "decimalLatitude,decimalLongitude,species,occurrenceStatus,individualCount\n"
    "38.51,-98.51,Bison bison,PRESENT,4\n"
    "38.52,-98.52,Canis latrans,ABSENT,\n"
    "38.53,-98.53,Lynx rufus,PRESENT,0\n"
)


def _richness(result):
    r = result.layers["richness_raw"]
    return float(np.nansum(r)), int(np.isfinite(r).sum())


def test_absences_are_not_presences(tmp_path):
    p = tmp_path / "three.csv"
    p.write_text(THREE)
    grid = get_grid("usa-250x500")
    res = compute_diversity([p], grid)
    assert _richness(res) == (1.0, 1)  # truth: one species present
    assert res.counts["dropped"] == {"absence (occurrenceStatus ABSENT)": 1, "absence (individualCount 0)": 1}
    kept = compute_diversity([p], grid, read_options=ReadOptions(filters=ObservationFilter(keep_absences=True)))
    assert _richness(kept) == (3.0, 1) and kept.counts["dropped"] == {}


def test_organism_quantity_zero_and_text_counts(tmp_path):
    p = tmp_path / "q.tsv"
    p.write_text("decimalLatitude\tdecimalLongitude\tspecies\torganismQuantity\torganismQuantityType\n"
                 "38.5\t-98.5\tA a\t0\tindividuals\n38.5\t-98.5\tB b\t0.0\t% cover\n38.5\t-98.5\tC c\tmany\tDAFOR\n"
                 "38.5\t-98.5\tD d\t\t\n")
    res = compute_diversity([p], get_grid("usa-250x500"))
    assert res.counts["dropped"] == {"absence (organismQuantity 0)": 2}
    assert _richness(res) == (2.0, 1)


FILTERED = (
    "decimalLatitude,decimalLongitude,species,scientificName,basisOfRecord,coordinateUncertaintyInMeters,year,"
    "eventDate,recordedBy\n"
    "38.5,-98.5,A a,A a L.,HUMAN_OBSERVATION,10,2015,2015-06-01,ann\n"
    "38.5,-98.5,A a,A a L.,HUMAN_OBSERVATION,10,2015,2015-06-01T08:00,ann\n"  # duplicate (same day)
    "38.5,-98.5,A a,A a L.,HUMAN_OBSERVATION,10,2015,2015-06-01,bob\n"  # other observer: kept
    "38.5,-98.5,B b,B b L.,PreservedSpecimen,10,2015,2015-06-01,ann\n"
    "38.5,-98.5,C c,C c L.,HUMAN_OBSERVATION,5000,2015,2015-06-01,ann\n"
    "38.5,-98.5,D d,D d L.,HUMAN_OBSERVATION,,1999,1999-06-01,ann\n"
    "38.5,-98.5,,Canis L.,HUMAN_OBSERVATION,,2015,2015-06-01,ann\n"
    "38.5,-98.5,E e,E e L.,HUMAN_OBSERVATION,,,,ann\n"
)


def test_each_filter_counts_its_drops(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text(FILTERED)
    f = ObservationFilter(max_coordinate_uncertainty=1000, basis_of_record=("HumanObservation",), years=(2010, 2020),
                          drop_duplicates=True)
    res = compute_diversity([p], get_grid("usa-250x500"), read_options=ReadOptions(filters=f))
    assert res.counts["dropped"] == {
        "identified above species rank": 1, "outside year range": 1, "missing year": 1,
        "coordinate uncertainty above limit": 1, "basis of record not selected": 1, "exact duplicate": 1,
    }
    assert res.counts["records_kept"] == 2 and _richness(res) == (1.0, 1)
    counted = compute_diversity([p], get_grid("usa-250x500"),
                                read_options=ReadOptions(filters=ObservationFilter(above_species="count")))
    assert counted.counts["species"] == 6
    assert _richness(counted) == (6.0, 1)  # A, B, C, D, E and the genus Canis


def test_duplicates_across_chunks_and_files(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text(FILTERED)
    opts = ReadOptions(filters=ObservationFilter(drop_duplicates=True), chunk_bytes=200)
    res = compute_diversity([p, p], get_grid("usa-250x500"), read_options=opts)
    # the first copy holds one duplicate (same day, same observer); all 7 kept records of the second copy repeat
    assert res.counts["dropped"]["exact duplicate"] == 1 + 7
    assert res.counts["dropped"]["identified above species rank"] == 2


def test_filter_removing_everything_says_what_each_removed(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text(FILTERED)
    f = ObservationFilter(years=(1900, 1901))
    with pytest.raises(ObservationError) as exc:
        compute_diversity([p], get_grid("usa-250x500"), read_options=ReadOptions(filters=f))
    msg = str(exc.value)
    assert "8 read, all dropped (outside year range: 6; identified above species rank: 1; missing year: 1)" in msg
    assert "\n" not in msg


def test_bad_filter_values():
    with pytest.raises(ConfigError, match="--basis-of-record HUMAN_OBS is unknown: choose from HUMAN_OBSERVATION"):
        ObservationFilter(basis_of_record=("HUMAN_OBS",))
    assert ObservationFilter(basis_of_record=("humanObservation",)).basis_of_record == ("HUMAN_OBSERVATION",)
    assert set(BASIS_OF_RECORD) >= {"PRESERVED_SPECIMEN", "MACHINE_OBSERVATION"}
    assert parse_years("2010-2020") == (2010, 2020) and parse_years("2015") == (2015, 2015)
    for bad in ("2020-2010", "twenty", "10-20"):
        with pytest.raises(ConfigError, match="--years"):
            parse_years(bad)
    with pytest.raises(ConfigError, match="--above-species 'genus' is unknown"):
        ObservationFilter(above_species="genus")
    with pytest.raises(ConfigError, match="must be > 0"):
        ObservationFilter(max_coordinate_uncertainty=0)
