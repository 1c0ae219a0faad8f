"""``embedding_map``: every cell's ProM3E representations as analysis-ready data, and an RGB map of each.

Writes into ``out_dir``:

* ``representations.zarr``: one float16 variable per token, ``[lat, lon, <token>_feature]`` (``y``/``x`` on
  projected grids), with CF coordinates and ``spatial_ref`` like the cache (``xr.open_zarr`` + rioxarray give the
  CRS and transform), plus ``<token>_components`` float32 ``[lat, lon, component]``;
* ``embedding_<token>.tif``: a 3-band uint8 RGB Cloud-Optimized GeoTIFF of the first three components (FastICA or
  PCA fitted on a seeded sample of cells, applied to every cell chunk by chunk; each channel stretched between
  robust percentiles that its band tags state), and ``embedding_<token>.png``;
* ``embedding_map.manifest.json`` and ``embedding_map.settings.json``.

Everything is staged in a hidden folder and moved into place only when all of it was written.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoprom3e._version import __version__
from geoprom3e.engine import EmbeddingCache, FuseSettings, fuse_grid, model_fingerprint
from geoprom3e.engine.cache import Window
from geoprom3e.engine.hidden import Token, parse_tokens, read_token, resolve_tokens, token_width, update_hidden
from geoprom3e.errors import ConfigError, OutputError
from geoprom3e.grid import GridSpec
from geoprom3e.io.manifest import to_json
from geoprom3e.maps.components import (
    METHODS,
    STRETCH_PERCENTILES,
    Components,
    check_components,
    fit_components,
    percentile_limits,
    stretch_to_uint8,
)
from geoprom3e.products.base import DEFAULT_OUT, ProductResult, check_device, load_model, open_cache_window
from geoprom3e.products.fused import Fused, fused_manifest, settings_of
from geoprom3e.progress import ProgressCallback, report

log = logging.getLogger(__name__)

ZARR_NAME = "representations.zarr"
BASENAME = "embedding_map"
DEFAULT_TOKENS = "mu,logvar,registers"


@dataclass(frozen=True)
class EmbeddingMapSettings:
    """What ``embedding-map`` writes; validated on construction (before any weights load)."""

    tokens: str | tuple[str, ...] = DEFAULT_TOKENS
    """Tokens to write (see :mod:`geoprom3e.engine.hidden`): ``mu,logvar,registers,tokens,recon:<m>,emb:<m>``."""
    method: str = "ica"
    """``ica`` (scikit-learn FastICA) or ``pca``."""
    components: int = 3
    """Components fitted per token (the RGB shows the first three)."""
    sample: int = 100_000
    """Cells the components are fitted on (a seeded sample; clamped to the cells there are, with a note)."""
    seed: int = 0
    """Seed of the sample and of FastICA."""
    percentiles: tuple[float, float] = STRETCH_PERCENTILES
    """Robust stretch of each RGB channel: these percentiles over the sample map to the darkest and brightest."""

    def __post_init__(self) -> None:
        toks = tuple(t.label for t in parse_tokens(self.tokens))
        object.__setattr__(self, "tokens", toks)
        if self.method not in METHODS:
            raise ConfigError(f"--method {self.method!r}: use one of {', '.join(METHODS)}")
        if isinstance(self.components, bool) or not isinstance(self.components, int) or self.components < 3:
            raise ConfigError(f"--components {self.components!r}: must be an integer >= 3 (the RGB shows three)")
        if isinstance(self.sample, bool) or not isinstance(self.sample, int) or self.sample < self.components + 1:
            raise ConfigError(f"--sample {self.sample!r}: must be an integer > --components ({self.components})")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"--seed {self.seed!r}: must be an integer >= 0")
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise ConfigError(f"stretch percentiles {self.percentiles!r}: need 0 <= low < high <= 100")


@dataclass(frozen=True)
class TokenMap:
    """One token's written map."""

    token: str
    """Token as the user writes it (``mu``, ``register2``, ``emb:loc``)."""
    name: str
    """Variable name in the Zarr and file stem (``mu``, ``register2``, ``emb_loc``)."""
    n_features: int
    """Feature size."""
    geotiff: Path
    """RGB COG of the first three components."""
    png: Path | None
    """PNG quicklook of the RGB."""
    limits: list[list[float]]
    """[3][low, high] stretch of each RGB channel, in component units."""
    converged: bool
    """False when FastICA stopped at its iteration limit."""


