"""``geoprom3e grids ...``: list and inspect grids; shared grid flags for every map command."""

from __future__ import annotations

from collections.abc import Callable

import click


def grid_options(default: str = "usa-250x500", default_text: str | None = None) -> Callable:
    """Decorator adding ``--grid --bbox --shape --res --crs --mask`` (resolve with :func:`grid_from_cli`)."""

    def decorate(f: Callable) -> Callable:
        opts = [
            click.option("--grid", "grid_name", default=None, metavar="NAME|FILE",
                         help="Preset grid (`geoprom3e grids list`), a grid JSON/YAML file or a map's .settings.json "
                              f"[default: {default_text or default}]."),
            click.option("--bbox", nargs=4, type=float, default=None, metavar="W S E N",
                         help="Custom grid extent (with --shape or --res), or a subset of --grid (cells whose "
                              "centres fall inside), in the grid's CRS units."),
            click.option("--shape", nargs=2, type=int, default=None, metavar="ROWS COLS",
                         help="Rows and columns of a custom --bbox grid."),
            click.option("--res", default=None, metavar="D|DX,DY",
                         help="Cell size of a custom --bbox grid in CRS units (degrees for EPSG:4326)."),
            click.option("--crs", default=None, help="CRS of a custom --bbox grid [default: EPSG:4326]."),
            click.option("--mask", default=None, metavar="conus|none|FILE",
                         help="Land mask: the contiguous-US outline, none, or a GeoJSON/GeoTIFF.")
        ]
        for opt in reversed(opts):
            f = opt(f)
        return f

    return decorate


def grid_from_cli(grid_name, bbox, shape, res, crs, mask, default: str = "usa-250x500"):  # noqa: ANN001, ANN201
    """Turn the values of :func:`grid_options` into a :class:`~geoprom3e.grid.GridSpec`."""
    from geoprom3e.errors import GridError
    from geoprom3e.grid import grid_from_options

    res_value = None
    if res is not None:
        try:
            parts = [float(v) for v in str(res).split(",")]
        except ValueError:
            raise GridError(f"--res {res!r} is not a number: pass e.g. --res 0.1 or --res 0.117,0.1") from None
        if len(parts) not in (1, 2):
            raise GridError(f"--res {res!r} needs one or two numbers: --res D or --res DX,DY")
        res_value = (parts[0], parts[-1])
    return grid_from_options(
        grid_name, bbox=tuple(bbox) if bbox else None, shape=tuple(shape) if shape else None, res=res_value,
        crs=crs, mask=mask, default=default,
    )


@click.group("grids")
def grids_group() -> None:
    """List and inspect the grids maps are drawn on.

    \b
    Examples:
      geoprom3e grids list
      geoprom3e grids show usa-250x500
      geoprom3e grids show usa-5km-albers --bbox -2000000 1000000 -1000000 2000000
      geoprom3e grids show --bbox -125 24.5 -66.5 49.5 --res 0.25
    """


@grids_group.command("list")
def list_cmd() -> None:
    """Print the preset grids: name, CRS, shape and description."""
    from geoprom3e.grid import get_grid, list_grids

    for name in list_grids():
        g = get_grid(name)
        click.echo(f"{name:<16} {g.crs:<10} {g.rows:>5} × {g.cols:<5} {g.description}")


@grids_group.command("show")
@click.argument("name", required=False)
@grid_options()
def show_cmd(name, grid_name, bbox, shape, res, crs, mask) -> None:  # noqa: ANN001
    """Show a grid's shape, cell size in km at its centre, bbox, transform and masked-in cells.

    NAME is a preset or a grid file; the grid flags define a custom grid or a --bbox subset instead.
    """
    from geoprom3e.grid import grid_report

    g = grid_from_cli(grid_name or name, bbox, shape, res, crs, mask)
    click.echo(grid_report(g))


def register(group: click.Group) -> None:
    """Attach the ``grids`` commands."""
    group.add_command(grids_group)


__all__ = ["grid_from_cli", "grid_options", "register"]
