"""``embed-grid``, ``map-species``, ``uncertainty-map``, ``compare``, ``cache verify``: the gridding engine's commands.

Each parses its options and makes one call into :mod:`geoprom3e.products`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from geoprom3e.cli.grids import grid_from_cli, grid_options
from geoprom3e.cli.imagery import imagery_options, request_from_cli
from geoprom3e.cli.progress import Bars
from geoprom3e.maps.species import MODES
from geoprom3e.scores import HYBRID_CONVENTION

_GRID_FLAGS = ("grid_name", "bbox", "shape", "res", "crs", "mask")
MEASURE_NAMES = ("sigma_l1", "dispersion", "recon_sigma")  # geoprom3e.model.uncertainty.MEASURES (checked in tests)


def resolve_grid_and_cache(cache: str | None, grid_name, bbox, shape, res, crs, mask):  # noqa: ANN001, ANN201
    """(grid or None, cache folder). Without grid flags the map uses the cache's own grid; with them, a window."""
    from geoprom3e.products.base import DEFAULT_GRID, default_cache

    flags = (grid_name, bbox, shape, res, crs, mask)
    grid = grid_from_cli(*flags) if any(v not in (None, ()) for v in flags) else None
    if cache is None:
        custom = bbox is not None and (shape is not None or res is not None)
        cache = str(default_cache(grid.name if custom else (grid_name if grid_name and not
                                                               grid_name.lower().endswith((".json", ".yaml", ".yml"))
                                                               else DEFAULT_GRID)))
    return grid, cache


def _require_cache(cache: str, grid_name, bbox, build_hint: bool) -> None:  # noqa: ANN001
    from geoprom3e.errors import CacheError

    if not (Path(cache) / "embeddings.zarr" / "zarr.json").is_file() and not Path(cache).exists():
        where = f"--grid {grid_name or 'usa-250x500'} "
        if bbox:
            where += "--bbox " + " ".join(f"{v:g}" for v in bbox) + " "
        more = ", or add --build-cache to build it first" if build_hint else ""
        raise CacheError(f"no embedding cache at {cache}: build it with `geoprom3e embed-grid {where}--cache {cache}` "
                         f"(Sentinel-2 via Planetary Computer; hours for the whole USA){more}")


