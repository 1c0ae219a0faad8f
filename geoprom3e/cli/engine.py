"""``embed-grid``, ``map-species``, ``uncertainty-map``, ``compare``: the gridding engine's commands."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from geoprom3e.cli.grids import grid_from_cli, grid_options
from geoprom3e.cli.imagery import imagery_options, request_from_cli


def default_cache(grid_name: str) -> str:
    """``$GEOPROM3E_CACHE/<grid>`` (default ``~/.cache/geoprom3e/<grid>``)."""
    root = os.environ.get("GEOPROM3E_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "geoprom3e")
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in grid_name)
    return os.path.join(root, safe)


def _bar(desc: str, unit: str = "cells"):  # noqa: ANN202
    from tqdm.auto import tqdm

    state: dict = {}

    def update(n: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr,
                                disable=None)
        state["bar"].update(n)

    def close() -> None:
        if "bar" in state:
            state["bar"].close()

    return update, close


def _model_options(f):  # noqa: ANN001, ANN202
    opts = [
        click.option("--checkpoint", default=None, type=click.Path(path_type=str),
                     help="ProM3E checkpoint (file or folder) [default: MVRL/ProM3E from Hugging Face]."),
        click.option("--cache", "cache", default=None, type=click.Path(path_type=str),
                     help="Embedding cache folder [default: $GEOPROM3E_CACHE/<grid>]."),
        click.option("--visible", default="sat,loc,env", show_default=True,
                     help="Modalities a cell may show the model; each cell uses those it has in the cache."),
        click.option("--n-samples", default=5, show_default=True, type=int,
                     help="Latent draws averaged before decoding (0 = decode the mean)."),
        click.option("--seed", default=0, show_default=True, type=int, help="Seed of the latent draws."),
        click.option("--device", default=None, help="Torch device [default: cuda if available, else cpu]."),
        click.option("--out", required=True, type=click.Path(path_type=str), help="Output folder."),
        click.option("--overwrite", is_flag=True, help="Replace existing outputs."),
        click.option("--no-png", is_flag=True, help="Skip the PNG quicklooks (faster when making many maps)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _fuse(visible: str, n_samples: int, seed: int):  # noqa: ANN202
    from geoprom3e.engine import FuseSettings
    from geoprom3e.engine.fuse import check_settings
    from geoprom3e.modalities import MODALITIES, parse_modalities

    s = FuseSettings(visible=tuple(MODALITIES[i] for i in parse_modalities(visible)), n_samples=n_samples, seed=seed)
    check_settings(s)
    return s


@click.command("embed-grid")
@grid_options()
@click.option("--modalities", default="sat,loc", show_default=True,
              help="Cell modalities to embed: sat (needs STAC access), loc, env (needs --covariates).")
@click.option("--cache", default=None, type=click.Path(path_type=str),
              help="Embedding cache folder [default: $GEOPROM3E_CACHE/<grid>]; resumed when it exists.")
@click.option("--chunk-size", default=32, show_default=True, type=int, help="Cells per chunk side.")
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
@click.option("--max-chunks", default=None, type=int, help="Stop after N chunks (a quick look; resume later).")
@click.option("--dry-run", is_flag=True, help="Print what the run would fetch and encode, then stop.")
@click.option("--retry-failed", is_flag=True,
              help="Also redo chunks that recorded failed cells (e.g. after a network outage).")
def embed_grid_cmd(grid_name, bbox, shape, res, crs, mask, modalities, cache, chunk_size, threads, covariates,  # noqa: ANN001
                   sat_weights, loc_weights, env_weights, weights_dir, device, scheduler, workers, max_chunks,
                   dry_run, retry_failed, **imagery) -> None:
    """Fetch, encode and cache every cell's embeddings for a grid (the expensive step, done once).

    Each chunk of cells is gathered (locations, Sentinel-2 chips via one STAC search per chunk, covariates),
    encoded in batches and committed to a Zarr cache. Interrupted runs resume: run the same command again.

    \b
    Examples:
      geoprom3e embed-grid --grid usa-250x500 --modalities sat,loc
      geoprom3e embed-grid --grid usa-250x500 --bbox -110 35 -100 42 --workers 4
      geoprom3e embed-grid --grid demo --stac-url file:///data/scenes/catalog.json --sat-weights ./ecosat
    """
    from geoprom3e.engine.run import build_inputs, describe_cost, estimate_cost, run_embed_grid

    grid = grid_from_cli(grid_name, bbox, shape, res, crs, mask)
    cache = cache or default_cache(grid.name)
    inputs = build_inputs(modalities, request=request_from_cli(**imagery), threads=threads, covariates=covariates,
                          weights={"sat": sat_weights, "loc": loc_weights, "env": env_weights},
                          weights_dir=weights_dir, device=device)
    click.echo(describe_cost(estimate_cost(grid, modalities, chunk_size=chunk_size, cache=cache)), err=True)
    if dry_run:
        return
    update, close = _bar("embed-grid")
    try:
        rep = run_embed_grid(grid, cache, inputs, chunk_size=chunk_size, progress=update, scheduler=scheduler,
                             workers=workers, max_chunks=max_chunks, retry_failed=retry_failed)
    except KeyboardInterrupt:
        close()
        click.echo(f"interrupted: committed chunks are kept. Resume with: {' '.join(sys.argv)}", err=True)
        raise SystemExit(130) from None
    close()
    fails = ", ".join(f"{m} {n}" for m, n in rep.failures.items() if n)
    click.echo(f"{grid.name}: {rep.chunks_done} chunks embedded, {rep.chunks_skipped} already cached "
               f"({rep.cells} cells, {rep.cells_per_s:.1f} cells/s); failed cells: {fails or 'none'}; cache {cache}")
    if fails:
        click.echo("failed cells and why: CACHE/commits/<modality>/*.json; after a transient outage rerun with "
                   "--retry-failed", err=True)


@click.command("map-species")
@click.argument("images", nargs=-1, type=click.Path(path_type=str))
@click.option("--text", "texts", multiple=True, help="A text query (e.g. 'Cardinalis cardinalis'); repeatable.")
@grid_options()
@_model_options
@click.option("--mode", type=click.Choice(["recon", "inter", "hybrid"]), default="recon", show_default=True,
              help="recon: query vs the model's reconstruction for the cell; inter: vs the cell's own embeddings; "
                   "hybrid: alpha * inter + (1 - alpha) * recon.")
@click.option("--alpha", default=0.5, show_default=True, type=float, help="Weight of inter in hybrid mode.")
@click.option("--image-weights", default=None, help="Image encoder weights [default: hf-hub:MVRL/taxabind-vit-b-16].")
@click.option("--text-weights", default=None, help="Text encoder weights [default: the image tower's model].")
@click.option("--weights-dir", default=None, type=click.Path(path_type=str), help="Folder with local weights.")
@click.option("--build-cache", is_flag=True,
              help="When the grid has no cache yet, build it first (sat via Planetary Computer + loc; says the cost).")
def map_species_cmd(images, texts, grid_name, bbox, shape, res, crs, mask, checkpoint, cache, visible,  # noqa: ANN001
                    n_samples, seed, device, out, overwrite, no_png, mode, alpha, image_weights, text_weights,
                    weights_dir, build_cache) -> None:
    """Map where the species in each photo (or named by --text) lives: one GeoTIFF/NetCDF/PNG per query.

    Needs a warm cache for the grid (`geoprom3e embed-grid`); each map then takes seconds.

    \b
    Examples:
      geoprom3e map-species lizard.jpg --grid usa-250x500 --out maps/
      geoprom3e map-species --text "Cardinalis cardinalis" --mode hybrid --alpha 0.3 --out maps/
    """
    from geoprom3e.engine.products import Query, species_maps

    grid = grid_from_cli(grid_name, bbox, shape, res, crs, mask)
    cache = cache or default_cache(grid.name)
    if build_cache and not os.path.isdir(os.path.join(cache, "embeddings.zarr")):
        from geoprom3e.engine.run import build_inputs, describe_cost, estimate_cost, run_embed_grid

        click.echo(describe_cost(estimate_cost(grid, "sat,loc", cache=cache)), err=True)
        update, close = _bar("embed-grid")
        run_embed_grid(grid, cache, build_inputs("sat,loc", weights_dir=weights_dir, device=device), progress=update)
        close()
    queries = [Query("image", p) for p in images] + [Query("text", t) for t in texts]
    enc = {"weights": image_weights, "weights_dir": weights_dir}
    outs = species_maps(grid, cache, queries, out, checkpoint=checkpoint, mode=mode,
                        alpha=alpha, fuse=_fuse(visible, n_samples, seed), image_encoder=enc,
                        text_encoder={"weights": text_weights or image_weights, "weights_dir": weights_dir},
                        device=device, overwrite=overwrite, png=not no_png)
    for o in outs:
        click.echo(f"wrote {o.geotiff}")


@click.command("uncertainty-map")
@grid_options()
@_model_options
def uncertainty_map_cmd(grid_name, bbox, shape, res, crs, mask, checkpoint, cache, visible, n_samples, seed,  # noqa: ANN001
                        device, out, overwrite, no_png) -> None:
    """Map the model's uncertainty ||sigma||_1 per cell (and how many modalities each cell had).

    \b
    Example:
      geoprom3e uncertainty-map --grid usa-250x500 --visible sat,loc,env --out maps/
    """
    from geoprom3e.engine.products import uncertainty_map

    grid = grid_from_cli(grid_name, bbox, shape, res, crs, mask)
    o = uncertainty_map(grid, cache or default_cache(grid.name), out, checkpoint=checkpoint,
                        fuse=_fuse(visible, n_samples, seed), device=device, overwrite=overwrite, png=not no_png)
    click.echo(f"wrote {o.geotiff}")


@click.command("compare")
@click.argument("a", type=click.Path(path_type=str))
@click.argument("b", type=click.Path(path_type=str))
@click.option("--band-a", default=None, help="Band of A (1-based index or name, e.g. sigma_l1) [default: 1].")
@click.option("--band-b", default=None, help="Band of B (e.g. shannon) [default: 1].")
@click.option("--out", default=None, type=click.Path(path_type=str), help="Folder for compare.json and a hexbin PNG.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
def compare_cmd(a, b, band_a, band_b, out, overwrite) -> None:  # noqa: ANN001
    """Pearson and Spearman correlation of two maps over cells valid in both (e.g. uncertainty vs Shannon).

    \b
    Example:
      geoprom3e compare maps/uncertainty.tif div/diversity.tif --band-a sigma_l1 --band-b shannon --out cmp/
    """
    from geoprom3e.engine.run import run_compare

    res = run_compare(a, b, band_a=band_a, band_b=band_b, out=out, overwrite=overwrite)
    click.echo(json.dumps(res.to_dict(), indent=1))
    if out:
        click.echo(f"wrote {Path(out) / 'compare.json'}")


def register(group: click.Group) -> None:
    """Attach the engine commands."""
    for cmd in (embed_grid_cmd, map_species_cmd, uncertainty_map_cmd, compare_cmd):
        group.add_command(cmd)
