"""``geoprom3e fetch-chips`` and ``geoprom3e stac ...``: Sentinel-2 chips per grid cell through STAC."""

from __future__ import annotations

import click

from geoprom3e.imagery.request import PLANETARY_COMPUTER_STAC, SELECTIONS, SIGNING_MODES, ImageryRequest

_D = ImageryRequest()


def imagery_options(f):  # noqa: ANN001, ANN201
    """Decorator adding the imagery flags shared by every command that reads chips (see :func:`request_from_cli`)."""
    opts = [
        click.option("--stac-url", default=PLANETARY_COMPUTER_STAC, show_default=True,
                     help="STAC API URL, or a static catalogue (file:///path/catalog.json or a path)."),
        click.option("--collection", default=_D.collection, show_default=True, help="STAC collection id."),
        click.option("--datetime", "window", default=_D.datetime, show_default=True, help="Date window START/END."),
        click.option("--max-cloud", default=_D.max_cloud, show_default=True, type=float,
                     help="Scene cloud limit, percent (eo:cloud_cover <)."),
        click.option("--assets", default="visual", show_default=True,
                     help="Asset keys in band order: visual (RGB uint8) or e.g. B04,B03,B02."),
        click.option("--selection", type=click.Choice(SELECTIONS), default=_D.selection, show_default=True,
                     help="least-cloudy scene passing the SCL check, or median of --median-k scenes."),
        click.option("--median-k", default=_D.median_k, show_default=True, type=int, help="Scenes per median chip."),
        click.option("--max-chip-cloud", default=_D.max_chip_cloud, show_default=True, type=float,
                     help="Largest SCL cloud fraction inside a chip before the next scene is tried."),
        click.option("--no-scl-check", is_flag=True, help="Skip the SCL cloud check inside chips (one read less)."),
        click.option("--chip-size", default=_D.chip_size, show_default=True, type=int, help="Chip size in pixels."),
        click.option("--resolution", default=_D.resolution, show_default=True, type=float,
                     help="Chip pixel size (m)."),
        click.option("--signing", type=click.Choice(SIGNING_MODES), default=_D.signing, show_default=True,
                     help="auto: sign Azure blob hrefs (Planetary Computer); always; never."),
        click.option("--allow-host", "allow_hosts", multiple=True, metavar="HOST",
                     help="Also read asset hrefs on HOST (or *.domain); repeatable. Allowed without it: the STAC "
                          "API's own host and *.blob.core.windows.net (unless --signing never)."),
        click.option("--allow-local-dir", "allow_local_dirs", multiple=True, metavar="DIR",
                     type=click.Path(file_okay=False),
                     help="Also read local asset files under DIR (a local catalogue only; its own folder tree is "
                          "always allowed); repeatable."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


IMAGERY_PARAMS = ("stac_url", "collection", "window", "max_cloud", "assets", "selection", "median_k",
                  "max_chip_cloud", "no_scl_check", "chip_size", "resolution", "signing", "allow_hosts",
                  "allow_local_dirs")
"""Names of the parameters :func:`imagery_options` adds."""


def request_from_cli(stac_url, collection, window, max_cloud, assets, selection, median_k,  # noqa: ANN001, ANN201
                     max_chip_cloud, no_scl_check, chip_size, resolution, signing, allow_hosts=(),
                     allow_local_dirs=()):
    """The :class:`ImageryRequest` the flags of :func:`imagery_options` describe."""
    return ImageryRequest(
        stac_url=stac_url, collection=collection, datetime=window, max_cloud=max_cloud,
        assets=tuple(a.strip() for a in assets.split(",") if a.strip()), chip_size=chip_size,
        resolution=resolution, selection=selection, median_k=median_k,
        scl_asset=None if no_scl_check else _D.scl_asset, max_chip_cloud=max_chip_cloud, signing=signing,
        allow_hosts=tuple(allow_hosts), allow_local_dirs=tuple(allow_local_dirs))


@click.command("fetch-chips")
@click.option("--grid", default=None, help="Grid preset or grid file (see `geoprom3e grids list`).")
@click.option("--cells", "cells_csv", default=None, type=click.Path(dir_okay=False),
              help="Instead of --grid: a CSV with lat, lon (and cell_id) columns.")
@click.option("--bbox", nargs=4, type=float, default=None, metavar="W S E N",
              help="Keep only cells whose centres fall inside (grid CRS; degrees for --cells).")
@click.option("--no-mask", is_flag=True, help="Keep cells outside the grid's land mask too.")
@imagery_options
@click.option("--threads", default=16, show_default=True, type=click.IntRange(1, 256), help="Read threads.")
@click.option("--block-size", default=256, show_default=True, type=click.IntRange(1, 100_000),
              help="Cells per block (one STAC search per block).")
@click.option("--retry-no-scene", is_flag=True, help="On resume, search again for cells that had no scene.")
@click.option("--overwrite", is_flag=True, help="Start over instead of resuming an existing store.")
@click.option("--out", required=True, type=click.Path(), help="Zarr chip store to create or resume.")
def fetch_chips_cmd(grid, cells_csv, bbox, no_mask, stac_url, collection, window, max_cloud, assets, selection,
                    median_k, max_chip_cloud, no_scl_check, chip_size, resolution, signing, allow_hosts,
                    allow_local_dirs, threads, block_size, retry_no_scene, overwrite, out) -> None:
    """Fetch a Sentinel-2 chip centred on every grid cell into a resumable Zarr store.

    One STAC search per block of cells (CQL2-JSON cloud filter, sorted least cloudy first), then windowed COG
    reads in each scene's own CRS from a thread pool. A cell that fails is recorded with its reason and never
    stops the run; run the same command again to resume (done cells are skipped, failed ones retried).
    Beside the store: OUT.failures.csv, OUT.contact.png (a sample) and OUT.summary.json.

    \b
    Examples:
      geoprom3e fetch-chips --grid usa-250x500 --bbox -122.5 37 -121.5 38 --out bay.zarr
      geoprom3e fetch-chips --grid usa-250x500 --assets B04,B03,B02,B08 --datetime 2021-06-01/2021-08-31 \\
          --max-cloud 10 --threads 32 --out usa_bands.zarr
      geoprom3e fetch-chips --cells cells.csv --stac-url ./demo_stac/catalog.json --datetime 2024-01-01/2025-12-31 \\
          --allow-local-dir ./scenes --out demo.zarr
    \b
    Read it back:  xarray.open_zarr("bay.zarr").chips   # [cell, band, y, x]
    """
    from tqdm import tqdm

    from geoprom3e.imagery.fetch import fetch_chips

    request = request_from_cli(stac_url, collection, window, max_cloud, assets, selection, median_k,
                               max_chip_cloud, no_scl_check, chip_size, resolution, signing, allow_hosts,
                               allow_local_dirs)
    bars: list = []  # the bar appears once the store is open and the cell count known

    def start(n: int) -> None:
        bars.append(tqdm(total=n, unit="chip", desc="chips", dynamic_ncols=True, smoothing=0.1))

    try:
        summary = fetch_chips(request, out, grid=grid, cells_csv=cells_csv, bbox=tuple(bbox) if bbox else None,
                              masked=not no_mask, threads=threads, block_size=block_size, overwrite=overwrite,
                              retry_no_scene=retry_no_scene, progress=lambda k: bars and bars[0].update(k),
                              on_start=start)
    except BaseException:
        for b in bars:  # wipe the bar so the error stays one line
            b.leave = False
            b.close()
        raise
    for b in bars:
        b.close()
    c = summary.counts
    click.echo(f"{summary.store}: {c['done']}/{summary.cells} cells done, {c['failed']} failed, "
               f"{c['no_scene']} without a scene; {summary.fetched} fetched in {summary.seconds:.1f}s "
               f"({summary.chips_per_s:.1f} chips/s, {summary.search_requests} searches, {summary.reads} reads, "
               f"{summary.requests} HTTP requests, "
               f"{summary.retries} retries)")
    if summary.failures_csv:
        click.echo(f"cells without a chip and why: {summary.failures_csv} (run the command again to retry)")
    if summary.contact_sheet:
        click.echo(f"contact sheet: {summary.contact_sheet}")


@click.group("stac")
def stac_group() -> None:
    """Local STAC stack for tests and offline demos (a real STAC API + a COG file server on 127.0.0.1)."""


@stac_group.command("serve")
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
@click.option("--collection", default="sentinel-2-l2a", show_default=True, help="Collection id to serve.")
@click.option("--latency", default=0.0, show_default=True, type=float, help="Injected latency per file request (s).")
@click.option("--error-rate", default=0.0, show_default=True, type=float, help="Share of file requests answered 503.")
@click.option("--static", "static_out", default=None, type=click.Path(file_okay=False),
              help="Also write a static catalogue (hrefs to the file server) into this folder.")
def serve_cmd(folder, collection, latency, error_rate, static_out) -> None:
    """Serve the scenes in FOLDER (<item_id>/<ASSET>.tif + properties.json) as a STAC API until Ctrl-C.

    Needs PostgreSQL 15 + PostGIS 3 (`bash .ci/setup.d/stac.sh`) and the `stac-server` extra.

    \b
    Example:
      geoprom3e stac serve ./scenes --latency 0.02
      geoprom3e fetch-chips --cells cells.csv --stac-url http://127.0.0.1:PORT --datetime 2024-01-01/2025-12-31 \\
          --out chips.zarr
    """
    from geoprom3e.testing.faults import FaultConfig
    from geoprom3e.testing.stac import serve_local_stac, write_static_catalog

    def ready(stack) -> None:
        if static_out:
            write_static_catalog(stack.items, static_out, collection)
            click.echo(f"static catalogue: {static_out}/catalog.json")
        click.echo(f"STAC API: {stack.stac_url}  ({len(stack.items)} items in {collection!r})")
        click.echo(f"COG files: {stack.files.url}  (token endpoint {stack.files.sas_url})")
        click.echo("Ctrl-C to stop")

    serve_local_stac(folder, faults=FaultConfig(latency_s=latency, error_rate=error_rate), collection=collection,
                     ready=ready)


@stac_group.command("make-scenes")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--from-chips", default=None, type=click.Path(file_okay=False, exists=True),
              help="Folder of real chips (e.g. ../shared/data/sentinel2_l2a_chips_california_fires/post_fire) "
                   "to warp to UTM at 10 m; without it, synthetic scenes are made.")
@click.option("--catalog", "catalog_out", default=None, type=click.Path(file_okay=False),
              help="Also write a static catalogue with local file hrefs into this folder.")
def make_scenes_cmd(folder, from_chips, catalog_out) -> None:
    """Write test scenes into FOLDER (and optionally a static catalogue) for `stac serve` or --stac-url.

    \b
    Example:
      geoprom3e stac make-scenes ./scenes --from-chips ../shared/data/sentinel2_l2a_chips_california_fires/post_fire \\
          --catalog ./demo_stac
      geoprom3e fetch-chips --cells cells.csv --stac-url ./demo_stac/catalog.json --datetime 2024-01-01/2025-12-31 \\
          --out demo.zarr
    """
    from geoprom3e.testing.stac import make_scenes

    n, cat = make_scenes(folder, from_chips=from_chips, catalog_out=catalog_out)
    click.echo(f"{n} scene(s) in {folder}" + (f"; static catalogue {cat}" if cat else ""))


def register(group: click.Group) -> None:
    """Attach ``fetch-chips`` and the ``stac`` group."""
    group.add_command(fetch_chips_cmd)
    group.add_command(stac_group)
