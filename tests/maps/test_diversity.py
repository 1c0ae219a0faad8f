import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from geoprom3e.errors import ConfigError, GridError, ObservationError
from geoprom3e.grid import GridSpec, get_grid
from geoprom3e.io.observations import ObservationChunk, ObservationFilter, ReadOptions
from geoprom3e.maps.diversity import (
    DIVERSITY_LAYERS,
    DiversitySettings,
    diversity_attrs,
    diversity_from_chunks,
)
from geoprom3e.products.diversity import compute_diversity
from geoprom3e.testing.observations import synthetic_records, write_records
from tests.conftest import shared_path

G = "usa-250x500"


def _pandas_cells(df, lat="latitude", lon="longitude"):
    """DESIGN §6 formulas, then the mask: the reference the fast path must match."""
    grid = get_grid(G)
    r = np.floor((49.5 - df[lat]) / 0.1)
    c = np.floor((df[lon] + 125.0) / 0.117)
    inside = (r >= 0) & (r < 250) & (c >= 0) & (c < 500)
    df = df[inside].assign(r=r[inside].astype(int), c=c[inside].astype(int))
    in_mask = grid.mask()[df.r, df.c]
    return df[in_mask], int((~inside).sum()), int((~in_mask).sum())


@pytest.fixture(scope="module")
def inat():
    path = shared_path("data", "inat_butterflies_western_us", "inat_butterflies_AZ_UT_WA_MT_combined.csv")
    return path, compute_diversity([path], get_grid(G))


def test_inat_counts_match_pandas(inat):
    path, res = inat
    df = pd.read_csv(path).dropna(subset=["taxon_species_name"])
    kept, out_bbox, out_mask = _pandas_cells(df)
    assert res.counts["records_read"] == 19159
    assert res.counts["records_kept"] == len(kept)
    expected = {"identified above species rank": 3, "outside grid bbox": out_bbox, "outside mask": out_mask}
    assert res.counts["dropped"] == {k: v for k, v in expected.items() if v}
    g = kept.groupby(["r", "c"])
    n = np.full((250, 500), 0.0)
    n[tuple(np.array(list(g.size().index)).T)] = g.size().to_numpy()
    rich = np.full((250, 500), np.nan)
    rich[tuple(np.array(list(g.taxon_species_name.nunique().index)).T)] = g.taxon_species_name.nunique().to_numpy()
    mask = get_grid(G).mask()
    assert np.array_equal(res.layers["n_records"][mask], n[mask])
    assert np.isnan(res.layers["n_records"][~mask]).all()
    assert np.array_equal(res.layers["richness_raw"], rich, equal_nan=True)
    assert res.counts["cells_with_data"] == g.ngroups
    assert res.counts["species"] == kept.taxon_species_name.nunique()
    assert list(res.layers) == list(DIVERSITY_LAYERS)


def test_inat_cells_checked_by_hand(inat):
    path, res = inat
    df = pd.read_csv(path).dropna(subset=["taxon_species_name"])
    kept, _, _ = _pandas_cells(df)
    top = kept.groupby(["r", "c"]).size().sort_values(ascending=False).index[:3]
    for r, c in top:
        counts = kept[(kept.r == r) & (kept.c == c)].taxon_species_name.value_counts().to_numpy()
        p = counts / counts.sum()
        assert res.layers["shannon_raw"][r, c] == pytest.approx(-(p * np.log(p)).sum(), rel=1e-5)
        assert res.layers["richness_raw"][r, c] == len(counts)
        assert res.layers["n_records"][r, c] == counts.sum()
    # a single-species cell has H = 0
    sizes = kept.groupby(["r", "c"]).taxon_species_name.nunique()
    r, c = sizes[sizes == 1].index[0]
    assert res.layers["shannon_raw"][r, c] == 0.0


def test_inat_smoothing_equals_scipy(inat):
    _, res = inat
    mask = get_grid(G).mask()
    for name in ("shannon", "richness"):
        raw = np.where(mask, np.nan_to_num(res.layers[f"{name}_raw"]), 0.0)
        expected = ndimage.gaussian_filter(raw, 2.0, mode="constant", cval=0.0, truncate=4.0)
        assert np.allclose(res.layers[name][mask], expected[mask], atol=1e-5)
        assert np.isnan(res.layers[name][~mask]).all()


