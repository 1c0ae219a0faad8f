import io

import numpy as np
import pytest
from PIL import Image

from geoprom3e.encoders import load_image
from geoprom3e.errors import InputError


def _gradient(w=64, h=48):
    x = np.linspace(0, 255, w, dtype=np.uint8)
    return np.stack([np.tile(x, (h, 1)), np.tile(x[::-1], (h, 1)), np.full((h, w), 128, np.uint8)], axis=-1)


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp"), ("TIFF", ".tif")])
def test_formats_decode_to_rgb(tmp_path, fmt, suffix):
    p = tmp_path / f"a{suffix}"
    Image.fromarray(_gradient()).save(p, format=fmt)
    img = load_image(p, min_side=None)
    assert img.mode == "RGB" and img.size == (64, 48)
    a = np.asarray(img).astype(int)
    assert abs(a[:, -1, 0].mean() - 255) < 12 and abs(a[:, 0, 0].mean()) < 12


def test_exif_orientation_applied(tmp_path):
    p = tmp_path / "rot.jpg"
    im = Image.fromarray(_gradient(64, 48))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    im.save(p, exif=exif)
    assert load_image(p, min_side=None).size == (48, 64)


def test_modes_to_rgb(tmp_path):
    cmyk = Image.new("CMYK", (10, 10), (0, 255, 255, 0))  # pure red in CMYK
    assert load_image(cmyk).getpixel((0, 0))[0] > 200
    p = tmp_path / "cmyk.jpg"
    cmyk.save(p)
    assert load_image(p).mode == "RGB"
    gray = Image.fromarray(np.full((8, 8), 77, np.uint8), mode="L")
    assert load_image(gray).getpixel((0, 0)) == (77, 77, 77)
    g16 = Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    px = np.asarray(load_image(g16))
    assert px.dtype == np.uint8 and px.max() == 255 and px.min() == 0
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # fully transparent black → white background
    p = tmp_path / "alpha.png"
    rgba.save(p)
    assert load_image(p).getpixel((0, 0)) == (255, 255, 255)
    pal = Image.new("P", (4, 4))
    assert load_image(pal).mode == "RGB"


def test_large_jpeg_is_downscaled_in_the_decoder(tmp_path):
    p = tmp_path / "big.jpg"
    Image.fromarray(np.zeros((4000, 6000, 3), np.uint8)).save(p, quality=50)
    img = load_image(p, min_side=256)
    assert min(img.size) >= 256 and min(img.size) < 600  # 1/8 decode (500 px), not 4000
    assert img.size[0] / img.size[1] == pytest.approx(1.5, rel=0.02)


def test_corrupt_and_missing_files_name_themselves(tmp_path):
    bad = tmp_path / "broken_photo.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(InputError, match="broken_photo.jpg"):
        load_image(bad)
    buf = io.BytesIO()
    Image.fromarray(_gradient(200, 200)).save(buf, format="PNG")
    trunc = tmp_path / "truncated.png"
    trunc.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InputError, match="truncated.png"):
        load_image(trunc)
    with pytest.raises(InputError, match="nothere.jpg"):
        load_image(tmp_path / "nothere.jpg")


def test_shared_photos_load(photos):
    for p in photos:
        img = load_image(p)
        assert img.mode == "RGB" and min(img.size) >= 150
