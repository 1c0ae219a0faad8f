import numpy as np
import pytest
import torch
from click.testing import CliRunner

from geoprom3e.cli import main
from geoprom3e.encoders import encode_batches, get_encoder
from geoprom3e.errors import InputError


@pytest.fixture(scope="module")
def img(small_weights):
    return get_encoder("image", weights=small_weights["clip"], device="cpu")


def test_workers_match_in_process_and_failures_are_recorded(img, photos, tmp_path):
    bad = tmp_path / "corrupt_photo.jpg"
    bad.write_bytes(b"garbage")
    items = [str(p) for p in photos] + [str(bad)] + [str(photos[0])]
    seen = []
    r0 = encode_batches(img, items, batch_size=3, num_workers=0, progress=lambda e: seen.append((e.advance, e.total)))
    r2 = encode_batches(img, items, batch_size=3, num_workers=2)
    assert sum(a for a, _ in seen) == len(items) and seen[-1][1] == len(items)
    assert [i for i, _ in r0.failed] == [len(photos)] and "corrupt_photo.jpg" in r0.failed[0][1]
    assert np.isnan(r0.embeddings[len(photos)]).all() and r0.ok.sum() == len(items) - 1
    np.testing.assert_allclose(r0.embeddings[r0.ok], r2.embeddings[r2.ok], atol=1e-5)
    np.testing.assert_allclose(r0.embeddings[-1], r0.embeddings[0], atol=1e-5)
    with pytest.raises(InputError, match="corrupt_photo.jpg"):
        encode_batches(img, items, batch_size=3, on_error="raise")


def test_loc_batches_validate_all_rows_first(small_weights):
    enc = get_encoder("loc", weights=small_weights["loc"], device="cpu")
    pts = np.array([[40.0, -100.0]] * 10)
    pts[7] = [np.nan, 1]
    with pytest.raises(InputError, match="rows 7"):
        encode_batches(enc, pts, batch_size=3)
    pts[7] = [41, -99]
    r = encode_batches(enc, pts, batch_size=3)
    np.testing.assert_allclose(r.embeddings, enc.embed(pts).numpy(), atol=1e-6)


def test_compile_flag_builds(small_weights):
    enc = get_encoder("loc", weights=small_weights["loc"], device="cpu", compile=True)
    assert enc._compiled is not None and enc.net is not enc.module


def test_cli_encode(small_weights, photos, tmp_path):
    out = tmp_path / "photos.npz"
    r = CliRunner().invoke(main, ["encode", "image", *map(str, photos), "--weights", str(small_weights["clip"]),
                                  "--out", str(out), "--batch-size", "4"])
    assert r.exit_code == 0, r.output
    z = np.load(out)
    assert z["embeddings"].shape == (len(photos), 512) and "random weights" in str(z["meta"])
    csv = tmp_path / "pts.csv"
    csv.write_text("name,latitude,longitude\na,38.9,-77.0\nb,34.05,-118.24\n")
    r = CliRunner().invoke(main, ["encode", "loc", str(csv), "--weights", str(small_weights["loc"]),
                                  "--out", str(tmp_path / "loc.npz")])
    assert r.exit_code == 0 and np.load(tmp_path / "loc.npz")["embeddings"].shape == (2, 512)
    r = CliRunner().invoke(main, ["encode", "loc", "-118.2,34.0", "--weights", str(small_weights["loc"]),
                                  "--out", str(tmp_path / "x.npz")])
    assert r.exit_code == 2 and "latitude first" in r.output
    r = CliRunner().invoke(main, ["encode", "image", str(photos[0]), "--out", str(out),
                                  "--weights", str(small_weights["clip"])])
    assert r.exit_code == 2 and "--overwrite" in r.output
    assert torch.from_numpy(z["embeddings"]).norm(dim=1).allclose(torch.ones(len(photos)), atol=1e-5)


def test_cli_encode_unreadable_only_and_text_file(small_weights, tmp_path):
    bad = tmp_path / "not_a_photo.jpg"
    bad.write_text("hello")
    r = CliRunner().invoke(main, ["encode", "image", str(bad), "--weights", str(small_weights["clip"]),
                                  "--out", str(tmp_path / "bad.npz")])
    assert r.exit_code == 2 and "not_a_photo.jpg" in r.output and not (tmp_path / "bad.npz").exists()
    names = tmp_path / "names.txt"
    names.write_text("Sceloporus occidentalis\n\nSetophaga townsendi\n")
    r = CliRunner().invoke(main, ["encode", "text", f"@{names}", "--source", "hf-clip", "--weights",
                                  str(small_weights["clip"]), "--out", str(tmp_path / "t.npz")])
    assert r.exit_code == 0, r.output
    z = np.load(tmp_path / "t.npz")
    assert z["embeddings"].shape == (2, 512) and list(z["inputs"]) == ["Sceloporus occidentalis", "Setophaga townsendi"]
    r = CliRunner().invoke(main, ["encode", "smell", "x", "--out", str(tmp_path / "s.npz")])
    assert r.exit_code == 2 and "image" in r.output