def _model_options(f):  # noqa: ANN001, ANN202
    opts = [
        click.option("--checkpoint", default=None, type=click.Path(path_type=str),
                     help="ProM3E checkpoint (file or folder) [default: MVRL/ProM3E from Hugging Face]."),
        click.option("--cache", "cache", default=None, type=click.Path(path_type=str),
                     help="Embedding cache folder; its grid is the map's grid unless --grid/--bbox pick a window "
                          "[default: $GEOPROM3E_CACHE/usa-250x500]."),
        click.option("--visible", default="sat,loc,env", show_default=True,
                     help="Modalities a cell may show the model; each cell uses those it has in the cache."),
        click.option("--n-samples", default=5, show_default=True, type=int,
                     help="Latent draws averaged before decoding (0 = decode the mean)."),
        click.option("--seed", default=0, show_default=True, type=int, help="Seed of the latent draws."),
        click.option("--device", default=None, help="Torch device [default: cuda if available, else cpu]."),
        click.option("--out", default="maps", show_default=True, type=click.Path(path_type=str),
                     help="Output folder."),
        click.option("--overwrite", is_flag=True, help="Replace existing outputs (every file of the old set)."),
        click.option("--no-png", is_flag=True, help="Skip the PNG quicklooks (faster when making many maps)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _fuse(visible: str, n_samples: int, seed: int):  # noqa: ANN202
    from geoprom3e.engine import FuseSettings

    return FuseSettings(visible=tuple(v for v in visible.split(",") if v), n_samples=n_samples, seed=seed)


@click.command("embed-grid")
@grid_options()
@click.option("--modalities", default="sat,loc", show_default=True,
              help="Cell modalities to embed: sat (needs STAC access), loc, env (needs --covariates).")
@click.option("--cache", default=None, type=click.Path(path_type=str),
              help="Embedding cache folder [default: $GEOPROM3E_CACHE/<grid>]; resumed when it exists, and a "
                   "--bbox window of its grid embeds only the chunks it touches.")
@click.option("--chunk-size", default=32, show_default=True, type=int, help="Cells per chunk side (new caches).")
@imagery_options
@click.option("--threads", default=16, show_default=True, type=int, help="Concurrent chip reads per process.")
@click.option("--covariates", default=None, type=click.Path(path_type=str),
              help="WorldClim 2.1 stack or folder (elevation, bio1..bio19) for env.")
@click.option("--sat-weights", default=None, help="Sat encoder weights (HF id or folder) [default: MVRL/ecosat].")
@click.option("--loc-weights", default=None, help="Loc encoder weights [default: MVRL/ecogeo, else geoclip wheel].")
@click.option("--env-weights", default=None, help="Env encoder weights [default: MVRL/ecoclim].")
@click.option("--weights-dir", default=None, type=click.Path(path_type=str), help="Folder with local weights.")
@click.option("--device", default=None, help="Torch device for the encoders.")
@click.option("--scheduler", default=None, help="Run chunks on this Dask scheduler (tcp://host:8786).")
@click.option("--workers", default=None, type=int, help="Run chunks on a local Dask cluster of N processes.")
@click.option("--gather-workers", default=None, type=click.IntRange(0),
              help="Processes that fetch and decode chips for the one encoder (0: a thread of the main process) "
                   "[default: one per core with sat, else 0].")
@click.option("--max-chunks", default=None, type=int, help="Stop after N chunks (a quick look; resume later).")
@click.option("--dry-run", is_flag=True,
              help="Print what the run would fetch and encode, and its time at rates measured on a few cells, "
                   "then stop.")
@click.option("--retry-failed", is_flag=True,
              help="Also redo chunks whose cells failed for a passing cause (HTTP 429/5xx, timeouts: after a "
                   "network outage); cells without a scene, corrupt files and refused hrefs are kept as they are.")
def embed_grid_cmd(grid_name, bbox, shape, res, crs, mask, modalities, cache, chunk_size, threads, covariates,  # noqa: ANN001
                   sat_weights, loc_weights, env_weights, weights_dir, device, scheduler, workers, gather_workers,
                   max_chunks, dry_run, retry_failed, **imagery) -> None:
    """Fetch, encode and cache every cell's embeddings for a grid (the expensive step, done once).

    Each chunk of cells is gathered (locations, Sentinel-2 chips via one STAC search per chunk, covariates),
    encoded in batches and committed to a Zarr cache. Interrupted runs resume: run the same command again.

    \b
    Examples:
      geoprom3e embed-grid --grid usa-250x500 --modalities sat,loc
      geoprom3e embed-grid --grid usa-250x500 --bbox -110 35 -100 42 --gather-workers 8
      geoprom3e embed-grid --grid usa-250x500 --bbox -110 35 -100 42 --workers 4
      geoprom3e embed-grid --grid usa-250x500 --modalities loc --dry-run
    """
    from geoprom3e.products.base import check_device
    from geoprom3e.products.embed import build_inputs, embed, plan_embed, probe_rates

    check_device(device)
    if gather_workers is not None and (scheduler or workers):
        from geoprom3e.errors import ConfigError

        raise ConfigError("--gather-workers sets the gather processes of one machine; with --scheduler/--workers "
                          "each Dask worker gathers its own chunks: drop one of them")
    grid = grid_from_cli(grid_name, bbox, shape, res, crs, mask)
    cache_grid = None
    if cache is None and bbox is not None and shape is None and res is None:
        from geoprom3e.grid import get_grid

        cache_grid = get_grid(grid_name or "usa-250x500")  # the preset's shared cache; embed this window of it
    _, cache = resolve_grid_and_cache(cache, grid_name or "usa-250x500", bbox, shape, res, crs, mask)
    inputs = build_inputs(modalities, request=request_from_cli(**imagery), threads=threads, covariates=covariates,
                          weights={"sat": sat_weights, "loc": loc_weights, "env": env_weights},
                          weights_dir=weights_dir, device=device)
    plan = plan_embed(grid, modalities, chunk_size=chunk_size, cache=cache)
    if dry_run:  # a few seconds of real reads and encodes give an estimate from measured rates
        from geoprom3e.engine.gather import default_gather_workers

        n = default_gather_workers(inputs) if gather_workers is None else gather_workers
        click.echo(plan.with_rates(probe_rates(grid, inputs, gather_workers=n)).describe(), err=True)
        return
    click.echo(plan.describe(), err=True)
    with Bars() as bars:
        try:
            rep = embed(grid, cache, inputs, chunk_size=chunk_size, progress=bars, scheduler=scheduler,
                        workers=workers, max_chunks=max_chunks, retry_failed=retry_failed, cache_grid=cache_grid,
                        gather_workers=gather_workers)
        except KeyboardInterrupt:
            bars.__exit__()
            click.echo(f"interrupted: committed chunks are kept. Resume with: {' '.join(sys.argv)}", err=True)
            raise SystemExit(130) from None
    fails = ", ".join(f"{m} {n}" for m, n in rep.failures.items() if n)
    rpc = rep.requests_per_chip("sat")
    req = f", {rpc:.2f} COG requests per chip" if rpc else ""
    how = f", {rep.gather_workers} gather processes" if rep.gather_workers else ""
    click.echo(f"{grid.name}: {rep.chunks_done} chunks embedded, {rep.chunks_skipped} already cached "
               f"({rep.cells} cells, {rep.cells_per_s:.1f} cells/s{req}{how}); failed cells: {fails or 'none'}; "
               f"cache {cache}")
    if fails:
        click.echo("failed cells and why: CACHE/commits/<modality>/*.json; after a transient outage rerun with "
                   "--retry-failed", err=True)


@click.command("map-species")
@click.argument("images", nargs=-1, type=click.Path(path_type=str))
@click.option("--text", "texts", multiple=True, help="A text query (e.g. 'Cardinalis cardinalis'); repeatable.")
@grid_options(default_text="the cache's grid; with --bbox, usa-250x500")
@_model_options
@click.option("--mode", type=click.Choice(MODES), default="recon", show_default=True,
              help="recon: query vs the model's reconstruction for the cell; inter: vs the cell's own embeddings; "
                   f"{HYBRID_CONVENTION}.")
@click.option("--alpha", default=0.5, show_default=True, type=float,
              help="Weight of the inter-modal score in hybrid mode (0 = recon, 1 = inter).")
@click.option("--image-weights", default=None, help="Image encoder weights [default: hf-hub:MVRL/taxabind-vit-b-16].")
@click.option("--text-weights", default=None, help="Text encoder weights [default: the image tower's model].")
@click.option("--weights-dir", default=None, type=click.Path(path_type=str), help="Folder with local weights.")
@click.option("--build-cache", is_flag=True,
              help="When the grid has no cache yet, build it first (sat via Planetary Computer + loc; says the cost).")
def map_species_cmd(images, texts, grid_name, bbox, shape, res, crs, mask, checkpoint, cache, visible,  # noqa: ANN001
                    n_samples, seed, device, out, overwrite, no_png, mode, alpha, image_weights, text_weights,
                    weights_dir, build_cache) -> None:
    """Map where the species in each photo (or named by --text) lives: one GeoTIFF/NetCDF/PNG per query.

    Reads a warm cache (`geoprom3e embed-grid`); each map then takes seconds. Without --grid/--bbox the map
    covers the cache's grid; with them, any window of it.

    \b
    Examples:
      geoprom3e map-species photo.jpg
      geoprom3e map-species photo.jpg --grid usa-250x500 --bbox -115 31 -109 37 --out arizona/
      geoprom3e map-species --text "Cardinalis cardinalis" --mode hybrid --alpha 0.3 --out maps/
    """
    from geoprom3e.products import Query, species_maps
    from geoprom3e.products.base import check_device
    from geoprom3e.scores import check_alpha

    queries = [Query("image", p) for p in images] + [Query("text", t) for t in texts]
    fuse = _fuse(visible, n_samples, seed)
    check_alpha(alpha)
    for q in queries:
        q.check()
    check_device(device)
    grid, cache = resolve_grid_and_cache(cache, grid_name, bbox, shape, res, crs, mask)
    if build_cache and not (Path(cache) / "embeddings.zarr").is_dir():
        from geoprom3e.grid import get_grid
        from geoprom3e.products.embed import build_inputs, embed, plan_embed

        target = grid or get_grid("usa-250x500")
        click.echo(plan_embed(target, "sat,loc", cache=cache).describe(), err=True)
        with Bars() as bars:
            embed(target, cache, build_inputs("sat,loc", weights_dir=weights_dir, device=device), progress=bars)
    _require_cache(cache, grid_name, bbox, build_hint=True)
    with Bars() as bars:
        res = species_maps(cache, queries, grid=grid, out_dir=out, checkpoint=checkpoint, mode=mode, alpha=alpha,
                           fuse=fuse, image_encoder={"weights": image_weights, "weights_dir": weights_dir},
                           text_encoder={"weights": text_weights or image_weights, "weights_dir": weights_dir},
                           device=device, overwrite=overwrite, png=not no_png, progress=bars)
    for m in res.maps:
        click.echo(f"wrote {m.outputs.geotiff}")


@click.command("uncertainty-map")
@grid_options(default_text="the cache's grid; with --bbox, usa-250x500")
@_model_options
@click.option("--measure", type=click.Choice(MEASURE_NAMES), default="sigma_l1",
              show_default=True,
              help="sigma_l1: the published ||sigma||_1; dispersion, recon_sigma: research measures, not in the paper "
                   "(recon_sigma needs a model trained with model.error_head=true).")
def uncertainty_map_cmd(grid_name, bbox, shape, res, crs, mask, checkpoint, cache, visible, n_samples, seed,  # noqa: ANN001
                        device, out, overwrite, no_png, measure) -> None:
    """Map the model's latent spread ||sigma||_1 per cell (and how many modalities each cell had).

    ||sigma||_1 is the published ProM3E quantity; under the published training loss it has not been shown to
    vary with how informative a cell's inputs are, so read differences between cells with caution.

    \b
    Examples:
      geoprom3e uncertainty-map
      geoprom3e uncertainty-map --grid usa-250x500 --visible sat,loc,env --out maps/
      geoprom3e uncertainty-map --measure dispersion --out research/
    """
    from geoprom3e.products import uncertainty_map
    from geoprom3e.products.base import check_device

    fuse = _fuse(visible, n_samples, seed)
    check_device(device)
    grid, cache = resolve_grid_and_cache(cache, grid_name, bbox, shape, res, crs, mask)
    _require_cache(cache, grid_name, bbox, build_hint=False)
    with Bars() as bars:
        res = uncertainty_map(cache, grid=grid, out_dir=out, checkpoint=checkpoint, fuse=fuse, device=device,
                              overwrite=overwrite, png=not no_png, progress=bars, measure=measure)
    click.echo(f"wrote {res.maps[0].outputs.geotiff}")


@click.command("compare")
@click.argument("a", type=click.Path(path_type=str))
@click.argument("b", type=click.Path(path_type=str))
@click.option("--band-a", default=None, help="Band of A (1-based index or name, e.g. sigma_l1) [default: 1].")
@click.option("--band-b", default=None, help="Band of B (e.g. shannon) [default: 1].")
@click.option("--out", default=None, type=click.Path(path_type=str), help="Folder for compare.json and a hexbin PNG.")
@click.option("--contiguity", type=click.Choice(["rook", "queen"]), default="rook", show_default=True,
              help="Neighbours for Moran's I: rook (4 edge neighbours) or queen (8, corners too).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
def compare_cmd(a, b, band_a, band_b, out, contiguity, overwrite) -> None:  # noqa: ANN001
    """Pearson and Spearman correlation of two maps over cells valid in both (e.g. uncertainty vs Shannon).

    Beside the naive p-values it reports Moran's I of each map and Dutilleul's modified t-test, whose
    effective sample size accounts for spatial autocorrelation (neighbouring cells are not independent).

    \b
    Example:
      geoprom3e compare maps/uncertainty.tif div/diversity.tif --band-a sigma_l1 --band-b shannon --out cmp/
    """
    from geoprom3e.products import compare_maps

    res = compare_maps(a, b, band_a=band_a, band_b=band_b, out=out, overwrite=overwrite, contiguity=contiguity)
    click.echo(json.dumps(res.to_dict(), indent=1))
    if out:
        click.echo(f"wrote {Path(out) / 'compare.json'}")


@click.group("cache")
def cache_group() -> None:
    """Inspect and check embedding caches.

    \b
    Examples:
      geoprom3e cache verify --cache ~/.cache/geoprom3e/usa-250x500
      geoprom3e cache verify --repair --cache demo-out/cache
    """


@cache_group.command("verify")
@click.option("--cache", default=None, type=click.Path(path_type=str),
              help="Cache folder [default: $GEOPROM3E_CACHE/usa-250x500].")
@click.option("--repair", is_flag=True, help="Mark bad chunks for recompute: the next run redoes them.")
def verify_cmd(cache, repair) -> None:  # noqa: ANN001
    """Check every committed chunk of a cache against the checksum in its commit record (exit 1 if any is bad)."""
    from geoprom3e.products import verify_cache
    from geoprom3e.products.base import default_cache

    res = verify_cache(cache or default_cache(), repair=repair)
    for b in res.bad:
        click.echo(f"bad: {b['group']} {b['chunk']}", err=True)
    click.echo(res.summary)
    if res.bad and not repair:
        raise SystemExit(1)


def register(group: click.Group) -> None:
    """Attach the engine commands."""
    for cmd in (embed_grid_cmd, map_species_cmd, uncertainty_map_cmd, compare_cmd, cache_group):
        group.add_command(cmd)
