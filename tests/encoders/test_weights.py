import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from geoprom3e.cli import main
from geoprom3e.encoders import find_weights, get_encoder, resolve_weights, verify_weights
from geoprom3e.errors import ConfigError, WeightsNotFoundError
from geoprom3e.testing.encoders import make_hf_cache


def test_plain_weights_dir_layout(small_weights, tmp_path):
    wdir = tmp_path / "w"
    shutil.copytree(small_weights["sat"], wdir / "MVRL" / "ecosat")
    assert find_weights("MVRL/ecosat", wdir) == wdir / "MVRL" / "ecosat"
    enc = get_encoder("sat", weights_dir=wdir, device="cpu")
    assert enc.info.weights == "MVRL/ecosat"
    assert not enc.info.in_prom3e_space  # the factory marks random weights


def test_hf_cache_layout_offline(small_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snap = make_hf_cache(tmp_path / "hub", "MVRL/ecosat", small_weights["sat"])
    repo = tmp_path / "hub" / "models--MVRL--ecosat"
    assert (repo / "refs" / "main").read_text() == snap.name
    assert (snap / "config.json").is_symlink()
    assert resolve_weights("MVRL/ecosat", weights_dir=tmp_path / "hub") == snap
    a = get_encoder("sat", weights_dir=tmp_path / "hub", device="cpu")
    b = get_encoder("sat", weights=small_weights["sat"], device="cpu")
    for (ka, va), (kb, vb) in zip(a.module.state_dict().items(), b.module.state_dict().items()):
        assert ka == kb and (va == vb).all()


def test_env_var_weights_dir(small_weights, tmp_path, monkeypatch):
    shutil.copytree(small_weights["env"], tmp_path / "MVRL" / "ecoclim")
    monkeypatch.setenv("GEOPROM3E_WEIGHTS_DIR", str(tmp_path))
    assert resolve_weights("MVRL/ecoclim") == tmp_path / "MVRL" / "ecoclim"


def test_missing_weights_one_line(tmp_path):
    with pytest.raises(WeightsNotFoundError) as ei:
        get_encoder("sat", weights_dir=tmp_path, device="cpu")
    msg = str(ei.value)
    assert "\n" not in msg and "MVRL/ecosat" in msg and "geoprom3e weights download" in msg
    assert str(tmp_path / "MVRL" / "ecosat") in msg


def test_bad_path_and_unknown_id(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        resolve_weights(tmp_path / "nope")
    with pytest.raises(ConfigError, match="MVRL/ecosat"):
        from geoprom3e.encoders.weights import download_many

        download_many(["MVRL/not-a-tower"])


def test_download_offline_fails_with_id(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsNotFoundError, match="cannot download MVRL/ecosat"):
        resolve_weights("MVRL/ecosat", weights_dir=tmp_path, download=True)


def test_verify_ok_and_corrupt(small_weights, tmp_path):
    snap = make_hf_cache(tmp_path / "hub", "MVRL/ecosat", small_weights["sat"])
    rep = verify_weights("MVRL/ecosat", weights_dir=tmp_path / "hub")
    assert rep.ok and "model.safetensors" in rep.checked
    blob = (snap / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[-10] ^= 0xFF  # flip a byte in the tensor data: header still parses, sha256 no longer matches
    blob.write_bytes(bytes(data))
    rep = verify_weights("MVRL/ecosat", weights_dir=tmp_path / "hub")
    assert not rep.ok and any("sha256" in p for p in rep.problems)
    bad = tmp_path / "badfolder"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    rep = verify_weights(bad)
    assert not rep.ok and "unreadable" in rep.problems[0]


def test_cli_weights(small_weights, tmp_path):
    shutil.copytree(small_weights["sat"], tmp_path / "MVRL" / "ecosat")
    r = CliRunner().invoke(main, ["weights", "list", "--weights-dir", str(tmp_path)])
    assert r.exit_code == 0 and str(tmp_path / "MVRL" / "ecosat") in r.output
    assert "MVRL/ecogeo" in r.output and "missing" in r.output
    r = CliRunner().invoke(main, ["weights", "path", "MVRL/ecosat", "--weights-dir", str(tmp_path)])
    assert r.exit_code == 0 and r.output.strip() == str(tmp_path / "MVRL" / "ecosat")
    r = CliRunner().invoke(main, ["weights", "verify", "MVRL/ecosat", "--weights-dir", str(tmp_path)])
    assert r.exit_code == 0 and "ok" in r.output
    r = CliRunner().invoke(main, ["weights", "path", "MVRL/ecoclim", "--weights-dir", str(tmp_path)])
    assert r.exit_code == 2 and "MVRL/ecoclim" in r.output
    r = CliRunner().invoke(main, ["weights", "verify", "MVRL/ecoclim", "--weights-dir", str(tmp_path)])
    assert r.exit_code == 2 and "failed verification" in r.output
    r = CliRunner().invoke(main, ["weights", "download", "MVRL/nope"])
    assert r.exit_code == 2 and "unknown weights id" in r.output
    assert Path(tmp_path / "MVRL" / "ecosat" / "config.json").is_file()
