"""Every bad input named in the foundation issue fails with one clear line (library and CLI)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from geoprom3e.cli import main
from geoprom3e.errors import CheckpointError, ConfigError, GeoProm3eError, InputError
from geoprom3e.model import ProM3E, ProM3EConfig

SMALL = ProM3EConfig(embed_dim=32, mlp_dim=64, depth=1, heads=4)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ProM3E(SMALL).eval()


def _x(b=4):
    return F.normalize(torch.randn(b, 6, 512), dim=-1)


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.zeros(4, 6, 256), r"shape \(4, 6, 256\).*\[batch, 6, 512\]"),
        (torch.zeros(4, 512), r"shape \(4, 512\)"),
        (torch.zeros(4, 5, 512), r"shape \(4, 5, 512\)"),
        (torch.zeros(4, 6, 512, dtype=torch.int64), r"dtype torch.int64.*floating"),
        (np.zeros((4, 6, 512), dtype=np.int32), r"dtype int32.*float"),
        ([[0.0] * 512] * 6, r"torch.Tensor or numpy array"),
    ],
)
def test_bad_embeddings(model, x, match):
    with pytest.raises(InputError, match=match):
        model.infer(x, ["sat"])


def test_nan_rows_are_named(model):
    x = _x(6)
    x[2, 1, 0] = float("nan")
    x[5, 2, 7] = float("inf")
    with pytest.raises(InputError, match=r"\(loc, sat\) at rows \[2, 5\]") as exc:
        model.infer(x, ["sat", "loc"])
    assert "\n" not in str(exc.value)
    x[:, 0] = float("nan")  # an invisible modality may hold NaN
    x[2, 1, 0] = x[5, 2, 7] = 0.0
    assert torch.isfinite(model.infer(x, ["sat", "loc"]).mu).all()


@pytest.mark.parametrize(
    "visible, err, match",
    [
        ([6], ConfigError, r"modality index 6 is out of range: use 0\.\.5"),
        ([-1], ConfigError, r"index -1 is out of range"),
        (["satellite-ish"], ConfigError, r"unknown modality 'satellite-ish': use one of image, sat"),
        ([], ConfigError, r"visible set is empty"),
        ("", ConfigError, r"visible set is empty"),
        (["sat", "sat"], ConfigError, r"repeats a modality"),
        (torch.zeros(4, 6, dtype=torch.bool), InputError, r"rows \[0, 1, 2, 3\].*no visible modality"),
        (torch.ones(3, 6, dtype=torch.bool), InputError, r"visible mask has shape \(3, 6\): expected \[4, 6\]"),
        (torch.ones(4, 6), InputError, r"must be bool"),
    ],
)
def test_bad_visible(model, visible, err, match):
    with pytest.raises(err, match=match):
        model.infer(_x(4), visible)


def test_bad_decode_and_samples(model):
    with pytest.raises(ConfigError, match="unknown modality 'imgae'"):
        model.infer(_x(), ["sat"], decode=["imgae"])
    with pytest.raises(ConfigError, match=r"n_samples = -1"):
        model.infer(_x(), ["sat"], n_samples=-1)


def test_checkpoint_shape_mismatch_lists_keys_and_implied_config(tmp_path, model):
    model.save_checkpoint(tmp_path / "c")
    (tmp_path / "c" / "config.json").write_text(ProM3EConfig(embed_dim=64, mlp_dim=64, heads=4).to_json())
    pattern = r"wrong shape .*cls_tokens \(2, 32\) != \(2, 64\).*imply .*'embed_dim': 32"
    with pytest.raises(CheckpointError, match=pattern):
        ProM3E.from_checkpoint(tmp_path / "c")


def test_checkpoint_missing_keys(tmp_path, model):
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("decoders.5")}
    torch.save(state, tmp_path / "w.pt")
    (tmp_path / "config.json").write_text(model.config.to_json())
    with pytest.raises(CheckpointError, match=r"missing 6 \(e\.g\. decoders\.5\.net\.0\.weight"):
        ProM3E.from_checkpoint(tmp_path / "w.pt")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        ProM3E.from_checkpoint(tmp_path / "notes.txt")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        ProM3E.from_checkpoint(tmp_path / "bad.safetensors")
    torch.save({"a": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no ProM3E weights"):
        ProM3E.from_checkpoint(tmp_path / "other.pt")


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_needing_code_is_refused(tmp_path, model, capsys):
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"state_dict": model.state_dict(), "x": Evil()}, f)
    with pytest.raises(CheckpointError, match="needs arbitrary code to unpickle.*refusing"):
        ProM3E.from_checkpoint(tmp_path / "evil.pt")
    torch.save({"state_dict": model.state_dict(), "x": Evil()}, tmp_path / "evil2.ckpt")
    with pytest.raises(CheckpointError, match="refusing"):
        ProM3E.from_checkpoint(tmp_path / "evil2.ckpt")
    assert "must never run" not in capsys.readouterr().out


def test_missing_path():
    with pytest.raises(CheckpointError, match="does not exist"):
        ProM3E.from_checkpoint("/nowhere/model.safetensors")


def test_from_pretrained_offline_names_repo_and_local_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(GeoProm3eError, match=r"'MVRL/ProM3E'.*local path") as exc:
        ProM3E.from_pretrained("MVRL/ProM3E", cache_dir=tmp_path)
    assert "\n" not in str(exc.value)


# ------------------------------------------------------------------ CLI: one line, exit 2, nothing written
@pytest.fixture()
def ckpt(tmp_path, model):
    return model.save_checkpoint(tmp_path / "ckpt")


@pytest.mark.parametrize(
    "array, visible, match",
    [
        (np.zeros((3, 6, 128), np.float32), "sat", "shape (3, 6, 128)"),
        (np.zeros((3, 6, 512), np.int16), "sat", "dtype int16"),
        (np.zeros((3, 6, 512), np.float32), "sat,bogus", "unknown modality 'bogus'"),
        (np.zeros((3, 6, 512), np.float32), "9", "modality index 9"),
        (np.full((3, 6, 512), np.nan, np.float32), "loc", "rows [0, 1, 2]"),
    ],
)
def test_cli_infer_bad_input(tmp_path, ckpt, array, visible, match):
    np.save(tmp_path / "emb.npy", array)
    out = tmp_path / "out.npz"
    res = CliRunner().invoke(main, ["model", "infer", str(ckpt), str(tmp_path / "emb.npy"), "--visible", visible,
                                    "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert match in res.output
    assert len(res.output.strip().splitlines()) == 1 and res.output.startswith("error: ")
    assert not out.exists() and not list(tmp_path.glob(".out.npz*"))


def test_cli_infer_writes_and_refuses_overwrite(tmp_path, ckpt, model):
    x = _x(5).numpy()
    np.save(tmp_path / "emb.npy", x)
    out = tmp_path / "out.npz"
    args = ["model", "infer", str(ckpt), str(tmp_path / "emb.npy"), "--visible", "sat,loc", "--decode", "image",
            "--n-samples", "0", "--out", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    got = np.load(out)
    want = model.infer(x, ["sat", "loc"], n_samples=0, decode=["image"])
    np.testing.assert_allclose(got["recon"], want.recon.numpy(), atol=1e-6)
    assert list(got["decoded"]) == ["image"]
    before = out.read_bytes()
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "--overwrite" in res.output
    assert out.read_bytes() == before


def test_cli_model_info_and_errors(tmp_path, ckpt):
    res = CliRunner().invoke(main, ["model", "info", str(ckpt)])
    assert res.exit_code == 0 and "load check   ok" in res.output and "embed_dim            32" in res.output
    res = CliRunner().invoke(main, ["model", "info", str(tmp_path / "missing.ckpt")])
    assert res.exit_code == 2 and res.output.startswith("error: checkpoint") and "does not exist" in res.output
    res = CliRunner().invoke(main, ["-v", "model", "info", str(tmp_path / "missing.ckpt")])
    assert res.exit_code == 2 and "Traceback" in res.output


def test_cli_version_and_help():
    res = CliRunner().invoke(main, ["--version"])
    assert res.exit_code == 0 and "geoprom3e, version" in res.output
    for args in (["--help"], ["model", "--help"], ["model", "info", "--help"], ["model", "infer", "--help"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0 and "Usage:" in res.output
