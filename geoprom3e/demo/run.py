"""``run_demo``: the whole chain offline on the synthetic demo world, ending in the four maps.

Steps (each reuses the production code path): world files → static STAC catalogue → ``embed_grid`` (chips
through the imagery layer, GeoCLIP locations) → training pairs from the cache → ``train`` a small ProM3E →
``species_maps`` for one query photo per habitat → ``uncertainty_map`` → ``write_diversity_map`` (Shannon,
richness) → ``compare`` (‖σ‖₁ vs Shannon) and a check that each species lights up its own habitat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from geoprom3e.demo.world import HABITATS, DemoWorld, write_observations, write_photos, write_scenes
from geoprom3e.errors import ConfigError
from geoprom3e.grid import GridSpec, get_grid
from geoprom3e.io.atomic import atomic_write_text
from geoprom3e.resources import recipe_path as bundled_recipe

log = logging.getLogger(__name__)

Step = Callable[[str], None]
"""Called with a one-line description as each step starts."""

SYNTHETIC_NOTE = ("SYNTHETIC DEMO: scenes, photos, records and the sat/image encoder weights are made up by "
                  "geoprom3e's demo; only the grid, its mask and the GeoCLIP location weights are real")


def load_demo_recipe(path: str | Path | None = None) -> dict[str, Any]:
    """The demo recipe (``recipes/demo/demo.yaml`` by default) as a dict."""
    p = Path(path) if path else bundled_recipe("demo/demo.yaml")
    if not p.is_file():
        raise ConfigError(f"demo recipe {str(p)!r} does not exist: pass --recipe PATH of a demo YAML file")
    doc = yaml.safe_load(p.read_text()) or {}
    allowed = {"world", "imagery", "engine", "training", "maps"}
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise ConfigError(f"demo recipe {p} has unknown sections {unknown}: allowed are {sorted(allowed)}")
    return doc


@dataclass
class DemoResult:
    """What the demo produced."""

    out_dir: Path
    """Demo folder."""
    maps: dict[str, Path] = field(default_factory=dict)
    """Map name → GeoTIFF."""
    habitat_contrast: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per query species: mean similarity in each habitat."""
    comparison: dict[str, Any] = field(default_factory=dict)
    """‖σ‖₁ vs Shannon correlation."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per step."""
    handoff: str = ""
    """The command that maps the user's own photo from this demo's cache, model and encoders."""


def demo_grid(world: DemoWorld) -> GridSpec:
    """The demo region: the ``world.bbox`` subset of the preset grid."""
    return get_grid(world.grid).subset(tuple(world.bbox), name=f"{world.grid}-demo")


