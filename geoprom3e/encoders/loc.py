"""Location tower: the GeoCLIP location encoder (Equal Earth projection + random Fourier features, σ = 1, 16, 256).

Same architecture and state-dict keys as ``geoclip.LocationEncoder`` (``LocEnc{i}.capsule.0.b``,
``LocEnc{i}.capsule.{1,3,5}``, ``LocEnc{i}.head.0``), re-implemented here so that loading does not import the
``geoclip`` package (its ``__init__`` pulls transformers/pandas/geopy). Weights, in order of preference:
``MVRL/ecogeo`` (TaxaBind, in the ProM3E space) or the pretrained GeoCLIP weights shipped inside the PyPI
``geoclip`` wheel (real, but NOT fine-tuned into the ProM3E space).
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from geoprom3e.encoders.base import EncoderInfo, FrozenEncoder
from geoprom3e.errors import InputError, WeightsNotFoundError

SIGMAS = (2.0**0, 2.0**4, 2.0**8)
"""Fourier-feature scales of the three GeoCLIP capsules."""

_A1, _A2, _A3, _A4, _SF = 1.340264, -0.081106, 0.000893, 0.003796, 66.50336


def equal_earth(latlon: torch.Tensor) -> torch.Tensor:
    """(lat, lon) degrees [N, 2] → Equal Earth projected (x, y) scaled as GeoCLIP does."""
    lat = torch.deg2rad(latlon[:, 0])
    lon = torch.deg2rad(latlon[:, 1])
    theta = torch.asin(math.sqrt(3.0) / 2 * torch.sin(lat))
    t2 = theta * theta
    den = 3 * (9 * _A4 * t2**4 + 7 * _A3 * t2**3 + 3 * _A2 * t2 + _A1)
    x = 2 * math.sqrt(3.0) * lon * torch.cos(theta) / den
    y = _A4 * theta**9 + _A3 * theta**7 + _A2 * theta**3 + _A1 * theta
    return torch.stack((x, y), dim=1) * _SF / 180


class GaussianEncoding(nn.Module):
    """Random Fourier features ``[cos 2πBv, sin 2πBv]`` with a fixed matrix ``b`` [encoded, 2]."""

    def __init__(self, sigma: float, encoded_size: int = 256) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.randn(encoded_size, 2) * sigma, requires_grad=False)

    def forward(self, v: torch.Tensor) -> torch.Tensor:  # noqa: D102
        vp = 2 * math.pi * v @ self.b.T
        return torch.cat((torch.cos(vp), torch.sin(vp)), dim=-1)


class _Capsule(nn.Module):
    def __init__(self, sigma: float, hidden: int = 1024, out: int = 512) -> None:
        super().__init__()
        self.capsule = nn.Sequential(
            GaussianEncoding(sigma), nn.Linear(512, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Linear(hidden, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.head(self.capsule(x))


class GeoCLIPLocationEncoder(nn.Module):
    """Sum of one MLP capsule per σ over the Equal Earth projection of (lat, lon)."""

    def __init__(self, sigmas: tuple[float, ...] = SIGMAS, hidden: int = 1024) -> None:
        super().__init__()
        self.sigmas = tuple(sigmas)
        for i, s in enumerate(self.sigmas):
            self.add_module(f"LocEnc{i}", _Capsule(s, hidden))

    def forward(self, latlon: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = equal_earth(latlon.float())
        out = 0
        for i in range(len(self.sigmas)):
            out = out + self._modules[f"LocEnc{i}"](x)
        return out


_PREFIXES = ("location_encoder.", "gps_encoder.", "model.", "loc_encoder.", "encoder.", "module.")


def strip_prefix(sd: dict[str, torch.Tensor], first_key: str) -> dict[str, torch.Tensor]:
    """Drop a wrapper prefix (``model.``, ``location_encoder.``, ...) so keys start like ``first_key``."""
    for _ in range(3):
        if any(k.startswith(first_key) for k in sd):
            break
        for p in _PREFIXES:
            if any(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items() if k.startswith(p)}
                break
        else:
            break
    return sd


def geoclip_wheel_weights() -> Path | None:
    """Path of ``location_encoder_weights.pth`` inside an installed ``geoclip`` package (not imported), or None."""
    spec = importlib.util.find_spec("geoclip")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(next(iter(spec.submodule_search_locations))) / "model" / "weights" / "location_encoder_weights.pth"
    return p if p.is_file() else None


def build_location_encoder(state_dict: dict[str, torch.Tensor], config: dict | None = None) -> GeoCLIPLocationEncoder:
    """A :class:`GeoCLIPLocationEncoder` sized from ``state_dict`` (capsule count, width) with its weights loaded."""
    sd = strip_prefix(state_dict, "LocEnc0.")
    n = len({k.split(".")[0] for k in sd if k.startswith("LocEnc")})
    if n == 0:
        raise WeightsNotFoundError(
            f"weights hold no GeoCLIP location-encoder keys (LocEnc0.*; found e.g. {list(state_dict)[:3]}): "
            "pass MVRL/ecogeo or geoclip location_encoder_weights.pth"
        )
    sigmas = tuple((config or {}).get("sigma", SIGMAS))[:n]
    hidden = sd["LocEnc0.capsule.1.weight"].shape[0]
    model = GeoCLIPLocationEncoder(sigmas, hidden)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing:
        raise WeightsNotFoundError(f"location weights lack {len(missing)} keys (e.g. {missing[0]}): re-download them")
    return model


def load_location_weights(path: Path) -> GeoCLIPLocationEncoder:
    """Load from a folder (``config.json`` + ``model.safetensors``/``.bin``/``.pth``) or a single file."""
    from geoprom3e.encoders.weights import read_state_dict

    config = None
    if path.is_dir() and (path / "config.json").is_file():
        config = json.loads((path / "config.json").read_text())
    return build_location_encoder(read_state_dict(path), config)


def validate_latlon(latlon: Any) -> np.ndarray:
    """Check an [N, 2] array of (latitude, longitude) degrees; return it as float32.

    Latitude must lie in [-90, 90], longitude in [-180, 180], no NaN. Errors name up to five bad rows.
    """
    a = np.asarray(latlon, dtype=np.float64)
    if a.ndim == 1 and a.shape[0] == 2:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != 2:
        raise InputError(f"locations must be an [N, 2] array of (lat, lon); got shape {a.shape}")
    bad_nan = np.flatnonzero(~np.isfinite(a).all(axis=1))
    if bad_nan.size:
        rows = ", ".join(str(int(i)) for i in bad_nan[:5])
        raise InputError(f"locations have NaN/inf in {bad_nan.size} row(s) (rows {rows}): drop or fill them")
    bad_lat = np.flatnonzero(np.abs(a[:, 0]) > 90)
    bad_lon = np.flatnonzero(np.abs(a[:, 1]) > 180)
    if bad_lat.size:
        rows = ", ".join(f"{int(i)} (lat={a[i, 0]:g})" for i in bad_lat[:5])
        swapped = " — looks like (lon, lat): put latitude first" if (np.abs(a[:, 1]) <= 90).all() else ""
        raise InputError(f"latitude outside [-90, 90] in {bad_lat.size} row(s): {rows}{swapped}")
    if bad_lon.size:
        rows = ", ".join(f"{int(i)} (lon={a[i, 1]:g})" for i in bad_lon[:5])
        raise InputError(f"longitude outside [-180, 180] in {bad_lon.size} row(s): {rows}")
    return a.astype(np.float32)


@dataclass(frozen=True)
class LatLonPreprocessor:
    """One (lat, lon) pair or an [N, 2] array → float32 tensor; checks ranges and NaN."""

    def __call__(self, item: Any) -> torch.Tensor:
        """One pair → [2] tensor."""
        return torch.from_numpy(validate_latlon(item)[0])

    vectorized = True

    def collate(self, items: list[torch.Tensor]) -> torch.Tensor:
        """Stack into [B, 2]."""
        return torch.stack(items)

    def batch(self, items: Any) -> torch.Tensor:
        """[N, 2] (lat, lon) → float32 tensor (ranges checked, bad rows named)."""
        return torch.from_numpy(validate_latlon(items))


# --- the encoder ------------------------------------------------------------------------------------------------


NOT_IN_SPACE_NOTE = (
    "GeoCLIP pretrained location weights from the geoclip wheel: real weights, but NOT the TaxaBind "
    "MVRL/ecogeo fine-tune, so these embeddings are not in the ProM3E space (download MVRL/ecogeo for that)"
)
"""Said wherever the geoclip-wheel fallback is used."""


class LocEncoder(FrozenEncoder):
    """(lat, lon) → 512-d. Raw input: an [N, 2] array of (latitude, longitude) in degrees, latitude FIRST."""

    modality = "loc"

    def __init__(self, module: GeoCLIPLocationEncoder, info: EncoderInfo, **kw: Any) -> None:
        kw.setdefault("batch_size_cpu", 4096)
        kw.setdefault("batch_size_gpu", 65536)
        kw.setdefault("amp", False)  # Fourier features at σ=256 need fp32 precision
        super().__init__(module, info, **kw)
        self.preprocessor = LatLonPreprocessor()

    def items(self, raw: Any) -> Any:
        """An [N, 2] array (or one pair) is the item sequence itself."""
        return raw

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.net(batch)
