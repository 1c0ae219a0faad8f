"""What every product shares: the named result, the cache window a map reads, the model, queries, manifests."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoprom3e.errors import ConfigError, InputError
from geoprom3e.grid import GridSpec
from geoprom3e.grid.spec import path_safe
from geoprom3e.io.layers import LayerInfo
from geoprom3e.io.maps import MapOutputs

DEFAULT_GRID = "usa-250x500"
DEFAULT_OUT = "maps"


@dataclass(frozen=True)
class MapProduct:
    """One written map: its layers as an xarray Dataset with a CRS, and the files written."""

    name: str
    """Output stem (``uncertainty``, ``species_<query>``, ``diversity``)."""
    dataset: Any
    """``xarray.Dataset`` with ``lat``/``lon`` (or ``x``/``y``) coordinates and ``spatial_ref`` (``ds.rio.crs``)."""
    outputs: MapOutputs
    """Paths written (GeoTIFF, QML, NetCDF, PNGs, manifest, settings, STAC item)."""


@dataclass
class ProductResult:
    """What a product function computed and wrote."""

    maps: list[MapProduct] = field(default_factory=list)
    """Each map written."""
    summary: str = ""
    """One line for the user."""
    details: dict[str, Any] = field(default_factory=dict)
    """Extra facts of the run (counts, timings, the fused group used)."""

    @property
    def paths(self) -> list[Path]:
        """Every file written."""
        return [p for m in self.maps for p in m.outputs.all()]


def default_cache(grid_name: str | None = None) -> Path:
    """``$GEOPROM3E_CACHE/<grid>`` (default ``~/.cache/geoprom3e/<grid>``): one cache per preset grid, whose
    windows (``--bbox``) every map command reads."""
    root = os.environ.get("GEOPROM3E_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "geoprom3e")
    return Path(root) / path_safe(grid_name or DEFAULT_GRID)


def open_cache_window(cache_path: str | Path, grid: GridSpec | None) -> tuple[Any, Any]:
    """(cache, window): the cache at ``cache_path`` and where ``grid`` (default: the cache's own) lies in it."""
    from geoprom3e.engine import EmbeddingCache

    cache = EmbeddingCache(cache_path)
    return cache, cache.window(grid)


def check_device(device: str | None) -> str | None:
    """``device`` when torch can use it here; one line otherwise (checked before any weights load)."""
    if device is None:
        return None
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device {device!r} is not a torch device: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA GPU is available here: leave --device off or use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s): use "
                              f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"--device {device}: MPS is not available here: use cpu")
    return device


def load_model(checkpoint: str | Path | None, device: str | None = None) -> Any:
    """ProM3E from a local checkpoint, or the published ``MVRL/ProM3E`` weights when ``checkpoint`` is None."""
    import torch

    from geoprom3e.model import ProM3E

    model = ProM3E.from_pretrained() if checkpoint is None else ProM3E.from_checkpoint(checkpoint)
    if device:
        model = model.to(torch.device(device))
    return model.eval()


@dataclass(frozen=True)
class Query:
    """One species query: a photo path or a text."""

    kind: str
    """``image`` or ``text``."""
    value: str
    """Photo path, or the text (e.g. a scientific name)."""

    def check(self) -> None:
        """One line when the photo is missing or the text is empty."""
        if self.kind == "image" and not Path(self.value).is_file():
            raise InputError(f"query image {self.value!r} does not exist: pass the path of a JPEG/PNG/WebP/TIFF photo")
        if self.kind == "text" and not self.value.strip():
            raise InputError("--text is empty: pass a species name, e.g. --text 'Cardinalis cardinalis'")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:60]


def query_names(queries: Sequence[Query]) -> list[str]:
    """Distinct output stems, one per query: ``species_<stem>``; photos sharing a stem get their folder names
    (``species_a_IMG_0001``, ``species_b_IMG_0001``), and any remaining clash a number."""
    def base(q: Query, parents: int) -> str:
        if q.kind == "text":
            return "species_" + (_slug(q.value) or "text")
        p = Path(q.value).resolve()
        parts = [*p.parent.parts[len(p.parent.parts) - parents:], p.stem] if parents else [p.stem]
        return "species_" + (_slug("_".join(parts)) or "image")

    names = [base(q, 0) for q in queries]
    for depth in (1, 2):
        clash = {n for n in names if names.count(n) > 1}
        names = [base(q, depth) if n in clash and q.kind == "image" else n for q, n in zip(queries, names)]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if names.count(n) == 1 else f"{n}_{seen[n]}")
    return out


def dataset(grid: GridSpec, layers: Mapping[str, np.ndarray], info: Mapping[str, LayerInfo],
            attrs: Mapping[str, Any]) -> Any:
    """The layers as an xarray Dataset on ``grid`` (CF coordinates, ``spatial_ref``, ``ds.rio.crs`` set)."""
    from geoprom3e.io.netcdf import build_dataset

    return build_dataset(grid, layers, info=info, attrs={k: v for k, v in attrs.items()
                                                          if isinstance(v, (str, int, float))})
