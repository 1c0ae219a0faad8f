import numpy as np
import pytest
import torch

from geoprom3e.encoders import encode_batches, get_encoder

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_sat_on_gpu_bf16_matches_cpu(small_weights):
    cpu = get_encoder("sat", weights=small_weights["sat"], device="cpu")
    gpu = get_encoder("sat", weights=small_weights["sat"])  # device=None picks CUDA
    assert gpu.device.type == "cuda" and gpu.dtype == torch.bfloat16 and gpu.channels_last
    assert gpu.preferred_batch_size == 256
    rng = np.random.default_rng(0)
    chips = [rng.integers(0, 255, (3, 256, 256), dtype=np.uint8) for _ in range(40)]
    a = encode_batches(cpu, chips, batch_size=16).embeddings
    b = encode_batches(gpu, chips, batch_size=16, num_workers=2).embeddings
    assert b.dtype == np.float32 and np.isfinite(b).all()
    cos = (a * b).sum(axis=1)
    assert cos.min() > 0.98, cos.min()


def test_loc_on_gpu_stays_fp32(small_weights):
    cpu = get_encoder("loc", weights=small_weights["loc"], device="cpu")
    gpu = get_encoder("loc", weights=small_weights["loc"], device="cuda")
    assert not gpu.amp
    pts = np.array([[40.0, -100.0], [25.0, -80.5], [48.9, -124.0]])
    np.testing.assert_allclose(gpu.embed(pts).numpy(), cpu.embed(pts).numpy(), atol=2e-4)
