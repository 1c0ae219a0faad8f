import json

import pytest
import rasterio
from click.testing import CliRunner

from geoprom3e.cli import main
from geoprom3e.cli.maps import _SMOOTHING
from geoprom3e.maps.smoothing import SMOOTHING_METHODS
from tests.conftest import shared_path


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def real_obs():
    return [
        shared_path("data", "inat_butterflies_western_us", "inat_butterflies_AZ_UT_WA_MT_combined.csv"),
        shared_path("data", "neon_breeding_birds", "neon_birds_point_counts.csv.gz"),
    ]


def test_diversity_map_on_real_data(tmp_path, real_obs):
    out = tmp_path / "maps"
    res = _run("diversity-map", *real_obs, "--grid", "usa-250x500", "--sigma", "2.0", "--rank", "species",
               "--rank-column", "taxon_rank", "--out", out)
    # the iNat file has no taxon_rank column: refused with the flag to fix it, nothing written
    assert res.exit_code == 2 and "--rank-column 'taxon_rank' is not a column" in res.output
    assert not out.exists() or list(out.iterdir()) == []
    res = _run("diversity-map", *real_obs, "--grid", "usa-250x500", "--sigma", "2.0", "--out", out)
    assert res.exit_code == 0, res.output
    assert "321,345 records read, 281,996 kept" in res.output and "cells with data" in res.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([
        "diversity.tif", "diversity.qml", "diversity.nc", "diversity.manifest.json", "diversity.settings.json",
        "diversity.stac.json", "catalog.json",
        *(f"diversity_{n}.png" for n in ("shannon", "richness", "shannon_raw", "richness_raw", "n_records",
                                          "cell_area_km2")),
    ])
    with rasterio.open(out / "diversity.tif") as ds:
        assert ds.descriptions == ("shannon", "richness", "shannon_raw", "richness_raw", "n_records", "cell_area_km2")
        assert ds.tags()["sigma"] == "2.0" and ds.tags()["sigma_units"] == "cells"
        assert ds.tags()["software"].startswith("geoprom3e ")
        assert "neon_birds_point_counts.csv.gz" in ds.tags()["inputs"]
    manifest = json.loads((out / "diversity.manifest.json").read_text())
    assert manifest["counts"]["records_kept"] == 281996
    assert len(manifest["inputs"]) == 2 and len(manifest["inputs"][0]["sha256"]) == 64
    settings = json.loads((out / "diversity.settings.json").read_text())
    assert settings["grid"]["name"] == "usa-250x500" and settings["diversity"]["sigma"] == 2.0
    # again without --overwrite: refused, files untouched
    before = (out / "diversity.tif").stat().st_mtime_ns
    res = _run("diversity-map", *real_obs, "--out", out)
    assert res.exit_code == 2 and "already exists: pass --overwrite" in res.output
    assert (out / "diversity.tif").stat().st_mtime_ns == before
    res = _run("diversity-map", real_obs[0], "--out", out, "--overwrite", "--no-png", "--sigma", "0")
    assert res.exit_code == 0 and "19,159 records read" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grid", "usa-9x9"], "unknown grid 'usa-9x9': choose one of usa-1000x2000"),
        (["--bbox", "-66", "24", "-125", "50", "--res", "0.1"], "west must be < east"),
        (["--bbox", "-125", "24", "-66", "50", "--res", "0.00001"], "cells"),
        (["--lat-column", "lat"], "--lat-column 'lat' is not a column"),
        (["--smoothing", "box"], "Invalid value for '--smoothing'"),
        (["--date-from", "yesterday"], "--date-from 'yesterday' is not a date"),
        (["--bbox", "-80", "30", "-70", "40"], "none of the 12,404 records"),
    ],
)
def test_bad_input_one_line_exit_2_no_files(tmp_path, args, message):
    path = shared_path("data", "inat_butterflies_western_us", "iNat_arizona.csv")
    out = tmp_path / "out"
    res = _run("diversity-map", path, "--out", out, *args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not out.exists() or list(out.iterdir()) == []


def test_bad_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    res = _run("diversity-map", empty, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "is empty" in res.output
    swapped = tmp_path / "swapped.csv"
    swapped.write_text("latitude,longitude,species\n-100.5,40.2,A a\n-101.5,41.2,B b\n")
    res = _run("diversity-map", swapped, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "look swapped" in res.output
    res = _run("diversity-map", swapped, "--out", tmp_path / "o", "--lat-column", "longitude",
               "--lon-column", "latitude", "--no-png")
    assert res.exit_code == 0 and "2 kept" in res.output
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    res = _run("diversity-map", swapped, "--out", blocker / "sub")
    assert res.exit_code == 2 and "choose a writable --out" in res.output


def test_grids_commands():
    res = _run("grids", "list")
    assert res.exit_code == 0 and "usa-250x500" in res.output and "usa-5km-albers" in res.output
    res = _run("grids", "show", "usa-250x500")
    assert res.exit_code == 0 and "10.40 km × 11.10 km" in res.output and "70,106 cells inside" in res.output
    res = _run("grids", "show", "nope")
    assert res.exit_code == 2 and "choose one of" in res.output


def test_cli_choices_match_library():
    assert _SMOOTHING == SMOOTHING_METHODS


def _neon_dwca(tmp_path, n=20000):
    import pandas as pd

    from tests.io.dwca_data import neon_occurrences, write_dwca

    occ = neon_occurrences(shared_path("data", "neon_breeding_birds", "neon_birds_point_counts.csv.gz"), n)
    absent = occ.iloc[::50].assign(occurrenceStatus="ABSENT", scientificName="Absentia nulla")
    zero = occ.iloc[25::50].assign(individualCount=0, scientificName="Zeroia nulla")
    table = pd.concat([occ, absent, zero], ignore_index=True)
    return occ, len(absent), len(zero), write_dwca(tmp_path / "download.zip", table)


def test_dwca_download_maps_with_absences_excluded_and_drops_counted(tmp_path):
    occ, n_absent, n_zero, archive = _neon_dwca(tmp_path)
    presences = tmp_path / "presences.csv"
    occ.to_csv(presences, index=False)
    res = _run("diversity-map", archive, "--out", tmp_path / "a", "--no-png", "--no-checksums")
    assert res.exit_code == 0, res.output
    res = _run("diversity-map", presences, "--out", tmp_path / "b", "--no-png", "--no-checksums")
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "a" / "diversity.manifest.json").read_text())
    dropped = manifest["counts"]["dropped"]
    assert dropped["absence (occurrenceStatus ABSENT)"] == n_absent
    assert dropped["absence (individualCount 0)"] == n_zero
    assert manifest["counts"]["files"][0]["format"] == "dwca"
    with rasterio.open(tmp_path / "a" / "diversity.tif") as a, rasterio.open(tmp_path / "b" / "diversity.tif") as b:
        assert (a.read() == b.read()).all()  # identical maps: the absences added nothing


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        ("nometa", [], "has no meta.xml and 2 data tables"),
        ("nocore", [], "which the archive lacks"),
        ("short", [], "to columns that 'occurrence.txt' lacks"),
        ("bomb", [], "refused as a possible zip bomb"),
        ("ok", ["--basis-of-record", "HUMAN_OBS"], "--basis-of-record HUMAN_OBS is unknown: choose from"),
        ("ok", ["--years", "2030-2031"], "20,800 read, all dropped (outside year range: 20,000; "
                                         "absence (occurrenceStatus ABSENT): 400; absence (individualCount 0): 400)"),
        ("ok", ["--years", "20-30"], "--years '20-30' is not a year range"),
    ],
)
def test_bad_archives_and_filters_one_line_exit_2(tmp_path, make, args, message):
    import zipfile

    from tests.io.dwca_data import meta_xml

    occ, _, _, archive = _neon_dwca(tmp_path)
    text = occ.head(20).to_csv(sep="\t", index=False)
    members = {
        "nometa": {"occurrence.txt": text, "verbatim.txt": text},
        "nocore": {"meta.xml": meta_xml("occurrence.txt", list(occ.columns))},
        "short": {"meta.xml": meta_xml("occurrence.txt", [*occ.columns, "year"]), "occurrence.txt": text},
        "bomb": {"meta.xml": meta_xml("occurrence.txt", list(occ.columns)), "occurrence.txt": text + "0" * 2**25},
    }
    if make in members:
        archive = tmp_path / f"{make}.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in members[make].items():
                zf.writestr(name, data)
    out = tmp_path / "out"
    res = _run("diversity-map", archive, "--out", out, *args)
    assert res.exit_code == 2, res.output
    assert message in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not out.exists() or list(out.iterdir()) == []


