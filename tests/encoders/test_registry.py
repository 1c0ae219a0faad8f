import pytest

from geoprom3e.encoders import encoder_spec, get_encoder, list_encoders
from geoprom3e.errors import ConfigError
from geoprom3e.modalities import MODALITIES


def test_every_modality_has_a_taxabind_encoder():
    specs = list_encoders()
    assert {s.modality for s in specs if s.source == "taxabind"} == set(MODALITIES)
    assert [s.modality for s in specs] == sorted((s.modality for s in specs), key=MODALITIES.index)
    assert encoder_spec("sat").default_weights == "MVRL/ecosat"
    assert encoder_spec("location", "geoclip").modality == "loc"  # aliases work


def test_unknown_modality_lists_them():
    with pytest.raises(ConfigError) as ei:
        get_encoder("smell")
    assert "smell" in str(ei.value) and "image, sat, loc, env, text, audio" in str(ei.value)


def test_unknown_source_lists_them():
    with pytest.raises(ConfigError) as ei:
        get_encoder("loc", source="nasa")
    assert "'nasa'" in str(ei.value) and "taxabind" in str(ei.value) and "geoclip" in str(ei.value)


def test_source_without_published_weights_needs_folder():
    with pytest.raises(ConfigError, match="--image-weights FOLDER"):
        get_encoder("image", source="hf-clip")


def test_encoder_reports_device_dtype_batch(small_weights):
    enc = get_encoder("sat", weights=small_weights["sat"], device="cpu")
    assert str(enc.device) == "cpu" and enc.dtype.is_floating_point and enc.preferred_batch_size == 32
    assert "sat" in repr(enc)


def test_cuda_request_without_gpu_falls_back(small_weights):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    enc = get_encoder("loc", weights=small_weights["loc"], device="cuda")
    assert enc.device.type == "cpu" and not enc.amp
