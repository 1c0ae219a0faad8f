"""``geoprom3e demo``: the offline default run (the whole chain on a synthetic region)."""

from __future__ import annotations

import click


@click.command("demo")
@click.option("--out", default="demo-out", show_default=True, type=click.Path(path_type=str),
              help="The demo's own folder (world files and cache are reused on a rerun; maps are replaced).")
@click.option("--recipe", default=None, type=click.Path(path_type=str),
              help="Demo recipe [default: recipes/demo/demo.yaml].")
def demo(out: str, recipe: str | None) -> None:
    """Run the whole chain offline on a small synthetic region and write the four maps.

    Builds a synthetic two-habitat world on a window of the real usa-250x500 grid (Sentinel-2-style scenes
    in a static STAC catalogue, species photos, iNaturalist-style records), embeds every cell (chips via the
    imagery layer, real GeoCLIP location weights), trains a small ProM3E, then writes species similarity maps
    (one per habitat's species), the ||sigma||_1 uncertainty map, and Shannon/richness maps into OUT/maps,
    plus a check that each species lights up its own habitat. No internet, no GPU; about a minute on 2 cores.
    Scenes, photos, records and the sat/image encoder weights are SYNTHETIC (the outputs say so).
    """
    from tqdm.auto import tqdm

    from geoprom3e.demo import run_demo

    bar = {}

    def train_progress(p) -> None:  # noqa: ANN001
        if "t" not in bar:
            bar["t"] = tqdm(total=p.epochs, desc="  training", unit="epoch", leave=False, disable=None)
        if p.metrics is not None:
            bar["t"].update(1)
            bar["t"].set_postfix(loss=f"{p.loss:.3f}")

    res = run_demo(out, recipe=recipe, step=lambda msg: click.echo(msg, err=True), train_progress=train_progress)
    if "t" in bar:
        bar["t"].close()
    click.echo("maps:")
    for name, path in res.maps.items():
        click.echo(f"  {name:<40} {path}")
    click.echo("does each species light up its own habitat? (mean similarity per habitat)")
    for name, by_hab in res.habitat_contrast.items():
        click.echo(f"  {name:<40} " + "  ".join(f"{h} {v:+.3f}" for h, v in by_hab.items()))
    c = res.comparison
    click.echo(f"||sigma||_1 vs Shannon: Pearson r = {c['pearson_r']:.3f}, Spearman rho = {c['spearman_rho']:.3f} "
               f"over {c['n_cells']} cells (a description of this synthetic world, not evidence: under the "
               "published loss ||sigma||_1 has not been shown to track input informativeness)")
    click.echo("timings (s): " + ", ".join(f"{k} {v}" for k, v in res.seconds.items()))
    click.echo("note: scenes, photos, records and sat/image encoder weights are synthetic (see README).")
    click.echo("map your own photo (in place of this one) from the demo's cache, model and encoders with:")
    click.echo(f"  {res.handoff}")
    if "probe" in res.maps:
        click.echo("linear probes of the habitats from each representation (spatial block cross-validation):")
        click.echo(res.maps["probe"].read_text(encoding="utf-8"))


def register(group: click.Group) -> None:
    """Attach the ``demo`` command."""
    group.add_command(demo)