def run_demo(out_dir: str | Path = "demo-out", *, recipe: str | Path | None = None, step: Step | None = None,
             train_progress: Callable[[Any], None] | None = None) -> DemoResult:
    """Run the demo into ``out_dir`` (its own folder: world files and cache are reused, maps replaced)."""
    from geoprom3e.engine import FuseSettings, embed_grid
    from geoprom3e.engine.sources import LocInput, SatInput
    from geoprom3e.imagery import ImageryRequest
    from geoprom3e.io.observations import ReadOptions
    from geoprom3e.maps.diversity import DiversitySettings
    from geoprom3e.model.train import train
    from geoprom3e.products import Query, compare_maps, diversity_map, species_maps, uncertainty_map
    from geoprom3e.testing.encoders import save_small_hf_clip, save_small_sat
    from geoprom3e.testing.stac import build_items, write_static_catalog

    say = step or (lambda msg: log.info(msg))
    doc = load_demo_recipe(recipe)
    wd = dict(doc.get("world", {}))
    if "bbox" in wd:
        wd["bbox"] = tuple(wd["bbox"])
    world = DemoWorld(**wd)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "demo.recipe.resolved.yaml", yaml.safe_dump({**doc, "world": {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(world).items() if k != "species"}},
        sort_keys=False))
    grid = demo_grid(world)
    res = DemoResult(out)
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        res.seconds[name] = round(now - clock, 2)
        clock = now

    # 1. the synthetic world, laid out as a user with local scenes would have it
    world_dir = out / "world"
    catalog = world_dir / "stac" / "catalog.json"
    if not catalog.is_file():
        say(f"building the synthetic world: {int(grid.mask().sum())} cells of {grid.name} {grid.shape}")
        scenes = write_scenes(world, grid, world_dir / "scenes")
        write_static_catalog(build_items(scenes, base_url=str(scenes.resolve())), world_dir / "stac")
    tr = doc.get("training", {})
    photos = write_photos(world, world_dir / "photos", per_species=int(tr.get("photos_per_species", 12))) \
        if not (world_dir / "photos").is_dir() else _existing_photos(world, world_dir / "photos")
    obs = world_dir / "observations.csv"
    if not obs.is_file():
        write_observations(world, grid, obs)
    sat_w, img_w = out / "weights" / "sat-demo", out / "weights" / "image-demo"
    if not (sat_w / "config.json").is_file():
        save_small_sat(sat_w, seed=world.seed)
    if not (img_w / "config.json").is_file():
        save_small_hf_clip(img_w, seed=world.seed + 1)
    lap("world")

    # 2. embed the grid through the production path: static STAC catalogue -> chips -> encoders -> cache
    im = doc.get("imagery", {})
    eng = doc.get("engine", {})
    request = ImageryRequest(stac_url=catalog.resolve().as_uri(),
                             datetime=str(im.get("datetime", "2020-05-01/2020-09-30")),
                             max_cloud=float(im.get("max_cloud", 20)), chip_size=world.chip_px,
                             allow_local_dirs=(str(world_dir / "scenes"),))  # the scenes sit beside the catalogue
    inputs = [SatInput(weights=str(sat_w), request=request, threads=int(im.get("threads", 8))), LocInput()]
    cache_path = out / "cache"
    say("embedding the grid (chips via the static STAC catalogue, GeoCLIP locations) into the cache")
    rep = embed_grid(grid, cache_path, inputs, chunk_size=int(eng.get("chunk_size", 16)))
    lap("embed_grid")
    say(f"  {rep.cells} cells embedded ({rep.cells_per_s:.0f} cells/s); cells without a usable chip: "
        f"{rep.failures.get('sat', 0)}")

    # 3. train a small ProM3E on pairs from the cache
    model_dir = out / "model"
    if not (model_dir / "model.safetensors").is_file():
        say("training a small ProM3E on photo/chip/location pairs of the demo world")
        data = _training_pairs(world, grid, cache_path, photos, img_w, rows_per_cell=int(tr.get("rows_per_cell", 6)))
        recipe_path = Path(tr.get("recipe", "recipes/train/demo.yaml"))
        if not recipe_path.is_absolute():
            recipe_path = bundled_recipe(recipe_path)
        result = train(recipe_path, out / "training", data=data, overwrite=True, progress=train_progress)
        result.model.save_checkpoint(model_dir)
    lap("train")

    # 4. the four maps
    maps_dir = out / "maps"
    fuse = FuseSettings(visible=tuple(eng.get("visible", ("sat", "loc"))), n_samples=int(eng.get("n_samples", 5)))
    mode = str(doc.get("maps", {}).get("mode", "recon"))
    queries = [Query("image", str(photos[f"query:{sp.name}"][0])) for sp in world.query_species()]
    say(f"map-species for {len(queries)} query photos; uncertainty-map; diversity-map")
    attrs = {"note": SYNTHETIC_NOTE}
    sp_out = [m.outputs for m in species_maps(
        cache_path, queries, out_dir=maps_dir, checkpoint=model_dir, mode=mode, fuse=fuse,
        image_encoder={"weights": str(img_w)}, device="cpu", overwrite=True, attrs=attrs).maps]
    un_out = uncertainty_map(cache_path, out_dir=maps_dir, checkpoint=model_dir, fuse=fuse, device="cpu",
                             overwrite=True, attrs=attrs).maps[0].outputs
    sigma = float(doc.get("maps", {}).get("sigma", 2.0))
    dv = diversity_map([obs], grid, out_dir=maps_dir, settings=DiversitySettings(sigma=sigma),
                       read_options=ReadOptions(), overwrite=True).maps[0].outputs
    lap("maps")
    for sp, o in zip(world.query_species(), sp_out):
        res.maps[f"species:{sp.name}"] = o.geotiff
    res.maps["uncertainty"] = un_out.geotiff
    res.maps["diversity"] = dv.geotiff
    res.handoff = (f"geoprom3e map-species {queries[0].value} --cache {cache_path} --checkpoint {model_dir} "
                   f"--image-weights {img_w} --visible {','.join(fuse.visible)} --out {out / 'my-maps'}")

    # 5. checks a user can read: does each species light up its habitat? does ||sigma|| track diversity?
    res.habitat_contrast = habitat_contrast(world, grid, {sp.name: o.geotiff for sp, o in
                                                          zip(world.query_species(), sp_out)})
    cmp = compare_maps(un_out.geotiff, dv.geotiff, band_a="sigma_l1", band_b="shannon_raw",
                      out=maps_dir / "compare", overwrite=True)
    res.comparison = cmp.to_dict()
    lap("checks")
    atomic_write_text(out / "demo.summary.json", _json({"maps": {k: str(v) for k, v in res.maps.items()},
                                                         "habitat_contrast": res.habitat_contrast,
                                                         "uncertainty_vs_shannon": res.comparison,
                                                         "seconds": res.seconds, "note": SYNTHETIC_NOTE}))

    # 6. every cell's representations: embedding maps (supp. Figs 1-3) and a habitat probe (supp. Table 5)
    from geoprom3e.demo.world import write_habitat_raster
    from geoprom3e.products import EmbeddingMapSettings, ProbeSettings, embedding_maps, linear_probes

    say("embedding-map (mu, logvar, registers) and a linear probe of the habitats")
    target = write_habitat_raster(world, grid, world_dir / "habitat.tif")
    em = embedding_maps(cache_path, out_dir=out / "embeddings", checkpoint=model_dir, fuse=fuse, device="cpu",
                        overwrite=True, settings=EmbeddingMapSettings(tokens="mu,logvar,registers"), attrs=attrs)
    for t in em.tokens:
        res.maps[f"embedding:{t.token}"] = t.geotiff
    pr = linear_probes(str(target), cache_path, out_dir=out / "probe", checkpoint=model_dir, fuse=fuse,
                       device="cpu", overwrite=True, settings=ProbeSettings(tokens="mu,logvar,registers,tokens"))
    res.maps["probe"] = pr.markdown_path
    lap("representations")
    return res


