"""``geoprom3e model ...``: inspect ProM3E checkpoints."""

from __future__ import annotations

import click


@click.group("model")
def model_group() -> None:
    """Inspect ProM3E checkpoints (published MVRL/ProM3E or trained with `geoprom3e train`)."""


@model_group.command("info")
@click.argument("path", type=click.Path(path_type=str))
def info(path: str) -> None:
    """Print the config, parameter count and modalities of the checkpoint at PATH, and check it loads.

    PATH is a .safetensors file, a folder with config.json + model.safetensors, a Lightning .ckpt or a
    plain state_dict .pt/.pth.
    """
    from geoprom3e.model.report import checkpoint_report

    click.echo(checkpoint_report(path))


def register(group: click.Group) -> None:
    """Attach the ``model`` commands."""
    group.add_command(model_group)
