import numpy as np
import pytest
import torch

from geoprom3e.encoders import get_encoder
from geoprom3e.errors import InputError
from geoprom3e.testing.encoders import make_hf_cache


def test_hf_clip_image_and_text_without_open_clip(small_weights, photos):
    img = get_encoder("image", weights=small_weights["clip"], device="cpu")  # taxabind source, transformers folder
    out = img.embed(photos)
    assert out.shape == (len(photos), 512) and torch.allclose(out.norm(dim=1), torch.ones(len(photos)), atol=1e-5)
    assert torch.allclose(img.embed(photos[0]), out[:1], atol=1e-5)  # one at a time == batched
    txt = get_encoder("text", source="hf-clip", weights=small_weights["clip"], device="cpu")
    t = txt.embed(["Sceloporus occidentalis", "Setophaga townsendi"])
    assert t.shape == (2, 512) and not torch.allclose(t[0], t[1])
    with pytest.raises(InputError, match="empty"):
        txt.embed(["ok", "  "])


def test_vision_only_folder_serves_image_not_text(small_weights):
    from geoprom3e.errors import WeightsNotFoundError

    assert get_encoder("image", source="hf-clip", weights=small_weights["sat"]).embed(np.zeros((32, 32, 3), np.uint8)
                                                                                       ).shape == (1, 512)
    with pytest.raises(WeightsNotFoundError, match="CLIPModel"):
        get_encoder("text", source="hf-clip", weights=small_weights["sat"])


def test_open_clip_from_hf_cache_offline(open_clip_weights, photos, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_hf_cache(tmp_path / "hub", "MVRL/taxabind-vit-b-16", open_clip_weights)
    img = get_encoder("image", weights_dir=tmp_path / "hub", device="cpu")
    txt = get_encoder("text", weights_dir=tmp_path / "hub", device="cpu")
    assert type(img.module).__name__ == "_OpenClipImage"
    e = img.embed(photos)
    t = txt.embed(["Sceloporus occidentalis"])
    assert e.shape == (len(photos), 512) and t.shape == (1, 512)
    assert torch.allclose(e.norm(dim=1), torch.ones(len(photos)), atol=1e-5)
    # the production hf-hub: path of open_clip reads the same cache folder offline
    import open_clip

    model, _, pre = open_clip.create_model_and_transforms("hf-hub:MVRL/taxabind-vit-b-16",
                                                          cache_dir=str(tmp_path / "hub"))
    from geoprom3e.encoders import load_image

    with torch.no_grad():
        ref = torch.nn.functional.normalize(model.eval().encode_image(pre(load_image(photos[0]))[None]), dim=-1)
    assert torch.allclose(ref, e[:1], atol=1e-5)


def test_open_clip_missing_gives_install_hint(small_weights, monkeypatch, tmp_path):
    import builtins

    from geoprom3e.encoders.clip import import_open_clip
    from geoprom3e.errors import ConfigError

    real_import = builtins.__import__

    def no_open_clip(name, *a, **k):
        if name == "open_clip":
            raise ImportError("No module named 'open_clip'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_open_clip)
    with pytest.raises(ConfigError, match=r"geoprom3e\[clip\]"):
        import_open_clip()
