"""Darwin Core Archives, GBIF simple-CSV zips and IPT-style exports, built from real records in ../shared/data."""

import zipfile

import numpy as np
import pandas as pd
import pytest

from geoprom3e.errors import ObservationError
from geoprom3e.io.observations import ObservationFilter, ObservationReader, ReadOptions
from geoprom3e.io.observations.archive import term_name
from tests.conftest import shared_path
from tests.io.dwca_data import meta_xml, neon_occurrences, write_dwca


def _read(paths, options=None):
    reader = ObservationReader(paths, options)
    chunks = list(reader)
    names = np.array(reader.species, dtype=object)[np.concatenate([c.species for c in chunks])]
    lat = np.concatenate([c.lat for c in chunks])
    return reader, lat, names


@pytest.fixture(scope="module")
def neon():
    return neon_occurrences(shared_path("data", "neon_breeding_birds", "neon_birds_point_counts.csv.gz"), 30000)


@pytest.fixture(scope="module")
def inat():
    return pd.read_csv(shared_path("data", "inat_butterflies_western_us", "inat_butterflies_AZ_UT_WA_MT_combined.csv"))


def test_term_names():
    assert term_name("http://rs.tdwg.org/dwc/terms/decimalLatitude") == "decimalLatitude"
    assert term_name("http://purl.org/dc/terms/modified") == "modified"
    assert term_name("dwc:scientificName") == "scientificName"


def test_gbif_dwca_streams_core_by_meta_terms(tmp_path, neon):
    # GBIF layout: tab, unquoted, one header line; the header row uses other names than meta.xml's terms,
    # so only meta.xml can tell which column is which
    table = neon.rename(columns={"decimalLatitude": "lat_x", "decimalLongitude": "lon_x", "scientificName": "sn"})
    meta = meta_xml("occurrence.txt", list(neon.columns))
    p = write_dwca(tmp_path / "download.zip", table, meta=meta, extra={"verbatim.txt": b"a\tb\n1\t2\n"})
    reader, lat, names = _read([p])
    assert reader.files[0].format == "dwca"
    cols = reader.files[0].columns
    assert cols["lat"] == "decimalLatitude" and cols["species"] == "scientificName"
    assert reader.rows == len(neon) and reader.kept == len(neon)
    assert np.allclose(lat, neon.decimalLatitude) and list(names) == neon.scientificName.tolist()


def test_gbif_simple_csv_zip_equals_the_table(tmp_path, inat):
    gbif = pd.DataFrame({"gbifID": inat.id, "species": inat.taxon_species_name, "scientificName": inat.scientific_name,
                         "decimalLatitude": inat.latitude, "decimalLongitude": inat.longitude,
                         "eventDate": inat.observed_on, "basisOfRecord": "HUMAN_OBSERVATION"})
    p = tmp_path / "0001234-200101.zip"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as zf:  # GBIF: one tab-separated .csv
        zf.writestr("0001234-200101.csv", gbif.to_csv(sep="\t", index=False))
    plain = tmp_path / "plain.csv"
    gbif.to_csv(plain, sep="\t", index=False)
    r1, lat1, n1 = _read([p])
    r2, lat2, n2 = _read([plain])
    assert r1.files[0].format == "zip/tsv"
    assert r1.kept == r2.kept == inat.taxon_species_name.notna().sum()
    assert r1.dropped == r2.dropped == {"identified above species rank": 3}
    assert np.array_equal(lat1, lat2) and list(n1) == list(n2)


def test_ipt_export_latin1_quoted_with_default_and_unmapped_columns(tmp_path, inat):
    sub = inat.head(2000)
    table = pd.DataFrame({"id": sub.id, "county": sub.place_county_name, "decimalLongitude": sub.longitude,
                          "decimalLatitude": sub.latitude, "scientificName": sub.scientific_name,
                          "vernacularName": sub.common_name.fillna("") + " (é, \"quoted\")"})
    terms = ["", "", "decimalLongitude", "decimalLatitude", "scientificName", "vernacularName"]
    meta = meta_xml("data/occurrence.csv", terms, delimiter=",", quote="&quot;", encoding="ISO-8859-1",
                    defaults={"basisOfRecord": "HumanObservation", "occurrenceStatus": "present"})
    p = write_dwca(tmp_path / "ipt.zip", table, location="data/occurrence.csv", meta=meta, sep=",", encoding="latin-1")
    reader, lat, names = _read([p], ReadOptions(filters=ObservationFilter(basis_of_record=("HUMAN_OBSERVATION",))))
    assert reader.kept == len(sub) and reader.files[0].columns["basis"] == "basisOfRecord"
    assert np.allclose(lat, sub.latitude) and list(names) == sub.scientific_name.tolist()
    reader = ObservationReader([p], ReadOptions(filters=ObservationFilter(basis_of_record=("PreservedSpecimen",))))
    assert list(reader) == [] and reader.kept == 0 and reader.dropped == {"basis of record not selected": len(sub)}