@dataclass
class EmbeddingMapResult(ProductResult):
    """What :func:`embedding_maps` wrote."""

    zarr: Path | None = None
    """``representations.zarr``."""
    tokens: list[TokenMap] = field(default_factory=list)
    """One map per token."""
    manifest: Path | None = None
    """``embedding_map.manifest.json``."""
    notes: list[str] = field(default_factory=list)
    """Things the user should know (a clamped sample, a FastICA that did not converge)."""

    def open(self) -> Any:
        """The representations as an xarray Dataset (lazy, with ``ds.rio.crs``): ``xr.open_zarr`` of :attr:`zarr`."""
        import xarray as xr

        return xr.open_zarr(self.zarr, decode_coords="all")

    @property
    def paths(self) -> list[Path]:
        """Every file or folder written."""
        out = [p for p in (self.zarr, self.manifest) if p is not None]
        for t in self.tokens:
            out += [p for p in (t.geotiff, t.png) if p is not None]
        return out


@dataclass
class Representations:
    """A cache window with up-to-date fused products and hidden tokens for a list of tokens."""

    cache: EmbeddingCache
    """The cache."""
    window: Window
    """The requested grid inside the cache."""
    tokens: list[Token]
    """Resolved tokens (registers and modality tokens expanded)."""
    fused: Fused | None
    """Model, fingerprint and fused group; None when every token is an encoder embedding."""

    @property
    def group(self) -> str | None:
        """Fused group name, or None."""
        return self.fused.group if self.fused else None

    def valid(self) -> np.ndarray:
        """[rows, cols] cells of the window inside both masks."""
        return self.cache.grid.mask()[self.window.slices] & self.window.grid.mask()


def check_tokens_syntax(tokens: str | Sequence[str]) -> list[Token]:
    """Parse ``--tokens`` (one line on a bad name), before any weights load."""
    return parse_tokens(tokens)


def prepare_tokens(cache: EmbeddingCache, window: Window, tokens: Sequence[Token], checkpoint: str | Path | None,
                   fuse: FuseSettings, *, device: str | None = None, progress: ProgressCallback | None = None,
                   check: Any = None) -> Representations:
    """Load the model (unless every token is an encoder embedding), check the tokens against it, then bring the
    fused products and hidden tokens they need up to date. ``check(resolved)`` runs after the tokens are resolved
    and before anything is computed (the callers' width checks)."""
    t0 = time.perf_counter()
    cached = cache.modalities()
    needs_model = any(t.kind != "emb" for t in tokens)
    if not needs_model:
        resolved = resolve_tokens(tokens, 0, 6, fuse.visible, cached)
        if check:
            check(resolved, None)
        return Representations(cache, window, resolved, None)
    model = load_model(checkpoint, device)
    cfg = model.config
    resolved = resolve_tokens(tokens, cfg.num_register_tokens, cfg.num_modalities, fuse.visible, cached)
    if check:
        check(resolved, cfg.embed_dim)
    report(progress, "fuse", message=f"ProM3E {checkpoint or 'MVRL/ProM3E'}: tokens "
                                     f"{', '.join(t.label for t in resolved)}")
    fp = model_fingerprint(model)
    decode = [str(t.index) for t in resolved if t.kind == "recon"]
    group = fuse_grid(cache, model, fuse, decode=decode, window=window, progress=progress, fingerprint=fp,
                      checkpoint=str(checkpoint or "MVRL/ProM3E"))
    update_hidden(cache, model, fuse, group, resolved, window=window, progress=progress)
    fused = Fused(cache, window, model, fp, group, fuse, str(checkpoint or "MVRL/ProM3E"), time.perf_counter() - t0)
    return Representations(cache, window, resolved, fused)


