import numpy as np
import pytest
import rasterio
import torch

from geoprom3e.encoders import chip_to_rgb_uint8, get_encoder, read_chip
from geoprom3e.errors import InputError


@pytest.fixture(scope="module")
def sat(small_weights):
    return get_encoder("sat", weights=small_weights["sat"], device="cpu")


def test_shared_chips_encode(sat, chips):
    assert len(chips) >= 10
    with rasterio.open(chips[0]) as ds:
        assert ds.descriptions[:3] == ("TCI_R", "TCI_G", "TCI_B")
    out = sat.embed(chips[:4])
    assert out.shape == (4, 512) and torch.allclose(out.norm(dim=1), torch.ones(4), atol=1e-5)
    # a path and the same chip as an array give the same embedding; different chips differ
    arr = read_chip(chips[0])
    assert torch.allclose(sat.embed(arr), out[:1], atol=1e-6)
    assert not torch.allclose(out[0], out[1], atol=1e-3)
    batch = np.stack([read_chip(c) for c in chips[:2]])
    assert torch.allclose(sat.embed(batch), out[:2], atol=1e-5)


def test_preprocess_is_resize_256_crop_224_imagenet(sat):
    chip = np.full((3, 225, 225), 124, dtype=np.uint8)  # ≈ ImageNet mean red → ~0 after normalisation
    x = sat.preprocess(chip)
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.uint8  # workers ship uint8; normalised on the device
    x = sat.normalize_input(x)
    assert abs(float(x[0, 0].mean()) - (124 / 255 - 0.485) / 0.229) < 1e-3
    big = np.zeros((3, 512, 1024), np.uint8)
    big[:, :, 512:] = 255  # right half white: resize shorter side to 256, centre crop keeps the middle
    y = sat.preprocess(big)[0, 0].float()
    assert y[:, :100].mean() == 0 and y[:, -100:].mean() == 255


def test_reflectance_scaled_like_tci():
    refl = np.full((3, 4, 4), 1000.0)
    assert chip_to_rgb_uint8(refl)[0, 0, 0] == 128  # 1000 / 2000 * 255
    tci = np.full((4, 4, 3), 200.0)
    assert chip_to_rgb_uint8(tci)[0, 0, 0] == 200
    nan = np.full((3, 2, 2), np.nan)
    assert chip_to_rgb_uint8(nan).max() == 0
    with pytest.raises(InputError, match="RGB"):
        chip_to_rgb_uint8(np.zeros((5, 4, 7)))


def test_chip_with_too_few_bands(tmp_path):
    p = tmp_path / "one_band.tif"
    with rasterio.open(p, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8") as ds:
        ds.write(np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(InputError, match="one_band.tif"):
        read_chip(p)


def test_resize_on_device_matches_cpu_resize(small_weights, chips):
    from geoprom3e.encoders import encode_batches

    cpu = get_encoder("sat", weights=small_weights["sat"], device="cpu")
    dev = get_encoder("sat", weights=small_weights["sat"], device="cpu", resize_on_device=True)
    arrays = [read_chip(c) for c in chips[:3]] + [np.full((3, 300, 260), 90, np.uint8)]  # mixed native sizes
    assert dev.preprocess(arrays[:2]).shape == (2, 3, 225, 225)  # shipped native, uint8
    a = encode_batches(cpu, arrays, batch_size=4).embeddings
    b = encode_batches(dev, arrays, batch_size=4, num_workers=1).embeddings
    assert np.isfinite(b).all() and (a * b).sum(axis=1).min() > 0.99
