"""Local STAC stack for tests and offline demos: STAC items for a folder of COG scenes with Planetary Computer's
asset keys and properties, a static catalogue writer, and :class:`LocalStacStack` = fault-injecting COG file server
+ a real STAC API (pgstac) on 127.0.0.1.

Scenes are folders ``ROOT/<item_id>/<ASSET>.tif`` with ``properties.json`` (see :mod:`geoprom3e.testing.cogs`)::

    with LocalStacStack(root) as stack:               # ~3 s: postgres + pgstac + uvicorn + file server
        req = ImageryRequest(stac_url=stack.stac_url, datetime="2020-01-01/2020-12-31")
        fetch_chip_block(req, lats, lons)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import rasterio
from rasterio.warp import transform_geom

from geoprom3e.testing.faults import FaultConfig, FaultyFileServer
from geoprom3e.testing.pgstac import PgStacServer

log = logging.getLogger(__name__)

COLLECTION_ID = "sentinel-2-l2a"
_COG = "image/tiff; application=geotiff; profile=cloud-optimized"
# Asset key -> (title, gsd, common name) as Planetary Computer's sentinel-2-l2a items give them.
PC_ASSETS = {
    "AOT": ("Aerosol optical thickness (AOT)", 10, None), "B01": ("Band 1 - Coastal aerosol - 60m", 60, "coastal"),
    "B02": ("Band 2 - Blue - 10m", 10, "blue"), "B03": ("Band 3 - Green - 10m", 10, "green"),
    "B04": ("Band 4 - Red - 10m", 10, "red"), "B05": ("Band 5 - Vegetation red edge 1 - 20m", 20, "rededge"),
    "B06": ("Band 6 - Vegetation red edge 2 - 20m", 20, "rededge"),
    "B07": ("Band 7 - Vegetation red edge 3 - 20m", 20, "rededge"), "B08": ("Band 8 - NIR - 10m", 10, "nir"),
    "B09": ("Band 9 - Water vapor - 60m", 60, None), "B11": ("Band 11 - SWIR (1.6) - 20m", 20, "swir16"),
    "B12": ("Band 12 - SWIR (2.2) - 20m", 20, "swir22"),
    "B8A": ("Band 8A - Vegetation red edge 4 - 20m", 20, "rededge"),
    "SCL": ("Scene classfication map (SCL)", 20, None), "WVP": ("Water vapour (WVP)", 10, None),
    "visual": ("True color image", 10, None),
}
PC_PROPERTIES = {
    "platform": "Sentinel-2B", "constellation": "Sentinel 2", "instruments": ["msi"], "s2:product_type": "S2MSI2A",
    "s2:processing_baseline": "05.10", "sat:orbit_state": "descending", "sat:relative_orbit": 27,
    "s2:nodata_pixel_percentage": 0.0, "s2:high_proba_clouds_percentage": 0.0,
}
STAC_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
]


def _asset(key: str, href: str, ds) -> dict:
    title, gsd, common = PC_ASSETS.get(key, (key, abs(ds.transform.a), None))
    a = {"href": href, "type": _COG, "roles": ["data"], "title": title, "gsd": float(abs(ds.transform.a)),
         "proj:shape": [ds.height, ds.width], "proj:transform": list(ds.transform)[:6],
         "proj:bbox": list(ds.bounds)}
    if key == "visual":
        a["eo:bands"] = [{"name": b, "common_name": c} for b, c in (("B04", "red"), ("B03", "green"),
                                                                     ("B02", "blue"))]
    elif key.startswith("B"):
        a["eo:bands"] = [{"name": key, **({"common_name": common} if common else {})}]
    return a


def _footprint(ds) -> dict:
    """Lon/lat polygon of the valid data (its bounding rectangle in the scene CRS, densified)."""
    mask = ds.dataset_mask()
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        rows, cols = np.array([0, ds.height - 1]), np.array([0, ds.width - 1])
    x0, y0 = ds.transform @ (cols.min(), rows.min())
    x1, y1 = ds.transform @ (cols.max() + 1, rows.max() + 1)
    n = 8
    xs = list(np.linspace(x0, x1, n)) + [x1] * n + list(np.linspace(x1, x0, n)) + [x0] * n
    ys = [y0] * n + list(np.linspace(y0, y1, n)) + [y1] * n + list(np.linspace(y1, y0, n))
    ring = [[float(x), float(y)] for x, y in zip(xs, ys)] + [[float(xs[0]), float(ys[0])]]
    return transform_geom(ds.crs, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})


def build_items(root: str | Path, base_url: str, collection: str = COLLECTION_ID) -> list[dict]:
    """STAC item dicts for every scene folder under ``root``; asset hrefs are ``base_url/<item_id>/<ASSET>.tif``
    (``base_url`` may be ``http://...`` or a local folder path)."""
    root = Path(root)
    items = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and (p / "properties.json").exists()):
        props = {**PC_PROPERTIES, **json.loads((d / "properties.json").read_text())}
        assets, geometry = {}, None
        for tif in sorted(d.glob("*.tif")):
            href = f"{base_url.rstrip('/')}/{d.name}/{tif.name}"
            with rasterio.open(tif) as ds:
                assets[tif.stem] = _asset(tif.stem, href, ds)
                if tif.stem == "visual" or geometry is None:
                    geometry = _footprint(ds)
                    props.setdefault("proj:epsg", ds.crs.to_epsg())
        coords = np.array(geometry["coordinates"][0])
        bbox = [float(coords[:, 0].min()), float(coords[:, 1].min()), float(coords[:, 0].max()),
                float(coords[:, 1].max())]
        items.append({
            "type": "Feature", "stac_version": "1.0.0", "stac_extensions": STAC_EXTENSIONS, "id": d.name,
            "collection": collection, "geometry": geometry, "bbox": bbox, "properties": props,
            "assets": assets, "links": [],
        })
    return items


