import numpy as np
import pandas as pd
import pytest
import torch

from geoprom3e.encoders import encode_batches, get_encoder, validate_latlon
from geoprom3e.encoders.loc import GeoCLIPLocationEncoder, geoclip_wheel_weights
from geoprom3e.errors import InputError


@pytest.fixture(scope="module")
def real_loc():
    if geoclip_wheel_weights() is None:
        pytest.skip("geoclip wheel not installed: `pip install --no-deps geoclip==1.3.0` (.ci/setup does this)")
    return get_encoder("loc", device="cpu")


def test_default_loc_is_geoclip_wheel_and_says_so(real_loc):
    assert real_loc.info.source == "geoclip" and not real_loc.info.in_prom3e_space
    assert "NOT" in real_loc.info.note and "ProM3E" in real_loc.info.note


def test_reimplementation_matches_geoclip_package(real_loc):
    pytest.importorskip("geopy")
    from geoclip.model.location_encoder import LocationEncoder

    pts = torch.tensor([[38.9, -77.0], [34.05, -118.24], [-33.9, 151.2], [64.1, -21.9]])
    ref = LocationEncoder().eval()
    with torch.no_grad():
        want = torch.nn.functional.normalize(ref(pts), dim=-1)
    assert torch.allclose(real_loc.embed(pts.numpy()), want, atol=1e-5)


def test_nearby_sites_more_similar_than_far(real_loc):
    from tests.conftest import shared_path

    df = pd.read_csv(shared_path("data", "neon_breeding_birds", "neon_sites.csv"))
    pts = df[["Latitude", "Longitude"]].to_numpy(np.float64)
    e = encode_batches(real_loc, pts, batch_size=16).embeddings
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    sim = e @ e.T
    lat, lon = np.radians(pts[:, 0]), np.radians(pts[:, 1])
    cosd = np.sin(lat)[:, None] * np.sin(lat)[None] + np.cos(lat)[:, None] * np.cos(lat)[None] * np.cos(
        lon[:, None] - lon[None])
    km = np.arccos(np.clip(cosd, -1, 1)) * 6371
    iu = np.triu_indices(len(pts), 1)
    near, far = km[iu] < 300, km[iu] > 2000
    assert near.sum() > 20 and sim[iu][near].mean() > sim[iu][far].mean() + 0.2
    # latitude first: feeding (lon, lat) gives different embeddings (would be garbage, not an error, in range)
    swapped = pts[np.abs(pts[:, 1]) <= 90][:, ::-1]
    if len(swapped):
        assert not np.allclose(real_loc.embed(swapped), real_loc.embed(swapped[:, ::-1].copy()), atol=1e-3)


def test_small_weights_with_prefix_load(small_weights):
    enc = get_encoder("loc", weights=small_weights["loc"], device="cpu")
    assert isinstance(enc.module, GeoCLIPLocationEncoder) and enc.module.LocEnc0.capsule[1].out_features == 64
    out = enc.embed([[40.0, -100.0], [41.0, -101.0]])
    assert out.shape == (2, 512) and out.dtype == torch.float32


def test_latlon_validation_names_rows():
    with pytest.raises(InputError, match=r"rows 1, 3"):
        validate_latlon([[1, 2], [np.nan, 3], [4, 5], [6, np.inf]])
    with pytest.raises(InputError, match=r"2 \(lat=95\)"):
        validate_latlon([[1, 2], [3, 4], [95, 0]])
    with pytest.raises(InputError, match="latitude first"):
        validate_latlon([[-118.2, 34.0]])
    with pytest.raises(InputError, match=r"1 \(lon=190\)"):
        validate_latlon([[0, 0], [0, 190]])
    with pytest.raises(InputError, match=r"\[N, 2\]"):
        validate_latlon(np.zeros((3, 3)))
    assert validate_latlon([10, 20]).shape == (1, 2)