def _zip(path, members):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_bad_archives_are_one_line_errors(tmp_path, neon):
    head = neon.head(50)
    occ = head.to_csv(sep="\t", index=False)
    cases = [
        (_zip(tmp_path / "nometa.zip", {"occurrence.txt": occ, "multimedia.txt": "a\tb\n"}),
         "has no meta.xml and 2 data tables"),
        (_zip(tmp_path / "nocore.zip", {"meta.xml": meta_xml("occurrence.txt", list(head.columns))}),
         "names core file 'occurrence.txt', which the archive lacks"),
        (_zip(tmp_path / "short.zip", {"meta.xml": meta_xml("occurrence.txt", [*head.columns, "year", "month"]),
                                       "occurrence.txt": occ}),
         "meta.xml maps year (index 10), month (index 11) to columns that 'occurrence.txt' lacks (it has 10 columns)"),
        (_zip(tmp_path / "badxml.zip", {"meta.xml": "<archive><core", "occurrence.txt": occ}), "is not valid XML"),
    ]
    for path, message in cases:
        with pytest.raises(ObservationError, match=None) as exc:
            list(ObservationReader([path]))
        assert message in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_zip_bomb_refused_by_declared_size_before_reading(tmp_path, neon):
    occ = neon.head(50).to_csv(sep="\t", index=False)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.xml", meta_xml("occurrence.txt", list(neon.columns)))
        zf.writestr("occurrence.txt", occ + "0" * (40 * 2**20))  # ~40 MB packed ~1000x
    with pytest.raises(ObservationError, match=r"ratio [\d,]+, limit 200\): refused as a possible zip bomb"):
        list(ObservationReader([bomb]))
    # the declared total is checked too (limit lowered here so a small archive trips it)
    small = write_dwca(tmp_path / "ok.zip", neon.head(50))
    with pytest.raises(ObservationError, match=r"declares [\d,]+ bytes uncompressed \(limit 1,000\)"):
        list(ObservationReader([small], ReadOptions(max_archive_bytes=1000)))


def test_member_larger_than_declared_is_refused(tmp_path, neon):
    # a member whose header understates its size: zipfile stops at the declared size and the CRC check fails
    p = write_dwca(tmp_path / "lying.zip", neon.head(2000))
    data = bytearray(p.read_bytes())
    with zipfile.ZipFile(p) as zf:
        info = zf.getinfo("occurrence.txt")
    declared = info.file_size.to_bytes(4, "little")
    smaller = (info.file_size // 2).to_bytes(4, "little")
    assert data.count(declared) >= 2  # local header and central directory
    p.write_bytes(bytes(data).replace(declared, smaller))
    with pytest.raises(ObservationError, match="cannot be read"):
        list(ObservationReader([p]))


def test_sampling_event_archive_joins_events_and_drops_listed_absences(tmp_path):
    from tests.io.dwca_data import event_core_meta

    src = pd.read_csv(shared_path("data", "neon_breeding_birds", "neon_birds_point_counts.csv.gz"), nrows=20000)
    src["eventDate"] = src.observation_datetime.str.slice(0, 10)
    events = src.drop_duplicates(["plotID", "eventDate"])[["plotID", "eventDate", "latitude", "longitude"]]
    events = events.assign(eventID=events.plotID + "_" + events.eventDate)
    occ = src.merge(events[["plotID", "eventDate", "eventID"]], on=["plotID", "eventDate"])
    # a survey lists what it looked for and did not find: each event gets ABSENT rows for 3 species it lacks
    pool = occ.scientific_name.value_counts().index[:40]
    absent = []
    for eid, seen in occ.groupby("eventID").scientific_name:
        missing = [s for s in pool if s not in set(seen)][:3]
        absent += [{"eventID": eid, "scientific_name": s, "value": 0} for s in missing]
    rows = pd.concat([occ.assign(status="PRESENT"), pd.DataFrame(absent).assign(status="ABSENT")], ignore_index=True)
    ev_table = pd.DataFrame({"eventID": events.eventID, "eventDate": events.eventDate,
                             "decimalLatitude": events.latitude, "decimalLongitude": events.longitude})
    occ_table = pd.DataFrame({"eventID": rows.eventID, "scientificName": rows.scientific_name,
                              "individualCount": rows.value.astype(int), "occurrenceStatus": rows.status})
    p = tmp_path / "ipt-event.zip"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.xml", event_core_meta(list(ev_table.columns), list(occ_table.columns)))
        zf.writestr("event.txt", ev_table.to_csv(sep="\t", index=False))
        zf.writestr("occurrence.txt", occ_table.to_csv(sep="\t", index=False))
    reader, lat, names = _read([p])
    assert reader.files[0].format == "dwca (event core + occurrences)"
    assert reader.files[0].columns["lat"] == "decimalLatitude"
    assert reader.rows == len(rows) and reader.kept == len(occ)
    # ABSENT rows carry count 0 as well: the first check (occurrenceStatus) claims them
    assert reader.dropped == {"absence (occurrenceStatus ABSENT)": len(absent)}
    assert np.allclose(np.sort(lat), np.sort(occ.latitude)) and sorted(names) == sorted(occ.scientific_name)
    years = ReadOptions(filters=ObservationFilter(years=(2016, 2017)))
    reader = ObservationReader([p], years)
    list(reader)
    in_years = occ.eventDate.str.slice(0, 4).astype(int).between(2016, 2017)
    assert reader.kept == int(in_years.sum())  # dates come from the events


def test_unsupported_compression_is_one_line(tmp_path, neon):
    p = write_dwca(tmp_path / "d64.zip", neon.head(20))
    data = bytearray(p.read_bytes())
    with zipfile.ZipFile(p) as zf:
        info = zf.getinfo("occurrence.txt")
    # mark the member as Deflate64 (method 9), which zipfile cannot unpack, in its local and central headers
    local = info.header_offset + 8
    assert data[local:local + 2] == b"\x08\x00"
    data[local:local + 2] = b"\x09\x00"
    c = bytes(data).find(b"PK\x01\x02")
    while c >= 0:
        name_len = int.from_bytes(data[c + 28:c + 30], "little")
        if data[c + 46:c + 46 + name_len] == b"occurrence.txt":
            data[c + 10:c + 12] = b"\x09\x00"
        c = bytes(data).find(b"PK\x01\x02", c + 4)
    p.write_bytes(bytes(data))
    with pytest.raises(ObservationError, match="cannot be unpacked by Python's zipfile .*re-zip it with plain deflate"):
        list(ObservationReader([p]))
