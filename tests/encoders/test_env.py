import numpy as np
import pytest
import rasterio

from geoprom3e.encoders import COVARIATES, get_encoder, open_covariates, scale_covariates
from geoprom3e.encoders.env import CovariateStats
from geoprom3e.errors import InputError
from geoprom3e.testing.encoders import write_covariate_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return write_covariate_stack(tmp_path_factory.mktemp("cov") / "wc_stack.tif")


def test_sampling_matches_rasterio(stack):
    rasters = open_covariates(stack)
    pts = np.array([[40.0, -100.0], [30.1, -90.3], [49.4, -124.9]])
    got = rasters.sample(pts)
    with rasterio.open(stack) as ds:
        want = np.array(list(ds.sample([(lon, lat) for lat, lon in pts])), dtype=np.float32)
    assert got.shape == (3, 20)
    np.testing.assert_allclose(got[:2], want[:2], rtol=1e-6)
    assert np.isnan(got[2]).all()  # the NaN corner (nodata)


def test_zscore_nan_to_zero():
    stats = CovariateStats(tuple([10.0] * 20), tuple([2.0] * 20))
    raw = np.full((2, 20), 14.0, np.float32)
    raw[1, 3] = np.nan
    z = scale_covariates(raw, stats)
    assert z[0, 0] == 2.0 and z[1, 3] == 0.0


def test_env_encoder_on_points(small_weights, stack):
    enc = get_encoder("env", weights=small_weights["env"], covariates=stack, device="cpu")
    pts = np.array([[40.0, -100.0], [35.0, -80.0], [49.4, -124.9]])
    out = enc.embed(pts)
    assert out.shape == (3, 512)
    x = enc.preprocess(pts)
    assert x.shape == (3, 20) and float(x[2].abs().sum()) == 0.0  # nodata → 0 after scaling
    assert abs(float(x[:2].mean())) < 3


def test_worldclim_folder_and_missing_bands(tmp_path, stack):
    with rasterio.open(stack) as src:
        prof = src.profile | {"count": 1}
        data = src.read()
    folder = tmp_path / "wc"
    folder.mkdir()
    names = ["wc2.1_5m_elev.tif"] + [f"wc2.1_5m_bio_{i}.tif" for i in range(1, 20)]
    for i, n in enumerate(names):
        with rasterio.open(folder / n, "w", **prof) as ds:
            ds.write(data[i : i + 1])
    r = open_covariates(folder)
    assert [src for src, _ in r.sources][0].endswith("wc2.1_5m_elev.tif") and r.sources[10][0].endswith("bio_10.tif")
    np.testing.assert_allclose(r.sample([[40.0, -100.0]]), open_covariates(stack).sample([[40.0, -100.0]]))
    (folder / "wc2.1_5m_bio_7.tif").unlink()
    (folder / "wc2.1_5m_bio_12.tif").unlink()
    with pytest.raises(InputError, match="lack bio7, bio12"):
        open_covariates(folder)
    short = write_covariate_stack(tmp_path / "five.tif", bands=5, named=False)
    with pytest.raises(InputError, match="5 band"):
        open_covariates(short)


def test_other_crs_refused(tmp_path):
    p = write_covariate_stack(tmp_path / "merc.tif", bbox=(-1e6, -1e6, 1e6, 1e6), res=1e5, crs="EPSG:3857")
    with pytest.raises(InputError, match="EPSG:3857.*gdalwarp"):
        open_covariates(p)


def test_scaled_covariates_pass_through_and_no_rasters_error(small_weights):
    enc = get_encoder("env", weights=small_weights["env"], device="cpu")
    assert enc.embed(np.zeros((2, len(COVARIATES)))).shape == (2, 512)
    with pytest.raises(InputError, match="covariates=PATH"):
        enc.embed(np.array([[40.0, -100.0]]))
