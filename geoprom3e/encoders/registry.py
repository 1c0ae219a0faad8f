"""Typed registry of the frozen modality encoders: :func:`list_encoders` and :func:`get_encoder`."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoprom3e.encoders.base import EncoderInfo, FrozenEncoder
from geoprom3e.encoders.weights import find_weights, missing_weights_error, resolve_weights
from geoprom3e.errors import ConfigError, WeightsNotFoundError
from geoprom3e.modalities import MODALITIES, modality_index

log = logging.getLogger(__name__)

NOTE_FILE = "geoprom3e.json"
"""Optional file in a weights folder: ``{"note": "...", "in_prom3e_space": false}`` (test/demo weights write it)."""


@dataclass(frozen=True)
class EncoderSpec:
    """One (modality, source) pair the registry can build."""

    modality: str
    """ProM3E modality."""
    source: str
    """Source name passed as ``get_encoder(..., source=...)``."""
    default_weights: str | None
    """Hugging Face id used when ``weights`` is not given (``None``: a folder must be given)."""
    description: str
    """One line for listings."""
    builder: Callable[..., FrozenEncoder]
    """``builder(modality, path, info, **kw)``."""
    extra: str = ""
    """pip extra it needs beyond the base install."""


def _read_note(path: Path) -> tuple[bool, str]:
    f = path / NOTE_FILE if path.is_dir() else None
    if f is not None and f.is_file():
        meta = json.loads(f.read_text())
        return bool(meta.get("in_prom3e_space", True)), str(meta.get("note", ""))
    return True, ""


def _build_clip(modality: str, path: Path, info: EncoderInfo, **kw: Any) -> FrozenEncoder:
    from geoprom3e.encoders.clip import hf_clip_encoder, open_clip_encoder

    if path.is_dir() and (path / "open_clip_config.json").is_file():
        return open_clip_encoder(modality, path, info, **kw)
    if path.is_dir() and (path / "config.json").is_file():  # transformers CLIP folder (demo/test alternative)
        return hf_clip_encoder(modality, path, info, **kw)
    raise WeightsNotFoundError(
        f"{path} is neither an open_clip folder (open_clip_config.json) nor a transformers CLIP folder (config.json)"
    )


def _build_hf_clip(modality: str, path: Path, info: EncoderInfo, **kw: Any) -> FrozenEncoder:
    from geoprom3e.encoders.clip import hf_clip_encoder

    return hf_clip_encoder(modality, path, info, **kw)


def _build_sat(modality: str, path: Path, info: EncoderInfo, **kw: Any) -> FrozenEncoder:
    from geoprom3e.encoders.sat import SatEncoder, load_clip_vision

    return SatEncoder(load_clip_vision(path), info, **kw)


def _build_loc(modality: str, path: Path, info: EncoderInfo, **kw: Any) -> FrozenEncoder:
    from geoprom3e.encoders.loc import LocEncoder, load_location_weights

    return LocEncoder(load_location_weights(path), info, **kw)


def _build_env(modality: str, path: Path, info: EncoderInfo, *, covariates: Any = None, stats: Any = None,
               **kw: Any) -> FrozenEncoder:
    from geoprom3e.encoders.env import CovariateRasters, EnvEncoder, build_sinr, open_covariates
    from geoprom3e.encoders.weights import read_state_dict

    rasters = covariates
    if covariates is not None and not isinstance(covariates, CovariateRasters):
        rasters = open_covariates(covariates)
    return EnvEncoder(build_sinr(read_state_dict(path)), info, rasters, stats, **kw)


def _build_audio(modality: str, path: Path, info: EncoderInfo, **kw: Any) -> FrozenEncoder:
    from geoprom3e.encoders.audio import clap_encoder

    return clap_encoder(path, info, **kw)


_SPECS: tuple[EncoderSpec, ...] = (
    EncoderSpec("image", "taxabind", "MVRL/taxabind-vit-b-16", "open_clip ViT-B/16 TaxaBind (a transformers CLIP "
                "folder also loads)", _build_clip, "clip"),
    EncoderSpec("image", "hf-clip", None, "transformers CLIPModel / CLIPVisionModelWithProjection folder",
                _build_hf_clip),
    EncoderSpec("sat", "taxabind", "MVRL/ecosat", "transformers CLIPVisionModelWithProjection on RGB chips",
                _build_sat),
    EncoderSpec("loc", "taxabind", "MVRL/ecogeo", "GeoCLIP location encoder fine-tuned by TaxaBind; falls back "
                "to the geoclip wheel weights when absent", _build_loc),
    EncoderSpec("loc", "geoclip", "geoclip-wheel", "pretrained GeoCLIP weights from the PyPI geoclip wheel (not in "
                "the ProM3E space)", _build_loc),
    EncoderSpec("env", "taxabind", "MVRL/ecoclim", "SINR residual MLP on WorldClim 2.1 [elevation, bio1..bio19]",
                _build_env),
    EncoderSpec("text", "taxabind", "MVRL/taxabind-vit-b-16", "open_clip ViT-B/16 text tower (a transformers "
                "CLIPModel folder also loads)", _build_clip, "clip"),
    EncoderSpec("text", "hf-clip", None, "transformers CLIPModel folder with its tokenizer", _build_hf_clip),
    EncoderSpec("audio", "taxabind", "MVRL/ecosound", "CLAP audio tower (48 kHz mono, 10 s)", _build_audio, "audio"),
)
_BY_KEY = {(s.modality, s.source): s for s in _SPECS}


def list_encoders(modality: str | None = None) -> list[EncoderSpec]:
    """Every (modality, source) the registry can build, in modality order."""
    specs = sorted(_SPECS, key=lambda s: (MODALITIES.index(s.modality), s.source != "taxabind", s.source))
    return [s for s in specs if modality is None or s.modality == modality]


def encoder_spec(modality: str, source: str = "taxabind") -> EncoderSpec:
    """The spec for (modality, source); unknown names list the valid ones."""
    try:
        m = MODALITIES[modality_index(modality)]
    except ConfigError:
        raise ConfigError(f"unknown modality {modality!r}: use one of {', '.join(MODALITIES)}") from None
    spec = _BY_KEY.get((m, source))
    if spec is None:
        sources = ", ".join(s.source for s in list_encoders(m))
        raise ConfigError(f"unknown source {source!r} for modality {m!r}: use one of {sources}")
    return spec


def get_encoder(
    modality: str,
    source: str = "taxabind",
    weights: str | Path | None = None,
    device: str | None = None,
    *,
    weights_dir: str | Path | None = None,
    download: bool = False,
    **kwargs: Any,
) -> FrozenEncoder:
    """Build a frozen encoder for ``modality``.

    ``weights`` is a Hugging Face id or a local folder/file (default: the source's published id, looked up in
    ``weights_dir``/``$GEOPROM3E_WEIGHTS_DIR`` or the Hugging Face cache; downloaded only with ``download=True``).
    ``device=None`` picks CUDA when available. Extra keyword arguments go to the encoder: ``covariates=PATH``
    (env), ``amp``, ``compile``, ``channels_last``.

    ``get_encoder("loc")`` with no ``MVRL/ecogeo`` at hand uses the geoclip wheel weights and logs that those
    embeddings are not in the ProM3E space (``encoder.info.note``).
    """
    spec = encoder_spec(modality, source)
    kw = dict(kwargs, device=device)
    if spec.modality == "loc" and weights is None:
        path = _loc_default_path(spec, weights_dir, download)
    elif weights is None and spec.default_weights is None:
        raise ConfigError(f"source {source!r} for {spec.modality} has no published weights: pass a local weights "
                          f"folder (--{spec.modality}-weights FOLDER on the command line)")
    else:
        path = resolve_weights(weights or spec.default_weights, weights_dir=weights_dir, download=download)
    in_space, note = _read_note(path)
    name = str(weights or spec.default_weights)
    src = spec.source
    from geoprom3e.encoders.loc import NOT_IN_SPACE_NOTE, geoclip_wheel_weights

    if spec.modality == "loc" and path == geoclip_wheel_weights():
        in_space, note, src, name = False, NOT_IN_SPACE_NOTE, "geoclip", f"geoclip wheel ({path})"
        log.warning("loc encoder: %s", note)
    info = EncoderInfo(spec.modality, src, name if weights is None else str(weights), in_space, note)
    enc = spec.builder(spec.modality, path, info, **kw)
    log.info("loaded %r", enc)
    return enc


def _loc_default_path(spec: EncoderSpec, weights_dir: Any, download: bool) -> Path:
    from geoprom3e.encoders.loc import geoclip_wheel_weights

    if spec.source == "taxabind":
        found = find_weights("MVRL/ecogeo", weights_dir)
        if found is not None:
            return found
        if download:
            return resolve_weights("MVRL/ecogeo", weights_dir=weights_dir, download=True)
    wheel = geoclip_wheel_weights()
    if wheel is not None:
        return wheel
    base = str(missing_weights_error("MVRL/ecogeo", weights_dir))
    raise WeightsNotFoundError(f"{base}; or install the fallback with `pip install --no-deps geoclip==1.3.0`")