def _json(doc: Any) -> str:
    import json

    return json.dumps(doc, indent=1) + "\n"


def _existing_photos(world: DemoWorld, folder: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for sp in world.query_species():
        out[sp.name] = sorted(folder.glob(f"{sp.name.replace(' ', '_')}_*.jpg"))
        out[f"query:{sp.name}"] = [folder / f"query_{sp.name.replace(' ', '_')}.jpg"]
    return out


def _training_pairs(world: DemoWorld, grid: GridSpec, cache_path: Path, photos: dict[str, list[Path]],
                    image_weights: Path, rows_per_cell: int) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings [N, 6, 512], present [N, 6]): for each cell, photos (and the name) of its habitat's indicator
    species, paired with the cell's cached sat and loc embeddings (a cell without a chip shows loc only)."""
    from geoprom3e.encoders import get_encoder
    from geoprom3e.engine.cache import EmbeddingCache
    from geoprom3e.modalities import MODALITIES

    cache = EmbeddingCache(cache_path)
    (sat, p_sat), (loc, p_loc) = (cache.read_all(m) for m in ("sat", "loc"))
    indicators = world.query_species()
    img_enc = get_encoder("image", weights=str(image_weights), device="cpu")
    txt_enc = get_encoder("text", weights=str(image_weights), device="cpu")
    bank = {sp.habitat: img_enc.embed([str(p) for p in photos[sp.name]]).numpy() for sp in indicators}
    names = {sp.habitat: v for sp, v in zip(indicators, txt_enc.embed([sp.name for sp in indicators]).numpy())}
    hab = world.habitat_map(grid)
    rng = np.random.default_rng(world.seed + 3)
    cells = np.argwhere(grid.mask() & (p_sat | p_loc))
    n = len(cells) * rows_per_cell
    emb = np.zeros((n, len(MODALITIES), 512), np.float32)
    present = np.zeros((n, len(MODALITIES)), bool)
    i_img, i_sat, i_loc, i_txt = (MODALITIES.index(m) for m in ("image", "sat", "loc", "text"))
    rows = np.repeat(np.arange(len(cells)), rows_per_cell)
    r, c = cells[rows, 0], cells[rows, 1]
    h = hab[r, c]
    for habitat, photos_emb in bank.items():
        sel = h == habitat
        emb[sel, i_img] = photos_emb[rng.integers(len(photos_emb), size=int(sel.sum()))]
        emb[sel, i_txt] = names[habitat]
    present[:, [i_img, i_txt]] = True
    emb[:, i_sat] = np.where(p_sat[r, c, None], sat[r, c], 0.0)
    present[:, i_sat] = p_sat[r, c]
    emb[:, i_loc] = np.where(p_loc[r, c, None], loc[r, c], 0.0)
    present[:, i_loc] = p_loc[r, c]
    return emb, present


def habitat_contrast(world: DemoWorld, grid: GridSpec, maps: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Mean similarity of each species map over each habitat's cells."""
    import rasterio

    hab = world.habitat_map(grid)
    out = {}
    for name, path in maps.items():
        with rasterio.open(path) as ds:
            v = ds.read(1, masked=True).astype(np.float64).filled(np.nan)
        out[name] = {HABITATS[h]: round(float(np.nanmean(np.where(hab == h, v, np.nan))), 4)
                     for h in range(len(HABITATS))}
    return out
