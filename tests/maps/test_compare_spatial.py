"""``compare`` states n, the effective n, both p-values and Moran's I (real GeoTIFFs written and read by GDAL)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import ndimage

from geoprom3e.cli import main
from geoprom3e.errors import InputError
from geoprom3e.grid import get_grid
from geoprom3e.io import write_maps
from geoprom3e.maps.compare import compare_rasters


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp")
    grid = get_grid("usa-250x500").subset((-112.0, 33.0, -104.0, 40.0))
    mask = grid.mask()
    rng = np.random.default_rng(7)
    paths = []
    for name in ("a", "b"):
        v = ndimage.gaussian_filter(rng.normal(size=grid.shape), 4.0).astype(np.float32)
        v[~mask] = np.nan
        paths.append(write_maps(out / name, grid, {"value": v}, png=False).geotiff)
    return grid, paths


def test_compare_reports_effective_n_and_both_p_values(maps):
    grid, (a, b) = maps
    res = compare_rasters(a, b)
    d = res.to_dict()
    assert d["n_cells"] == int(grid.mask().sum()) > 3000
    assert 2 < d["effective_n"] < 0.1 * d["n_cells"]
    assert d["moran_i_a"] > 0.9 and d["moran_i_b"] > 0.9 and d["contiguity"] == "rook"
    assert d["pearson_p_dutilleul"] > d["pearson_p"] and d["spearman_p_dutilleul"] > d["spearman_p"]
    assert 0 <= d["pearson_p_dutilleul"] <= 1 and "effective_n" in d["note"]
    queen = compare_rasters(a, b, contiguity="queen")
    assert queen.moran_i_a != res.moran_i_a and queen.effective_n == res.effective_n
    with pytest.raises(InputError, match="contiguity 'bishop' is unknown: choose one of rook, queen"):
        compare_rasters(a, b, contiguity="bishop")


def test_compare_cli_json(maps, tmp_path):
    _, (a, b) = maps
    res = CliRunner().invoke(main, ["compare", str(a), str(b), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "compare.json").read_text())
    for key in ("n_cells", "effective_n", "pearson_p", "pearson_p_dutilleul", "moran_i_a", "moran_i_b"):
        assert key in doc and doc[key] == doc[key], key  # present and not NaN
