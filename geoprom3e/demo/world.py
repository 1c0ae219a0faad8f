"""The demo world: a small SYNTHETIC region with two habitats, built by code so the whole chain runs offline.

Everything here is made up, on purpose and in plain sight: scenes are coloured noise laid out like
Sentinel-2 L2A items (Planetary Computer asset keys, UTM, 10 m, SCL) in a static STAC catalogue, species
"photos" are drawn patterns, and observation records are planted by habitat. What is real: the grid (the
``usa-250x500`` preset and its contiguous-US mask) and the GeoCLIP location weights. The world is honest
enough to check the chain: species planted in one habitat must light up that habitat in their maps.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from geoprom3e.grid import GridSpec

FOREST, GRASSLAND = 0, 1
HABITATS = ("forest", "grassland")
SCENE_COLOURS = {FOREST: (34, 78, 38), GRASSLAND: (186, 166, 108)}


@dataclass(frozen=True)
class Species:
    """A made-up species: where it lives and what its photos look like."""

    name: str
    """Binomial-looking name (synthetic)."""
    habitat: int
    """Habitat it lives in (FOREST or GRASSLAND)."""
    colour: tuple[int, int, int]
    """Main colour of its photos."""
    shape: str
    """Pattern drawn in its photos: ``dots``, ``stripes``, ``rings`` or ``blocks``."""
    abundance: float = 1.0
    """Relative number of records planted."""


@dataclass(frozen=True)
class DemoWorld:
    """Settings of the synthetic demo region (defaults are what ``recipes/demo.yaml`` uses)."""

    grid: str = "usa-250x500"
    """Grid preset the region is cut from."""
    bbox: tuple[float, float, float, float] = (-106.2, 38.0, -102.8, 40.0)
    """(W, S, E, N) degrees: a Front-Range-like window, forest west of the boundary, grassland east."""
    boundary_lon: float = -104.6
    """Mean longitude of the habitat boundary (it wiggles with latitude)."""
    chip_px: int = 64
    """Scene and chip side in pixels (10 m): small, so the demo stays light."""
    cloudy_fraction: float = 0.06
    """Share of cells whose only scene is cloudy inside the chip (they fall back to location only)."""
    seed: int = 0
    """Seed for everything random."""
    n_records: int = 4000
    """Observation records planted."""
    species: tuple[Species, ...] = field(default=(
        Species("Sylvanus rubripunctatus", FOREST, (226, 92, 40), "dots", 1.0),
        Species("Sylvanus viridis", FOREST, (60, 160, 70), "rings", 0.8),
        Species("Sylvanus obscurus", FOREST, (90, 60, 40), "blocks", 0.6),
        Species("Sylvanus minimus", FOREST, (200, 200, 60), "stripes", 0.4),
        Species("Campestris caerulea", GRASSLAND, (50, 90, 210), "stripes", 1.0),
        Species("Campestris pallida", GRASSLAND, (230, 220, 190), "dots", 0.5),
    ))
    """Species of the world; the first of each habitat is its indicator species: photographed, paired with the
    habitat's chips in training, and mapped by the demo. The others appear in the observation records."""

    def habitat_map(self, grid: GridSpec) -> np.ndarray:
        """[rows, cols] habitat of each cell: forest west of a wiggly boundary, grassland east."""
        lat, lon = grid.cell_centers()
        edge = self.boundary_lon + 0.35 * np.sin((lat - 38.0) * 3.1)
        return np.where(lon < edge, FOREST, GRASSLAND).astype(np.int8)

    def query_species(self) -> list[Species]:
        """One indicator species per habitat: the ones the demo photographs and maps."""
        out: dict[int, Species] = {}
        for sp in self.species:
            out.setdefault(sp.habitat, sp)
        return [out[h] for h in sorted(out)]


