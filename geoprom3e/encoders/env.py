"""Environment tower: the SINR residual MLP on 20 WorldClim 2.1 covariates [elevation, bio1..bio19].

Covariates come from rasters the user provides (WorldClim 2.1, 5′ recommended, EPSG:4326): either one
20-band stack (band order elevation, bio1..bio19, or band descriptions naming them) or a folder with the
WorldClim files (``wc2.1_5m_elev.tif``, ``wc2.1_5m_bio_1.tif`` … ``wc2.1_5m_bio_19.tif``). They are sampled at
the cell centres, z-scored per channel with statistics over the whole raster (as SINR prepared its inputs),
and NaN (sea, nodata) becomes 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from geoprom3e.encoders.base import EncoderInfo, FrozenEncoder
from geoprom3e.encoders.loc import strip_prefix, validate_latlon
from geoprom3e.errors import InputError, WeightsNotFoundError

COVARIATES: tuple[str, ...] = ("elevation",) + tuple(f"bio{i}" for i in range(1, 20))
"""The 20 inputs of the TaxaBind environment encoder, in order."""


class _ResLayer(nn.Module):
    def __init__(self, width: int, p: float = 0.5) -> None:
        super().__init__()
        self.nonlin1 = nn.ReLU()
        self.nonlin2 = nn.ReLU()
        self.dropout1 = nn.Dropout(p=p)
        self.w1 = nn.Linear(width, width)
        self.w2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x + self.nonlin2(self.w2(self.dropout1(self.nonlin1(self.w1(x)))))


class SINRNet(nn.Module):
    """SINR ``ResidualFCNet`` trunk (``feats``): Linear → ReLU → ``depth`` residual layers; output = features."""

    def __init__(self, num_inputs: int = 20, width: int = 512, depth: int = 4) -> None:
        super().__init__()
        self.feats = nn.Sequential(nn.Linear(num_inputs, width), nn.ReLU(), *[_ResLayer(width) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.feats(x)


def build_sinr(state_dict: dict[str, torch.Tensor]) -> SINRNet:
    """A :class:`SINRNet` sized from ``state_dict`` (inputs, width, depth), weights loaded (class head ignored)."""
    sd = strip_prefix(state_dict, "feats.")
    if "feats.0.weight" not in sd:
        raise WeightsNotFoundError(
            f"weights hold no SINR keys (feats.0.weight; found e.g. {list(state_dict)[:3]}): pass MVRL/ecoclim"
        )
    width, n_in = sd["feats.0.weight"].shape
    depth = len({k.split(".")[1] for k in sd if re.match(r"feats\.\d+\.w1\.weight", k)})
    model = SINRNet(n_in, width, depth)
    model.load_state_dict({k: v for k, v in sd.items() if k.startswith("feats.")}, strict=True)
    return model


# --- covariate rasters ----------------------------------------------------------------------------------------

_NAME_PATTERNS = [(re.compile(r"(^|[_\-.])(elev|elevation|dem)([_\-.]|$)", re.I), "elevation")] + [
    (re.compile(rf"(^|[_\-.])bio[_\-]?0*{i}([_\-.]|$)", re.I), f"bio{i}") for i in range(1, 20)
]


def _covariate_name(text: str) -> str | None:
    for pat, name in _NAME_PATTERNS:
        if pat.search(text):
            return name
    return None


@dataclass(frozen=True)
class CovariateStats:
    """Per-channel mean and standard deviation used for the z-score."""

    mean: tuple[float, ...]
    """Mean of each covariate over the raster's valid pixels (order :data:`COVARIATES`)."""
    std: tuple[float, ...]
    """Standard deviation of each covariate (order :data:`COVARIATES`)."""


