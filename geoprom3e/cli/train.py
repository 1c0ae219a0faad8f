"""``geoprom3e train`` and ``geoprom3e evaluate``: train ProM3E with a masking strategy, then measure it."""

from __future__ import annotations

from pathlib import Path

import click

from geoprom3e.model.masking import list_strategies

_TRAIN_HELP = f"""Train ProM3E as RECIPE (a YAML file) says, with optional KEY=VALUE overrides.

\b
Examples:
  geoprom3e train recipes/train/prom3e-published.yaml data.path=[taxabind.npy,inat.npy] --out runs/published
  geoprom3e train recipes/train/prom3e-miam.yaml data.path=emb.parquet masking.params.lam=2 train.epochs=50
  geoprom3e train recipes/train/prom3e-miam.yaml data.path=emb.npz train.score=top1   # supervised-style score
  geoprom3e train recipes/train/prom3e-miam.yaml --out runs/miam --resume      # continue a stopped run

\b
Overrides use section.key: model.embed_dim=256, data.modalities=[image,sat,loc], masking.strategy=opm,
masking.params={{p: 0.5}}, train.batch_size=512, train.device=cuda. Strategies: {", ".join(list_strategies())}.
prom3e-published.yaml is the published training; project additions are opt-in keys (train.grad_clip,
train.amp, train.score_smoothing, train.early_stopping, model.mask_token, model.error_head,
data.source_sampling=pooled); prom3e-dropout-clip-bf16.yaml names the old project settings.
The run folder gets recipe.yaml, metrics.jsonl (one JSON line per epoch), checkpoints/epoch-NNNN/ and model/.
"""


@click.command("train", help=_TRAIN_HELP)
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("overrides", nargs=-1)
@click.option("--out", "-o", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: runs/<recipe name>).")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in the run folder.")
@click.option("--overwrite", is_flag=True, help="Delete the run folder's checkpoints and start again.")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs with -v instead).")
def train_cmd(recipe: Path, overrides: tuple[str, ...], out: Path | None, resume: bool, overwrite: bool,
              no_progress: bool) -> None:
    """Train ProM3E (the help text is ``_TRAIN_HELP``)."""
    from geoprom3e.model.train import train

    out = out or Path("runs") / recipe.stem
    bar = None

    def report(p):  # noqa: ANN001 - TrainProgress
        nonlocal bar
        if no_progress:
            return
        from tqdm import tqdm

        if bar is None:
            bar = tqdm(total=p.epochs * p.steps, unit="step", dynamic_ncols=True)
        bar.n = (p.epoch - 1) * p.steps + p.step
        post = {"epoch": f"{p.epoch}/{p.epochs}", "loss": f"{p.loss:.4f}", "rows/s": f"{p.samples_per_s:,.0f}"}
        if p.metrics is not None:
            post["val"] = f"{p.metrics['val_loss']:.4f}"
        bar.set_postfix(post, refresh=False)
        bar.refresh()

    try:
        result = train(recipe, out, overrides=list(overrides), resume=resume, overwrite=overwrite, progress=report)
    finally:
        if bar is not None:
            bar.close()
    last = result.metrics[-1] if result.metrics else {}
    click.echo(
        f"trained {len(result.metrics)} epochs into {result.out_dir}; newest checkpoint {result.checkpoint}"
        + (f"; val loss {last['val_loss']:.4f}" if last else "")
    )


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for evaluation.json and evaluation.md (default: beside CHECKPOINT, in evaluation/).")
@click.option("--modalities", "-m", default=None, help="Modalities to use, e.g. image,sat,loc (default: all present).")
@click.option("--subset", "-s", "subsets", multiple=True,
              help="A visible set to evaluate, e.g. -s sat -s sat,loc (default: every non-empty subset).")
@click.option("--alpha", "hybrid_alpha", type=float, default=0.5, show_default=True,
              help="Weight of the inter-modal score in hybrid retrieval: alpha * inter + (1 - alpha) * recon, "
                   "the same score as map-species --mode hybrid (0 = recon only, 1 = inter only).")
@click.option("--max-rows", type=int, default=2000, show_default=True, help="Rows sampled for retrieval.")
@click.option("--batch-size", type=int, default=1024, show_default=True, help="Rows per forward pass.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the row sample.")
def evaluate_cmd(checkpoint: Path, data: Path, out: Path | None, modalities: str | None, subsets: tuple[str, ...],
                 hybrid_alpha: float, max_rows: int, batch_size: int, seed: int) -> None:
    """Evaluate the ProM3E model at CHECKPOINT on held-out embeddings DATA, subset by subset.

    \b
    For every visible subset: recall@1/5/10 of each reconstructed modality, mean ‖σ‖₁, the modality gap
    with and without one more modality, and hybrid retrieval. Writes evaluation.json and a markdown table
    laid out like the MIAM paper's per-subset tables, and prints the table.

    \b
    Examples:
      geoprom3e evaluate runs/miam/model val.npy
      geoprom3e evaluate runs/miam/checkpoints/epoch-0050 val.parquet -s sat -s sat,loc,env --alpha 0.3
    """
    from tqdm import tqdm

    from geoprom3e.model.evaluate import evaluate, markdown_table

    out = out or (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "evaluation"
    with tqdm(unit="subset", dynamic_ncols=True, leave=False) as bar:

        def report(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        rep = evaluate(checkpoint, data, modalities=modalities, subsets=list(subsets) or None,
                       hybrid_alpha=hybrid_alpha, max_rows=max_rows, batch_size=batch_size, seed=seed,
                       out_dir=out, progress=report)
    click.echo(markdown_table(rep))
    click.echo(f"wrote {out / 'evaluation.json'} and {out / 'evaluation.md'}")


def register(group: click.Group) -> None:
    """Attach ``train`` and ``evaluate``."""
    group.add_command(train_cmd)
    group.add_command(evaluate_cmd)