def _utm_epsg(lon: float, lat: float) -> int:
    return (32600 if lat >= 0 else 32700) + int((lon + 180) // 6) + 1


def write_scenes(world: DemoWorld, grid: GridSpec, root: str | Path) -> Path:
    """One small scene per masked-in cell, centred on the cell, as ``root/<item_id>/{visual,SCL}.tif``.

    Cloudy cells get a scene whose SCL marks the chip as cloud (so the SCL check rejects it). Returns ``root``.
    """
    from pyproj import Transformer
    from rasterio.transform import from_origin

    from geoprom3e.testing.cogs import write_cog, write_properties

    root = Path(root)
    rng = np.random.default_rng(world.seed)
    hab = world.habitat_map(grid)
    lat, lon = grid.cell_centers()
    mask = grid.mask()
    px = world.chip_px + 16  # a margin: the chip window is centred on the cell, the scene snapped to 20 m
    cloudy = rng.random(grid.shape) < world.cloudy_fraction
    day0 = dt.datetime(2020, 6, 1, 17, 50, 0)
    for r, c in zip(*np.nonzero(mask)):
        la, lo = float(lat[r, c]), float(lon[r, c])
        epsg = _utm_epsg(lo, la)
        x, y = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True).transform(lo, la)
        x0, y0 = np.floor(x / 20) * 20 - px * 5, np.ceil(y / 20) * 20 + px * 5  # 20 m aligned, centred
        base = np.array(SCENE_COLOURS[int(hab[r, c])], np.float32)
        shade = rng.normal(0, 10, 3)
        noise = rng.normal(0, 14, (3, px, px)) + _blobs(rng, px)[None] * 22
        vis = np.clip(base[:, None, None] + shade[:, None, None] + noise, 1, 255).astype(np.uint8)
        scl = np.full((1, px // 2, px // 2), 9 if cloudy[r, c] else 4, np.uint8)
        when = day0 + dt.timedelta(days=int(rng.integers(0, 90)))
        item_id = f"S2B_MSIL2A_{when:%Y%m%dT%H%M%S}_R{int(r):03d}_T{epsg % 100:02d}DEMO_C{int(c):03d}"
        d = root / item_id
        write_cog(d / "visual.tif", vis, epsg, from_origin(x0, y0, 10, 10), nodata=0)
        write_cog(d / "SCL.tif", scl, epsg, from_origin(x0, y0, 20, 20), nodata=0)
        write_properties(d, f"{when:%Y-%m-%dT%H:%M:%SZ}", 60.0 if cloudy[r, c] else float(rng.uniform(0, 8)), epsg,
                         mgrs_tile=f"{epsg % 100:02d}DEMO", **{"geoprom3e:synthetic": True})
    return root


def _blobs(rng: np.random.Generator, px: int) -> np.ndarray:
    """Smooth random field in [-1, 1] (fields, tree clumps) from a few random sinusoids."""
    yy, xx = np.mgrid[0:px, 0:px] / px
    f = np.zeros((px, px))
    for _ in range(4):
        kx, ky, ph = rng.uniform(1, 5), rng.uniform(1, 5), rng.uniform(0, 2 * np.pi)
        f += np.sin(2 * np.pi * (kx * xx + ky * yy) + ph)
    return f / 4


def make_photo(sp: Species, rng: np.random.Generator, size: int = 160) -> Image.Image:
    """A synthetic 'photo' of ``sp``: its pattern in its colour over a random natural-looking background."""
    bg = tuple(int(v) for v in rng.integers(70, 170, 3))
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    col = tuple(int(np.clip(v + rng.normal(0, 12), 0, 255)) for v in sp.colour)
    n = int(rng.integers(5, 9))
    for _ in range(n):
        x, y = rng.integers(0, size, 2)
        s = int(rng.integers(size // 10, size // 4))
        if sp.shape == "dots":
            draw.ellipse([x - s, y - s, x + s, y + s], fill=col)
        elif sp.shape == "rings":
            draw.ellipse([x - s, y - s, x + s, y + s], outline=col, width=max(2, s // 3))
        elif sp.shape == "blocks":
            draw.rectangle([x - s, y - s, x + s, y + s], fill=col)
    if sp.shape == "stripes":
        w = int(rng.integers(8, 16))
        off = int(rng.integers(0, w))
        for k in range(-size, 2 * size, 2 * w):
            draw.line([(k + off, 0), (k + off + size // 2, size)], fill=col, width=w)
    arr = np.asarray(img, np.float32) + rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def write_photos(world: DemoWorld, folder: str | Path, per_species: int = 12) -> dict[str, list[Path]]:
    """``per_species`` training photos of each habitat's indicator species plus one held-out query photo of each."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(world.seed + 1)
    out: dict[str, list[Path]] = {}
    for sp in world.query_species():
        slug = sp.name.replace(" ", "_")
        paths = []
        for k in range(per_species):
            p = folder / f"{slug}_{k:02d}.jpg"
            make_photo(sp, rng).save(p, quality=92)
            paths.append(p)
        out[sp.name] = paths
    for sp in world.query_species():
        p = folder / f"query_{sp.name.replace(' ', '_')}.jpg"
        make_photo(sp, np.random.default_rng(world.seed + 99)).save(p, quality=92)
        out[f"query:{sp.name}"] = [p]
    return out


def write_observations(world: DemoWorld, grid: GridSpec, path: str | Path) -> Path:
    """An iNaturalist-style CSV of records planted in each species' habitat (denser in the forest's core)."""
    rng = np.random.default_rng(world.seed + 2)
    hab = world.habitat_map(grid)
    lat, lon = grid.cell_centers()
    mask = grid.mask()
    dx, dy = grid.res
    weights = np.array([sp.abundance for sp in world.species])
    rows = []
    for i in range(world.n_records):
        sp = world.species[rng.choice(len(world.species), p=weights / weights.sum())]
        cells = np.argwhere(mask & (hab == sp.habitat))
        r, c = cells[rng.integers(len(cells))]
        la = lat[r, c] + rng.uniform(-0.45, 0.45) * dy  # stays inside the cell after rounding
        lo = lon[r, c] + rng.uniform(-0.45, 0.45) * dx
        day = dt.date(2021, 4, 1) + dt.timedelta(days=int(rng.integers(0, 180)))
        rows.append({"id": i + 1, "observed_on": day.isoformat(), "quality_grade": "research",
                     "latitude": round(float(la), 5), "longitude": round(float(lo), 5),
                     "scientific_name": sp.name, "taxon_species_name": sp.name})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def write_habitat_raster(world: DemoWorld, grid: GridSpec, path: str | Path) -> Path:
    """The habitat of each cell as a uint8 GeoTIFF on ``grid`` (0 = forest, 1 = grassland, 255 = outside the
    mask): the demo's probe target, and an example of a user's own label raster."""
    import rasterio

    from geoprom3e.io.atomic import atomic_path

    hab = np.where(grid.mask(), world.habitat_map(grid), 255).astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", driver="GTiff", height=grid.rows, width=grid.cols, count=1, dtype="uint8",
                           crs=grid.crs, transform=grid.transform, nodata=255) as ds:
            ds.write(hab, 1)
            ds.set_band_description(1, "habitat")
            ds.update_tags(1, classes=",".join(f"{i}={h}" for i, h in enumerate(HABITATS)))
            ds.update_tags(note="SYNTHETIC demo habitats")
    return path
