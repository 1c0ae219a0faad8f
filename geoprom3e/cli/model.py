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


@model_group.command("infer")
@click.argument("checkpoint", type=click.Path(path_type=str))
@click.argument("embeddings", type=click.Path(path_type=str))
@click.option("--visible", required=True, help="Modalities the model sees, in order, e.g. 'sat,loc,env'.")
@click.option("--decode", default=None, help="Modalities to reconstruct (default all; '' for none).")
@click.option("--n-samples", default=5, show_default=True, type=int, help="Latent draws averaged (0 = decode μ).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for the latent draws.")
@click.option("--out", required=True, type=click.Path(path_type=str), help="Output .npz (mu, logvar, sigma_l1, recon).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def infer_cmd(
    checkpoint: str, embeddings: str, visible: str, decode: str | None, n_samples: int, seed: int, out: str,
    overwrite: bool,
) -> None:
    """Run ProM3E on EMBEDDINGS (.npy/.npz [N, 6, 512]) and write latents and reconstructions to --out.

    \b
    Example:
      geoprom3e model infer ckpt/ cells.npy --visible sat,loc,env --decode image --out cells_latent.npz
    """
    from geoprom3e.model.report import infer_file

    dec = None if decode is None else [d for d in decode.split(",") if d.strip()]
    path = infer_file(checkpoint, embeddings, visible, out, decode=dec, n_samples=n_samples, seed=seed,
                      overwrite=overwrite)
    click.echo(f"wrote {path}")


@model_group.command("selfcheck")
@click.option("--out", default="selfcheck-out", show_default=True, type=click.Path(path_type=str),
              help="Folder for the saved checkpoint.")
def selfcheck(out: str) -> None:
    """Build a default-size ProM3E (27.3 M parameters), save it, reload it, run inference, print figures."""
    from geoprom3e.model.report import self_check

    for k, v in self_check(out).items():
        click.echo(f"{k:<22} {v}")


def register(group: click.Group) -> None:
    """Attach the ``model`` commands."""
    group.add_command(model_group)
