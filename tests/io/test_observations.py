import gzip

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from geoprom3e.errors import ConfigError, ObservationError
from geoprom3e.io.observations import ColumnOverrides, ObservationFilter, ObservationReader, ReadOptions
from geoprom3e.testing.observations import synthetic_records, write_records
from tests.conftest import shared_path


def _read_all(paths, options=None):
    reader = ObservationReader(paths, options)
    chunks = list(reader)
    lat = np.concatenate([c.lat for c in chunks]) if chunks else np.empty(0)
    lon = np.concatenate([c.lon for c in chunks]) if chunks else np.empty(0)
    names = np.array(reader.species, dtype=object)[np.concatenate([c.species for c in chunks])] if chunks else []
    weight = np.concatenate([c.weight for c in chunks]) if chunks and chunks[0].weight is not None else None
    return reader, lat, lon, names, weight, chunks


def test_inat_export_counts_match_pandas():
    path = shared_path("data", "inat_butterflies_western_us", "inat_butterflies_AZ_UT_WA_MT_combined.csv")
    df = pd.read_csv(path)
    reader, lat, lon, names, _, _ = _read_all([path])
    assert reader.files[0].columns["species"] == "taxon_species_name"
    expected = df.dropna(subset=["taxon_species_name"])
    assert reader.rows == len(df) == 19159
    assert reader.kept == len(expected)
    # the 3 rows without a species name are genus/tribe-level identifications (scientific_name set): the
    # default rank rule drops them under their own reason
    assert reader.dropped == {"identified above species rank": int(df.taxon_species_name.isna().sum())}
    assert np.allclose(lat, expected.latitude.to_numpy()) and np.allclose(lon, expected.longitude.to_numpy())
    assert list(names) == expected.taxon_species_name.tolist()


def test_inat_date_filter_matches_pandas():
    path = shared_path("data", "inat_butterflies_western_us", "inat_butterflies_AZ_UT_WA_MT_combined.csv")
    df = pd.read_csv(path).dropna(subset=["taxon_species_name"])
    opts = ReadOptions(filters=ObservationFilter(date_from="2015-01-01", date_to="2017-12-31"))
    reader, *_ = _read_all([path], opts)
    expected = ((df.observed_on >= "2015-01-01") & (df.observed_on <= "2017-12-31")).sum()
    assert reader.kept == expected
    assert reader.dropped["outside date range"] == len(df) - expected


def test_neon_gzip_rank_filter_and_abundance():
    path = shared_path("data", "neon_breeding_birds", "neon_birds_point_counts.csv.gz")
    df = pd.read_csv(path)
    opts = ReadOptions(filters=ObservationFilter(rank="species"), use_abundance=True)
    reader, _, _, names, weight, chunks = _read_all([path], opts)
    sp = df[df.taxon_rank == "species"]
    assert reader.files[0].format == "csv+gzip"
    assert reader.files[0].columns == {"lat": "latitude", "lon": "longitude", "species": "scientific_name",
                                       "abundance": "value", "rank": "taxon_rank", "name": "scientific_name",
                                       "date": "observation_datetime"}
    assert reader.files[0].date_range == (df.observation_datetime.str[:10][df.taxon_rank == "species"].min(),
                                          df.observation_datetime.str[:10][df.taxon_rank == "species"].max())
    assert reader.kept == len(sp) == 296665
    assert reader.dropped == {"other rank": len(df) - len(sp)}
    assert weight.sum() == pytest.approx(sp.value.sum())
    assert len(set(names)) == sp.scientific_name.nunique() == 543


def test_formats_give_identical_records(tmp_path):
    table = synthetic_records(5000, n_species=50, seed=3)
    results = {}
    for name in ("obs.csv", "obs.csv.gz", "occurrence.txt", "obs.parquet"):
        p = write_records(table, tmp_path / name)
        reader, lat, lon, names, _, _ = _read_all([p])
        results[name] = (lat, lon, list(names))
        assert reader.kept == 5000
    ref = results["obs.parquet"]
    for name, (lat, lon, names) in results.items():
        assert np.allclose(lat, ref[0]) and np.allclose(lon, ref[1]), name
        assert names == ref[2], name
    assert ObservationReader([tmp_path / "occurrence.txt"]).paths  # constructed fine