def iter_token_blocks(rep: Representations, token: Token):  # noqa: ANN201
    """Yield (window slices, float32 [h, w, d] block) per cache chunk; cells outside the masks are NaN."""
    valid = rep.valid()
    for ch in rep.cache.chunks(rep.window):
        block = read_token(rep.cache, rep.group, token, ch)
        src, dst = rep.window.clip(ch)
        b = block[src]
        yield dst, np.where(valid[dst][..., None], b, np.nan)


def sample_cells(valid: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, str | None]:
    """([rows, cols] bool: a seeded sample of ``n`` valid cells, note when ``n`` was clamped to the cells there are)."""
    idx = np.flatnonzero(valid)
    note = None
    if n > idx.size:
        note = f"--sample {n} is more than the {idx.size} cells of the window: fitted on all {idx.size}"
        n = idx.size
    rng = np.random.default_rng(seed)
    chosen = rng.choice(idx, size=n, replace=False) if n < idx.size else idx
    out = np.zeros(valid.shape, bool)
    out.flat[chosen] = True
    return out, note


def embedding_maps(
    cache: str | Path,
    *,
    grid: GridSpec | None = None,
    out_dir: str | Path = DEFAULT_OUT,
    checkpoint: str | Path | None = None,
    fuse: FuseSettings = FuseSettings(),
    settings: EmbeddingMapSettings = EmbeddingMapSettings(),
    device: str | None = None,
    overwrite: bool = False,
    png: bool = True,
    attrs: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
) -> EmbeddingMapResult:
    """Write the chosen tokens of every cell of ``grid`` (default: the cache's grid) as a georeferenced Zarr, and an
    RGB map of each token's first three components (see the module docstring for the files)."""
    check_device(device)
    tokens = parse_tokens(settings.tokens)
    store, window = open_cache_window(cache, grid)
    out = Path(out_dir)
    _check_out(out, [ZARR_NAME, f"{BASENAME}.manifest.json", f"{BASENAME}.settings.json"], overwrite)

    def widths(resolved: list[Token], embed_dim: int | None) -> None:
        for t in resolved:
            check_components(settings.components, token_width(t, embed_dim or 0), f"token {t.label}")
        stems = [f"embedding_{t.name}{ext}" for t in resolved for ext in (".tif", ".png")]
        _check_out(out, stems, overwrite)

    rep = prepare_tokens(store, window, tokens, checkpoint, fuse, device=device, progress=progress, check=widths)
    t_fit = time.perf_counter()
    valid = rep.valid()
    picked, note = sample_cells(valid, settings.sample, settings.seed)
    notes = [note] if note else []
    timings: dict[str, float] = {}
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{BASENAME}.staging-", dir=out))
    maps: list[TokenMap] = []
    try:
        zroot = _create_zarr(stage / ZARR_NAME, window.grid, store.chunk_size, attrs or {})
        fits: dict[str, dict[str, Any]] = {}
        for t in rep.tokens:
            d = token_width(t, rep.fused.model.config.embed_dim if rep.fused else 0)
            arr = _create_var(zroot, window.grid, t, d, store.chunk_size)
            x = np.full((int(picked.sum()), d), np.nan, np.float32)  # the sample, filled chunk by chunk
            filled = 0
            for dst, block in iter_token_blocks(rep, t):
                arr[dst + (slice(None),)] = block.astype(np.float16)
                rows = block[picked[dst]]
                x[filled : filled + len(rows)] = rows
                filled += len(rows)
                report(progress, f"write {t.label}", int(valid[dst].sum()), int(valid.sum()))
            comp = fit_components(x, settings.method, settings.components, settings.seed)
            if not comp.converged:
                notes.append(f"{t.label}: FastICA did not converge in 400 iterations (the map is still written)")
            limits = percentile_limits(comp.apply(x)[:, :3], settings.percentiles)
            comps = np.full((*window.grid.shape, comp.k), np.nan, np.float32)
            carr = _create_components(zroot, window.grid, t, comp, store.chunk_size)
            for dst, block in iter_token_blocks(rep, t):
                c = comp.apply(block.astype(np.float16))  # the stored values
                comps[dst] = c
                carr[dst + (slice(None),)] = c
            tif = stage / f"embedding_{t.name}.tif"
            _write_rgb_cog(tif, window.grid, comps[..., :3], limits, comp, t, settings, attrs or {})
            pngp = None
            if png:
                pngp = stage / f"embedding_{t.name}.png"
                _write_rgb_png(pngp, window.grid, comps[..., :3], limits, f"{t.label}: {settings.method.upper()} "
                               f"components 1-3 — {window.grid.name}")
            maps.append(TokenMap(t.label, t.name, d, out / tif.name, out / pngp.name if pngp else None,
                                 limits.tolist(), comp.converged))
            fits[t.label] = {"n_features": d, "n_sample": comp.n_sample, "limits": limits.tolist(),
                             "converged": comp.converged}
        _consolidate(stage / ZARR_NAME)
        timings["components_and_write"] = time.perf_counter() - t_fit
        conf = {"command": "embedding-map", "grid": window.grid.to_dict(), "cache": str(store.path),
                "embedding_map": asdict(settings), "tokens": [t.label for t in rep.tokens]}
        if rep.fused:
            conf = {**settings_of(window.grid, rep.fused, "embedding-map"), **conf}
            doc = fused_manifest("embedding-map", rep.fused, timings, {"fits": fits, "notes_run": notes})
        else:
            doc = {"kind": "embedding-map", "grid": window.grid.to_dict(), "cache": str(store.path), "fits": fits,
                   "notes_run": notes, "timings_s": timings, "versions": {"geoprom3e": __version__}}
        doc["outputs"] = [ZARR_NAME, *[p.name for m in maps for p in (m.geotiff, m.png) if p]]
        (stage / f"{BASENAME}.manifest.json").write_text(to_json(doc), encoding="utf-8")
        (stage / f"{BASENAME}.settings.json").write_text(to_json(conf), encoding="utf-8")
        _publish(stage, out, overwrite)
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"writing outputs to {str(out)!r} failed ({exc.strerror or exc}): free some space or "
                          "choose another --out; nothing was written") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    res = EmbeddingMapResult(summary=f"wrote {out / ZARR_NAME} and {len(maps)} RGB maps", zarr=out / ZARR_NAME,
                             tokens=maps, manifest=out / f"{BASENAME}.manifest.json", notes=notes,
                             details={"fused_group": rep.group, "sampled_cells": int(picked.sum())})
    return res


