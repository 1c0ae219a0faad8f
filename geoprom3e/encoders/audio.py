"""Audio tower: CLAP (``MVRL/ecosound``) on mono 48 kHz clips of 10 s (the ``audio`` extra reads FLAC/OGG/MP3).

Raw input: a path (WAV via scipy; other formats via ``soundfile`` from ``pip install 'geoprom3e[audio]'``) or a
``(samples, rate)`` tuple. Stereo is averaged to mono; other rates are resampled (polyphase) to 48 kHz when the
source rate is ≥ 8 kHz; clips longer than 10 s keep their first 10 s, shorter ones (≥ 1 s) are repeat-padded by
the CLAP feature extractor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoprom3e.encoders.base import EncoderInfo, FrozenEncoder
from geoprom3e.errors import ConfigError, InputError, WeightsNotFoundError

SAMPLE_RATE = 48_000
"""CLAP input rate (Hz)."""
CLIP_SECONDS = 10.0
"""CLAP input length (s)."""
MIN_SECONDS = 1.0
"""Shorter clips are refused: repeat-padding them to 10 s gives a meaningless spectrogram."""
MIN_SOURCE_RATE = 8_000
"""Lower source rates are refused: resampling cannot restore the missing high frequencies CLAP listens to."""


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file → (float32 samples [T] or [T, C], rate)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"audio file {str(p)!r} does not exist: check the path")
    if p.suffix.lower() == ".wav":
        from scipy.io import wavfile

        try:
            rate, data = wavfile.read(str(p))
        except (ValueError, OSError) as exc:
            raise InputError(
                f"audio file {str(p)!r} cannot be read ({str(exc)[:100]}): is it a complete WAV?"
            ) from None
        if np.issubdtype(data.dtype, np.integer):
            data = data.astype(np.float32) / float(np.iinfo(data.dtype).max)
        return data.astype(np.float32), int(rate)
    try:
        import soundfile
    except ImportError:
        raise ConfigError(
            f"reading {p.suffix} audio needs soundfile: pip install 'geoprom3e[audio]' (or convert {p.name} to WAV)"
        ) from None
    try:
        data, rate = soundfile.read(str(p), dtype="float32")
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError
        raise InputError(f"audio file {str(p)!r} cannot be read ({str(exc)[:100]})") from None
    return data, int(rate)


def prepare_audio(samples: np.ndarray, rate: int, name: str = "audio") -> np.ndarray:
    """Mono, 48 kHz, at most 10 s (first 10 s kept); refuses too-short clips and too-low rates with the reason."""
    a = np.asarray(samples, dtype=np.float32)
    if a.ndim == 2:
        a = a.mean(axis=1) if a.shape[1] <= 8 else a.mean(axis=0)
    if a.ndim != 1 or a.size == 0:
        raise InputError(f"{name}: expected a 1-D (mono) or [T, channels] signal, got shape {np.shape(samples)}")
    if not np.isfinite(a).all():
        raise InputError(f"{name}: the signal holds NaN/inf samples: clean the recording")
    if rate != SAMPLE_RATE:
        if rate < MIN_SOURCE_RATE:
            raise InputError(
                f"{name}: sample rate {rate} Hz is below {MIN_SOURCE_RATE} Hz; CLAP needs 48 kHz and resampling cannot "
                "restore the missing frequencies: record or export at ≥ 8 kHz (ideally 48 kHz)"
            )
        from scipy.signal import resample_poly

        fr = Fraction(SAMPLE_RATE, int(rate)).limit_denominator(1000)
        a = resample_poly(a, fr.numerator, fr.denominator).astype(np.float32)
    seconds = a.size / SAMPLE_RATE
    if seconds < MIN_SECONDS:
        raise InputError(
            f"{name}: clip is {seconds:.2f} s long; CLAP needs ≥ {MIN_SECONDS:g} s (10 s ideal): "
            "pass a longer recording"
        )
    return a[: int(CLIP_SECONDS * SAMPLE_RATE)]


@dataclass(frozen=True)
class AudioPreprocessor:
    """Paths or (samples, rate) → CLAP ``input_features``/``is_longer``."""

    feature_extractor: Any
    """A transformers ``ClapFeatureExtractor``."""
    fusion: bool = False
    """True for CLAP models trained with feature fusion (4-channel mel input)."""

    def _one(self, item: Any) -> np.ndarray:
        if isinstance(item, (str, Path)):
            data, rate = read_audio(item)
            return prepare_audio(data, rate, str(item))
        if isinstance(item, tuple) and len(item) == 2:
            return prepare_audio(item[0], int(item[1]))
        raise InputError(
            f"audio input of type {type(item).__name__} is not a path or a (samples, rate) tuple: pass one of those"
        )

    def batch(self, items: list[Any]) -> dict[str, torch.Tensor]:
        """Preprocess a list of clips."""
        waves = [self._one(x) for x in items]
        # clips are already cut to 10 s, so "rand_trunc" never draws: the output is deterministic
        feats = self.feature_extractor(waves, sampling_rate=SAMPLE_RATE, return_tensors="pt",
                                       truncation="fusion" if self.fusion else "rand_trunc", padding="repeatpad")
        return {"input_features": feats["input_features"], "is_longer": feats["is_longer"]}

    def __call__(self, item: Any) -> dict[str, torch.Tensor]:
        """One clip."""
        return {k: v[0] for k, v in self.batch([item]).items()}


class _ClapAudio(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_features: torch.Tensor, is_longer: torch.Tensor) -> torch.Tensor:
        if hasattr(self.model, "get_audio_features"):
            out = self.model.get_audio_features(input_features=input_features, is_longer=is_longer)
            return out if isinstance(out, torch.Tensor) else out.pooler_output
        return self.model(input_features=input_features, is_longer=is_longer).audio_embeds


class AudioEncoder(FrozenEncoder):
    """Sound recordings → 512-d."""

    modality = "audio"

    def __init__(self, module: torch.nn.Module, preprocessor: AudioPreprocessor, info: EncoderInfo, **kw: Any):
        kw.setdefault("batch_size_cpu", 8)
        kw.setdefault("batch_size_gpu", 128)
        super().__init__(_ClapAudio(module), info, **kw)
        self.preprocessor = preprocessor

    def items(self, raw: Any) -> Any:
        """A path or one (samples, rate) tuple is a list of one."""
        if isinstance(raw, tuple) and len(raw) == 2 and not isinstance(raw[0], (str, Path)):
            return [raw]
        return super().items(raw)

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(**batch)


def clap_encoder(path: Path, info: EncoderInfo, **kw: Any) -> AudioEncoder:
    """The CLAP audio encoder from a transformers folder (``ClapModel`` or ``ClapAudioModelWithProjection``)."""
    import transformers

    cfg = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    try:
        if cfg.get("model_type") == "clap":
            model = transformers.ClapModel.from_pretrained(str(path))
        else:
            model = transformers.ClapAudioModelWithProjection.from_pretrained(str(path))
        if (path / "preprocessor_config.json").is_file():
            fe = transformers.ClapFeatureExtractor.from_pretrained(str(path))
        else:
            fe = transformers.ClapFeatureExtractor(sampling_rate=SAMPLE_RATE, max_length_s=int(CLIP_SECONDS))
    except (OSError, ValueError) as exc:
        raise WeightsNotFoundError(f"cannot load CLAP from {path} ({str(exc).splitlines()[0][:120]})") from None
    audio_cfg = getattr(model.config, "audio_config", model.config)
    return AudioEncoder(model, AudioPreprocessor(fe, bool(getattr(audio_cfg, "enable_fusion", False))), info, **kw)