def test_small_chunks_give_same_result_and_shared_vocabulary(tmp_path):
    table = synthetic_records(20000, n_species=300, seed=4)
    p = write_records(table, tmp_path / "obs.csv")
    _, lat1, _, names1, _, chunks1 = _read_all([p])
    _, lat2, _, names2, _, chunks2 = _read_all([p, p], ReadOptions(chunk_bytes=50_000))
    assert len(chunks1) == 1 and len(chunks2) > 10
    assert np.allclose(np.concatenate([lat1, lat1]), lat2)
    assert list(names2) == list(names1) * 2


def test_geoparquet_points(tmp_path):
    import shapely

    table = synthetic_records(1000, n_species=20, seed=5)
    geom = shapely.to_wkb(shapely.points(table.column("longitude").to_numpy(), table.column("latitude").to_numpy()))
    gt = pa.table({"geometry": pa.array(list(geom), pa.binary()), "species": table.column("scientific_name")})
    meta = {b"geo": b'{"version": "1.0.0", "primary_column": "geometry", "columns": {"geometry": '
                    b'{"encoding": "WKB", "geometry_types": ["Point"]}}}'}
    p = tmp_path / "obs.geoparquet"
    pq.write_table(gt.replace_schema_metadata(meta), p)
    reader, lat, lon, _, _, _ = _read_all([p])
    assert reader.files[0].format == "geoparquet"
    assert np.allclose(lat, table.column("latitude").to_numpy())
    assert np.allclose(lon, table.column("longitude").to_numpy())


def test_darwin_core_tab_file_with_quotes_rank_and_quality(tmp_path):
    p = tmp_path / "occurrence.txt"
    p.write_text(
        "gbifID\tdecimalLatitude\tdecimalLongitude\tscientificName\tspecies\ttaxonRank\tindividualCount\n"
        '1\t40.1\t-100.2\tPuma concolor (Linnaeus, 1771)\tPuma concolor\tSPECIES\t2\n'
        '2\t40.1\t-100.2\tPuma "cat" concolor\tPuma concolor\tSUBSPECIES\t\n'
        "3\t41.0\t-101.0\tPuma Jardine, 1834\t\tGENUS\t1\n",
        encoding="utf-8",
    )
    reader, _, _, names, _, _ = _read_all([p], ReadOptions(filters=ObservationFilter(rank="species")))
    assert reader.files[0].format == "tsv"
    assert reader.files[0].columns["species"] == "species"
    assert list(names) == ["Puma concolor"]
    assert reader.dropped == {"identified above species rank": 1, "other rank": 1}
    reader, *_ = _read_all([p], ReadOptions(use_abundance=True))
    assert reader.dropped == {"identified above species rank": 1, "missing or non-positive abundance": 1}


def test_quality_grade_filter_and_overrides(tmp_path):
    p = tmp_path / "inat.csv"
    p.write_text("y,x,taxon,quality_grade\n40,-100,A a,research\n41,-101,B b,needs_id\n42,-102,C c,Research\n")
    opts = ReadOptions(columns=ColumnOverrides(lat="y", lon="x", species="taxon"),
                       filters=ObservationFilter(quality_grade="research"))
    reader, lat, _, names, _, _ = _read_all([p], opts)
    assert list(names) == ["A a", "C c"] and lat.tolist() == [40.0, 42.0]
    assert reader.dropped == {"other quality grade": 1}


def test_missing_column_lists_columns_and_flag(tmp_path):
    p = tmp_path / "obs.csv"
    p.write_text("y,longitude,scientific_name\n40,-100,A a\n")
    with pytest.raises(ObservationError, match=r"no lat column .*found: y, longitude, scientific_name\): "
                                               r"pass --lat-column NAME"):
        list(ObservationReader([p]))
    with pytest.raises(ObservationError, match="--species-column 'taxon' is not a column"):
        list(ObservationReader([p], ReadOptions(columns=ColumnOverrides(lat="y", species="taxon"))))
    with pytest.raises(ObservationError, match="pass --quality-column NAME"):
        list(ObservationReader([p], ReadOptions(columns=ColumnOverrides(lat="y"),
                                                filters=ObservationFilter(quality_grade="research"))))