# ---------------------------------------------------------------------- writers
def _check_out(out: Path, names: Sequence[str], overwrite: bool) -> None:
    from geoprom3e.io.maps import check_output_paths

    check_output_paths(out, [out / n for n in names], overwrite)


def _publish(stage: Path, out: Path, overwrite: bool) -> None:
    for p in sorted(stage.iterdir()):
        final = out / p.name
        if final.exists():
            if not overwrite:
                raise OutputError(f"output {str(final)!r} appeared while this run was writing: pass --overwrite")
            if final.is_dir():
                old = out / f".{p.name}.old-{os.getpid()}"
                os.replace(final, old)
                os.replace(p, final)
                shutil.rmtree(old, ignore_errors=True)
                continue
        os.replace(p, final)


def _dims(grid: GridSpec) -> tuple[str, str]:
    return ("lat", "lon") if grid.epsg == 4326 else ("y", "x")


def _create_zarr(path: Path, grid: GridSpec, chunk: int, attrs: dict[str, Any]) -> Any:
    """A Zarr group with CF coordinates and the grid mapping, laid out like the embedding cache."""
    from geoprom3e.engine.cache import create_georeferenced_group

    return create_georeferenced_group(path, grid, {
        "title": f"geoprom3e per-cell representations on {grid.name}", "software": f"geoprom3e {__version__}",
        **{k: str(v) for k, v in attrs.items()}})


def _create_var(root: Any, grid: GridSpec, token: Token, d: int, chunk: int) -> Any:
    dims = _dims(grid)
    c = max(1, min(chunk, grid.rows, grid.cols))
    return root.create_array(token.name, shape=(*grid.shape, d), chunks=(c, c, d), dtype="float16",
                             fill_value=np.nan, dimension_names=(*dims, f"{token.name}_feature"),
                             attributes={"grid_mapping": "spatial_ref", "coordinates": "spatial_ref",
                                         "long_name": f"ProM3E representation {token.label}", "token": token.label,
                                         "units": "1"})


