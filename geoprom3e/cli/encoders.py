"""``geoprom3e weights ...`` (encoder weights) and ``geoprom3e encode`` (embed inputs with a frozen encoder)."""

from __future__ import annotations

import click

from geoprom3e.encoders.registry import list_encoders
from geoprom3e.encoders.weights import WEIGHTS
from geoprom3e.modalities import MODALITIES

_WDIR = click.option(
    "--weights-dir", type=click.Path(file_okay=False, path_type=str), default=None, envvar="GEOPROM3E_WEIGHTS_DIR",
    help="Folder with local copies (DIR/org/name/ or a Hugging Face cache layout). Default: the HF cache.",
)


@click.group("weights")
def weights_group() -> None:
    """List, download, verify and locate the frozen TaxaBind encoder weights.

    \b
    Examples:
      geoprom3e weights list
      geoprom3e weights download MVRL/ecosat MVRL/ecogeo --weights-dir ~/taxabind
      geoprom3e weights verify MVRL/ecosat --weights-dir ~/taxabind
      geoprom3e weights path MVRL/ecosat
    Offline machines: download elsewhere, copy DIR over, and pass --weights-dir DIR (or set
    GEOPROM3E_WEIGHTS_DIR). Nothing is downloaded implicitly.
    """


@weights_group.command("list")
@_WDIR
def list_cmd(weights_dir: str | None) -> None:
    """Show every published id, the modalities it serves, and where it is on this machine."""
    from geoprom3e.encoders.loc import geoclip_wheel_weights
    from geoprom3e.encoders.weights import list_weights

    for st in list_weights(weights_dir):
        where = str(st.path) if st.path else "missing"
        extra = f" [extra: {st.spec.extra}]" if st.spec.extra else ""
        click.echo(f"{st.spec.repo_id:26s} {','.join(st.spec.modalities):11s} {where}{extra}")
    wheel = geoclip_wheel_weights()
    click.echo(f"{'geoclip wheel (loc)':26s} {'loc':11s} {wheel or 'missing (pip install --no-deps geoclip==1.3.0)'}"
               "  [fallback, not in the ProM3E space]")


@weights_group.command("download")
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Download every published id.")
@_WDIR
def download_cmd(ids: tuple[str, ...], all_: bool, weights_dir: str | None) -> None:
    """Download IDS (Hugging Face ids such as MVRL/ecosat) into --weights-dir or the Hugging Face cache."""
    from geoprom3e.encoders.weights import download_many

    for repo_id, path in download_many(list(WEIGHTS) if all_ else list(ids), weights_dir=weights_dir):
        click.echo(f"{repo_id}: {path}")


@weights_group.command("verify")
@click.argument("ids", nargs=-1)
@_WDIR
def verify_cmd(ids: tuple[str, ...], weights_dir: str | None) -> None:
    """Check that IDS (ids or folders; default every published id) are complete and intact; exit 2 if not."""
    from geoprom3e.encoders.weights import verify_many
    from geoprom3e.errors import WeightsNotFoundError

    reports = verify_many(list(ids) or list(WEIGHTS), weights_dir=weights_dir)
    for rep in reports:
        status = "ok" if rep.ok else "PROBLEM"
        click.echo(f"{rep.repo_id}: {status} ({rep.path or 'not found'}; checked {len(rep.checked)} file(s))")
        for p in rep.problems:
            click.echo(f"  - {p}")
    bad = [r.repo_id for r in reports if not r.ok]
    if bad:
        raise WeightsNotFoundError(
            f"{len(bad)} of {len(reports)} failed verification ({', '.join(bad)}): re-download them with "
            "`geoprom3e weights download ID` or replace the files listed above"
        )


@weights_group.command("path")
@click.argument("repo_id")
@_WDIR
def path_cmd(repo_id: str, weights_dir: str | None) -> None:
    """Print the local folder of REPO_ID (exit 2 with what to do when it is not here)."""
    from geoprom3e.encoders.weights import resolve_weights

    click.echo(str(resolve_weights(repo_id, weights_dir=weights_dir)))


_SOURCES = sorted({s.source for s in list_encoders()})


@click.command("encode", context_settings={"ignore_unknown_options": True})
@click.argument("modality", type=click.Choice(list(MODALITIES)))
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=str), help="Output .npz file.")
@click.option("--source", type=click.Choice(_SOURCES), default="taxabind", show_default=True,
              help="Encoder family (see `geoprom3e weights list`).")
@click.option("--weights", default=None, help="Hugging Face id or local folder (default: the source's published id).")
@_WDIR
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available).")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Default: the encoder's preferred size.")
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True,
              help="Processes decoding/preprocessing inputs while the model runs.")
@click.option("--covariates", type=click.Path(exists=True, path_type=str), default=None,
              help="env only: WorldClim 2.1 20-band stack or folder (elevation, bio1..bio19).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
def encode_cmd(modality: str, inputs: tuple[str, ...], out: str, source: str, weights: str | None,
               weights_dir: str | None, device: str | None, batch_size: int | None, workers: int,
               covariates: str | None, overwrite: bool) -> None:
    """Embed INPUTS with the frozen MODALITY encoder into --out (.npz: embeddings [N, 512], failures, meta).

    \b
    INPUTS by modality:
      image, sat, audio  files (photos; RGB GeoTIFF chips; WAV/FLAC clips)
      text               strings, or @names.txt (one per line)
      loc, env           a CSV with latitude/longitude columns, or LAT,LON pairs (latitude FIRST)
    \b
    Examples:
      geoprom3e encode image photos/*.jpg --out photos.npz
      geoprom3e encode loc sites.csv --out sites_loc.npz
      geoprom3e encode loc 38.9,-77.0 34.05,-118.24 --out two.npz
      geoprom3e encode sat chips/*.tif --weights ./ecosat --device cuda --workers 4 --out chips.npz
      geoprom3e encode env sites.csv --covariates worldclim/ --out sites_env.npz
    """
    from geoprom3e.cli.progress import Bars
    from geoprom3e.encoders.run import encode_to_file

    with Bars() as bars:
        summary = encode_to_file(modality, list(inputs), out, source=source, weights=weights, weights_dir=weights_dir,
                                 device=device, batch_size=batch_size, num_workers=workers, covariates=covariates,
                                 overwrite=overwrite, progress=bars)
    rate = summary.n / summary.seconds if summary.seconds > 0 else float("inf")
    click.echo(f"wrote {summary.path}: {summary.n} input(s), {len(summary.failed)} failed, {rate:.1f}/s")
    for i, msg in summary.failed[:10]:
        click.echo(f"  failed #{i}: {msg}", err=True)
    if summary.note:
        click.echo(f"note: {summary.note}", err=True)


def register(group: click.Group) -> None:
    """Attach ``weights`` and ``encode``."""
    group.add_command(weights_group)
    group.add_command(encode_cmd)