def test_cli_above_species_choices_match_library():
    from geoprom3e.cli.maps import _ABOVE_SPECIES
    from geoprom3e.io.observations.filters import ABOVE_SPECIES_RULES

    assert _ABOVE_SPECIES == ABOVE_SPECIES_RULES
    res = _run("diversity-map", "--help")
    assert "--keep-absences" in res.output and "[default: drop]" in res.output


def test_per_area_flag_and_filters_reach_the_manifest(tmp_path):
    path = shared_path("data", "inat_butterflies_western_us", "iNat_utah.csv")
    out = tmp_path / "o"
    res = _run("diversity-map", path, "--out", out, "--no-png", "--no-checksums", "--per-area", "--years", "2015-2018",
               "--drop-duplicates", "--above-species", "count")
    assert res.exit_code == 0, res.output
    with rasterio.open(out / "diversity.tif") as ds:
        assert ds.descriptions[-2:] == ("cell_area_km2", "richness_per_km2")
    settings = json.loads((out / "diversity.settings.json").read_text())
    f = settings["read"]["filters"]
    assert f["years"] == [2015, 2018] and f["drop_duplicates"] and f["above_species"] == "count"
    assert settings["diversity"]["per_area"] is True
    dropped = json.loads((out / "diversity.manifest.json").read_text())["counts"]["dropped"]
    assert dropped["outside year range"] > 0 and "identified above species rank" not in dropped