def test_out_of_range_coordinates_counted_and_swaps_detected(tmp_path):
    p = tmp_path / "swapped.csv"
    rows = ["latitude,longitude,species"] + [f"{-100 - i * 0.1},{35 + i * 0.01},A a" for i in range(30)]
    p.write_text("\n".join(rows) + "\n")
    with pytest.raises(ObservationError, match=r"30 of 30 records .*look swapped .*--lat-column longitude "
                                               r"--lon-column latitude"):
        list(ObservationReader([p]))
    q = tmp_path / "bad.csv"
    q.write_text("latitude,longitude,species\n40,-100,A a\n95,-100,B b\n40,-300,C c\n,,D d\n")
    with pytest.raises(ObservationError, match=r"2 of 4 records .*--drop-invalid-coordinates"):
        list(ObservationReader([q]))
    reader, *_ = _read_all([q], ReadOptions(filters=ObservationFilter(drop_invalid_coordinates=True)))
    assert reader.kept == 1
    assert reader.dropped == {"invalid coordinates": 2, "missing coordinates": 1}


def test_empty_non_utf8_text_in_numbers_and_missing_file(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(ObservationError, match="is empty"):
        list(ObservationReader([empty]))
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("latitude,longitude,species\n40,-100,Bombus terrícola\n".encode("latin-1"))
    with pytest.raises(ObservationError, match="not UTF-8 text.*iconv"):
        list(ObservationReader([latin]))
    latin_header = tmp_path / "latin1h.csv"
    latin_header.write_bytes("latitude,longitude,espèce\n".encode("latin-1"))
    with pytest.raises(ObservationError, match="not UTF-8"):
        list(ObservationReader([latin_header]))
    gz = tmp_path / "e.csv.gz"
    with gzip.open(gz, "wb") as f:
        f.write(b"")
    with pytest.raises(ObservationError, match="is empty"):
        list(ObservationReader([gz]))
    text = tmp_path / "text.csv"
    text.write_text("latitude,longitude,species\n40,-100,A a\nforty,-100,B b\n")
    with pytest.raises(ObservationError, match="numeric column holds text.*latitude"):
        list(ObservationReader([text]))
    with pytest.raises(ObservationError, match="does not exist"):
        ObservationReader([tmp_path / "nope.csv"])


def test_bad_dates_are_config_errors():
    with pytest.raises(ConfigError, match="--date-from '2015/01/01' is not a date: use YYYY-MM-DD"):
        ObservationFilter(date_from="2015/01/01")
    with pytest.raises(ConfigError, match="swap them"):
        ObservationFilter(date_from="2016-01-01", date_to="2015-01-01")


def test_bom_crlf_quoted_header_and_semicolons(tmp_path):
    p = tmp_path / "excel.csv"
    p.write_bytes(b'\xef\xbb\xbf"latitude","longitude","name, full"\r\n40.1,-100.2,"Puma concolor"\r\n'
                  b'41,-101,"Ursus, americanus"\r\n')
    reader, lat, _, names, _, _ = _read_all([p], ReadOptions(columns=ColumnOverrides(species="name, full")))
    assert list(names) == ["Puma concolor", "Ursus, americanus"] and lat.tolist() == [40.1, 41.0]
    q = tmp_path / "semi.csv"
    q.write_text("latitude;longitude;species\n40,-100;-100,5;A a\n40.5;-100.5;B b\n")
    with pytest.raises(ObservationError, match="numeric column holds text"):
        list(ObservationReader([q]))  # decimal commas are refused, not misread
    q.write_text("latitude;longitude;species\n40.5;-100.5;B b\n")
    reader, *_ = _read_all([q])
    assert reader.kept == 1 and reader.files[0].columns["species"] == "species"


def test_truncated_gzip_and_ragged_rows(tmp_path):
    src = shared_path("data", "neon_breeding_birds", "neon_birds_point_counts.csv.gz")
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(src.read_bytes()[:1_500_000])
    with pytest.raises(ObservationError, match="cannot be read .*check that it is complete"):
        list(ObservationReader([cut]))
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("latitude,longitude,species\n40,-100,A a\n41,-101,B b,extra\n")
    with pytest.raises(ObservationError, match="Expected 3 columns, got 4.*check the delimiter"):
        list(ObservationReader([ragged]))