def test_neon_abundance_weighted_shannon():
    path = shared_path("data", "neon_breeding_birds", "neon_birds_point_counts.csv.gz")
    opts = ReadOptions(filters=ObservationFilter(rank="species"), use_abundance=True)
    res = compute_diversity([path], get_grid(G), DiversitySettings(sigma=0), opts)
    df = pd.read_csv(path)
    kept, _, _ = _pandas_cells(df[df.taxon_rank == "species"])
    assert res.counts["records_kept"] == len(kept)
    w = kept.groupby(["r", "c", "scientific_name"]).value.sum()
    for (r, c), sub in list(w.groupby(level=[0, 1]))[:5]:
        p = sub.to_numpy() / sub.sum()
        assert res.layers["shannon_raw"][r, c] == pytest.approx(-(p * np.log(p)).sum(), rel=1e-5)
        assert res.layers["shannon"][r, c] == res.layers["shannon_raw"][r, c]  # sigma 0 = none


def test_compaction_does_not_change_results():
    t = synthetic_records(30000, n_species=200, seed=9)
    lat, lon = t.column("latitude").to_numpy(), t.column("longitude").to_numpy()
    sp = t.column("scientific_name").chunk(0).indices.to_numpy().astype(np.int32)
    chunks = [ObservationChunk(lat[i:i + 1000], lon[i:i + 1000], sp[i:i + 1000]) for i in range(0, 30000, 1000)]
    grid = get_grid(G)
    a = diversity_from_chunks(chunks, grid)
    from geoprom3e.maps.diversity import DiversityAccumulator

    acc = DiversityAccumulator(grid, compact_every=2500)
    for ch in chunks:
        acc.add(ch)
    b = acc.raw_layers(False)
    for k in b:
        assert np.array_equal(a.layers[k], b[k], equal_nan=True)


def test_nothing_inside_the_grid(tmp_path):
    p = tmp_path / "europe.csv"
    p.write_text("latitude,longitude,species\n48.8,2.3,A a\n52.5,13.4,B b\n")
    with pytest.raises(ObservationError, match=r"none of the 2 records .* records span lat 48.800..52.500"):
        compute_diversity([p], get_grid(G))


def test_grid_too_dense_for_memory(tmp_path):
    p = write_records(synthetic_records(10, seed=1), tmp_path / "o.csv")
    huge = GridSpec("huge", "EPSG:4326", (-125, 24.5, -66.5, 49.5), (40_000, 50_000))
    with pytest.raises(GridError, match=r"40,000 × 50,000 = 2,000,000,000 cells.*coarser --res"):
        compute_diversity([p], huge)


def test_settings_and_attrs():
    with pytest.raises(ConfigError, match="--sigma"):
        DiversitySettings(sigma=float("nan"))
    with pytest.raises(ConfigError, match="--smoothing 'gauss'"):
        DiversitySettings(smoothing="gauss")
    attrs = diversity_attrs(DiversitySettings(), get_grid(G), False)
    assert attrs["sigma_units"] == "cells" and "anisotropic" in attrs["sigma_note"]
    assert "sigma_note" not in diversity_attrs(DiversitySettings(), get_grid("usa-5km-albers"), False)


@pytest.mark.slow
def test_dense_albers_grid_end_to_end(tmp_path):
    """usa-1km-albers (13.4M cells): the writers stay within time and memory on the densest preset."""
    import time

    import rasterio
    from rio_cogeo.cogeo import cog_validate

    from geoprom3e.products.diversity import write_diversity_map

    path = shared_path("data", "inat_butterflies_western_us", "iNat_utah.csv")
    t = time.perf_counter()
    run = write_diversity_map([path], tmp_path, get_grid("usa-1km-albers"))
    assert time.perf_counter() - t < 120
    assert cog_validate(str(run.outputs.geotiff))[0]
    with rasterio.open(run.outputs.geotiff) as ds:
        assert ds.crs.to_epsg() == 5070 and ds.shape == (2910, 4620)
        assert np.nansum(ds.read(5, masked=True)) == run.result.counts["records_kept"]
