"""The re-implementation reproduces the published ProM3E implementation's outputs (shared fixture)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from geoprom3e.model import ProM3E

ATOL = 1e-5


@pytest.fixture(scope="module")
def reference(prom3e_fixture_dir):
    meta = json.loads((prom3e_fixture_dir / "meta.json").read_text())
    return meta, load_file(str(prom3e_fixture_dir / "reference_outputs.safetensors"))


@pytest.mark.parametrize("filename", ["prom3e_weights.safetensors", "prom3e_lightning.ckpt"])
@pytest.mark.parametrize("return_hidden", [True, False], ids=["full-path", "fast-path"])
def test_reproduces_reference_outputs(prom3e_fixture_dir, reference, filename, return_hidden):
    meta, ref = reference
    model = ProM3E.from_checkpoint(prom3e_fixture_dir / filename)
    assert model.config.embed_dim == 128 and model.config.depth == 2
    x = ref["inputs"]
    assert meta["modality_order"] == ["image", "sat", "loc", "env", "text", "audio"]
    for visible in meta["visible_sets"]:
        tag = "_".join(map(str, visible))
        out = model.infer(x, visible, n_samples=0, return_hidden=return_hidden)
        torch.testing.assert_close(out.mu, ref[f"mu__{tag}"], atol=ATOL, rtol=0)
        torch.testing.assert_close(out.logvar, ref[f"logvar__{tag}"], atol=ATOL, rtol=0)
        torch.testing.assert_close(out.recon, ref[f"recon_from_mu__{tag}"], atol=ATOL, rtol=0)
        # ‖σ‖₁ sums E = 128 positive terms of ~1: compare relative to its size (float32 sum rounding).
        torch.testing.assert_close(out.sigma_l1, ref[f"sigma_l1__{tag}"], atol=ATOL, rtol=1e-6)
        if return_hidden:
            torch.testing.assert_close(out.hidden, ref[f"hidden__{tag}"], atol=ATOL, rtol=0)
            assert out.hidden_mask.all()


def test_names_and_indices_and_order(prom3e_fixture_dir, reference):
    _, ref = reference
    model = ProM3E.from_checkpoint(prom3e_fixture_dir)  # folder: config.json + the safetensors file
    out = model.infer(ref["inputs"], ["env", "sat"], n_samples=0, return_hidden=True)
    torch.testing.assert_close(out.hidden, ref["hidden__3_1"], atol=ATOL, rtol=0)
    # feeding sat then env changes the token order of `hidden`, not the (permutation-invariant) latent
    swapped = model.infer(ref["inputs"], [1, 3], n_samples=0, return_hidden=True)
    torch.testing.assert_close(swapped.mu, ref["mu__3_1"], atol=ATOL, rtol=0)
    assert not torch.allclose(swapped.hidden[:, 6], ref["hidden__3_1"][:, 6], atol=1e-3)


def test_config_from_shapes_when_no_config_json(tmp_path, prom3e_fixture_dir, reference, caplog):
    _, ref = reference
    shutil.copy(prom3e_fixture_dir / "prom3e_lightning.ckpt", tmp_path / "model.ckpt")
    with caplog.at_level("WARNING"):
        model = ProM3E.from_checkpoint(tmp_path / "model.ckpt")
    assert "heads assumed to be 8" in caplog.text
    assert (model.config.embed_dim, model.config.depth, model.config.mlp_dim) == (128, 2, 256)
    out = model.infer(ref["inputs"], [1, 2, 3], n_samples=0)
    torch.testing.assert_close(out.mu, ref["mu__1_2_3"], atol=ATOL, rtol=0)


def test_hyper_parameters_stored_in_lightning_checkpoint(tmp_path, prom3e_fixture_dir):
    ck = torch.load(prom3e_fixture_dir / "prom3e_lightning.ckpt", weights_only=True)
    cfg = json.loads((prom3e_fixture_dir / "config.json").read_text())
    ck["hyper_parameters"] = {**cfg, "heads": 4, "lr": 1e-4}
    torch.save(ck, tmp_path / "hp.ckpt")
    model = ProM3E.from_checkpoint(tmp_path / "hp.ckpt")
    assert model.config.heads == 4  # read from the checkpoint, not the default 8