def collection_dict(items: list[dict], collection: str = COLLECTION_ID) -> dict:
    """A STAC Collection covering ``items``."""
    bboxes = np.array([i["bbox"] for i in items]) if items else np.array([[-180, -90, 180, 90]])
    times = sorted(i["properties"]["datetime"] for i in items) or [None]
    return {
        "type": "Collection", "stac_version": "1.0.0", "id": collection, "license": "proprietary",
        "title": "Sentinel-2 Level-2A (local test copy)", "links": [],
        "description": "Local test scenes laid out like Planetary Computer's sentinel-2-l2a collection.",
        "extent": {"spatial": {"bbox": [[float(bboxes[:, 0].min()), float(bboxes[:, 1].min()),
                                          float(bboxes[:, 2].max()), float(bboxes[:, 3].max())]]},
                   "temporal": {"interval": [[times[0], times[-1]]]}},
        "item_assets": {k: {"title": v[0], "type": _COG, "roles": ["data"]} for k, v in PC_ASSETS.items()},
    }


def write_static_catalog(items: list[dict], out_dir: str | Path, collection: str = COLLECTION_ID) -> Path:
    """Write a self-contained static STAC catalogue (catalog.json -> collection -> items); returns catalog.json."""
    import pystac

    out_dir = Path(out_dir)
    cat = pystac.Catalog(id="geoprom3e-local", description="geoprom3e local static STAC catalogue")
    coll = pystac.Collection.from_dict(collection_dict(items, collection))
    cat.add_child(coll)
    for d in items:
        coll.add_item(pystac.Item.from_dict(d))
    cat.normalize_hrefs(str(out_dir))
    cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return out_dir / "catalog.json"


class LocalStacStack:
    """Fault-injecting COG file server for ``root`` + a pgstac STAC API holding its scenes as items."""

    def __init__(self, root: str | Path, faults: FaultConfig | None = None, collection: str = COLLECTION_ID,
                 api: PgStacServer | None = None) -> None:
        self.root = Path(root)
        self.collection = collection
        self.files = FaultyFileServer(self.root, faults)
        self._own_api = api is None
        self.api = api or PgStacServer()
        self.items: list[dict] = []

    @property
    def stac_url(self) -> str:
        """Root URL of the STAC API."""
        return self.api.url

    def start(self) -> LocalStacStack:
        """Start the file server and the API (unless one was passed in) and load the scenes."""
        self.files.start()
        if self._own_api:
            self.api.start()
        self.reload()
        return self

    def reload(self) -> list[dict]:
        """(Re)build items from the scene folders and upsert them into the API."""
        self.items = build_items(self.root, self.files.url, self.collection)
        self.api.load_collection(collection_dict(self.items, self.collection))
        if self.items:
            self.api.load_items(self.items)
        log.info("local STAC: %d item(s) at %s, files at %s", len(self.items), self.stac_url, self.files.url)
        return self.items

    def stop(self) -> None:
        """Stop what this stack started."""
        self.files.stop()
        if self._own_api:
            self.api.stop()

    def __enter__(self) -> LocalStacStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_local_stac(root: str | Path, *, faults: FaultConfig | None = None, collection: str = COLLECTION_ID,
                     ready=None, stop=None) -> None:
    """Serve the scenes under ``root`` (a STAC API + COG file server) until ``stop`` (a ``threading.Event``) is set
    or the process is interrupted; ``ready(stack)`` is called once both answer. What ``geoprom3e stac serve`` runs.
    """
    import threading

    from geoprom3e.errors import InputError

    root = Path(root)
    if not root.is_dir() or not any((p / "properties.json").exists() for p in root.iterdir() if p.is_dir()):
        raise InputError(f"{str(root)!r} holds no scene folders (<item_id>/<ASSET>.tif + properties.json): "
                         "make some with geoprom3e.testing.cogs or `geoprom3e stac make-scenes`")
    stop = stop or threading.Event()
    with LocalStacStack(root, faults, collection) as stack:
        if ready:
            ready(stack)
        while not stop.wait(0.5):
            pass


def make_scenes(folder: str | Path, from_chips: str | Path | None = None,
                catalog_out: str | Path | None = None) -> tuple[int, Path | None]:
    """Write scenes into ``folder`` (real chips warped to UTM, or three synthetic scenes) and optionally a static
    catalogue with local file hrefs; returns (scene count, catalog.json or ``None``)."""
    from geoprom3e.testing.cogs import write_real_chip_scenes, write_synthetic_scene

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if from_chips:
        dirs = write_real_chip_scenes(from_chips, folder)
    else:
        dirs = [write_synthetic_scene(folder, f"SYN_{k}", seed=k, cloud_cover=5.0 + 10 * k,
                                      x0=500_000.0 + 4000 * k) for k in range(3)]
    cat = None
    if catalog_out:
        cat = write_static_catalog(build_items(folder, str(folder.resolve())), catalog_out)
    return len(dirs), cat
