"""``geoprom3e demo``: the offline default run."""

from __future__ import annotations

import click


@click.command("demo")
@click.option("--out", default="demo-out", show_default=True, type=click.Path(path_type=str),
              help="Folder for the demo's outputs.")
def demo(out: str) -> None:
    """Run the offline self-check: build a default-size ProM3E, save it, reload it, run inference.

    Needs no internet and no GPU.
    """
    from geoprom3e.model.report import self_check

    figures = self_check(out)
    for k, v in figures.items():
        click.echo(f"{k:<22} {v}")


def register(group: click.Group) -> None:
    """Attach the ``demo`` command."""
    group.add_command(demo)