@dataclass(frozen=True)
class CovariateRasters:
    """Where each of the 20 covariates is read from: (file, 1-based band) per covariate."""

    sources: tuple[tuple[str, int], ...]
    """(path, band) for elevation, bio1..bio19."""

    def sample(self, latlon: Any) -> np.ndarray:
        """Raw covariate values at (lat, lon) points → [N, 20] float32 (NaN where nodata or outside)."""
        import rasterio

        pts = validate_latlon(latlon).astype(np.float64)
        out = np.full((pts.shape[0], len(self.sources)), np.nan, dtype=np.float32)
        for j, (path, band) in enumerate(self.sources):
            with rasterio.open(path) as ds:
                rows, cols = rasterio.transform.rowcol(ds.transform, pts[:, 1], pts[:, 0])
                rows, cols = np.asarray(rows), np.asarray(cols)
                inside = (rows >= 0) & (rows < ds.height) & (cols >= 0) & (cols < ds.width)
                if not inside.any():
                    continue
                r0, r1 = rows[inside].min(), rows[inside].max() + 1
                c0, c1 = cols[inside].min(), cols[inside].max() + 1
                win = rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0)
                block = ds.read(band, window=win, masked=True).astype(np.float32).filled(np.nan)
                out[inside, j] = block[rows[inside] - r0, cols[inside] - c0]
        return out

    def stats(self, max_side: int = 1080) -> CovariateStats:
        """Mean/std per covariate over all valid pixels (read decimated to ≤ ``max_side`` for speed)."""
        import rasterio

        means, stds = [], []
        for path, band in self.sources:
            with rasterio.open(path) as ds:
                f = max(1, int(np.ceil(max(ds.height, ds.width) / max_side)))
                a = ds.read(band, out_shape=(max(1, ds.height // f), max(1, ds.width // f)), masked=True)
                v = a.astype(np.float64).filled(np.nan)
                v = v[np.isfinite(v)]
                if v.size == 0:
                    raise InputError(f"covariate raster {path!r} band {band} has no valid pixels: check the file")
                means.append(float(v.mean()))
                stds.append(float(v.std()) or 1.0)
        return CovariateStats(tuple(means), tuple(stds))


def _check_crs(path: str, ds: Any) -> None:
    if ds.crs is None or not ds.crs.is_geographic or ds.crs.to_epsg() != 4326:
        raise InputError(
            f"covariate raster {path!r} is in {ds.crs or 'no CRS'}, not EPSG:4326: reproject it "
            f"(gdalwarp -t_srs EPSG:4326 in.tif out.tif) or use the WorldClim 2.1 files as published"
        )


def open_covariates(path: str | Path) -> CovariateRasters:
    """Find the 20 covariates in a stack file or a WorldClim folder; errors list the missing ones."""
    import rasterio

    p = Path(path).expanduser()
    found: dict[str, tuple[str, int]] = {}
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in (".tif", ".tiff", ".vrt", ".nc"))
        for f in files:
            name = _covariate_name(f.stem)
            if name and name not in found:
                with rasterio.open(f) as ds:
                    _check_crs(str(f), ds)
                found[name] = (str(f), 1)
    elif p.is_file():
        try:
            with rasterio.open(p) as ds:
                _check_crs(str(p), ds)
                descs = [d or "" for d in ds.descriptions]
                named = {_covariate_name(d): i + 1 for i, d in enumerate(descs) if _covariate_name(d)}
                if len(named) == len(COVARIATES):
                    found = {k: (str(p), b) for k, b in named.items()}
                elif ds.count >= len(COVARIATES) and not named:
                    found = {k: (str(p), i + 1) for i, k in enumerate(COVARIATES)}
                else:
                    found = {k: (str(p), b) for k, b in named.items()}
                    if not named:
                        raise InputError(
                            f"covariate stack {str(p)!r} has {ds.count} band(s); the env encoder needs 20 "
                            f"({', '.join(COVARIATES)}): pass a 20-band stack or the WorldClim folder"
                        )
        except rasterio.errors.RasterioIOError as exc:
            raise InputError(f"covariate raster {str(p)!r} cannot be read ({str(exc)[:100]})") from None
    else:
        raise InputError(f"covariates {str(p)!r} do not exist: pass a 20-band stack or a WorldClim 2.1 folder")
    missing = [c for c in COVARIATES if c not in found]
    if missing:
        raise InputError(
            f"covariates in {str(p)!r} lack {', '.join(missing)}: add the WorldClim 2.1 files "
            "(wc2.1_5m_elev.tif, wc2.1_5m_bio_1.tif … bio_19) or name the stack's bands"
        )
    return CovariateRasters(tuple(found[c] for c in COVARIATES))


def scale_covariates(raw: np.ndarray, stats: CovariateStats) -> np.ndarray:
    """z-score per channel, NaN → 0 (DESIGN §4)."""
    a = np.asarray(raw, dtype=np.float32)
    if a.ndim != 2 or a.shape[1] != len(COVARIATES):
        raise InputError(f"covariates must be [N, {len(COVARIATES)}] ({', '.join(COVARIATES)}); got {a.shape}")
    z = (a - np.asarray(stats.mean, np.float32)) / np.asarray(stats.std, np.float32)
    return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


@dataclass(frozen=True)
class EnvPreprocessor:
    """(lat, lon) points → sampled, z-scored covariates [20]; or pass ``covariates=[N, 20]`` scaled rows."""

    rasters: CovariateRasters | None
    """Covariate rasters to sample (``None``: inputs must already be scaled [N, 20] rows)."""
    stats: CovariateStats | None
    """z-score statistics (computed from the rasters when the encoder is built)."""

    vectorized = True

    def batch(self, items: Any) -> torch.Tensor:
        """[N, 2] (lat, lon) → [N, 20] scaled covariates; [N, 20] inputs are taken as already scaled."""
        a = np.asarray(items, dtype=np.float32)
        if a.ndim == 2 and a.shape[1] == len(COVARIATES):
            return torch.from_numpy(np.nan_to_num(a, nan=0.0))
        if self.rasters is None or self.stats is None:
            raise InputError(
                "the env encoder was built without covariate rasters: pass covariates=PATH (WorldClim 2.1 stack or "
                "folder) to get_encoder('env', ...), or feed scaled [N, 20] covariates"
            )
        return torch.from_numpy(scale_covariates(self.rasters.sample(a), self.stats))

    def __call__(self, item: Any) -> torch.Tensor:
        """One point (or one covariate row) → [20]."""
        return self.batch(np.asarray(item, dtype=np.float32).reshape(1, -1))[0]

    def collate(self, items: list[torch.Tensor]) -> torch.Tensor:
        """Stack into a batch."""
        return torch.stack(items)


# --- the encoder ------------------------------------------------------------------------------------------------



class EnvEncoder(FrozenEncoder):
    """(lat, lon) points → covariates sampled from the user's WorldClim rasters → 512-d SINR features."""

    modality = "env"

    def __init__(
        self, module: SINRNet, info: EncoderInfo, rasters: CovariateRasters | None = None,
        stats: CovariateStats | None = None, **kw: Any,
    ) -> None:
        kw.setdefault("batch_size_cpu", 8192)
        kw.setdefault("batch_size_gpu", 65536)
        kw.setdefault("amp", False)
        super().__init__(module, info, **kw)
        if rasters is not None and stats is None:
            stats = rasters.stats()
        self.preprocessor = EnvPreprocessor(rasters, stats)

    def items(self, raw: Any) -> Any:
        """An [N, 2] (lat, lon) or [N, 20] covariate array is the item sequence itself."""
        return raw

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.net(batch)