def _create_components(root: Any, grid: GridSpec, token: Token, comp: Components, chunk: int) -> Any:
    dims = _dims(grid)
    c = max(1, min(chunk, grid.rows, grid.cols))
    return root.create_array(f"{token.name}_components", shape=(*grid.shape, comp.k), chunks=(c, c, comp.k),
                             dtype="float32", fill_value=np.nan, dimension_names=(*dims, "component"),
                             attributes={"grid_mapping": "spatial_ref", "coordinates": "spatial_ref",
                                         "long_name": f"{comp.method.upper()} components of {token.label}",
                                         "method": comp.method, "n_sample": comp.n_sample, "seed": comp.seed,
                                         "units": "1"})


def _consolidate(path: Path) -> None:
    import zarr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(path))


def _write_rgb_cog(path: Path, grid: GridSpec, comps: np.ndarray, limits: np.ndarray, comp: Components, token: Token,
                   settings: EmbeddingMapSettings, attrs: dict[str, Any]) -> None:
    import rasterio
    import rasterio.shutil
    from rasterio.enums import ColorInterp
    from rasterio.io import MemoryFile

    rgb, _ = stretch_to_uint8(comps, limits)
    lo_p, hi_p = settings.percentiles
    profile = {"driver": "GTiff", "height": grid.rows, "width": grid.cols, "count": 3, "dtype": "uint8",
               "crs": rasterio.crs.CRS.from_user_input(grid.crs), "transform": grid.transform, "nodata": 0,
               "photometric": "RGB"}
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            for i in range(3):
                ds.write(rgb[..., i], i + 1)
                ds.set_band_description(i + 1, f"component_{i + 1}")
                ds.update_tags(i + 1, component=i + 1, stretch_low=f"{limits[i, 0]:.6g}",
                               stretch_high=f"{limits[i, 1]:.6g}",
                               stretch=f"value = 1 + 254 * clip((c - {limits[i, 0]:.6g}) / "
                                       f"({limits[i, 1]:.6g} - {limits[i, 0]:.6g}), 0, 1); 0 = no data")
            ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
            ds.update_tags(software=f"geoprom3e {__version__}", grid_name=grid.name, token=token.label,
                           method=comp.method, components=str(comp.k), sample_cells=str(comp.n_sample),
                           seed=str(comp.seed), stretch_percentiles=f"{lo_p:g},{hi_p:g}",
                           stretch_note=f"each band: percentiles {lo_p:g} and {hi_p:g} of its component over "
                                        "the fitted sample map to 1 and 255",
                           **{k: str(v) for k, v in attrs.items()})
        with mem.open() as src:
            rasterio.shutil.copy(src, str(path), driver="COG", compress="DEFLATE", blocksize=256,
                                 overview_resampling="NEAREST", BIGTIFF="IF_SAFER")


def _write_rgb_png(path: Path, grid: GridSpec, comps: np.ndarray, limits: np.ndarray, title: str,
                   max_side: int = 1400) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    k = max(1, int(np.ceil(max(comps.shape[:2]) / max_side)))
    rgb, valid = stretch_to_uint8(comps[::k, ::k], limits)
    rgba = np.concatenate([rgb, np.where(valid, 255, 0).astype(np.uint8)[..., None]], axis=-1)
    w, s, e, n = grid.bbox
    aspect = 1.0 / max(0.2, np.cos(np.radians((s + n) / 2))) if grid.is_geographic else 1.0
    ratio = (n - s) * aspect / (e - w)
    fig = Figure(figsize=(9, max(2.5, min(9, 9 * ratio + 0.8))), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_facecolor("#e8e8e8")
    ax.imshow(rgba, extent=(w, e, s, n), origin="upper", interpolation="nearest", aspect=aspect)
    ax.set_title(title)
    fig.savefig(str(path), format="png", bbox_inches="tight")
