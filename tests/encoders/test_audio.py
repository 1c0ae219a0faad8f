import numpy as np
import pytest
from scipy.io import wavfile

from geoprom3e.encoders import get_encoder
from geoprom3e.encoders.audio import prepare_audio
from geoprom3e.errors import InputError


@pytest.fixture(scope="module")
def audio(small_weights):
    return get_encoder("audio", weights=small_weights["audio"], device="cpu")


def _tone(rate, seconds, freq=2000.0):
    t = np.arange(int(rate * seconds)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_wav_resampled_and_encoded(audio, tmp_path):
    p = tmp_path / "call.wav"
    wavfile.write(p, 44_100, (_tone(44_100, 3) * 32767).astype(np.int16))
    e = audio.embed(str(p))
    assert e.shape == (1, 512)
    e2 = audio.embed((_tone(48_000, 3), 48_000))
    assert float((e @ e2.T).item()) > 0.9  # same tone at 44.1 kHz resampled ≈ the 48 kHz one


def test_prepare_audio_rules():
    out = prepare_audio(np.stack([_tone(22_050, 12)] * 2, axis=1), 22_050)
    assert out.ndim == 1 and out.size == 480_000  # stereo → mono, 22.05 → 48 kHz, cut to 10 s
    with pytest.raises(InputError, match="below 8000 Hz"):
        prepare_audio(_tone(4000, 3), 4000)
    with pytest.raises(InputError, match="0.50 s long"):
        prepare_audio(_tone(48_000, 0.5), 48_000)
    with pytest.raises(InputError, match="NaN"):
        prepare_audio(np.full(48_000 * 2, np.nan), 48_000)


def test_corrupt_wav_names_itself(audio, tmp_path):
    p = tmp_path / "broken.wav"
    p.write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(InputError, match="broken.wav"):
        audio.embed(str(p))
